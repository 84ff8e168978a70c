"""A moto S3 server on loopback and the AWS variables that point boto3 (and the shipper
process, which inherits them) at it and at nothing of this machine's AWS configuration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN",
         "AWS_ENDPOINT_URL_S3")  # fmt: skip


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_variables(endpoint: str, scratch: Path) -> dict[str, str]:
    """Fake credentials for moto; config and credential files that do not exist."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
