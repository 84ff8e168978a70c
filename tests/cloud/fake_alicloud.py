"""An emulated Alibaba Cloud (not the real cloud): a small stateful HTTP server on 127.0.0.1 that
answers the RDS (2014-08-15), CS (2015-12-15), Alidns (2015-01-09) and DTS (2020-01-01) calls of
imctl's day-2 operations, all on one port (the SDKs' ``endpoint`` pointed at it).

Fidelity kept: requests must carry a valid ACS3-HMAC-SHA256 signature for the known AccessKey
(else ``InvalidAccessKeyId.NotFound`` / ``SignatureDoesNotMatch``, as the real gateway answers);
RPC parameters and ROA bodies are checked against the installed SDK's request models (known
names, the ones the model marks required), and this fake's responses against the SDK's response
models (names and scalar types), with mismatches recorded in ``violations``. DTS has no SDK
here, so its two actions are checked against a table copied from the published API reference.
Instances start ``Creating`` and turn ``Running`` after ``op_polls`` reads; backup jobs, CS
tasks and node pools move the same way; unknown ids get the real error codes.

Point-in-time recovery: DescribeBackupPolicy answers ``backup_policy`` (log backups on, kept 7
days, by default), DescribeLocalAvailableRecoveryTime the window (``recovery_window``, else the
log retention up to ``recovery_lag`` seconds ago, in the documented yyyy-MM-ddTHH:mm:ssZ), and
CloneDBInstance with RestoreTime clones the newest ``data_at`` marker at or before that time.
The refusals for a time outside the window or with log backups off are this fake's guesses at
ApsaraDB's error codes.

Fidelity not kept: no RAM policies, no billing, no zones or stock, no real data (an instance's
data is a marker string that backups copy), DTS delay is whatever the test scripts, Alidns has
one line ("default") per record.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import hmac
import importlib
import inspect
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

PRODUCTS = {
    "2014-08-15": ("rds", "alibabacloud_rds20140815.models"),
    "2015-12-15": ("cs", "alibabacloud_cs20151215.models"),
    "2015-01-09": ("alidns", "alibabacloud_alidns20150109.models"),
    "2020-01-01": ("dts", None),
}

# DTS 2020-01-01 as documented (DescribeDtsJobs, SuspendDtsJob): name -> required.
DTS_PARAMS: dict[str, dict[str, bool]] = {
    "DescribeDtsJobs": {
        "Region": True,
        "RegionId": False,
        "Type": False,
        "Params": False,
        "Status": False,
        "JobType": False,
        "PageSize": False,
        "PageNumber": False,
        "OrderDirection": False,
        "OrderColumn": False,
        "Tags": False,
        "ResourceGroupId": False,
    },
    "SuspendDtsJob": {
        "DtsJobId": False,
        "DtsInstanceId": False,
        "RegionId": False,
        "SynchronizationDirection": False,
        "ResourceGroupId": False,
        "ZeroEtlJob": False,
    },
}

ROA_ROUTES = (
    ("GET", re.compile(r"/api/v1/clusters$"), "DescribeClustersV1"),
    ("GET", re.compile(r"/clusters/(?P<cluster>[^/]+)/nodepools/(?P<pool>[^/]+)$"),
     "DescribeClusterNodePoolDetail"),
    ("POST", re.compile(r"/clusters/(?P<cluster>[^/]+)/nodepools/(?P<pool>[^/]+)$"),
     "ScaleClusterNodePool"),
    ("PUT", re.compile(r"/clusters/(?P<cluster>[^/]+)/nodepools/(?P<pool>[^/]+)$"),
     "ModifyClusterNodePool"),
    ("GET", re.compile(r"/tasks/(?P<task>[^/]+)$"), "DescribeTaskInfo"),
)  # fmt: skip


# --- the SDK's models, read as the API's shape ------------------------------------------------


@dataclass(frozen=True)
class Field:
    attr: str
    type: str  # the annotation as written: 'str', 'int', 'List[main_models.X]', ...
    required: bool
    nested: Any  # the model class of an object (or of list items), else None


@cache
def model_fields(cls: Any) -> dict[str, Field]:
    """Wire name -> Field of a generated DaraModel: the names come from ``to_map``, the types
    from ``__init__``'s annotations, required-ness from the "This parameter is required."
    comments the generator writes above each attribute."""
    to_map = inspect.getsource(cls.to_map)
    wire: dict[str, str] = {}
    current: str | None = None
    for line in to_map.splitlines():
        m = re.search(r"if self\.(\w+) is not None:", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"result\['([^']+)'\]", line)
        if m and current is not None:
            wire.setdefault(current, m.group(1))
            current = None
    init = inspect.getsource(cls.__init__)
    annotations = dict(re.findall(r"^\s+(\w+): ([^=\n]+?) = None,$", init, re.M))
    required: set[str] = set()
    comment: list[str] = []
    for line in init.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        m = re.match(r"self\.(\w+) = \1$", stripped)
        if m and any("This parameter is required." in c for c in comment):
            required.add(m.group(1))
        comment = []
    module = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
    out: dict[str, Field] = {}
    for attr, name in wire.items():
        ann = annotations.get(attr, "Any")
        m = re.search(r"main_models\.(\w+)", ann)
        nested = getattr(module, m.group(1)) if m else None
        out[name] = Field(attr, ann, attr in required, nested)
    return out


def check_params(cls: Any, params: dict[str, Any], where: str, problems: list[str]) -> None:
    fields = model_fields(cls)
    for name, value in params.items():
        f = fields.get(name)
        if f is None:
            problems.append(f"{where}: {cls.__name__} has no parameter {name!r}")
        elif f.nested is not None and isinstance(value, dict):
            check_params(f.nested, value, f"{where}.{name}", problems)
        elif f.type == "bool" and isinstance(value, str) and value not in ("true", "false"):
            # RPC parameters travel as text; the API documents booleans as true/false.
            problems.append(f"{where}: {name}={value!r} is not true/false")
    for name, f in fields.items():
        if f.required and name not in params:
            problems.append(f"{where}: {cls.__name__} requires {name!r}")


_SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def check_response(cls: Any, doc: Any, where: str, problems: list[str]) -> None:
    if not isinstance(doc, dict):
        problems.append(f"{where}: expected an object")
        return
    fields = model_fields(cls)
    for name, value in doc.items():
        f = fields.get(name)
        if f is None:
            problems.append(f"{where}: {cls.__name__} has no field {name!r}")
            continue
        if value is None:
            continue
        if f.nested is not None:
            items = value if f.type.startswith("List[") else [value]
            if not isinstance(items, list):
                problems.append(f"{where}.{name}: expected a list")
                continue
            for i, item in enumerate(items):
                check_response(f.nested, item, f"{where}.{name}[{i}]", problems)
        elif f.type in _SCALARS:
            ok = isinstance(value, _SCALARS[f.type]) and not (
                f.type != "bool" and isinstance(value, bool)
            )
            if not ok:
                problems.append(f"{where}.{name}: {value!r} is not {f.type}")


def model(product_module: str, name: str) -> Any:
    return getattr(importlib.import_module(product_module), name, None)


# --- the emulated cloud -----------------------------------------------------------------------


class AliError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Pending:
    polls_left: int
    effect: Any = None


@dataclass
class AliyunFake:
    access_key_id: str = "LTAI-test"
    access_key_secret: str = "test-secret"
    op_polls: int = 2
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, dict[str, str]] = field(default_factory=dict)
    backups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    backup_data: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    pools: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    domains: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dts_jobs: list[dict[str, Any]] = field(default_factory=list)
    dts_delay: list[int] = field(default_factory=list)  # scripted Delay, one per read
    fail_tasks: bool = False
    hide_finished_jobs: bool = False  # a finished job gone from the task list at once
    backup_policy: dict[str, dict[str, Any]] = field(default_factory=dict)
    # instance -> (earliest, latest) epoch seconds; instance -> [(epoch, marker held from then)]
    recovery_window: dict[str, tuple[float, float]] = field(default_factory=dict)
    recovery_lag: float = 120.0
    data_at: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(100)
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, doc = fake.handle(self.command, self.path, self.headers.items(), raw)
                out = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json;charset=utf-8")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- seeding ------------------------------------------------------------------------------

    def add_instance(
        self, instance_id: str, region: str, *, host: str, data: str = "", vsw: str = "vsw-a,vsw-b"
    ) -> dict[str, Any]:
        attr: dict[str, Any] = {
            "DBInstanceId": instance_id,
            "RegionId": region,
            "Engine": "PostgreSQL",
            "EngineVersion": "16.0",
            "DBInstanceStatus": "Running",
            "DBInstanceClass": "pg.n2.2c.2m",
            "DBInstanceStorage": 100,
            "DBInstanceStorageType": "cloud_essd",
            "Category": "HighAvailability",
            "PayType": "Postpaid",
            "InstanceNetworkType": "VPC",
            "VpcId": f"vpc-{region}",
            "VSwitchId": vsw,
            "ZoneId": f"{region}-a",
            "SlaveZones": {"SlaveZone": [{"ZoneId": f"{region}-b"}]},
            "ConnectionString": host,
            "Port": "5432",
            "SecurityIPList": "10.10.0.0/16",
            "DBInstanceDescription": instance_id,
        }
        self.instances[instance_id] = attr
        self.data[instance_id] = data or f"data-of-{instance_id}"
        self.accounts[instance_id] = {"im": "original-password"}
        self.backups[instance_id] = {}
        self.backup_policy[instance_id] = {
            "BackupRetentionPeriod": 7,
            "PreferredBackupTime": "02:00Z-03:00Z",
            "PreferredBackupPeriod": "Monday,Tuesday,Wednesday,Thursday,Friday,Saturday,Sunday",
            "EnableBackupLog": "1",
            "BackupLog": "Enable",
            "LogBackupRetentionPeriod": 7,
        }
        return attr

    def add_backup(self, instance_id: str, *, mode: str = "Automated") -> str:
        backup_id = str(next(self._ids) + 900000)
        self.backups[instance_id][backup_id] = self._backup_doc(instance_id, backup_id, mode)
        self.backup_data[backup_id] = (self.data[instance_id], dict(self.accounts[instance_id]))
        return backup_id

    def add_cluster(self, cluster_id: str, name: str, region: str) -> None:
        self.clusters[cluster_id] = {
            "cluster_id": cluster_id,
            "name": name,
            "region_id": region,
            "state": "running",
            "cluster_type": "ManagedKubernetes",
            "cluster_spec": "ack.pro.small",
        }

    def add_pool(
        self, cluster_id: str, pool_id: str, *, nodes: int, auto: tuple[int, int] | None
    ) -> dict[str, Any]:
        pool: dict[str, Any] = {
            "nodepool_info": {"nodepool_id": pool_id, "name": "im-workers", "type": "ess"},
            "status": {"state": "active", "total_nodes": nodes, "healthy_nodes": nodes},
            "scaling_group": {"desired_size": nodes},
            "auto_scaling": {
                "enable": auto is not None,
                "min_instances": auto[0] if auto else 0,
                "max_instances": auto[1] if auto else 0,
            },
        }
        self.pools[(cluster_id, pool_id)] = pool
        return pool

    def add_record(self, zone: str, rr: str, rtype: str, value: str) -> str:
        record_id = str(next(self._ids) + 7000000)
        self.domains.setdefault(zone, []).append(
            {
                "RecordId": record_id,
                "DomainName": zone,
                "RR": rr,
                "Type": rtype,
                "Value": value,
                "TTL": 60,
                "Line": "default",
                "Status": "ENABLE",
                "Locked": False,
                "Weight": 1,
            }
        )
        return record_id

    def add_dts_job(self, region: str, source: str, dest: str, src_region: str) -> dict[str, Any]:
        job = {
            "DtsJobId": f"job{next(self._ids)}",
            "DtsInstanceID": f"dts{next(self._ids)}",
            "DtsJobName": f"{region}-db-dr-sync",
            "JobType": "SYNC",
            "Status": "Synchronizing",
            "Delay": 3,
            "Checkpoint": str(int(time.time()) - 3),
            "SourceEndpoint": {
                "InstanceID": source,
                "Region": src_region,
                "EngineName": "POSTGRESQL",
            },
            "DestinationEndpoint": {
                "InstanceID": dest,
                "Region": region,
                "EngineName": "POSTGRESQL",
            },
            "_region": region,
        }
        self.dts_jobs.append(job)
        return job

    # --- the HTTP surface ---------------------------------------------------------------------

    def handle(
        self, verb: str, raw_path: str, header_items: Any, raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        headers = {k.lower(): v for k, v in header_items}
        split = urlsplit(raw_path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        version, action = headers.get("x-acs-version", ""), headers.get("x-acs-action", "")
        request_id = f"REQ-{next(self._ids)}"
        with self._lock:
            try:
                self._authenticate(verb, split.path, query, headers, raw)
                if version not in PRODUCTS:
                    raise AliError(
                        400, "InvalidVersion", f"Specified version {version} is invalid."
                    )
                product, models = PRODUCTS[version]
                if product == "cs":
                    doc = self._roa(verb, unquote(split.path), query, raw, action, models)
                else:
                    params = dict(query)
                    if raw and "form" in headers.get("content-type", ""):
                        params.update(parse_qsl(raw.decode(), keep_blank_values=True))
                    doc = self._rpc(product, action, params, models)
                doc.setdefault("RequestId" if product != "cs" else "request_id", request_id)
                return 200, doc
            except AliError as exc:
                return exc.status, {
                    "RequestId": request_id,
                    "HostId": "127.0.0.1",
                    "Code": exc.code,
                    "Message": exc.message,
                }

    def _authenticate(
        self, verb: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> None:
        """ACS3-HMAC-SHA256 as documented: canonical request, its SHA-256, HMAC with the key
        secret; recomputed here from what arrived."""
        auth = headers.get("authorization", "")
        m = re.fullmatch(
            r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)",
            auth,
        )
        if m is None:
            raise AliError(400, "MissingAuthorization", "Authorization is mandatory.")
        key_id, signed, signature = m.groups()
        if key_id != self.access_key_id:
            raise AliError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        payload = hashlib.sha256(raw).hexdigest()
        if headers.get("x-acs-content-sha256") != payload:
            raise AliError(400, "ContentSHA256NotMatched", "The body hash does not match.")
        names = signed.split(";")
        canonical = "\n".join(
            [
                verb,
                path or "/",
                "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query)),
                "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in names),
                signed,
                payload,
            ]
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        expected = hmac.new(
            self.access_key_secret.encode(), f"ACS3-HMAC-SHA256\n{digest}".encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise AliError(
                400,
                "SignatureDoesNotMatch",
                "The request signature does not conform to Aliyun standards.",
            )

    def _rpc(
        self, product: str, action: str, params: dict[str, str], models: str | None
    ) -> dict[str, Any]:
        self.requests.append((product, action, dict(params)))
        where = f"{product}.{action}"
        if models is None:
            spec = DTS_PARAMS.get(action)
            if spec is None:
                self.violations.append(f"{where}: not an emulated DTS action")
                raise AliError(400, "InvalidAction.NotFound", f"{action} is not emulated.")
            for name in params:
                if name not in spec:
                    self.violations.append(f"{where}: the API reference has no {name!r}")
            for name, req in spec.items():
                if req and name not in params:
                    self.violations.append(f"{where}: the API reference requires {name!r}")
        else:
            request = model(models, f"{action}Request")
            if request is None:
                self.violations.append(f"{where}: the SDK has no such action")
                raise AliError(404, "InvalidAction.NotFound", f"{action} does not exist.")
            check_params(request, params, where, self.violations)
        handler = getattr(self, f"{product}_{action}", None)
        if handler is None:
            self.violations.append(f"{where}: not emulated")
            raise AliError(400, "InvalidAction.NotFound", f"{action} is not emulated.")
        doc: dict[str, Any] = handler(params)
        if models is not None:
            body = model(models, f"{action}ResponseBody")
            assert body is not None
            check_response(body, doc, f"{where} response", self.violations)
        return doc

    def _roa(
        self,
        verb: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        header_action: str,
        models: str | None,
    ) -> dict[str, Any]:
        assert models is not None
        routed = [
            (action, m)
            for http, pattern, action in ROA_ROUTES
            if http == verb and (m := pattern.match(path))
        ]
        if not routed:
            self.violations.append(f"cs: no route for {verb} {path}")
            raise AliError(404, "InvalidAction.NotFound", f"no route {verb} {path}")
        action, m = routed[0]
        if action != header_action:
            self.violations.append(f"cs: {verb} {path} is {action}, header says {header_action}")
        body = json.loads(raw) if raw else {}
        self.requests.append(("cs", action, {**m.groupdict(), **query, **body}))
        request = model(models, f"{action}Request")
        if request is not None:
            check_params(request, {**query, **body}, f"cs.{action}", self.violations)
        elif query or body:
            self.violations.append(f"cs.{action}: the SDK model takes no parameters")
        doc: dict[str, Any] = getattr(self, f"cs_{action}")(m.groupdict(), query, body)
        response = model(models, f"{action}ResponseBody")
        assert response is not None
        check_response(response, doc, f"cs.{action} response", self.violations)
        return doc

    def _tick(self, key: str) -> bool:
        """One more read of something in progress; True once it is done."""
        p = self._pending.get(key)
        if p is None:
            return True
        p.polls_left -= 1
        if p.polls_left > 0:
            return False
        del self._pending[key]
        if p.effect is not None:
            p.effect()
        return True

    # --- RDS ----------------------------------------------------------------------------------

    def _instance(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self.instances.get(params.get("DBInstanceId", ""))
        if inst is None:
            raise AliError(
                404, "InvalidDBInstanceId.NotFound", "Specified instance does not exist."
            )
        return inst

    def _backup_doc(self, instance: str, backup_id: str, mode: str) -> dict[str, Any]:
        now = time.time()
        return {
            "BackupId": backup_id,
            "DBInstanceId": instance,
            "BackupStatus": "Success",
            "BackupStartTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "BackupEndTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 1)),
            "BackupType": "FullBackup",
            "BackupMode": mode,
            "BackupMethod": "Snapshot" if mode == "Automated" else "Physical",
            "BackupSize": 7340032,
            "StoreStatus": "Enabled",
            "ConsistentTime": int(now),
            "Engine": "PostgreSQL",
            "EngineVersion": "16.0",
        }

    def rds_DescribeDBInstanceAttribute(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        self._tick(f"instance:{inst['DBInstanceId']}")
        return {"Items": {"DBInstanceAttribute": [copy.deepcopy(inst)]}}

    def rds_CreateBackup(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        if params.get("BackupMethod") not in ("Physical", "Snapshot", "Logical"):
            raise AliError(400, "InvalidBackupMethod", "Specified backup method is invalid.")
        job_id = str(next(self._ids) + 500000)
        instance = inst["DBInstanceId"]
        job = {"BackupJobId": job_id, "BackupStatus": "NoStart", "JobMode": "Manual"}
        self.jobs[job_id] = {**job, "_instance": instance}

        def finished() -> None:
            backup_id = str(next(self._ids) + 900000)
            self.backups[instance][backup_id] = self._backup_doc(instance, backup_id, "Manual")
            self.backup_data[backup_id] = (self.data[instance], dict(self.accounts[instance]))
            self.jobs[job_id].update(BackupStatus="Finished", BackupId=backup_id, Process="100%")

        self._pending[f"job:{job_id}"] = Pending(self.op_polls, finished)
        return {"BackupJobId": job_id}

    def rds_DescribeBackupTasks(self, params: dict[str, str]) -> dict[str, Any]:
        self._instance(params)
        job = self.jobs.get(params.get("BackupJobId", ""))
        if job is None:
            return {"Items": {"BackupJob": []}}
        if job["BackupStatus"] == "Finished" and (job.get("_reported") or self.hide_finished_jobs):
            # Finished jobs leave the task list, as the real one only holds recent work.
            return {"Items": {"BackupJob": []}}
        if not self._tick(f"job:{job['BackupJobId']}"):
            job.update(BackupStatus="Uploading", Process="40%", BackupProgressStatus="uploading")
        elif job["BackupStatus"] == "Finished":
            if self.hide_finished_jobs:
                return {"Items": {"BackupJob": []}}
            job["_reported"] = True
        visible = {k: v for k, v in job.items() if not k.startswith("_")}
        return {"Items": {"BackupJob": [visible]}}

    def rds_DescribeBackups(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        for key in ("StartTime", "EndTime"):
            if key in params and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", params[key]):
                raise AliError(400, "InvalidStartTime.Malformed", f"{key} is malformed.")
        if params.get("PageSize", "30") not in ("30", "50", "100"):
            raise AliError(400, "InvalidPageSize", "PageSize must be 30, 50 or 100.")
        rows = sorted(
            self.backups[inst["DBInstanceId"]].values(),
            key=lambda b: b["BackupStartTime"],
            reverse=True,
        )
        if "BackupId" in params:
            rows = [b for b in rows if b["BackupId"] == params["BackupId"]]
        if "BackupMode" in params:
            rows = [b for b in rows if b["BackupMode"] == params["BackupMode"]]
        if "StartTime" in params:
            rows = [b for b in rows if b["BackupStartTime"][:16] + "Z" >= params["StartTime"]]
        if "EndTime" in params:
            rows = [b for b in rows if b["BackupStartTime"][:16] + "Z" <= params["EndTime"]]
        size, number = int(params.get("PageSize", "30")), int(params.get("PageNumber", "1"))
        page = rows[(number - 1) * size : number * size]
        return {
            "Items": {"Backup": copy.deepcopy(page)},
            "TotalRecordCount": str(len(rows)),
            "PageNumber": str(number),
            "PageRecordCount": str(len(page)),
        }

    def rds_DeleteBackup(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        backup = self.backups[inst["DBInstanceId"]].get(params["BackupId"])
        if backup is None:
            raise AliError(404, "InvalidBackupId.NotFound", "Specified backup does not exist.")
        if backup["BackupMode"] != "Manual":
            raise AliError(403, "IncorrectBackupMode", "Only manual backups can be deleted.")
        del self.backups[inst["DBInstanceId"]][params["BackupId"]]
        return {}

    def rds_DescribeBackupPolicy(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        return copy.deepcopy(self.backup_policy[inst["DBInstanceId"]])

    def _recoverable(self, instance: str) -> tuple[float, float]:
        policy = self.backup_policy[instance]
        if policy.get("EnableBackupLog") != "1":
            raise AliError(403, "IncorrectBackupLogStatus", "Log backup is not enabled.")
        if instance in self.recovery_window:
            return self.recovery_window[instance]
        now = time.time()
        return now - int(policy["LogBackupRetentionPeriod"]) * 86400, now - self.recovery_lag

    def rds_DescribeLocalAvailableRecoveryTime(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        earliest, latest = self._recoverable(inst["DBInstanceId"])
        return {
            "DBInstanceId": inst["DBInstanceId"],
            "RecoveryBeginTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(earliest)),
            "RecoveryEndTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(latest)),
        }

    def _restore_source(self, src: dict[str, Any], params: dict[str, str]) -> tuple[str, Any]:
        """(what the clone will hold, its accounts): a backup set's, or the instance's as of
        RestoreTime."""
        instance = src["DBInstanceId"]
        if "RestoreTime" in params:
            if "BackupId" in params:
                raise AliError(400, "InvalidParameters", "BackupId and RestoreTime both given.")
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", params["RestoreTime"]):
                raise AliError(400, "InvalidRestoreTime.Format", "RestoreTime is malformed.")
            at = calendar.timegm(time.strptime(params["RestoreTime"], "%Y-%m-%dT%H:%M:%SZ"))
            earliest, latest = self._recoverable(instance)
            if not earliest <= at <= latest:
                raise AliError(400, "InvalidRestoreTime", "RestoreTime is out of the range.")
            held = [m for t, m in self.data_at.get(instance, []) if t <= at]
            return held[-1] if held else self.data[instance], dict(self.accounts[instance])
        backup_id = params.get("BackupId", "")
        if backup_id not in self.backups[instance]:
            raise AliError(404, "InvalidBackupId.NotFound", "Specified backup does not exist.")
        return self.backup_data[backup_id]

    def rds_CloneDBInstance(self, params: dict[str, str]) -> dict[str, Any]:
        src = self._instance(params)
        restored = self._restore_source(src, params)
        if params.get("PayType") not in ("Postpaid", "Prepaid", "Serverless"):
            raise AliError(400, "InvalidPayType", "Specified pay type is invalid.")
        if "ZoneIdSlave1" in params and "," not in params.get("VSwitchId", ""):
            raise AliError(400, "InvalidVSwitchId", "A multi-zone instance needs two vSwitches.")
        new = f"pgm-clone{next(self._ids)}"
        attr = copy.deepcopy(src)
        attr.update(
            DBInstanceId=new,
            DBInstanceStatus="Creating",
            ConnectionString=f"{new}.pg.rds.aliyuncs.com",
            # A new instance admits only 127.0.0.1 until its whitelist is set.
            SecurityIPList="127.0.0.1",
            DBInstanceDescription=params.get("DBInstanceDescription", new),
            VpcId=params.get("VPCId", src["VpcId"]),
            VSwitchId=params.get("VSwitchId", src["VSwitchId"]),
        )
        self.instances[new] = attr
        self.backups[new] = {}
        self.data[new] = ""
        self.accounts[new] = {}

        def running() -> None:
            marker, accounts = restored
            self.data[new], self.accounts[new] = marker, dict(accounts)
            attr["DBInstanceStatus"] = "Running"

        self._pending[f"instance:{new}"] = Pending(self.op_polls, running)
        return {"DBInstanceId": new, "OrderId": str(next(self._ids))}

    def rds_ModifySecurityIps(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        if inst["DBInstanceStatus"] != "Running":
            raise AliError(
                403,
                "IncorrectDBInstanceState",
                "Current instance state does not support this operation.",
            )
        inst["SecurityIPList"] = params["SecurityIps"]
        return {"TaskId": str(next(self._ids))}

    def rds_ResetAccountPassword(self, params: dict[str, str]) -> dict[str, Any]:
        inst = self._instance(params)
        accounts = self.accounts[inst["DBInstanceId"]]
        if params.get("AccountName") not in accounts:
            raise AliError(404, "InvalidAccountName.NotFound", "Specified account does not exist.")
        pw = params["AccountPassword"]
        kinds = (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
        classes = sum(any(kind(c) for c in pw) for kind in kinds)
        if not 8 <= len(pw) <= 32 or classes < 3:
            raise AliError(400, "InvalidAccountPassword.Malformed", "The password is malformed.")
        accounts[params["AccountName"]] = pw
        return {}

    # --- DTS ----------------------------------------------------------------------------------

    def dts_DescribeDtsJobs(self, params: dict[str, str]) -> dict[str, Any]:
        jobs = [j for j in self.dts_jobs if j["_region"] == params.get("Region")]
        if params.get("Type") == "rds":
            jobs = [
                j for j in jobs if j["DestinationEndpoint"]["InstanceID"] == params.get("Params")
            ]
        if params.get("JobType"):
            jobs = [j for j in jobs if j["JobType"] == params["JobType"]]
        for j in jobs:
            if j["Status"] == "Synchronizing":
                if self.dts_delay:
                    j["Delay"] = self.dts_delay.pop(0)
                # A caught-up job's checkpoint follows the clock (DTS heartbeats).
                j["Checkpoint"] = str(int(time.time()) - int(j["Delay"]))
        visible = [{k: v for k, v in j.items() if not k.startswith("_")} for j in jobs]
        return {
            "Success": True,
            "HttpStatusCode": 200,
            "TotalRecordCount": len(visible),
            "PageNumber": int(params.get("PageNumber", 1)),
            "PageRecordCount": len(visible),
            "DtsJobList": copy.deepcopy(visible),
        }

    def dts_SuspendDtsJob(self, params: dict[str, str]) -> dict[str, Any]:
        for j in self.dts_jobs:
            if j["DtsJobId"] == params.get("DtsJobId"):
                j["Status"] = "Suspending"  # DTS's name for "paused"
                return {"Success": True, "HttpStatusCode": 200}
        return {
            "Success": False,
            "HttpStatusCode": 404,
            "ErrCode": "InvalidJobId.NotFound",
            "ErrMessage": "The DTS job does not exist.",
        }

    # --- Alidns -------------------------------------------------------------------------------

    def alidns_DescribeDomainRecords(self, params: dict[str, str]) -> dict[str, Any]:
        zone = params["DomainName"]
        if zone not in self.domains:
            raise AliError(400, "InvalidDomainName.NoExist", "The domain name does not exist.")
        rows = [r for r in self.domains[zone] if params.get("RRKeyWord", "") in r["RR"]]
        return {
            "TotalCount": len(rows),
            "PageNumber": 1,
            "PageSize": int(params.get("PageSize", 20)),
            "DomainRecords": {"Record": copy.deepcopy(rows)},
        }

    def alidns_UpdateDomainRecord(self, params: dict[str, str]) -> dict[str, Any]:
        for rows in self.domains.values():
            for r in rows:
                if r["RecordId"] == params["RecordId"]:
                    new = {"RR": params["RR"], "Type": params["Type"], "Value": params["Value"]}
                    if all(r[k] == v for k, v in new.items()):
                        raise AliError(
                            400, "DomainRecordDuplicate", "The DNS record already exists."
                        )
                    r.update(new)
                    if "TTL" in params:
                        r["TTL"] = int(params["TTL"])
                    return {"RecordId": r["RecordId"]}
        raise AliError(400, "DomainRecordNotBelongToUser", "The DNS record does not belong to you.")

    # --- CS -----------------------------------------------------------------------------------

    def _pool(self, ids: dict[str, str]) -> dict[str, Any]:
        if ids["cluster"] not in self.clusters:
            raise AliError(404, "ErrorClusterNotFound", "The cluster does not exist.")
        pool = self.pools.get((ids["cluster"], ids["pool"]))
        if pool is None:
            raise AliError(404, "ErrorNodepoolNotFound", "The node pool does not exist.")
        return pool

    def _task(self, cluster: str, effect: Any) -> str:
        task_id = f"T-{next(self._ids)}"
        self.tasks[task_id] = {
            "task_id": task_id,
            "cluster_id": cluster,
            "task_type": "nodepool_update",
            "state": "running",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        }

        def done() -> None:
            if self.fail_tasks:
                self.tasks[task_id].update(
                    state="fail", error={"code": "ScaleFailed", "message": "no stock"}
                )
                return
            effect()
            self.tasks[task_id]["state"] = "success"

        self._pending[f"task:{task_id}"] = Pending(self.op_polls, done)
        return task_id

    def cs_DescribeClustersV1(
        self, ids: dict[str, str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        rows = [
            c
            for c in self.clusters.values()
            if (not query.get("name") or query["name"] in c["name"])
            and (not query.get("region_id") or c["region_id"] == query["region_id"])
        ]
        return {
            "clusters": copy.deepcopy(rows),
            "page_info": {"page_number": 1, "page_size": 10, "total_count": len(rows)},
        }

    def cs_DescribeClusterNodePoolDetail(
        self, ids: dict[str, str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        return copy.deepcopy(self._pool(ids))

    def cs_ScaleClusterNodePool(
        self, ids: dict[str, str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        pool = self._pool(ids)
        if pool["auto_scaling"]["enable"]:
            raise AliError(
                400,
                "ErrorNodePoolAutoScalingEnabled",
                "Node pools with auto scaling enabled cannot be scaled manually.",
            )
        count = int(body["count"])
        pool["status"]["state"] = "scaling"

        def grown() -> None:
            pool["status"].update(state="active", total_nodes=pool["status"]["total_nodes"] + count)
            pool["scaling_group"]["desired_size"] = pool["status"]["total_nodes"]

        return {"task_id": self._task(ids["cluster"], grown)}

    def cs_ModifyClusterNodePool(
        self, ids: dict[str, str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        pool = self._pool(ids)
        auto, group = body.get("auto_scaling"), body.get("scaling_group")
        if group and "desired_size" in group and pool["auto_scaling"]["enable"]:
            raise AliError(
                400,
                "ErrorNodePoolAutoScalingEnabled",
                "desired_size cannot be set while auto scaling is enabled.",
            )
        pool["status"]["state"] = "updating"

        def modified() -> None:
            total = pool["status"]["total_nodes"]
            if auto:
                pool["auto_scaling"].update(auto)
                lo, hi = (
                    pool["auto_scaling"]["min_instances"],
                    pool["auto_scaling"]["max_instances"],
                )
                total = min(max(total, lo), hi)  # ESS brings the group inside its bounds
            if group and "desired_size" in group:
                total = int(group["desired_size"])
                pool["scaling_group"]["desired_size"] = total
            pool["status"].update(state="active", total_nodes=total, healthy_nodes=total)

        return {
            "task_id": self._task(ids["cluster"], modified),
            "nodepool_id": ids["pool"],
            "request_id": "r",
        }

    def cs_DescribeTaskInfo(
        self, ids: dict[str, str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        task = self.tasks.get(ids["task"])
        if task is None:
            raise AliError(404, "ErrorTaskNotFound", "The task does not exist.")
        self._tick(f"task:{ids['task']}")
        return copy.deepcopy(task)
