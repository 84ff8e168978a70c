"""What the stand-in ``pulumi`` (the script next to this file) reports as its engine: the event
wire format, the resources the program would register, the outputs an ``up`` exports, and the
steps a test scripts with FAKE_PULUMI_PLAN.

The script imports this module from its own directory (it runs with ``python -I``, which puts no
directory on ``sys.path``), so it imports nothing else from the tests.

FAKE_PULUMI_PLAN is a JSON list of steps that ``preview`` and ``up`` report after the program's
own, each ``{"op": "create"|"update"|"replace"|"delete", "type": TOKEN, "name": NAME}`` with
optional ``keys`` (the properties forcing a replacement), ``diffs``, ``detailedDiff``
(``{path: {"diffKind": "update-replace", "inputDiff": true}}``), ``retainOnDelete`` and
``deleteBeforeReplace``. They reach the Automation API as the engine sends them: a replacement
is three steps (``create-replacement`` and the logical ``replace`` in place, ``delete-replaced``
after every other step; in the opposite order with ``deleteBeforeReplace``), the others one, and
the summary counts each resource once under its op. They are reported, never recorded in the
stand-in's state.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from typing import Any, Final

STACK_TYPE: Final = "pulumi:pulumi:Stack"
PLAN_OPS: Final = ("create", "update", "replace", "delete")


# --- the event wire format -----------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _event_request(event: dict[str, Any]) -> bytes:
    # pulumirpc.EventRequest {string event = 1;}, encoded by hand: no protobuf import needed.
    data = json.dumps(event).encode()
    return b"\x0a" + _varint(len(data)) + data


def send_events(target: str, events: list[dict[str, Any]]) -> None:
    if target.startswith("tcp://"):
        grpc = importlib.import_module("grpc")  # only the update commands pay for it

        with grpc.insecure_channel(target[len("tcp://") :]) as channel:
            stream = channel.stream_unary(
                "/pulumirpc.Events/StreamEvents",
                request_serializer=_event_request,
                response_deserializer=lambda b: b,
            )
            stream(iter(events), timeout=30)
        return
    with open(target, "a", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event) + "\n")
            f.flush()


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, **payload: Any) -> None:
        self.items.append({"sequence": len(self.items), "timestamp": int(time.time()), **payload})

    def step(self, kind: str, op: str, urn: str, type_: str, planning: bool, **meta: Any) -> None:
        """A resourcePreEvent or resOutputsEvent; ``meta``: more StepEventMetadata fields, as
        the engine names them (keys, diffs, detailedDiff, old, logical)."""
        metadata = {"op": op, "urn": urn, "type": type_, "provider": "", **meta}
        self.add(**{kind: {"metadata": metadata, "planning": planning}})

    def both(self, op: str, urn: str, type_: str, planning: bool, **meta: Any) -> None:
        """A step that went through: its pre event and its outputs event."""
        self.step("resourcePreEvent", op, urn, type_, planning, **meta)
        self.step("resOutputsEvent", op, urn, type_, planning, **meta)


def urn(project: str, stack: str, type_: str, name: str, parent: str = "") -> str:
    qualified = f"{parent}${type_}" if parent else type_
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def stack_urn(project: str, stack: str) -> str:
    return urn(project, stack, STACK_TYPE, f"{project}-{stack}")


def wanted_resources(project: str, stack: str, config: dict[str, str]) -> list[tuple[str, str]]:
    """(urn, type) of what the program would register, by cloud and regions."""
    cloud = config.get("cloud", "aws")
    regions = [r for r in (config.get("region"), config.get("standbyRegion")) if r]
    out = [(stack_urn(project, stack), STACK_TYPE)]
    count = int(os.environ.get("FAKE_PULUMI_RESOURCES", "2"))
    for region in regions:
        comp = f"imctl:{cloud}:Network"
        out.append((urn(project, stack, comp, f"{region}-network", STACK_TYPE), comp))
        for i in range(count):
            t = "kubernetes:apps/v1:Deployment" if i == 0 else f"{cloud}:index/thing:Thing{i}"
            out.append((urn(project, stack, t, f"{region}-r{i}", f"{STACK_TYPE}${comp}"), t))
    return out


def generated_outputs(config: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    cloud = config.get("cloud", "aws")
    primary = config.get("region", "us-east-1")
    standby = config.get("standbyRegion") or None
    failovers = int(config.get("failovers", "0"))
    if failovers % 2 and standby is not None:  # as the program does: odd, the sites swap roles
        primary, standby = standby, primary
    regions: dict[str, Any] = {}
    kubeconfigs: dict[str, str] = {}
    for region, role in ((primary, "primary"), (standby, "standby")):
        if region is None:
            continue
        regions[region] = {
            "role": role,
            "cluster_name": f"imctl-{region}",
            "cluster_id": f"imctl-{region}",
            "nodegroup_name": f"imctl-{region}-nodes",
            "db_instance_id": f"imctl-{region}-db",
            "db_endpoint": f"imctl-{region}-db.example.internal",
            "endpoint": f"lb-{region}.example.net",
            "namespace": config.get("namespace", "im"),
            "deployment": "im-server",
        }
        kubeconfigs[region] = json.dumps({"apiVersion": "v1", "kind": "Config", "fake": region})
    values = {
        "cloud": cloud,
        "primary_region": primary,
        "standby_region": standby,
        "failovers": failovers,
        "regions": regions,
        "hosted_zone_id": "Z0FAKE",
        "dns_name": f"{config.get('hostname', 'im')}.{config.get('domain', 'example.com')}",
        "backup_bucket": f"imctl-backups-{primary}",
        "kubeconfig": kubeconfigs[primary],
        "kubeconfigs": kubeconfigs,
    }
    return values, ["kubeconfig", "kubeconfigs"]


def history_entry(
    kind: str, st: dict[str, Any], cfg: dict[str, Any], result: str, changes: dict[str, int]
) -> None:
    """Record an update in the stack's history (``cfg``: its config file's ``config``)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    st["history"].insert(
        0,
        {
            "kind": kind,
            "startTime": now,
            "endTime": now,
            "message": "",
            "environment": {"exec.kind": "auto.inline"},
            "config": {
                k: {
                    "value": "[secret]" if isinstance(v, dict) else v,
                    "secret": isinstance(v, dict),
                }
                for k, v in cfg.items()
            },
            "result": result,
            "version": len(st["history"]) + 1,
            "resourceChanges": changes,
        },
    )


# --- scripted steps (FAKE_PULUMI_PLAN) ------------------------------------------------------


def scripted_plan() -> list[dict[str, Any]]:
    raw = os.environ.get("FAKE_PULUMI_PLAN", "").strip()
    if not raw:
        return []
    steps = json.loads(raw)
    if not isinstance(steps, list):
        raise ValueError("FAKE_PULUMI_PLAN must be a JSON list of steps")
    for step in steps:
        if step.get("op") not in PLAN_OPS or not step.get("type") or not step.get("name"):
            raise ValueError(f"FAKE_PULUMI_PLAN step needs op {PLAN_OPS}, type and name: {step}")
    return steps


def emit_plan(
    events: Events, steps: list[dict[str, Any]], project: str, stack: str, planning: bool
) -> tuple[dict[str, int], list[tuple[str, str, dict[str, Any]]]]:
    """Send the scripted steps' events; -> the changes they add to the summary, and the
    ``delete-replaced`` steps the caller sends after every other step (urn, type, meta)."""
    changes: dict[str, int] = {}
    later: list[tuple[str, str, dict[str, Any]]] = []
    parent = stack_urn(project, stack)
    for step in steps:
        op, type_ = step["op"], step["type"]
        u = urn(project, stack, type_, step["name"], STACK_TYPE)
        old = {
            "type": type_, "urn": u, "id": f"{step['name']}-id", "parent": parent,
            "provider": "", "custom": True,
            "retainOnDelete": bool(step.get("retainOnDelete")),
        }  # fmt: skip
        meta: dict[str, Any] = {
            k: step[k] for k in ("keys", "diffs", "detailedDiff") if step.get(k) is not None
        }
        if op != "create":
            meta["old"] = old
        changes[op] = changes.get(op, 0) + 1
        if op != "replace":
            events.both(op, u, type_, planning, **meta)
            continue
        gone = {"old": {**old, "delete": True}}
        if step.get("deleteBeforeReplace"):
            events.both("delete-replaced", u, type_, planning, **gone)
            events.both("replace", u, type_, planning, logical=True, **meta)
            events.both("create-replacement", u, type_, planning, **meta)
        else:
            events.both("create-replacement", u, type_, planning, **meta)
            events.both("replace", u, type_, planning, logical=True, **meta)
            later.append((u, type_, gone))
    return changes, later
