"""Finding a stack's processes by what they are, not only by their pid files.

A deleted or overwritten pid file used to hide a live process: ``status`` did not show it,
``destroy`` did not stop it, and ``deploy`` started a second copy next to it. Here a process
belongs to a stack only when something unique to that stack proves it; the proof travels with
every result (``Found.proof``), and nothing else is ever signalled:

- an im-server node: ``python -m im_server serve`` whose working directory is the region's
  ``nodes/`` directory, or whose ``IM_DATABASE_URL`` is the region's database URL (its port and
  the stack's random password); ``IM_NODE_ID`` (``<region>-<node>``) says which node it is;
- nats-server: the ``nats-server`` binary run in (or pointed at) the region's directory;
- PostgreSQL: a postmaster whose ``-D`` data directory is inside the stack's directory.

Reading another process's environment needs the same user or root, which is what started it;
a process whose environment cannot be read is not claimed.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psutil  # type: ignore[import-untyped, unused-ignore]

from cli.deadline import poll
from cli.progress import Note
from cli.targets.local import procs

if TYPE_CHECKING:
    from cli.targets.local.runtime import Region

Kind = Literal["node", "nats", "postgres", "backup"]
# The region of what belongs to the whole stack, not one region: the WAL archiver and the
# backup shipper (cli/targets/local/backups/).
# (No region name can have parentheses, so no region claims them as its own.)
BACKUP_REGION = "(stack)"
PG_STOP_TIMEOUT = 30.0
NATS_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Found:
    kind: Kind
    region: str
    name: str  # n2, nats, postgres (pg/data) or the data directory's name (pg/restoring)
    pid: int
    create_time: float
    argv: list[str] = field(compare=False)
    proof: str = field(compare=False)  # what ties it to this stack

    def info(self) -> procs.PidInfo:
        return procs.PidInfo(self.pid, self.create_time, list(self.argv))

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["argv"], doc["create_time"]
        return doc

    def __str__(self) -> str:
        if self.kind == "backup":
            return f"backup {self.name} (pid {self.pid})"
        what = "im-server" if self.kind == "node" else ""
        return f"{what} {self.name} (pid {self.pid}) of region {self.region}".strip()


def _real(path: str) -> Path:
    # /proc/<pid>/cwd of a removed directory reads "<path> (deleted)"
    return Path(path.removesuffix(" (deleted)"))


def _inside(path: Path, root: Path) -> Path | None:
    """``path`` relative to ``root``, or None when it is not inside it."""
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def _arg(argv: Sequence[str], flag: str) -> str | None:
    if flag in argv[:-1]:
        return argv[argv.index(flag) + 1]
    return None


def _region_of(path: Path, stack_dir: Path, part: str) -> str | None:
    """The region whose ``part`` directory (nodes, nats, pg) holds ``path``."""
    rel = _inside(path, stack_dir / "regions")
    if rel is None or len(rel.parts) < 2 or rel.parts[1] != part:
        return None
    return rel.parts[0]


class _Scan:
    """One look at every process: which of them belong to the stack in ``stack_dir``."""

    def __init__(self, stack_dir: Path, regions: Sequence[Region]) -> None:
        self.stack_dir = stack_dir.absolute()
        self.regions = list(regions)
        # The database URL names the region's PostgreSQL port and the stack's random password:
        # no other stack's node can carry it. Only with ports.json present: reading ports()
        # without it would pick (and write) new ports.
        self.dsns = {r.dsn(): r.cfg.name for r in self.regions if r.ports_path.exists()}

    def run(self) -> list[Found]:
        found: list[Found] = []
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            try:
                hit = self._classify(proc)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            if hit is not None:
                found.append(hit)
        return found

    def _classify(self, proc: psutil.Process) -> Found | None:
        argv = [str(a) for a in (proc.info.get("cmdline") or [])]
        if not argv:
            return None
        exe = Path(argv[0]).name
        if "im_server" in argv and "serve" in argv:
            return self._node(proc, argv)
        if exe == "nats-server":
            return self._nats(proc, argv)
        if exe == "postgres" and "-D" in argv:
            return self._postgres(proc, argv)
        if exe == "pg_receivewal" and "-D" in argv:
            return self._backup(proc, argv, "archiver", Path(str(_arg(argv, "-D"))))
        if "cli.targets.local.backups.shipper" in argv and "--root" in argv:
            return self._backup(proc, argv, "shipper", Path(str(_arg(argv, "--root"))))
        return None

    def _backup(self, proc: psutil.Process, argv: list[str], name: str, path: Path) -> Found | None:
        if _inside(path.absolute(), self.stack_dir / "backups") is None:
            return None
        return self._found(proc, "backup", BACKUP_REGION, name, argv, f"it works on {path}")

    def _found(
        self, proc: psutil.Process, kind: Kind, region: str, name: str, argv: list[str], proof: str
    ) -> Found:
        return Found(kind, region, name, proc.pid, float(proc.info["create_time"]), argv, proof)

    def _node(self, proc: psutil.Process, argv: list[str]) -> Found | None:
        from cli.targets.local.nodes import NODE_ID_RE

        env = proc.environ()
        node_id = env.get("IM_NODE_ID", "")
        cwd = _real(proc.cwd())
        region = _region_of(cwd, self.stack_dir, "nodes")
        proof = f"it runs in {cwd}"
        if region is None and env.get("IM_DATABASE_URL") in self.dsns:
            region = self.dsns[env["IM_DATABASE_URL"]]
            proof = f"its IM_DATABASE_URL is region {region}'s database (port and password)"
        if region is None or not node_id.startswith(f"{region}-"):
            return None
        name = node_id[len(region) + 1 :]
        if not NODE_ID_RE.fullmatch(name):
            return None
        return self._found(proc, "node", region, name, argv, f"{proof}, IM_NODE_ID={node_id}")

    def _nats(self, proc: psutil.Process, argv: list[str]) -> Found | None:
        cwd = _real(proc.cwd())
        region = _region_of(cwd, self.stack_dir, "nats")
        proof = f"it runs in {cwd}"
        if region is None:  # a config file or store directory named on the command line
            for a in argv[1:]:
                region = _region_of(Path(a), self.stack_dir, "nats")
                if region is not None:
                    proof = f"its command line names {a}"
                    break
        if region is None:
            return None
        return self._found(proc, "nats", region, "nats", argv, proof)

    def _postgres(self, proc: psutil.Process, argv: list[str]) -> Found | None:
        data = Path(str(_arg(argv, "-D"))).absolute()
        region = _region_of(data, self.stack_dir, "pg")
        if region is None:
            return None
        name = "postgres" if data.name == "data" else f"postgres ({data.name})"
        return self._found(proc, "postgres", region, name, argv, f"its data directory is {data}")


def stack_processes(stack_dir: Path, regions: Sequence[Region]) -> list[Found]:
    """Every running process that provably belongs to the stack in ``stack_dir``, including
    those of regions its config no longer names and clusters a restore left behind."""
    return _Scan(stack_dir, regions).run()


def _stack_dir(region: Region) -> Path:
    return region.root.parent.parent  # <stack>/regions/<region>


def _same(info: procs.PidInfo | None, found: Found) -> bool:
    # is_alive compares the recorded start time with the live process's: a pid file naming a
    # recycled pid does not track ``found``.
    return info is not None and info.pid == found.pid and procs.is_alive(info)


def is_tracked(region: Region, found: Found) -> bool:
    """Whether the region's own records (pid file, postmaster.pid) name this process."""
    if found.kind == "node":
        return _same(procs.read_pid_file(region.nodes_dir / f"{found.name}.pid"), found)
    if found.kind == "nats":
        return _same(procs.read_pid_file(region.root / "nats" / "nats.pid"), found)
    # Only the region's own cluster is tracked; pg/restoring belongs to a running restore
    # (under the stack lock) or to one that was killed.
    return found.name == "postgres" and region.pg().pid() == found.pid


def orphans(region: Region, found: Iterable[Found] | None = None) -> list[Found]:
    """This region's processes that its pid files do not name (deleted, overwritten, or
    never written because imctl died right after starting them)."""
    if found is None:
        found = stack_processes(_stack_dir(region), [region])
    return [
        f
        for f in found
        if f.region == region.cfg.name
        and (f.kind != "postgres" or f.name == "postgres")
        and not is_tracked(region, f)
    ]


def untracked(stack_dir: Path, regions: Sequence[Region]) -> list[Found]:
    """The stack's processes no region's records name, in any region (configured or not)."""
    by_name = {r.cfg.name: r for r in regions}
    return [
        f
        for f in stack_processes(stack_dir, regions)
        if (not _backup_tracked(stack_dir, f) if f.kind == "backup"
            else f.region not in by_name or not is_tracked(by_name[f.region], f))
    ]  # fmt: skip


def _backup_tracked(stack_dir: Path, found: Found) -> bool:
    pid_file = stack_dir / "backups" / f"{found.name}.pid"
    return _same(procs.read_pid_file(pid_file), found)


def backup_strays(stack_dir: Path) -> list[Found]:
    """Archivers and shippers of the stack that no pid file names: a second archiver on the
    same slot would be refused, so they go before one starts."""
    return [
        f
        for f in stack_processes(stack_dir, [])
        if f.kind == "backup" and not _backup_tracked(stack_dir, f)
    ]


def nodes_running(region: Region) -> bool:
    """Whether any im-server node of the stack runs, pid file or not: the endpoint port is
    then held by the stack itself, not by a foreign program."""
    return any(f.kind == "node" for f in stack_processes(_stack_dir(region), [region]))


# --- stopping and adopting -------------------------------------------------------------------


def stop(found: Found, drain_grace: float) -> bool:
    """Stop one discovered process the way imctl stops its kind; True if it stopped by itself
    (False: it had to be killed). Signals go through procs, which re-check the start time."""
    info = found.info()
    if found.kind == "node":
        return procs.terminate(info, drain_grace + 5)
    if found.kind in ("nats", "backup"):
        return procs.terminate(info, NATS_STOP_TIMEOUT)
    return _stop_postmaster(info)


def kill(found: Found) -> None:
    """kill -9, as fencing does; a postmaster with its backends (they hold shared memory)."""
    try:
        family = psutil.Process(found.pid).children(recursive=True)
    except psutil.Error:
        family = []
    procs.kill9(found.info())
    for p in _living(family):
        with contextlib.suppress(psutil.Error):
            p.kill()


def _stop_postmaster(info: procs.PidInfo) -> bool:
    # pg_ctl cannot stop a cluster whose postmaster.pid is gone; SIGINT is what its fast mode
    # sends. The backends must be gone too before the cluster can start again (shared memory).
    try:
        family = psutil.Process(info.pid).children(recursive=True)
    except psutil.Error:
        family = []
    clean = procs.terminate(info, PG_STOP_TIMEOUT, sig=signal.SIGINT)

    def kill_the_rest(living: list[psutil.Process]) -> list[psutil.Process]:
        for p in living:
            with contextlib.suppress(psutil.Error):
                p.kill()
        return living

    poll(
        lambda: _living(family),
        done=lambda living: not living,
        state=lambda living: f"{len(living)} backend(s) left",
        what=f"the backends of PostgreSQL {info.pid}",
        limit=10,
        interval=0.05,
        timed_out=kill_the_rest,
    )
    return clean


def _living(family: Iterable[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in family:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def _adoptable(region: Region, f: Found) -> str | None:
    """Why ``f`` cannot simply be recorded as the region's own again; None when it can."""
    cfg = region.cfg
    if cfg.role == "fenced":
        return f"region {cfg.name} is fenced: nothing of it may run until `imctl standby rebuild`"
    if f.kind == "postgres":
        return "pg_ctl cannot manage a cluster whose postmaster.pid is gone; it starts again"
    if f.kind == "nats":
        if region.nats().is_alive():
            return "the NATS the pid file names runs already"
        # The region's server runs from its config file (ports and login inside); one started
        # otherwise (an older imctl's flags) is replaced, not adopted.
        if f.argv[1:] != region.nats().argv()[1:]:
            return "it was not started from the region's NATS config file"
        return None
    index = int(f.name[1:])
    if cfg.role != "primary":
        return f"a {cfg.role} region runs no im-server nodes"
    if index > cfg.replicas:
        return f"the region runs {cfg.replicas} node(s)"
    if region.node_status(f.name).alive:
        return f"the {f.name} its pid file names runs already"
    if _arg(f.argv, "--port") != str(cfg.port) or _arg(f.argv, "--health-port") is None:
        return f"it does not serve the region's port {cfg.port}"
    wanted_global = str(region.global_port) if region.global_port is not None else None
    if _arg(f.argv, "--global-port") != wanted_global:
        return "it does not serve the stack's global port as the region's nodes must"
    return None


def settle(region: Region, step: Note) -> list[str]:
    """Deploy's part: record an orphan that is exactly what the region should run (adopt), stop
    every other one. Returns the actions, each saying which and why."""
    actions = []
    for f in orphans(region):
        why = _adoptable(region, f)
        if why is None:
            pid_file = (
                region.nodes_dir / f"{f.name}.pid"
                if f.kind == "node"
                else region.root / "nats" / "nats.pid"
            )
            procs.write_pid_file(pid_file, f.info())
            msg = f"adopted {f} (its pid file was missing; {f.proof})"
        else:
            stop(f, region.drain_grace)
            msg = f"stopped {f}, which had no pid file: {why}"
        step(msg)
        actions.append(msg)
    return actions


def stop_leftovers(
    stack_dir: Path, regions: Sequence[Region], drain_grace: float, step: Note
) -> list[str]:
    """Destroy's part: whatever of the stack still runs after the regions were stopped
    through their pid files."""
    actions = []
    # Nodes first: they write to the database and publish to NATS.
    order: dict[str, int] = {"backup": 0, "node": 0, "nats": 1, "postgres": 2}
    for f in sorted(stack_processes(stack_dir, regions), key=lambda f: order[f.kind]):
        step(f"stopping {f}, found without a pid file ({f.proof})")
        stop(f, drain_grace)
        actions.append(f"stopped {f} (found without a pid file)")
    return actions
