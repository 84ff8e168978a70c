"""``KubeApi`` over the Kubernetes REST API, with the standard library only (urllib + ssl).

Why not the ``kubernetes`` client package: it is large, pins its own urllib3 and yaml, and
imctl needs six calls. Everything here is a GET or a JSON merge patch
(``application/merge-patch+json``) with ``fieldManager=imctl``.

Credentials come from a kubeconfig (JSON, as the stacks export it, or kubectl's YAML; YAML
needs PyYAML, which Pulumi installs): bearer ``token``/``tokenFile``, client certificates
(``client-certificate(-data)``/``client-key(-data)``), basic auth, or an exec credential
plugin (``aws eks get-token``, ``gke-gcloud-auth-plugin``) run with the
``client.authentication.k8s.io`` ExecCredential protocol, or a ``credentials`` callable (the
cloud APIs, cli/targets/cloud/kube_access.py). Either credential is cached until shortly before
it expires and fetched again once if the API answers 401.

Errors map to the CLI's exit codes: 401/403 and a failing credential plugin -> CredentialsError
(3); a missing plugin -> PrerequisiteMissing (10); 404, an unreachable API or a rollout past its
progress deadline -> ResourceFailure (4); ``wait_ready`` past its timeout -> OperationTimeout (9).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cli.errors import (
    CredentialsError,
    OperationTimeout,
    PrerequisiteMissing,
    ResourceFailure,
    UsageError,
)

FIELD_MANAGER: Final = "imctl"
RESTARTED_AT: Final = "kubectl.kubernetes.io/restartedAt"
MERGE_PATCH: Final = "application/merge-patch+json"
EXEC_API: Final = "client.authentication.k8s.io/v1beta1"
# Refresh an exec token this long before it expires, so a request never carries a dead one.
_EXPIRY_MARGIN: Final = 60.0
_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_PLUGIN_HINTS: Final = {
    "aws": "install the AWS CLI v2 (https://aws.amazon.com/cli/) and log in (aws sso login / "
    "AWS_* variables)",
    "gke-gcloud-auth-plugin": "gcloud components install gke-gcloud-auth-plugin "
    "(or apt-get install google-cloud-cli-gke-gcloud-auth-plugin), then gcloud auth login",
    "kubelogin": "install kubelogin (https://azure.github.io/kubelogin/)",
}


# --- kubeconfig ----------------------------------------------------------------------------


def _load_document(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            raise PrerequisiteMissing(
                "this kubeconfig is YAML, and PyYAML is not installed",
                "pip install pyyaml (the cloud extras bring it), or use a JSON kubeconfig",
            ) from None
        try:
            doc = yaml.safe_load(text)
        except Exception as exc:  # yaml.YAMLError, without naming an untyped module's class
            raise UsageError(f"the kubeconfig is neither JSON nor YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError("the kubeconfig is not a mapping (apiVersion: v1, kind: Config)")
    return doc


def _named(doc: Mapping[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            body = entry.get(section[:-1], {})  # clusters -> cluster, users -> user
            return dict(body or {})
    known = ", ".join(str(e.get("name")) for e in doc.get(section) or []) or "none"
    raise UsageError(f"the kubeconfig has no {section[:-1]} named {name!r}", f"it has: {known}")


def context_names(text: str) -> list[str]:
    """The contexts a kubeconfig (JSON or YAML) defines."""
    return [str(entry.get("name")) for entry in _load_document(text).get("contexts") or []]


def _b64(data: str) -> str:
    return base64.b64decode(data).decode()


@dataclass(frozen=True)
class KubeConfig:
    """One context of a kubeconfig, resolved: where the API is and how to authenticate."""

    server: str
    ca_pem: str | None = None
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    exec_spec: Mapping[str, Any] | None = None
    cluster: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(
        cls, text: str, context: str | None = None, *, base_dir: Path | None = None
    ) -> KubeConfig:
        doc = _load_document(text)
        name = context or doc.get("current-context") or ""
        if not name:
            raise UsageError("the kubeconfig names no current-context", "pass a context name")
        ctx = _named(doc, "contexts", name)
        cluster = _named(doc, "clusters", str(ctx.get("cluster", "")))
        user = _named(doc, "users", str(ctx.get("user", ""))) if ctx.get("user") else {}
        server = str(cluster.get("server") or "")
        if not server:
            raise UsageError(f"cluster {ctx.get('cluster')!r} in the kubeconfig has no server")

        def path(value: Any) -> Path:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() or base_dir is None else base_dir / p

        def data_or_file(data_key: str, file_key: str, src: Mapping[str, Any]) -> str | None:
            if src.get(data_key):
                return _b64(str(src[data_key]))
            if src.get(file_key):
                return path(src[file_key]).read_text()
            return None

        return cls(
            server=server.rstrip("/"),
            ca_pem=data_or_file("certificate-authority-data", "certificate-authority", cluster),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            token=user.get("token") or None,
            token_file=str(path(user["tokenFile"])) if user.get("tokenFile") else None,
            cert_pem=data_or_file("client-certificate-data", "client-certificate", user),
            key_pem=data_or_file("client-key-data", "client-key", user),
            username=user.get("username") or None,
            password=user.get("password") or None,
            exec_spec=user.get("exec") or None,
            cluster=cluster,
        )


# --- credentials ---------------------------------------------------------------------------


@dataclass
class Credential:
    """What authenticates one request: a bearer token or a client certificate, and until when."""

    token: str | None = field(default=None, repr=False)
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # time.time() seconds; None: until the API says 401


def parse_expiry(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def run_exec_plugin(
    spec: Mapping[str, Any], cluster: Mapping[str, Any], env: Mapping[str, str]
) -> Credential:
    """Run a kubeconfig ``exec`` credential plugin the way kubectl does."""
    command = str(spec.get("command") or "")
    if not command:
        raise UsageError("the kubeconfig's exec credential plugin names no command")
    api = str(spec.get("apiVersion") or EXEC_API)
    info: dict[str, Any] = {"apiVersion": api, "kind": "ExecCredential"}
    info["spec"] = {"interactive": False}
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = {
            "server": cluster.get("server"),
            "certificate-authority-data": cluster.get("certificate-authority-data"),
            "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify")),
        }
        for ext in cluster.get("extensions") or []:
            if ext.get("name") == "client.authentication.k8s.io/exec":
                info["spec"]["cluster"]["config"] = ext.get("extension")
    child_env = dict(env)
    for item in spec.get("env") or []:
        child_env[str(item["name"])] = str(item["value"])
    child_env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    argv = [command, *(str(a) for a in spec.get("args") or [])]
    # The plugin is looked up on the injected PATH, as a shell (and kubectl) would.
    binary = shutil.which(command, path=child_env.get("PATH")) if os.sep not in command else command
    hint = str(spec.get("installHint") or "").strip() or _PLUGIN_HINTS.get(
        Path(command).name, f"install {command} and put it on PATH"
    )
    if binary is None:
        raise PrerequisiteMissing(
            f"the kubeconfig's credential plugin `{command}` is not installed or not on PATH", hint
        )
    try:
        done = subprocess.run(
            [binary, *argv[1:]],
            env=child_env,
            stdin=subprocess.DEVNULL,  # interactiveMode: Never; a prompt would hang imctl
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except FileNotFoundError:
        raise PrerequisiteMissing(f"cannot run the credential plugin `{command}`", hint) from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"the credential plugin `{command}` did not answer within 120 s",
            "is it waiting for a browser login? log in first, then re-run",
        ) from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise CredentialsError(
            f"the credential plugin `{' '.join(argv[:3])}` failed (exit {done.returncode})"
            + (f": {' / '.join(tail)}" if tail else ""),
            "log in to the cloud (aws sso login / gcloud auth login) and re-run",
        )
    try:
        status = json.loads(done.stdout)["status"]
    except (ValueError, KeyError, TypeError):
        raise CredentialsError(
            f"the credential plugin `{command}` printed no ExecCredential status",
            "run it by hand to see what it says",
        ) from None
    cred = Credential(
        token=status.get("token") or None,
        cert_pem=status.get("clientCertificateData") or None,
        key_pem=status.get("clientKeyData") or None,
        expires_at=parse_expiry(status.get("expirationTimestamp")),
    )
    if cred.token is None and cred.cert_pem is None:
        raise CredentialsError(f"the credential plugin `{command}` returned no credential")
    return cred


# --- the client ----------------------------------------------------------------------------


def _status_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
        return str(doc.get("message") or doc.get("reason") or "").strip()
    except ValueError:
        return body.decode(errors="replace").strip()[:200]


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _pem_files(cert_pem: str, key_pem: str) -> Iterator[tuple[str, str]]:
    # ssl can only load a client certificate from files: keep them private and brief.
    with tempfile.TemporaryDirectory(prefix="imctl-kube-") as tmp:
        cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        for p, text in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        yield str(cert), str(key)


class KubeRest:
    """``cli.targets.cloud.kube.KubeApi`` (plus ``get_secret``) for one cluster."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        poll_interval: float = 2.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        credentials: Callable[[], Credential] | None = None,
    ) -> None:
        if not config.server.startswith(("https://", "http://")):
            raise UsageError(f"kube API server {config.server!r} is not an http(s) URL")
        self.config = config
        self.env: Mapping[str, str] = dict(os.environ) if env is None else env
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.retries = retries
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._cred: Credential | None = None
        self._opener: urllib.request.OpenerDirector | None = None
        self._opener_cert: str | None = None  # the client cert the opener was built with
        if credentials is None and config.exec_spec is not None:
            credentials = functools.partial(
                run_exec_plugin, config.exec_spec, config.cluster, self.env
            )
        # None: the kubeconfig's own static credential, nothing to refresh.
        self._fetch = credentials

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(
        cls, text: str, context: str | None = None, *, base_dir: Path | None = None, **kw: Any
    ) -> KubeRest:
        return cls(KubeConfig.parse(text, context, base_dir=base_dir), **kw)

    @classmethod
    def from_file(cls, path: str | Path, context: str | None = None, **kw: Any) -> KubeRest:
        p = Path(path).expanduser()
        try:
            text = p.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read kubeconfig {p}: {exc.strerror}") from None
        return cls.from_kubeconfig(text, context, base_dir=p.parent, **kw)

    # --- credentials and transport ------------------------------------------------------

    def _credential(self, refresh: bool = False) -> Credential:
        c = self.config
        if self._fetch is None:
            token = c.token
            if c.token_file:  # re-read each time: projected tokens rotate on disk
                token = Path(c.token_file).read_text().strip()
            return Credential(token=token, cert_pem=c.cert_pem, key_pem=c.key_pem)
        with self._lock:
            cred = self._cred
            fresh = cred is not None and (
                cred.expires_at is None or cred.expires_at - _EXPIRY_MARGIN > time.time()
            )
            if refresh or cred is None or not fresh:
                cred = self._fetch()
                self._cred = cred
            return cred

    def _ssl_context(self, cred: Credential) -> ssl.SSLContext:
        c = self.config
        ctx = (
            ssl.create_default_context(cadata=c.ca_pem)
            if c.ca_pem
            else ssl.create_default_context()
        )
        if c.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cred.cert_pem and cred.key_pem:
            with _pem_files(cred.cert_pem, cred.key_pem) as (cert, key):
                ctx.load_cert_chain(cert, key)
        return ctx

    def _proxies(self) -> dict[str, str]:
        host = urllib.parse.urlsplit(self.config.server).hostname or ""
        no_proxy = self.env.get("NO_PROXY") or self.env.get("no_proxy") or ""
        if _bypass_proxy(host, no_proxy):
            return {}
        out: dict[str, str] = {}
        for scheme in ("https", "http"):
            value = self.env.get(f"{scheme.upper()}_PROXY") or self.env.get(f"{scheme}_proxy")
            if value:
                out[scheme] = value
        return out

    def _opener_for(self, cred: Credential) -> urllib.request.OpenerDirector:
        if self._opener is None or self._opener_cert != cred.cert_pem:
            self._opener = urllib.request.build_opener(
                urllib.request.ProxyHandler(self._proxies()),
                urllib.request.HTTPSHandler(context=self._ssl_context(cred)),
            )
            self._opener_cert = cred.cert_pem
        return self._opener

    def _headers(self, cred: Credential) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "imctl"}
        if cred.token:
            headers["Authorization"] = f"Bearer {cred.token}"
        elif self.config.username is not None:
            pair = f"{self.config.username}:{self.config.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One API call; retries 429/5xx and connection errors, refreshes an exec token on 401."""
        url = self.config.server + path
        if method == "PATCH":
            url += ("&" if "?" in url else "?") + f"fieldManager={FIELD_MANAGER}"
        data = json.dumps(body).encode() if body is not None else None
        refreshed = force = False
        attempt = 0
        while True:
            attempt += 1
            cred = self._credential(refresh=force)
            force = False
            headers = self._headers(cred)
            if data is not None:
                headers["Content-Type"] = MERGE_PATCH
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self._opener_for(cred).open(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                doc = json.loads(raw) if raw else {}
                return doc if isinstance(doc, dict) else {}
            except urllib.error.HTTPError as exc:
                status, message = exc.code, _status_message(exc.read())
                if status == 401 and self._fetch is not None and not refreshed:
                    # The cached token died before its stated expiry (revoked, clock skew).
                    refreshed = force = True
                    attempt -= 1
                    continue
                if status in _RETRY_STATUS and attempt < self.retries:
                    self._sleep(min(0.2 * 2**attempt, 2.0))
                    continue
                raise self._http_error(method, path, status, message) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise ResourceFailure(
                        f"the Kubernetes API at {self.config.server} has a certificate this "
                        f"kubeconfig does not trust: {reason.verify_message}",
                        "check the cluster's certificate-authority-data in the kubeconfig",
                    ) from None
                if attempt < self.retries:
                    self._sleep(min(0.2 * 2**attempt, 2.0))
                    continue
                raise ResourceFailure(
                    f"cannot reach the Kubernetes API at {self.config.server}: {reason}",
                    "is the cluster up and its endpoint reachable from here (VPN, allowed CIDRs)?",
                ) from None

    def _http_error(self, method: str, path: str, status: int, message: str) -> Exception:
        what = f"{method} {path}"
        if status == 401:
            return CredentialsError(
                f"the Kubernetes API rejected the credentials ({what}): {message or 401}",
                "refresh the cloud login, or the kubeconfig's token",
            )
        if status == 403:
            return CredentialsError(
                f"not allowed: {message or what}",
                "the identity needs RBAC to get/patch deployments, deployments/scale, "
                "horizontalpodautoscalers and secrets in the workload's namespace",
            )
        if status == 404:
            return ResourceFailure(
                f"not found in the cluster: {message or what}",
                "check the namespace and names in the stack outputs (imctl status)",
            )
        return ResourceFailure(f"the Kubernetes API answered {status} to {what}: {message}")

    # --- KubeApi ------------------------------------------------------------------------

    @staticmethod
    def _deployment_path(namespace: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{_seg(namespace)}/deployments/{_seg(name)}"

    def get_deployment(self, namespace: str, deployment: str) -> dict[str, Any]:
        return self.request("GET", self._deployment_path(namespace, deployment))

    def get_replicas(self, namespace: str, deployment: str) -> tuple[int, int]:
        doc = self.get_deployment(namespace, deployment)
        spec, status = doc.get("spec") or {}, doc.get("status") or {}
        return int(spec.get("replicas", 1)), int(status.get("readyReplicas") or 0)

    def scale_deployment(self, namespace: str, deployment: str, replicas: int) -> None:
        if replicas < 0:
            raise UsageError(f"replicas must be 0 or more, got {replicas}")
        self.request(
            "PATCH",
            self._deployment_path(namespace, deployment) + "/scale",
            {"spec": {"replicas": replicas}},
        )

    def patch_hpa(
        self, namespace: str, hpa: str, min_replicas: int | None, max_replicas: int | None
    ) -> None:
        if min_replicas is None and max_replicas is None:
            return
        if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
            raise UsageError(f"min replicas ({min_replicas}) above max ({max_replicas})")
        spec: dict[str, int] = {}
        if min_replicas is not None:
            spec["minReplicas"] = min_replicas
        if max_replicas is not None:
            spec["maxReplicas"] = max_replicas
        path = f"/apis/autoscaling/v2/namespaces/{_seg(namespace)}/horizontalpodautoscalers/"
        self.request("PATCH", path + _seg(hpa), {"spec": spec})

    def _secret_path(self, namespace: str, secret: str) -> str:
        return f"/api/v1/namespaces/{_seg(namespace)}/secrets/{_seg(secret)}"

    def get_secret(self, namespace: str, secret: str) -> dict[str, str]:
        """The Secret's keys, decoded (plain text: keep it in memory)."""
        doc = self.request("GET", self._secret_path(namespace, secret))
        return {k: _b64(v) for k, v in (doc.get("data") or {}).items()}

    def patch_secret(self, namespace: str, secret: str, data: dict[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.request("PATCH", self._secret_path(namespace, secret), {"data": encoded})

    def restart_deployment(self, namespace: str, deployment: str) -> None:
        annotations = {RESTARTED_AT: _now_rfc3339()}
        body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        self.request("PATCH", self._deployment_path(namespace, deployment), body)

    def wait_ready(self, namespace: str, deployment: str, timeout: float) -> None:
        """Until the rollout is complete: the controller saw the latest spec, and every
        replica is updated, ready and available, with no old pods left (kubectl rollout
        status). A rollout past its progressDeadlineSeconds fails at once."""
        deadline = self._clock() + max(timeout, 0.0)
        last = ""
        while True:
            doc = self.get_deployment(namespace, deployment)
            done, last = _rollout_state(doc)
            if done:
                return
            for cond in (doc.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Progressing" and cond.get("reason") == (
                    "ProgressDeadlineExceeded"
                ):
                    raise ResourceFailure(
                        f"deployment {namespace}/{deployment} exceeded its progress deadline: "
                        f"{cond.get('message') or last}",
                        f"kubectl -n {namespace} describe deployment {deployment}; "
                        f"kubectl -n {namespace} get events",
                    )
            if self._clock() >= deadline:
                raise OperationTimeout(
                    f"deployment {namespace}/{deployment} not ready after {timeout:.0f}s: {last}",
                    f"kubectl -n {namespace} rollout status deployment/{deployment}",
                )
            self._sleep(min(self.poll_interval, max(deadline - self._clock(), 0.0)))


def _bypass_proxy(host: str, no_proxy: str) -> bool:
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry  # drop a port
        if entry == "*" or (
            entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))
        ):
            return True
    return False


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _rollout_state(doc: Mapping[str, Any]) -> tuple[bool, str]:
    meta, spec, st = doc.get("metadata") or {}, doc.get("spec") or {}, doc.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = int(meta.get("generation") or 0)
    observed = int(st.get("observedGeneration") or 0)
    counts = {k: int(st.get(k) or 0) for k in ("replicas", "updatedReplicas", "readyReplicas")}
    available = int(st.get("availableReplicas") or 0)
    text = (
        f"{counts['readyReplicas']}/{want} ready, {counts['updatedReplicas']} updated, "
        f"{counts['replicas']} total, generation {observed}/{generation}"
    )
    done = (
        observed >= generation
        and counts["updatedReplicas"] == counts["readyReplicas"] == counts["replicas"] == want
        and available >= want
    )
    return done, text
