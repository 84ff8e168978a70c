"""An emulated GCP (not the real cloud): a small stateful HTTP server on 127.0.0.1 that speaks
enough of Cloud SQL Admin v1, GKE v1, Cloud DNS v1 and Cloud Monitoring v3 for imctl's day-2
operations, behind one base URL (google-api-python-client's ``api_endpoint``).

Every request is matched against the discovery documents google-api-python-client ships: the
method must exist, required and known parameters are checked, and request bodies (and this
fake's own responses) are checked field by field against the schemas. What does not fit is
recorded in ``violations``; the tests assert there are none.

Point-in-time recovery: an instance with it on can be recovered from ``recovery_window`` (by
default from its creation or the log retention, whichever is later, to ``recovery_lag`` seconds
ago); a clone as of a time carries the newest ``data_at`` marker at or before it. What
getLatestRecoveryTime and a clone answer for an instance without point-in-time recovery is
this fake's guess (400 FAILED_PRECONDITION), not confirmed against Cloud SQL.

Long operations start PENDING, turn RUNNING on the first poll and DONE after ``op_polls`` polls;
their effect lands at DONE. Unknown ids get 404s shaped like Google's. Fidelity limits: no IAM,
no quotas, no real data (an instance's "data" is a marker string that backups copy and restores
carry), replica lag is whatever the test scripts, DNS changes apply at once and turn ``done``
on the first poll.
"""

from __future__ import annotations

import copy
import glob
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import googleapiclient

DOCS_DIR = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents")
SERVICES = ("sqladmin.v1", "container.v1", "dns.v1", "monitoring.v3")


# --- the discovery documents ------------------------------------------------------------------


@dataclass
class Method:
    id: str
    http: str
    flat: re.Pattern[str]
    path: re.Pattern[str]
    spec: dict[str, Any]
    doc: dict[str, Any]


def _template(tpl: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\+?)([^}]+)\}", tpl):
        out += re.escape(tpl[pos : m.start()])
        group = re.sub(r"\W", "_", m.group(2))
        out += f"(?P<{group}>.+?)" if m.group(1) else f"(?P<{group}>[^/:]+)"
        pos = m.end()
    out += re.escape(tpl[pos:])
    return re.compile(out + "$")


def load_discovery() -> tuple[list[Method], dict[str, dict[str, Any]]]:
    methods: list[Method] = []
    docs: dict[str, dict[str, Any]] = {}
    for svc in SERVICES:
        (path,) = glob.glob(os.path.join(DOCS_DIR, f"{svc}.json"))
        with open(path) as f:
            doc = json.load(f)
        docs[doc["name"]] = doc

        def walk(resources: dict[str, Any], doc: dict[str, Any] = doc) -> None:
            for res in resources.values():
                for spec in res.get("methods", {}).values():
                    prefix = doc.get("servicePath", "")
                    methods.append(
                        Method(
                            id=spec["id"],
                            http=spec["httpMethod"],
                            flat=_template(prefix + spec.get("flatPath", spec["path"])),
                            path=_template(prefix + spec["path"]),
                            spec=spec,
                            doc=doc,
                        )
                    )
                walk(res.get("resources", {}))

        walk(doc["resources"])
    return methods, docs


def check_value(
    doc: dict[str, Any], spec: dict[str, Any], value: Any, where: str, problems: list[str]
) -> None:
    """``value`` against a discovery schema fragment: names, types, enums (not required-ness:
    discovery documents do not mark required body fields)."""
    if "$ref" in spec:
        spec = doc["schemas"][spec["$ref"]]
    kind = spec.get("type")
    if kind == "object" or "properties" in spec:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object, got {type(value).__name__}")
            return
        props = spec.get("properties")
        extra = spec.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                check_value(doc, props[k], v, f"{where}.{k}", problems)
            elif extra is not None:
                check_value(doc, extra, v, f"{where}.{k}", problems)
            else:
                problems.append(f"{where}: unknown field {k!r}")
    elif kind == "array":
        if not isinstance(value, list):
            problems.append(f"{where}: expected an array, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check_value(doc, spec.get("items", {}), item, f"{where}[{i}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {value!r}")
        elif "enum" in spec and value not in spec["enum"]:
            problems.append(f"{where}: {value!r} is not one of {spec['enum']}")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer, got {value!r}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{where}: expected a number, got {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{where}: expected a boolean, got {value!r}")


def check_request(method: Method, params: dict[str, str], body: Any, problems: list[str]) -> None:
    known = method.spec.get("parameters", {})
    standard = method.doc.get("parameters", {})
    for name in params:
        if name not in known and name not in standard:
            problems.append(f"{method.id}: unknown parameter {name!r}")
    for name, p in known.items():
        if p.get("required") and name not in params:
            problems.append(f"{method.id}: missing required parameter {name!r}")
        if name in params and "enum" in p and params[name] not in p["enum"]:
            problems.append(f"{method.id}: {name}={params[name]!r} not in {p['enum']}")
    request = method.spec.get("request")
    if request is None:
        if body not in (None, {}, ""):
            problems.append(f"{method.id}: takes no body, got {body!r}")
    elif body is None:
        problems.append(f"{method.id}: needs a {request['$ref']} body")
    else:
        check_value(method.doc, request, body, f"{method.id} body", problems)


# --- the emulated cloud -----------------------------------------------------------------------


class GcpError(Exception):
    def __init__(self, code: int, status: str, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.reason = code, status, message, reason

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.reason:
            err["errors"] = [{"message": self.message, "domain": "global", "reason": self.reason}]
        return {"error": err}


def _not_found(what: str) -> GcpError:
    return GcpError(404, "NOT_FOUND", f"{what} does not exist.", "notFound")


def _bare(rrset: dict[str, Any]) -> dict[str, Any]:
    """A record set without its ``kind``: what Cloud DNS compares a deletion against."""
    return {k: v for k, v in rrset.items() if k != "kind"}


def _rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


@dataclass
class Op:
    kind: str  # "sql" or "gke"
    doc: dict[str, Any]
    polls_left: int
    effect: Callable[[], None] | None = None
    error: str | None = None


@dataclass
class GcpFake:
    """Start with ``start()`` (returns the base URL), stop with ``stop()``."""

    project: str = "imctl-test"
    token: str = "fake-token"
    op_polls: int = 2
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)  # instance -> content marker
    users: dict[str, dict[str, str]] = field(default_factory=dict)  # instance -> user -> pw
    backup_runs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    backup_data: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)  # full name -> NodePool
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)  # zone name -> ManagedZone
    rrsets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lag: dict[str, list[float]] = field(default_factory=dict)  # instance -> next samples
    # Point-in-time recovery: instance -> (earliest, latest) epoch seconds, when not the default;
    # instance -> [(epoch seconds, content marker)] the instance held from then on.
    recovery_window: dict[str, tuple[float, float]] = field(default_factory=dict)
    recovery_lag: float = 60.0
    data_at: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    deny: set[str] = field(default_factory=set)  # method ids answered 403
    fail_ops: dict[str, str] = field(default_factory=dict)  # method id -> op error message
    url: str = ""

    def __post_init__(self) -> None:
        self.methods, self.docs = load_discovery()
        self._ops: dict[str, Op] = {}
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._last_lag: dict[str, float] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, doc = fake.handle(self.command, self.path, dict(self.headers), raw)
                out = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=UTF-8")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- seeding ------------------------------------------------------------------------------

    def add_instance(
        self,
        name: str,
        region: str,
        *,
        master: str | None = None,
        private_ip: str = "10.0.0.5",
        data: str = "",
    ) -> dict[str, Any]:
        inst: dict[str, Any] = {
            "kind": "sql#instance",
            "name": name,
            "project": self.project,
            "region": region,
            "databaseVersion": "POSTGRES_16",
            "state": "RUNNABLE",
            "instanceType": "READ_REPLICA_INSTANCE" if master else "CLOUD_SQL_INSTANCE",
            "backendType": "SECOND_GEN",
            "connectionName": f"{self.project}:{region}:{name}",
            "createTime": _rfc3339(time.time() - 30 * 86400),
            "ipAddresses": [{"type": "PRIVATE", "ipAddress": private_ip}],
            "settings": {
                "kind": "sql#settings",
                "tier": "db-custom-2-7680",
                "edition": "ENTERPRISE",
                "availabilityType": "REGIONAL",
                "dataDiskType": "PD_SSD",
                "dataDiskSizeGb": "20",
                "storageAutoResize": True,
                "deletionProtectionEnabled": True,
                "settingsVersion": "7",
                "ipConfiguration": {
                    "ipv4Enabled": False,
                    "privateNetwork": f"projects/{self.project}/global/networks/vpc",
                    "sslMode": "ENCRYPTED_ONLY",
                },
                "backupConfiguration": {
                    "enabled": not master,
                    "startTime": "02:00",
                    "pointInTimeRecoveryEnabled": not master,
                    "transactionLogRetentionDays": 7,
                    "backupRetentionSettings": {"retainedBackups": 7, "retentionUnit": "COUNT"},
                },
                "userLabels": {"stack": "test"},
            },
        }
        if master:
            inst["masterInstanceName"] = f"{self.project}:{master}"
            self.instances[master].setdefault("replicaNames", []).append(name)
        self.instances[name] = inst
        self.data[name] = data or f"data-of-{name}"
        self.users[name] = {"im": "original-password"}
        return inst

    def add_node_pool(
        self,
        region: str,
        cluster: str,
        pool: str,
        *,
        zones: int = 3,
        per_zone: int = 1,
        total_min: int = 3,
        total_max: int = 6,
    ) -> str:
        name = f"projects/{self.project}/locations/{region}/clusters/{cluster}/nodePools/{pool}"
        self.pools[name] = {
            "name": pool,
            "locations": [f"{region}-{z}" for z in "abcdef"[:zones]],
            "initialNodeCount": per_zone,
            "status": "RUNNING",
            "autoscaling": {
                "enabled": True,
                "totalMinNodeCount": total_min,
                "totalMaxNodeCount": total_max,
                "locationPolicy": "BALANCED",
            },
            "selfLink": f"https://container.googleapis.com/v1/{name}",
        }
        return name

    def add_zone(self, zone: str, dns_name: str) -> None:
        self.zones[zone] = {"name": zone, "dnsName": dns_name, "kind": "dns#managedZone"}
        self.rrsets[zone] = []

    def add_rrset(self, zone: str, rrset: dict[str, Any]) -> None:
        self.rrsets[zone].append({"kind": "dns#resourceRecordSet", **rrset})

    # --- the HTTP surface ---------------------------------------------------------------------

    def handle(
        self, verb: str, raw_path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        split = urlsplit(raw_path)
        path = unquote(split.path.lstrip("/"))
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body: Any = json.loads(raw) if raw else None
        method = next((m for m in self.methods if m.http == verb and m.flat.match(path)), None)
        with self._lock:
            if method is None:
                self.violations.append(f"no discovery method for {verb} /{path}")
                return 404, GcpError(404, "NOT_FOUND", f"no method {verb} /{path}").body()
            m = method.path.match(path)
            assert m is not None
            for spec_name in method.spec.get("parameters", {}):
                group = re.sub(r"\W", "_", spec_name)
                if group in m.groupdict():
                    params[spec_name] = m.group(group)
            self.requests.append((method.id, dict(params), body))
            check_request(method, params, body, self.violations)
            if headers.get("Authorization", headers.get("authorization")) != f"Bearer {self.token}":
                return 401, GcpError(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    "authError",
                ).body()
            if method.id in self.deny:
                return 403, GcpError(
                    403, "PERMISSION_DENIED", f"Permission denied on {method.id}.", "forbidden"
                ).body()
            handler = getattr(self, "h_" + method.id.replace(".", "_"), None)
            if handler is None:
                self.violations.append(f"{method.id} is not emulated")
                return 501, GcpError(501, "UNIMPLEMENTED", f"{method.id} not emulated").body()
            try:
                status, doc = 200, handler(params, body)
            except GcpError as exc:
                return exc.code, exc.body()
            response = method.spec.get("response")
            if response is not None:
                check_value(method.doc, response, doc, f"{method.id} response", self.violations)
            return status, doc

    # --- operations ---------------------------------------------------------------------------

    def _sql_op(
        self, method_id: str, op_type: str, target: str, effect: Callable[[], None] | None
    ) -> dict[str, Any]:
        name = f"op-{next(self._ids)}"
        doc: dict[str, Any] = {
            "kind": "sql#operation",
            "name": name,
            "operationType": op_type,
            "status": "PENDING",
            "targetId": target,
            "targetProject": self.project,
            "insertTime": _rfc3339(),
            "user": "imctl@test",
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{self.project}/operations/{name}",
        }
        self._ops[name] = Op("sql", doc, self.op_polls, effect, self.fail_ops.get(method_id))
        return copy.deepcopy(doc)

    def _gke_op(
        self, method_id: str, op_type: str, location: str, target: str, effect: Callable[[], None]
    ) -> dict[str, Any]:
        for op in self._ops.values():
            if op.kind == "gke" and op.doc["status"] != "DONE" and op.doc["targetLink"] == target:
                raise GcpError(
                    400,
                    "FAILED_PRECONDITION",
                    f"Cluster is running incompatible operation {op.doc['name']}.",
                )
        name = f"operation-{next(self._ids)}"
        doc = {
            "name": name,
            "operationType": op_type,
            "status": "PENDING",
            "location": location,
            "targetLink": target,
            "selfLink": f"https://container.googleapis.com/v1/projects/{self.project}"
            f"/locations/{location}/operations/{name}",
            "startTime": _rfc3339(),
        }
        self._ops[name] = Op("gke", doc, self.op_polls, effect, self.fail_ops.get(method_id))
        return copy.deepcopy(doc)

    def _advance(self, name: str, kind: str) -> dict[str, Any]:
        op = self._ops.get(name)
        if op is None or op.kind != kind:
            raise _not_found(f"The operation {name}")
        if op.doc["status"] == "PENDING":
            op.doc["status"] = "RUNNING"
        if op.doc["status"] == "RUNNING":
            op.polls_left -= 1
            if op.polls_left <= 0:
                op.doc["status"] = "DONE"
                op.doc["endTime"] = _rfc3339()
                if op.error is not None:
                    if kind == "sql":
                        op.doc["error"] = {
                            "kind": "sql#operationErrors",
                            "errors": [{"code": "INTERNAL_ERROR", "message": op.error}],
                        }
                    else:
                        op.doc["error"] = {"code": 13, "message": op.error}
                        op.doc["statusMessage"] = op.error
                elif op.effect is not None:
                    op.effect()
        return copy.deepcopy(op.doc)

    # --- Cloud SQL ----------------------------------------------------------------------------

    def _inst(self, params: dict[str, str], key: str = "instance") -> dict[str, Any]:
        if params.get("project") != self.project or params[key] not in self.instances:
            raise GcpError(
                404, "NOT_FOUND", "The Cloud SQL instance does not exist.", "instanceDoesNotExist"
            )
        return self.instances[params[key]]

    def h_sql_operations_get(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        return self._advance(params["operation"], "sql")

    def h_sql_instances_get(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        return copy.deepcopy(self._inst(params))

    def h_sql_instances_insert(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        name = body["name"]
        if name in self.instances:
            raise GcpError(409, "ALREADY_EXISTS", "The Cloud SQL instance already exists.")
        inst = copy.deepcopy(body)
        inst.update(
            kind="sql#instance",
            project=self.project,
            state="PENDING_CREATE",
            instanceType="CLOUD_SQL_INSTANCE",
            backendType="SECOND_GEN",
            connectionName=f"{self.project}:{body.get('region')}:{name}",
        )
        inst["settings"]["settingsVersion"] = "1"
        self.instances[name] = inst
        self.data[name] = ""
        self.users[name] = {"postgres": "x"}
        octet = 100 + len(self.instances)

        def created() -> None:
            inst["state"] = "RUNNABLE"
            inst["ipAddresses"] = [{"type": "PRIVATE", "ipAddress": f"10.0.0.{octet}"}]

        return self._sql_op("sql.instances.insert", "CREATE", name, created)

    def h_sql_instances_restoreBackup(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        target = self._inst(params)
        ctx = body.get("restoreBackupContext") or {}
        runs = self.backup_runs.get(ctx.get("instanceId", ""), {})
        run = runs.get(str(ctx.get("backupRunId")))
        if run is None or run["status"] != "SUCCESSFUL":
            raise GcpError(400, "INVALID_ARGUMENT", "Backup run is not available.", "invalid")
        if target.get("replicaNames"):
            raise GcpError(
                400,
                "FAILED_PRECONDITION",
                "The instance has replicas; delete them before restoring.",
                "invalid",
            )
        if target["state"] != "RUNNABLE":
            raise GcpError(409, "FAILED_PRECONDITION", "The instance is not running.")
        source_version = self.instances.get(ctx["instanceId"], {}).get("databaseVersion")
        if source_version and target.get("databaseVersion") != source_version:
            raise GcpError(400, "INVALID_ARGUMENT", "Database versions differ.", "invalid")
        key = f"{ctx['instanceId']}/{ctx['backupRunId']}"
        name = params["instance"]

        def restored() -> None:
            marker, users = self.backup_data[key]
            self.data[name] = marker
            self.users[name] = dict(users)

        return self._sql_op("sql.instances.restoreBackup", "RESTORE_VOLUME", name, restored)

    def _recoverable(self, name: str) -> tuple[float, float]:
        inst = self.instances[name]
        backups = inst["settings"].get("backupConfiguration") or {}
        if not (backups.get("enabled") and backups.get("pointInTimeRecoveryEnabled")):
            raise GcpError(
                400,
                "FAILED_PRECONDITION",
                "Point-in-time recovery is not enabled for this instance.",
                "invalid",
            )
        if name in self.recovery_window:
            return self.recovery_window[name]
        now = time.time()
        days = int(backups.get("transactionLogRetentionDays") or 7)
        created = datetime.fromisoformat(inst["createTime"]).timestamp()
        return max(created, now - days * 86400), now - self.recovery_lag

    def h_sql_projects_instances_getLatestRecoveryTime(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        self._inst(params)
        earliest, latest = self._recoverable(params["instance"])
        return {
            "kind": "sql#getLatestRecoveryTime",
            "earliestRecoveryTime": _rfc3339(earliest),
            "latestRecoveryTime": _rfc3339(latest),
        }

    def h_sql_instances_clone(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        src = self._inst(params)
        ctx = (body or {}).get("cloneContext") or {}
        new = ctx.get("destinationInstanceName")
        if not new:
            raise GcpError(400, "INVALID_ARGUMENT", "destinationInstanceName is required.")
        if new in self.instances:
            raise GcpError(409, "ALREADY_EXISTS", "The Cloud SQL instance already exists.")
        source = params["instance"]
        marker = self.data[source]
        if "pointInTime" in ctx:
            earliest, latest = self._recoverable(source)
            at = datetime.fromisoformat(ctx["pointInTime"]).timestamp()
            if not earliest <= at <= latest:
                raise GcpError(
                    400,
                    "INVALID_ARGUMENT",
                    "The requested point in time is outside the recoverable range.",
                    "invalid",
                )
            held = [m for t, m in self.data_at.get(source, []) if t <= at]
            marker = held[-1] if held else marker
        inst = copy.deepcopy(src)
        for key in ("replicaNames", "masterInstanceName", "ipAddresses"):
            inst.pop(key, None)
        inst.update(
            name=new,
            state="PENDING_CREATE",
            instanceType="CLOUD_SQL_INSTANCE",
            connectionName=f"{self.project}:{src['region']}:{new}",
            createTime=_rfc3339(),
        )
        inst["settings"]["settingsVersion"] = "1"
        self.instances[new] = inst
        self.data[new] = ""
        self.users[new] = {}
        octet = 100 + len(self.instances)
        users = dict(self.users[source])

        def cloned() -> None:
            inst["state"] = "RUNNABLE"
            inst["ipAddresses"] = [{"type": "PRIVATE", "ipAddress": f"10.0.0.{octet}"}]
            self.data[new], self.users[new] = marker, users

        return self._sql_op("sql.instances.clone", "CLONE", new, cloned)

    def h_sql_instances_promoteReplica(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        inst = self._inst(params)
        if not inst.get("masterInstanceName"):
            raise GcpError(
                400, "FAILED_PRECONDITION", "The instance is not a read replica.", "notAReplica"
            )
        name = params["instance"]

        def promoted() -> None:
            master = inst.pop("masterInstanceName").split(":")[-1]
            inst["instanceType"] = "CLOUD_SQL_INSTANCE"
            names = self.instances[master].get("replicaNames", [])
            if name in names:
                names.remove(name)

        return self._sql_op("sql.instances.promoteReplica", "PROMOTE_REPLICA", name, promoted)

    def h_sql_users_update(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        self._inst(params)
        user = params.get("name")
        if not user or user not in self.users[params["instance"]]:
            raise GcpError(404, "NOT_FOUND", "The user does not exist.", "userDoesNotExist")
        name = params["instance"]

        def updated() -> None:
            self.users[name][user] = body["password"]

        return self._sql_op("sql.users.update", "UPDATE_USER", name, updated)

    def _run_doc(self, instance: str, run: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(run)

    def h_sql_backupRuns_insert(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        inst = self._inst(params)
        if inst.get("masterInstanceName"):
            raise GcpError(400, "INVALID_ARGUMENT", "Backups of replicas are not supported.")
        name = params["instance"]
        run_id = str(int(time.time() * 1000) + next(self._ids))
        now = _rfc3339()
        run: dict[str, Any] = {
            "kind": "sql#backupRun",
            "id": run_id,
            "instance": name,
            "status": "ENQUEUED",
            "type": "ON_DEMAND",
            "backupKind": "SNAPSHOT",
            "enqueuedTime": now,
            "windowStartTime": now,
            "location": "us",
            "databaseVersion": inst["databaseVersion"],
            "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{self.project}"
            f"/instances/{name}/backupRuns/{run_id}",
        }
        if (body or {}).get("description"):
            run["description"] = body["description"]
        self.backup_runs.setdefault(name, {})[run_id] = run

        def finished() -> None:
            run.update(status="SUCCESSFUL", endTime=_rfc3339(), maxChargeableBytes="123456")
            self.backup_data[f"{name}/{run_id}"] = (self.data[name], dict(self.users[name]))

        op = self._sql_op("sql.backupRuns.insert", "BACKUP_VOLUME", name, finished)
        self._ops[op["name"]].doc["backupContext"] = {
            "kind": "sql#backupContext",
            "backupId": run_id,
        }
        run["status"] = "RUNNING"
        run["startTime"] = now
        op["backupContext"] = {"kind": "sql#backupContext", "backupId": run_id}
        return op

    def _run(self, params: dict[str, str]) -> dict[str, Any]:
        self._inst(params)
        run = self.backup_runs.get(params["instance"], {}).get(params["id"])
        if run is None:
            raise GcpError(404, "NOT_FOUND", "The backup run does not exist.", "backupRunNotFound")
        return run

    def h_sql_backupRuns_get(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        return copy.deepcopy(self._run(params))

    def h_sql_backupRuns_list(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        self._inst(params)
        runs = sorted(
            self.backup_runs.get(params["instance"], {}).values(),
            key=lambda r: r["enqueuedTime"],
            reverse=True,
        )
        size = int(params.get("maxResults") or 2)  # small pages, so paging is exercised
        start = int(params.get("pageToken") or 0)
        doc: dict[str, Any] = {
            "kind": "sql#backupRunsList",
            "items": copy.deepcopy(runs[start : start + size]),
        }
        if start + size < len(runs):
            doc["nextPageToken"] = str(start + size)
        return doc

    def h_sql_backupRuns_delete(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        run = self._run(params)
        instance, run_id = params["instance"], params["id"]
        run["status"] = "DELETION_PENDING"

        def deleted() -> None:
            self.backup_runs[instance].pop(run_id, None)

        return self._sql_op("sql.backupRuns.delete", "DELETE_BACKUP", instance, deleted)

    # --- GKE ----------------------------------------------------------------------------------

    def _pool(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        name = params["name"]
        for suffix in (":setSize", ":setAutoscaling"):
            name = name.removesuffix(suffix)
        if name not in self.pools:
            raise _not_found(f"Node pool {name}")
        return name, self.pools[name]

    def h_container_projects_locations_clusters_nodePools_get(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        return copy.deepcopy(self._pool(params)[1])

    def h_container_projects_locations_clusters_nodePools_setSize(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        name, pool = self._pool(params)
        count = int(body["nodeCount"])
        location = name.split("/")[3]

        def resized() -> None:
            pool["initialNodeCount"] = count

        cluster = name.rsplit("/nodePools/", 1)[0]
        return self._gke_op(
            "container.projects.locations.clusters.nodePools.setSize",
            "SET_NODE_POOL_SIZE",
            location,
            f"https://container.googleapis.com/v1/{cluster}",
            resized,
        )

    def h_container_projects_locations_clusters_nodePools_setAutoscaling(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        name, pool = self._pool(params)
        auto = dict(body["autoscaling"])
        location = name.split("/")[3]

        def changed() -> None:
            pool["autoscaling"] = auto

        cluster = name.rsplit("/nodePools/", 1)[0]
        return self._gke_op(
            "container.projects.locations.clusters.nodePools.setAutoscaling",
            "SET_NODE_POOL_MANAGEMENT",
            location,
            f"https://container.googleapis.com/v1/{cluster}",
            changed,
        )

    def h_container_projects_locations_operations_get(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        return self._advance(params["name"].rsplit("/", 1)[-1], "gke")

    # --- Cloud DNS ----------------------------------------------------------------------------

    def _zone(self, params: dict[str, str]) -> list[dict[str, Any]]:
        if params.get("project") != self.project or params["managedZone"] not in self.zones:
            raise GcpError(
                404,
                "NOT_FOUND",
                f"The 'parameters.managedZone' resource named"
                f" '{params['managedZone']}' does not exist.",
                "notFound",
            )
        return self.rrsets[params["managedZone"]]

    def h_dns_resourceRecordSets_list(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        sets = self._zone(params)
        out = [
            s
            for s in sets
            if (not params.get("name") or s["name"] == params["name"])
            and (not params.get("type") or s["type"] == params["type"])
        ]
        return {"kind": "dns#resourceRecordSetsListResponse", "rrsets": copy.deepcopy(out)}

    def h_dns_changes_create(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        sets = self._zone(params)
        for d in body.get("deletions") or []:
            if not any(_bare(s) == _bare(d) for s in sets):
                raise GcpError(
                    412,
                    "FAILED_PRECONDITION",
                    f"The resource record set {d.get('name')} {d.get('type')} to delete does"
                    " not match the current one.",
                    "conditionNotMet",
                )
        deletions = body.get("deletions") or []
        remaining = [s for s in sets if not any(_bare(s) == _bare(d) for d in deletions)]
        for a in body.get("additions") or []:
            if any(s["name"] == a["name"] and s["type"] == a["type"] for s in remaining):
                raise GcpError(
                    409,
                    "ALREADY_EXISTS",
                    f"{a['name']} {a['type']} already exists.",
                    "alreadyExists",
                )
            clash = {"CNAME"} if a["type"] != "CNAME" else {"A", "AAAA", "CNAME"}
            if any(s["name"] == a["name"] and s["type"] in clash for s in remaining):
                raise GcpError(400, "INVALID_ARGUMENT", "CNAME conflicts with other data.")
        remaining += [{"kind": "dns#resourceRecordSet", **a} for a in body.get("additions") or []]
        self.rrsets[params["managedZone"]] = remaining
        change_id = str(next(self._ids))
        change = {
            "kind": "dns#change",
            "id": change_id,
            "status": "pending",
            "startTime": _rfc3339(),
            "additions": body.get("additions") or [],
            "deletions": body.get("deletions") or [],
        }
        self.changes[change_id] = change
        return copy.deepcopy(change)

    def h_dns_changes_get(self, params: dict[str, str], body: Any) -> dict[str, Any]:
        self._zone(params)
        change = self.changes.get(params["changeId"])
        if change is None:
            raise _not_found(f"Change {params['changeId']}")
        out = copy.deepcopy(change)
        change["status"] = "done"
        return out

    # --- Cloud Monitoring ---------------------------------------------------------------------

    def h_monitoring_projects_timeSeries_list(
        self, params: dict[str, str], body: Any
    ) -> dict[str, Any]:
        m = re.search(r'database_id = "([^"]+)"', params.get("filter", ""))
        if m is None or "replica_lag" not in params.get("filter", ""):
            raise GcpError(400, "INVALID_ARGUMENT", "Unsupported filter for this emulation.")
        instance = m.group(1).split(":", 1)[-1]
        script = self.lag.get(instance)
        if script:
            self._last_lag[instance] = script.pop(0)
        if instance not in self._last_lag:
            return {"timeSeries": [], "unit": "s"}
        now = _rfc3339()
        return {
            "timeSeries": [
                {
                    "metric": {"type": "cloudsql.googleapis.com/database/replication/replica_lag"},
                    "resource": {
                        "type": "cloudsql_database",
                        "labels": {"database_id": m.group(1), "project_id": self.project},
                    },
                    "metricKind": "GAUGE",
                    "valueType": "DOUBLE",
                    "points": [
                        {
                            "interval": {"startTime": now, "endTime": now},
                            "value": {"doubleValue": self._last_lag[instance]},
                        }
                    ],
                }
            ],
            "unit": "s",
        }
