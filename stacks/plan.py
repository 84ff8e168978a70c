"""`imctl plan` for the clouds: run the real Pulumi program under Pulumi's mock engine.

Offline and without credentials: no Pulumi CLI, no provider plugin, no cloud API is involved.
The program runs with ``preview=False`` (so every ``apply`` runs), every invoke is answered by
``stacks.mocks``, and each resource's inputs are recorded as the program sent them. A plan shows
what the program *asks* each cloud for; whether the cloud accepts it is only known on deploy.

Each run happens on a fresh thread with a fresh event loop and freshly reset Pulumi settings:
``set_mocks`` is process-global state, and this keeps one plan (or test) from seeing another's.

Importing this module imports no Pulumi package; ``run_plan`` loads the chosen cloud's SDK only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypedDict, TypeVar

from stacks.config import StackConfig, check_deployable, kubernetes_version_verdict, load

PROJECT: Final = "imctl"
STACK: Final = "plan"
SECRET: Final = "[secret]"
_SECRET_SIG_KEY: Final = "4dabf18193072939515e22adb298388d"
_SECRET_SIG: Final = "1b47061264138c4ac30d75fd1eb44270"
_T = TypeVar("_T")


class PlanError(RuntimeError):
    """The program could not be planned (it raised, or it made an invoke nobody mocked)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UnmockedInvokeError(PlanError):
    def __init__(self, tokens: Iterable[str]) -> None:
        names = sorted(set(tokens))
        super().__init__(
            f"the program made invokes with no mock: {', '.join(names)}",
            "add an answer for each token to stacks/mocks.py",
        )
        self.tokens = names


@dataclass(frozen=True, slots=True)
class Registration:
    """One resource as the program registered it."""

    urn: str
    id: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    dependencies: tuple[str, ...]  # URNs this resource waits for (depends_on and inputs)
    inputs: dict[str, Any]  # raw: secrets still wrapped, see is_secret/unwrap
    state: dict[str, Any]  # inputs plus what the mock "cloud" computed
    retain_on_delete: bool = False  # dropped from the program: left in the cloud, not deleted
    ignore_changes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if self.type.startswith("pulumi:providers:"):
            return "provider"
        return "resource" if self.custom else "component"


@dataclass(slots=True)
class PlanRun:
    """Everything a run recorded; tests assert on this, run_plan turns it into JSON."""

    config: StackConfig
    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    invokes: list[tuple[str, str | None]]
    import_seconds: float
    run_seconds: float
    _regions: dict[str, str] = field(default_factory=dict)

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def find(self, type_: str, name: str | None = None) -> list[Registration]:
        return [
            r for r in self.registrations if r.type == type_ and (name is None or r.name == name)
        ]

    def one(self, type_: str, name: str) -> Registration:
        found = self.find(type_, name)
        if len(found) != 1:
            raise LookupError(f"{len(found)} registrations of {type_} named {name!r}")
        return found[0]

    def region_of(self, urn: str) -> str:
        if not self._regions:
            self._regions = _regions(self.registrations)
        return self._regions.get(urn, "global")

    def component_of(self, urn: str) -> str | None:
        """The nearest enclosing component, as "type/name"."""
        index = self.by_urn()
        parent = index[urn].parent
        while parent in index:
            reg = index[parent]
            if reg.kind == "component":
                return f"{reg.type}/{reg.name}"
            parent = reg.parent
        return None


class PlanResource(TypedDict):
    type: str
    name: str
    kind: str
    region: str
    component: str | None
    properties: dict[str, Any]


class PlanSummary(TypedDict):
    total: int
    by_kind: dict[str, int]
    by_type: dict[str, int]
    by_region: dict[str, int]
    by_component: dict[str, int]


class PlanWarning(TypedDict):
    key: str
    message: str
    hint: str


class PlanResult(TypedDict):
    cloud: str
    primary_region: str
    standby_region: str | None
    config: dict[str, Any]
    resources: list[PlanResource]
    outputs: dict[str, Any]
    invokes: list[dict[str, str | None]]
    summary: PlanSummary
    contacted_cloud: bool
    timing: dict[str, float]
    warnings: list[PlanWarning]


# -- secrets ------------------------------------------------------------------------------------


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SECRET_SIG_KEY) == _SECRET_SIG


def unwrap(value: Any) -> Any:
    """The recorded value with every secret wrapper removed (for assertions on content)."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def mask(value: Any) -> Any:
    """JSON-able copy with every secret replaced by "[secret]"."""
    if is_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {str(k): mask(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# -- regions ------------------------------------------------------------------------------------


def _regions(registrations: list[Registration]) -> dict[str, str]:
    """Region of each resource: its provider's region; a component's is the one region all its
    regional descendants share; anything else inherits from its parents, or is "global"."""
    index = {r.urn: r for r in registrations}
    provider_region: dict[str, str] = {}
    for r in registrations:
        region = r.inputs.get("region")
        if r.kind == "provider" and isinstance(region, str):
            provider_region[r.urn] = region

    def provider_urn(ref: str) -> str:
        return ref.rsplit("::", 1)[0]

    direct: dict[str, str] = {}
    for r in registrations:
        if r.kind == "provider" and r.urn in provider_region:
            direct[r.urn] = provider_region[r.urn]
        elif r.provider and provider_urn(r.provider) in provider_region:
            direct[r.urn] = provider_region[provider_urn(r.provider)]

    below: dict[str, set[str]] = {}
    for urn, region in direct.items():
        parent = index[urn].parent
        while parent in index:
            below.setdefault(parent, set()).add(region)
            parent = index[parent].parent
    component_region = {urn: next(iter(rs)) for urn, rs in below.items() if len(rs) == 1}

    def inherited(urn: str) -> str | None:
        while urn in index:
            if urn in direct:
                return direct[urn]
            if urn in component_region:
                return component_region[urn]
            urn = index[urn].parent
        return None

    result: dict[str, str] = {}
    for r in registrations:
        region = direct.get(r.urn) or component_region.get(r.urn)
        if region is None and r.provider and provider_urn(r.provider) in index:
            region = inherited(provider_urn(r.provider))
        if region is None:
            region = inherited(r.parent)
        result[r.urn] = region or "global"
    return result


# -- running ------------------------------------------------------------------------------------


def _on_fresh_thread(fn: Callable[[], _T]) -> _T:
    """Run fn on a new thread: new contextvars (Pulumi's settings live there), new event loop."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="imctl-plan", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: _T = box["value"]
    return value


def run_program(
    config: StackConfig,
    program: Callable[[StackConfig], dict[str, Any]] | None = None,
    today: date | None = None,
) -> PlanRun:
    """Run the stack program (or ``program``) for ``config`` under the mocks and record it.
    ``today`` is the date the program checks the Kubernetes version against (default: now)."""
    return _on_fresh_thread(lambda: _run(config, program, today))


def _run(
    config: StackConfig,
    program: Callable[[StackConfig], dict[str, Any]] | None,
    today: date | None = None,
) -> PlanRun:
    started = time.perf_counter()
    import pulumi
    from pulumi.runtime import rpc, settings
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.stack import run_pulumi_func

    from stacks.mocks import PlanMocks
    from stacks.program import build, cloud_stack

    build_fn = program or (lambda c: build(c, today))
    cloud_stack(config.cloud)  # the SDK import is most of a plan's time; measure it apart
    imported = time.perf_counter()

    mocks = PlanMocks(config.cloud)
    records: list[Registration] = []
    lock = threading.Lock()

    class RecordingMonitor(MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
            if request.type != "pulumi:pulumi:Stack":
                registered = self.resources.get(response.urn)
                with lock:
                    records.append(
                        Registration(
                            urn=response.urn,
                            id=response.id,
                            type=request.type,
                            name=request.name,
                            custom=bool(request.custom),
                            parent=request.parent,
                            provider=request.provider,
                            dependencies=tuple(request.dependencies),
                            inputs=rpc.deserialize_properties(request.object),
                            state=dict(registered.state) if registered else {},
                            retain_on_delete=bool(request.retainOnDelete),
                            ignore_changes=tuple(request.ignoreChanges),
                        )
                    )
            return response

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.reset_options(project=PROJECT, stack=STACK, preview=False)
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=STACK, preview=False, monitor=RecordingMonitor(mocks)
        )
        holder: dict[str, dict[str, Any]] = {}

        def program_fn() -> None:
            holder["outputs"] = build_fn(config)

        try:
            loop.run_until_complete(run_pulumi_func(program_fn))
        except Exception as exc:
            if mocks.unmocked_invokes:
                raise UnmockedInvokeError(mocks.unmocked_invokes) from exc
            raise PlanError(f"the {config.cloud} program failed: {exc}") from exc
        if mocks.unmocked_invokes:
            raise UnmockedInvokeError(mocks.unmocked_invokes)
        outputs, secret = loop.run_until_complete(_resolve(holder.get("outputs", {})))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
        settings.reset_options()
    finished = time.perf_counter()
    return PlanRun(
        config=config,
        registrations=sorted(records, key=lambda r: r.urn),
        outputs=outputs,
        secret_outputs=frozenset(secret),
        invokes=sorted(mocks.invokes, key=lambda i: (i[0], i[1] or "")),
        import_seconds=imported - started,
        run_seconds=finished - imported,
    )


async def _resolve(outputs: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    import pulumi

    values: dict[str, Any] = {}
    secret: set[str] = set()
    for name, value in outputs.items():
        out = pulumi.Output.from_input(value)
        values[name] = await out.future()
        if await out.is_secret():
            secret.add(name)
    return values, secret


def to_result(run: PlanRun, today: date | None = None) -> PlanResult:
    resources: list[PlanResource] = [
        {
            "type": r.type,
            "name": r.name,
            "kind": r.kind,
            "region": run.region_of(r.urn),
            "component": run.component_of(r.urn),
            "properties": mask(r.inputs),
        }
        for r in run.registrations
    ]
    regional = [r for r in resources if r["kind"] != "component"]
    by_component = Counter(r["component"] for r in regional if r["component"] is not None)
    outputs = {
        name: SECRET if name in run.secret_outputs else mask(value)
        for name, value in run.outputs.items()
    }
    return {
        "cloud": run.config.cloud,
        "primary_region": run.config.writer_region,
        "standby_region": run.config.reader_region,
        "config": run.config.as_dict(),
        "resources": resources,
        "outputs": outputs,
        "invokes": [{"token": token, "region": region} for token, region in run.invokes],
        "summary": {
            "total": len(resources),
            "by_kind": dict(sorted(Counter(r["kind"] for r in resources).items())),
            "by_type": dict(sorted(Counter(r["type"] for r in regional).items())),
            "by_region": dict(sorted(Counter(r["region"] for r in regional).items())),
            "by_component": dict(sorted(by_component.items())),
        },
        # Structural, not measured: the engine is Pulumi's mock monitor and no provider plugin
        # is ever started, so there is nothing that could reach a cloud API.
        "contacted_cloud": False,
        "timing": {
            "import_seconds": round(run.import_seconds, 3),
            "run_seconds": round(run.run_seconds, 3),
        },
        "warnings": warnings(run.config, today or date.today()),
    }


def warnings(config: StackConfig, today: date) -> list[PlanWarning]:
    """What a deploy would accept but the operator should hear about."""
    verdict = kubernetes_version_verdict(config, today)
    if verdict.level != "warn":
        return []
    return [{"key": "kubernetesVersion", "message": verdict.message, "hint": verdict.hint}]


def run_plan(
    cloud: str,
    region: str,
    standby_region: str | None,
    overrides: dict[str, str],
    today: date | None = None,
) -> PlanResult:
    """Validate the config (``ConfigError`` on bad input; its subclass ``Undeployable`` when a
    deploy would be refused, e.g. a Kubernetes version past its end of life), run the program
    under the mocks, and return the JSON-able plan. Raises ``PlanError`` if the program fails."""
    config = load(cloud, region, standby_region, overrides)
    day = today or date.today()
    check_deployable(config, day)
    return to_result(run_program(config, today=day), day)
