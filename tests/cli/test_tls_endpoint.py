"""TLS (issue 13): the CLI prints the endpoint the stack outputs (wss://), and probes a wss://
stack's regions over TLS on 443 with the certificate checked against the global name."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from cli.commands.deploy import _render
from cli.targets.cloud import probes
from cli.targets.cloud.outputs import CloudOutputs

OUTPUTS: dict[str, Any] = {
    "cloud": "aws",
    "primary_region": "us-east-1",
    "regions": {
        "us-east-1": {
            "cluster_name": "c",
            "nodegroup_name": "n",
            "db_instance_id": "d",
            "endpoint": "lb.example.net",
        }
    },
    "hosted_zone_id": "Z1",
    "dns_name": "im.example.com",
    "backup_bucket": "b",
}


def _printed(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    _render(Console(file=out, width=200), doc)
    return out.getvalue()


def test_deploy_prints_the_stacks_endpoint_output_as_it_is() -> None:
    doc = {"cloud": "aws", "stack": "dev", "result": "succeeded", "resources": {}}
    outputs = {"dns_name": "im.example.com", "endpoint": "wss://im.example.com/ws"}
    assert "endpoint  wss://im.example.com/ws" in _printed({**doc, "outputs": outputs})
    # A stack deployed before TLS has no endpoint output: plain ws:// as before.
    old = {"dns_name": "im.example.com"}
    assert "endpoint  ws://im.example.com/ws" in _printed({**doc, "outputs": old})


def test_outputs_know_a_wss_stack_and_its_certificate_name() -> None:
    tls = CloudOutputs.from_json({**OUTPUTS, "endpoint": "wss://im.example.com/ws"})
    assert (tls.endpoint, tls.tls_name) == ("wss://im.example.com/ws", "im.example.com")
    plain = CloudOutputs.from_json(OUTPUTS)
    assert (plain.endpoint, plain.tls_name) == ("ws://im.example.com/ws", None)


def test_readyz_of_a_wss_stack_goes_to_443_with_the_global_name(monkeypatch: Any) -> None:
    # The TLS request itself is tested against a real listener in tests/im_server/test_tls.py.
    seen: list[tuple[str, str, str | None]] = []

    def fake(
        endpoint: str, path: str, headers: Any, timeout: float, tls_name: str | None = None
    ) -> tuple[int, bytes]:
        seen.append((endpoint, path, tls_name))
        return 200, b"{}"

    monkeypatch.setattr(probes, "http_get", fake)
    assert probes.readyz("lb.example.net", 1.0, "im.example.com") == "ok"
    assert seen == [("lb.example.net", "/readyz", "im.example.com")]
