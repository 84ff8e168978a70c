"""Plain HTTP(S) to a region's endpoint, as the outputs name it: the /readyz probe and the GET
the content digest is read with. Standard library only."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping


def endpoint_url(endpoint: str, path: str) -> str:
    """``path`` on a region's endpoint as the outputs give it: host[:port], or a URL."""
    base = endpoint if "://" in endpoint else f"http://{endpoint}"
    return base.rstrip("/") + path


def readyz(endpoint: str, timeout: float = 2.0, tls_name: str | None = None) -> str:
    """``ok``, ``HTTP <code>`` or ``unreachable: <why>`` for the Service's /readyz. With
    ``tls_name`` (a wss:// stack) over TLS on 443 of the region's own load balancer, checking the
    certificate against that name: the balancer's address is not in it."""
    try:
        status, _ = http_get(endpoint, "/readyz", {}, timeout, tls_name)
    except (OSError, ValueError) as exc:
        return f"unreachable: {getattr(exc, 'reason', None) or exc}"
    return "ok" if status == 200 else f"HTTP {status}"


def http_get(
    endpoint: str,
    path: str,
    headers: Mapping[str, str],
    timeout: float,
    tls_name: str | None = None,
    limit: int = 1 << 16,
) -> tuple[int, bytes]:
    """GET ``path`` on a region's endpoint: (status, at most ``limit`` bytes of body). Plain
    HTTP on ``endpoint`` (host[:port] or a URL), or with ``tls_name`` HTTPS on 443 of the
    endpoint's address, the certificate checked against ``tls_name``. Raises OSError when the
    endpoint cannot be reached."""
    if tls_name is None or "://" in endpoint:
        request = urllib.request.Request(endpoint_url(endpoint, path), headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return int(resp.status), resp.read(limit)
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read(limit)
    # The outputs name the balancer by address alone (its TLS port is 443); host:port as well.
    host, _, port = endpoint.partition(":")
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, int(port or 443)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=tls_name) as tls,
        ):
            conn = http.client.HTTPConnection(tls_name, 443, timeout=timeout)
            conn.sock = tls  # already connected: http.client sends over it as it is
            conn.request("GET", path, headers=dict(headers))
            resp = conn.getresponse()
            return int(resp.status), resp.read(limit)
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
