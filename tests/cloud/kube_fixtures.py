"""What the Kubernetes client tests share: a throwaway PKI (a CA, a server certificate for
127.0.0.1, a client certificate) and tests/cloud/fake_kube_api.py served over TLS with it, the
way a cluster's API server is reached (its CA from the kubeconfig or the cloud's cluster API)."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.cloud.fake_kube_api import FakeKubeApi

NS, DEP = "im", "im-server"
Api = TypeVar("Api", bound=FakeKubeApi)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def make_pki() -> dict[str, bytes]:
    """PEM bytes: ``ca``, ``server`` + ``server_key`` (for 127.0.0.1), ``user`` + ``user_key``
    (a client certificate the CA signed)."""
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography (from moto) is absent")
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def make(cn: str, issuer: Any, signer: Any, ca: bool, san: Any = None) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer or key, hashes.SHA256()), key

    ca, ca_key = make("imctl-test-ca", None, None, True)
    server, server_key = make(
        "127.0.0.1", ca.subject, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    user, user_key = make("imctl-operator", ca.subject, ca_key, False)

    def pem(cert: Any) -> bytes:
        return bytes(cert.public_bytes(serialization.Encoding.PEM))

    def key_pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    return {
        "ca": pem(ca),
        "server": pem(server),
        "server_key": key_pem(server_key),
        "user": pem(user),
        "user_key": key_pem(user_key),
    }


def server_tls(tmp_path: Path, pki: dict[str, bytes], *, client_certs: bool) -> ssl.SSLContext:
    """The API server's side: its certificate, and (``client_certs``) client certificates the
    CA signed required, as ACK's kubeconfigs authenticate."""
    (tmp_path / "server.crt").write_bytes(pki["server"])
    (tmp_path / "server.key").write_bytes(pki["server_key"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    if client_certs:
        tls.load_verify_locations(cadata=pki["ca"].decode())
        tls.verify_mode = ssl.CERT_REQUIRED
    return tls


@contextmanager
def tls_api(
    api: Api, tmp_path: Path, pki: dict[str, bytes], *, client_certs: bool = False
) -> Iterator[Api]:
    """``api`` (no objects yet) serving over TLS with the workload's Deployment in it."""
    api.tls = server_tls(tmp_path, pki, client_certs=client_certs)
    api.add_deployment(NS, DEP, replicas=2)
    api.start()
    try:
        yield api
    finally:
        api.stop()
