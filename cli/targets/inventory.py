"""Every stack under an imctl home, found without the network: what ``imctl stack ls`` lists.

Where each kind of stack is recorded, and what its state can be told from:

- local: ``<home>/stacks/<stack>/config.json``. The state comes from the pid files (pid and
  start time, so a recycled pid does not count): ``running`` when every process the config
  wants is alive, ``stopped`` when none is, ``degraded`` otherwise or when a region is fenced.
- aws, gcp, alicloud: ``Pulumi.<stack>.yaml`` in the Pulumi work dir, as ``imctl deploy``
  writes it (``imctl:cloud``, ``region``, ``standbyRegion``, ``failovers``). Whether the
  resources exist is in the backend's checkpoint, readable only when the state is a local
  directory (the default, ``$IMCTL_HOME/pulumi``): ``deployed`` with resources, ``destroyed``
  without. With another backend, or without a checkpoint yet, it is ``unknown``: asking would
  mean the network, and a cloud's health is ``imctl status --cloud X``.
- a journal only (``<home>/journal/<stack>.jsonl`` outlives a destroy; one file per stack
  name, whatever the target): per target, ``destroyed`` when its last successful operation was
  a destroy, else ``unknown``. A target with no successful operation in it (a deploy that was
  refused) is no stack and is left out.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli import journal
from cli.errors import ExitStatus, ImctlError

if TYPE_CHECKING:
    from cli.targets.local.runtime import Region as LocalRegion

STATES = ("running", "degraded", "stopped", "deployed", "destroyed", "unknown")
CLOUDS = ("aws", "gcp", "alicloud")
PROJECT = "imctl"  # the Pulumi project (cli/engine/workspace.py); not imported: it loads Pulumi


@dataclass(frozen=True)
class RegionRole:
    name: str
    role: str  # primary, standby, fenced


@dataclass(frozen=True)
class StackEntry:
    stack: str
    target: str  # local, aws, gcp, alicloud
    state: str  # one of STATES
    regions: list[RegionRole] = field(default_factory=list)
    endpoint: str | None = None
    why: str | None = None  # what makes it degraded or unknown; what a destroyed one kept

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StackList:
    home: str
    stacks: list[StackEntry]
    exit_status: ExitStatus = ExitStatus.OK  # none is a fine answer

    def to_json(self) -> dict[str, Any]:
        return {"home": self.home, "stacks": [s.to_json() for s in self.stacks]}


def list_stacks(home: Path, environ: Mapping[str, str]) -> StackList:
    """Every stack under ``home``, sorted by name then target."""
    found: dict[tuple[str, str], StackEntry] = {}
    stacks_dir = home / "stacks"
    if stacks_dir.is_dir():
        for stack_dir in sorted(p for p in stacks_dir.iterdir() if p.is_dir()):
            if (stack_dir / "config.json").is_file():
                found[(stack_dir.name, "local")] = local_entry(stack_dir)
            elif (stack_dir / "destroyed.json").is_file():
                found[(stack_dir.name, "local")] = _destroyed_with_snapshots(stack_dir)
    for name, config in _cloud_configs(home, environ).items():
        entry = cloud_entry(name, config, home, environ)
        found[(name, entry.target)] = entry
    journals = home / "journal"
    if journals.is_dir():
        for path in sorted(journals.glob("*.jsonl")):
            by_target: dict[str, list[journal.Record]] = {}
            for record in journal.read(home, path.stem):
                if record.result == "ok":
                    by_target.setdefault(record.cloud or "local", []).append(record)
            for target, done in by_target.items():
                if (path.stem, target) not in found:
                    found[(path.stem, target)] = _journal_entry(path.stem, target, done)
    return StackList(str(home), [found[key] for key in sorted(found)])


# --- local ------------------------------------------------------------------------------------


def local_entry(stack_dir: Path) -> StackEntry:
    from cli.state import StackFiles
    from cli.targets.local.target import LocalTarget

    target = LocalTarget(StackFiles(stack_dir))
    try:
        cfg = target.files.load_config()
        alive, problems = _liveness(target.regions(cfg))
    except ImctlError as exc:  # a damaged file: say which, list the rest
        return StackEntry(stack_dir.name, "local", "unknown", why=exc.message)
    if not alive:
        state, why = "stopped", None
    elif problems:
        state, why = "degraded", "; ".join(problems)
    else:
        state, why = "running", None
    return StackEntry(
        stack_dir.name,
        "local",
        state,
        [RegionRole(r.name, r.role) for r in cfg.regions],
        target.endpoint(cfg),
        why,
    )


def _liveness(regions: list[LocalRegion]) -> tuple[int, list[str]]:
    """(how many of the stack's processes are alive, what keeps it from "running")."""
    from cli.targets.local import procs

    alive = 0
    problems: list[str] = []
    for region in regions:
        name = region.cfg.name
        if region.cfg.role == "fenced":
            problems.append(f"region {name} fenced")
            continue
        for what, up in (
            ("PostgreSQL", region.pg().pid() is not None),
            ("NATS", region.nats().is_alive()),
        ):
            alive += up
            if not up:
                problems.append(f"{name}: {what} down")
        if region.cfg.role == "primary":
            infos = [region.nodes.node_info(node) for node in region.node_ids()]
            nodes = sum(1 for info in infos if info is not None and procs.is_alive(info))
            alive += nodes
            if nodes < region.cfg.replicas:
                problems.append(f"{name}: {nodes}/{region.cfg.replicas} im-server nodes up")
    return alive, problems


# --- clouds -----------------------------------------------------------------------------------


def _cloud_configs(home: Path, environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Each stack's ``imctl:`` config keys, by stack, for the stacks that name their cloud."""
    from cli.engine import stack_yaml  # standard library only: no Pulumi

    found = stack_yaml.read_all(home, environ)
    return {name: values for name, values in found.items() if values.get("cloud") in CLOUDS}


def _checkpoint(home: Path, environ: Mapping[str, str], stack: str) -> dict[str, Any] | None:
    """The DIY backend's checkpoint of ``stack`` when the state is a local directory."""
    from cli.engine.settings import backend_url  # standard library only: no Pulumi

    backend = backend_url(home, environ)
    if not backend.startswith("file://"):
        return None
    root = Path(backend.removeprefix("file://")).expanduser() / ".pulumi" / "stacks"
    # Project-scoped layout (Pulumi >= 3.61), then the older one; gzip when the backend
    # compresses (PULUMI_DIY_BACKEND_GZIP).
    for base in (root / PROJECT / stack, root / stack):
        for path, opener in ((Path(f"{base}.json"), open), (Path(f"{base}.json.gz"), gzip.open)):
            if path.is_file():
                try:
                    with opener(path, "rt") as f:
                        doc = json.load(f)
                except (OSError, ValueError):
                    return None
                return doc if isinstance(doc, dict) else None
    return None


def cloud_entry(
    stack: str, config: Mapping[str, str], home: Path, environ: Mapping[str, str]
) -> StackEntry:
    from stacks.config import writer_of  # the roles rule has one home

    cloud = config["cloud"]
    regions: list[RegionRole] = []
    region, standby = config.get("region"), config.get("standbyRegion") or None
    if region:
        try:
            failovers = int(config.get("failovers") or 0)
        except ValueError:
            failovers = 0
        writer = writer_of(region, standby, failovers)
        regions = [
            RegionRole(r, "primary" if r == writer else "standby") for r in (region, standby) if r
        ]
    doc = _checkpoint(home, environ, stack)
    if doc is None:
        why = "the Pulumi state is not in a local directory, or there is none yet"
        return StackEntry(stack, cloud, "unknown", regions, None, why)
    latest = (doc.get("checkpoint") or {}).get("latest") or {}
    resources = latest.get("resources") or []
    if not resources:
        return StackEntry(stack, cloud, "destroyed", regions)
    root: dict[str, Any] = next(
        (r for r in resources if r.get("type") == "pulumi:pulumi:Stack"), {}
    )
    endpoint = (root.get("outputs") or {}).get("endpoint")
    return StackEntry(
        stack, cloud, "deployed", regions, endpoint if isinstance(endpoint, str) else None
    )


def _destroyed_with_snapshots(stack_dir: Path) -> StackEntry:
    """Destroyed, its snapshots kept (cli/state.py): listed so they are not forgotten."""
    root = stack_dir / "snapshots"
    count = sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else 0
    why = (
        f"{count} snapshot(s) kept: imctl snapshot list -s {stack_dir.name}; imctl restore ID"
        f" -s {stack_dir.name} builds it again"
    )
    return StackEntry(stack_dir.name, "local", "destroyed", why=why)


# --- journal only -----------------------------------------------------------------------------


def _journal_entry(stack: str, target: str, done: list[journal.Record]) -> StackEntry:
    """``done``: the target's successful operations, oldest first."""
    if done[-1].op == "destroy":
        return StackEntry(stack, target, "destroyed")
    why = "known only from the journal (imctl history): its files are not on this machine"
    return StackEntry(stack, target, "unknown", why=why)
