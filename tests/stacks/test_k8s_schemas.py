"""Every Kubernetes object the programs create validates against real schemas.

The mocks accept any input; an API server does not. Built-in kinds are checked against the
OpenAPI schemas of the newest Kubernetes release ``kubernetes-validate`` ships, in strict mode
(an unknown field is an error, as ``kubectl apply --validate=strict`` and server-side apply
field validation make it). Custom resources are checked against the schema of their CRD, looked
up by group and kind in ``tests/stacks/crds/`` (see the README there), with unknown fields made
errors too (an API server would silently prune them, which hides a typo just as well).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from stacks.plan import PlanRun, Registration
from tests.stacks.helpers import args, run

CRDS = Path(__file__).parent / "crds"
CLOUDS = ("aws", "gcp", "alicloud")
# Registered through the Kubernetes provider but not Kubernetes objects themselves.
_NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml/", "pulumi:providers:")


def api_version_kind(type_token: str) -> tuple[str, str]:
    """``kubernetes:apps/v1:Deployment`` -> ("apps/v1", "Deployment"); core is plain "v1"."""
    _, group_version, kind = type_token.split(":")
    group, version = group_version.split("/")
    return (version if group == "core" else f"{group}/{version}", kind)


def k8s_objects(plan: PlanRun) -> list[Registration]:
    return [
        r
        for r in plan.registrations
        if r.custom and r.type.startswith("kubernetes:") and not r.type.startswith(_NOT_OBJECTS)
    ]


def _json_numbers(value: Any) -> Any:
    """Pulumi hands every number over as a float; the provider sends 5, not 5.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


def manifest(reg: Registration) -> dict[str, Any]:
    """The object as the provider would send it to the API server."""
    doc: dict[str, Any] = _json_numbers(args(reg))
    api_version, kind = api_version_kind(reg.type)
    doc.setdefault("apiVersion", api_version)
    doc.setdefault("kind", kind)
    assert (doc["apiVersion"], doc["kind"]) == (api_version, kind), reg.urn
    return doc


def _strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields forbidden wherever the CRD does not keep
    them on purpose (x-kubernetes-preserve-unknown-fields, or an explicit additionalProperties)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group, version = api_version.split("/")
    path = CRDS / group / f"{kind}.json"
    assert path.is_file(), (
        f"{kind}.{group} is created by a program but no CRD is vendored for it: add "
        f"{path.relative_to(CRDS.parent.parent.parent)} from the release that installs it "
        "(tests/stacks/crds/README.md)"
    )
    crd = json.loads(path.read_text())
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, path
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{path}: {version} is not a served version ({sorted(served)})"
    schema = dict(served[version]["schema"]["openAPIV3Schema"])
    # The API server checks metadata itself (built-in ObjectMeta); the CRD leaves it open.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator: jsonschema.protocols.Validator = cls(_strict(schema))
    return validator


def problems(doc: dict[str, Any]) -> list[str]:
    """Why the API server would reject ``doc``; empty when it validates."""
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pass
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
    else:
        return []
    validator = crd_validator(doc["apiVersion"], doc["kind"])
    return [
        f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_the_schemas_are_the_newest_kubernetes_validate_ships() -> None:
    latest = kubernetes_validate.latest_version()
    assert tuple(int(p) for p in latest.split(".")[:2]) >= (1, 37), latest


def test_a_typo_and_a_wrong_type_are_caught_in_builtin_and_custom_objects() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dat": {}}
    assert problems(cm)
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http", "intervall": "1s"}]},
    }
    assert any("intervall" in p for p in problems(monitor))
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": 5}]}]},
    }
    assert problems(rule)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_kubernetes_object_validates(cloud: str) -> None:
    plan = run(cloud)
    objects = k8s_objects(plan)
    assert len(objects) > 20, "the workload's objects were not found"
    failures = {r.urn.rsplit("::", 1)[1]: p for r in objects if (p := problems(manifest(r)))}
    assert not failures, json.dumps(failures, indent=1)


def test_all_three_clouds_validate_fast() -> None:
    """The check stays in the suite because it is cheap: all objects of all three two-region
    programs (runs are shared with the other tests; a cold session pays for them here)."""
    started = time.perf_counter()
    count = 0
    for cloud in CLOUDS:
        for reg in k8s_objects(run(cloud)):
            problems(manifest(reg))
            count += 1
    assert count > 60
    assert time.perf_counter() - started < 30
