"""The S3-compatible bucket the local target's backups are copied to, so that a restore can read
from the bucket alone when this machine's disk is lost.

boto3 is optional for the local target (``pip install 'imctl[backup]'``), so it is imported only
when a ``Bucket`` is made. Credentials, region and endpoint come from boto3's own chain
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3``): imctl never takes a secret on its command line or in a file of its own.

Every object carries its content's sha256 as user metadata (``x-amz-meta-sha256``), written by
``put_file`` and checked by ``get_file`` before the downloaded file gets its name: a restore never
reads a file the bucket handed back damaged or replaced.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cli.errors import (
    ContentMismatch,
    CredentialsError,
    ImctlError,
    PreconditionFailed,
    PrerequisiteMissing,
    ResourceFailure,
    UsageError,
)
from cli.state import file_sha256

SHA256_KEY = "sha256"  # S3 lower-cases user metadata names; this one is already lower case
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys per call
LIST_PAGE = 1000  # ListObjectsV2 returns at most this many keys per call
_CHUNK = 1 << 20

_URL_HINT = "give the bucket as s3://BUCKET or s3://BUCKET/PREFIX, e.g. s3://my-backups/imctl/dev"
# S3's bucket naming rules (the general-purpose ones; dots allowed for older buckets).
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment of the "
    "process, for an identity allowed s3:ListBucket, s3:GetObject, s3:PutObject and "
    "s3:DeleteObject on the bucket"
)
_ENDPOINT_HINT = (
    "check the network path to the bucket and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 for an "
    "S3-compatible store; the shipper retries by itself"
)
# Codes for "who you are, or what you may do, is the problem": a retry does not help.
_DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
    }
)
_NO_KEY = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` as (bucket, prefix); the prefix has no leading or trailing slash
    and is "" when absent."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "s3":
        raise UsageError(
            f"the backup bucket URL {_safe(url)!r} is not an s3:// URL",
            f"backups are shipped to an S3-compatible bucket; {_URL_HINT}",
        )
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        # Never echoed: a user:secret@ part would put the secret in a log.
        raise UsageError(
            "the backup bucket URL carries credentials or a port in its host part",
            "credentials come only from the environment (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY) and an endpoint from AWS_ENDPOINT_URL; " + _URL_HINT,
        )
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise UsageError(
            f"{bucket!r} in {url!r} is not a valid S3 bucket name",
            "a bucket name is 3-63 characters of lower-case letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit; " + _URL_HINT,
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise UsageError(
            f"the prefix {prefix!r} in {url!r} has an empty, '.' or '..' part",
            "object keys are compared as written, so such a prefix names other keys than it "
            "seems to; " + _URL_HINT,
        )
    if any(c in prefix for c in "?#\\") or any(ord(c) < 0x20 for c in prefix):
        raise UsageError(
            f"the prefix in {url!r} has a character S3 keys should not carry",
            "use letters, digits and '-', '_', '.', '/'; " + _URL_HINT,
        )
    return bucket, prefix


def _safe(url: str) -> str:
    """The URL without a userinfo part, which could hold a secret."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = "…@" + host.rpartition("@")[2]
    return f"{scheme}{sep}{host}{slash}{path}"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    sha256: str | None  # None: not asked for (``list`` without ``with_sha256``) or not set
    modified: datetime


def _code(exc: Any) -> str:
    """The S3 error code of a botocore ClientError ("404" for a HEAD, which has no body)."""
    return str(exc.response.get("Error", {}).get("Code") or "unknown")


class Bucket:
    """One bucket through boto3's S3 client."""

    def __init__(self, name: str, *, client: Any = None) -> None:
        self.name = name
        self._client = client if client is not None else _make_client()

    def key_url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    # --- reads -----------------------------------------------------------------------------

    def check_access(self) -> None:
        """One cheap request that proves the bucket exists and these credentials may list it."""
        self._call("checking access to the bucket", self._client.list_objects_v2,
                   Bucket=self.name, MaxKeys=1)  # fmt: skip

    def list(self, prefix: str = "", *, with_sha256: bool = False) -> dict[str, ObjectInfo]:
        """Every object whose key starts with ``prefix``. ``with_sha256``: also each object's
        sha256 metadata, one HEAD request per object (listing does not return metadata)."""
        found: dict[str, ObjectInfo] = {}

        def pages() -> None:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(
                Bucket=self.name, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE}
            ):
                for item in page.get("Contents", []):
                    found[item["Key"]] = ObjectInfo(int(item["Size"]), None, item["LastModified"])

        self._call(f"listing {self.key_url(prefix)}", pages)
        if with_sha256:
            for key in list(found):
                info = self.head(key)
                if info is not None:
                    found[key] = info
        return found

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, sha256 and time; None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            meta = self._call(f"reading {self.key_url(key)}", self._client.head_object,
                              Bucket=self.name, Key=key)  # fmt: skip
        except ImctlError as err:
            cause = err.__cause__
            if isinstance(cause, ClientError) and _code(cause) in _NO_KEY:
                return None
            raise
        return ObjectInfo(
            int(meta["ContentLength"]),
            meta.get("Metadata", {}).get(SHA256_KEY),
            meta["LastModified"],
        )

    def get_file(self, key: str, dest: Path) -> str:
        """Download ``key`` to ``dest``, which gets its name only once the content's sha256
        matches the one stored with the object; returns that sha256."""
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.download")
        try:
            response = self._call(f"downloading {self.key_url(key)}", self._client.get_object,
                                  Bucket=self.name, Key=key)  # fmt: skip
            expected = response.get("Metadata", {}).get(SHA256_KEY)
            if not expected:
                raise ContentMismatch(
                    f"{self.key_url(key)} has no sha256 metadata, so its content cannot be checked",
                    "the object was not written by imctl's shipper; it was not downloaded",
                )
            digest = hashlib.sha256()
            body = response["Body"]

            def stream() -> None:
                with tmp.open("wb") as fh:
                    for chunk in body.iter_chunks(_CHUNK):
                        digest.update(chunk)
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())

            self._call(f"downloading {self.key_url(key)}", stream)
            got = digest.hexdigest()
            if got != expected:
                raise ContentMismatch(
                    f"{self.key_url(key)} is damaged or was replaced: its content's sha256 is "
                    f"{got}, the object's metadata says {expected}",
                    "the file was not kept; restore from another base backup or chain, and check "
                    "who can write to the bucket (versioning keeps the earlier object)",
                )
            os.replace(tmp, dest)
            return got
        finally:
            tmp.unlink(missing_ok=True)

    # --- writes ----------------------------------------------------------------------------

    def put_file(self, path: Path, key: str, *, sha256: str | None = None) -> str:
        """Upload ``path`` as ``key`` with its sha256 as metadata (multipart when large); returns
        the sha256. ``sha256``: already computed by the caller from this very file."""
        digest = sha256 or file_sha256(path)
        self._call(f"uploading {path.name} to {self.key_url(key)}", self._client.upload_file,
                   str(path), self.name, key,
                   ExtraArgs={"Metadata": {SHA256_KEY: digest}})  # fmt: skip
        return digest

    def delete(self, keys: Iterable[str]) -> None:
        batch: builtins.list[str] = []  # `list` in this class is the method
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: builtins.list[str]) -> None:
        response = self._call(
            f"deleting {len(keys)} object(s) from s3://{self.name}",
            self._client.delete_objects,
            Bucket=self.name,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise ResourceFailure(
                f"the bucket refused to delete {len(errors)} of {len(keys)} object(s), first "
                f"{self.key_url(first.get('Key', '?'))}: {first.get('Code')}: "
                f"{first.get('Message')}",
                "check that the identity may s3:DeleteObject (object lock keeps locked objects "
                "until their retention ends)",
            )

    # --- errors ----------------------------------------------------------------------------

    def _call(self, doing: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ImctlError:
            raise
        except Exception as exc:
            mapped = self._mapped(exc, doing)
            if mapped is None:
                raise
            raise mapped from exc

    def _mapped(self, exc: BaseException, doing: str) -> ImctlError | None:
        """The ImctlError for a botocore failure (None when ``exc`` is not one: a bug). Built
        from error codes and botocore's own messages, which carry no credentials."""
        from botocore import exceptions as bx

        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return CredentialsError(f"no AWS credentials while {doing}: {exc}", _CREDENTIALS_HINT)
        if isinstance(exc, bx.ClientError):
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message") or ""
            said = f"{code}: {message}" if message else code
            if code == "NoSuchBucket":
                return PreconditionFailed(
                    f"the bucket {self.name!r} does not exist (while {doing})",
                    f"create it (with versioning on, docs/security.md) or fix the --url; "
                    f"the endpoint is {self._endpoint()}",
                )
            if code in _DENIED:
                return CredentialsError(
                    f"the bucket {self.name!r} refused the request while {doing}: {said}",
                    _CREDENTIALS_HINT,
                )
            return ResourceFailure(f"S3 failed while {doing}: {said}", _ENDPOINT_HINT)
        if isinstance(exc, bx.BotoCoreError):
            return ResourceFailure(f"could not reach the bucket while {doing}: {exc}",
                                   _ENDPOINT_HINT)  # fmt: skip
        return None

    def _endpoint(self) -> str:
        return str(getattr(getattr(self._client, "meta", None), "endpoint_url", "AWS S3"))


def _make_client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise PrerequisiteMissing(
            "shipping backups to a bucket needs boto3, which is not installed",
            "pip install 'imctl[backup]'",
        ) from exc
    # Bounded waits: an unreachable endpoint is reported within seconds, and the shipper's own
    # loop retries rather than a call hanging on the network.
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.session.Session().client("s3", config=config)
