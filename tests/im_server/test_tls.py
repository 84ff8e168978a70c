"""TLS (issue 13): with a certificate the server speaks wss:// on its TLS port, refuses plain
ws:// there, keeps the plain port, and picks up a renewed certificate without a restart."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from im_server.config import ConfigError, from_env
from tests.im_server.conftest import ServerFactory

ENV = {"IM_DATABASE_URL": "postgresql://u:p@h/db", "IM_JWT_SECRET": "x" * 16}


def _write_cert(directory: Path, serial: int) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, swapped in the way a Secret volume does: new
    files, then a rename over the old names (so the paths point at new inodes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "im.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("im.test")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "tls.crt", directory / "tls.key"
    (directory / "new.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "new.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.replace(directory / "new.key", pem)
    os.replace(directory / "new.crt", crt)
    return str(crt), str(pem)


def _trusting(cert_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert_file)


async def _served_serial(port: int) -> int:
    """The serial number of the certificate a fresh handshake gets."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der).serial_number


async def test_wss_served_on_the_tls_port_and_plain_ws_refused_there(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    cert, key = _write_cert(tmp_path, serial=1)
    im = await server_factory(tls_cert_file=cert, tls_key_file=key, tls_port=0)
    port = im.server.tls_port
    assert port is not None and port != im.port
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=_trusting(cert)) as ws:
            assert not ws.closed
        async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=_trusting(cert)) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with http.ws_connect(f"ws://127.0.0.1:{port}/ws"):
                pass
        # The plain port still answers the kubelet's probes.
        async with http.get(f"{im.http}/readyz") as resp:
            assert resp.status in (200, 503)


async def test_a_renewed_certificate_is_served_without_a_restart(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    cert, key = _write_cert(tmp_path, serial=1)
    im = await server_factory(
        tls_cert_file=cert, tls_key_file=key, tls_port=0, tls_reload_seconds=0.1
    )
    assert im.server.tls_port is not None
    assert await _served_serial(im.server.tls_port) == 1
    _write_cert(tmp_path, serial=2)
    for _ in range(50):
        await asyncio.sleep(0.1)
        if await _served_serial(im.server.tls_port) == 2:
            break
    assert await _served_serial(im.server.tls_port) == 2


def test_tls_settings_come_in_pairs() -> None:
    settings = from_env({**ENV, "IM_TLS_CERT_FILE": "/c", "IM_TLS_KEY_FILE": "/k"})
    assert (settings.tls_cert_file, settings.tls_key_file, settings.tls_port) == ("/c", "/k", 8443)
    assert from_env(ENV).tls_cert_file is None
    with pytest.raises(ConfigError, match="IM_TLS_KEY_FILE"):
        from_env({**ENV, "IM_TLS_CERT_FILE": "/c"})


async def test_cloud_operations_read_the_digest_over_tls_by_the_certificates_name(
    server_factory: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With wss:// only, port 80 is closed: imctl's snapshot and restore content checks go to
    the balancer on 443 and check the certificate against the stack's name, not the address."""
    from cli.errors import DigestUnavailable
    from cli.targets.cloud.content import fetch_digest
    from cli.targets.cloud.probes import readyz

    cert, key = _write_cert(tmp_path, serial=1)
    im = await server_factory(tls_cert_file=cert, tls_key_file=key, tls_port=0)
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the "public CA" this test trusts
    endpoint = f"127.0.0.1:{im.server.tls_port}"
    admin = im.settings.admin_token
    assert admin is not None
    doc = await asyncio.to_thread(fetch_digest, endpoint, admin, 5.0, "im.test")
    assert doc["node"] == im.server.node_id and "max_seq" in doc
    assert await asyncio.to_thread(readyz, endpoint, 5.0, "im.test") in ("ok", "HTTP 503")
    with pytest.raises(DigestUnavailable) as wrong:  # a certificate for another name
        await asyncio.to_thread(fetch_digest, endpoint, admin, 5.0, "other.test")
    assert "certificate verify failed" in wrong.value.message and wrong.value.transient
