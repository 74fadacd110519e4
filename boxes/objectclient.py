"""One bucket (and key prefix) of an S3-compatible object store — SeaweedFS, Ceph RGW, Garage,
Cloudflare R2, AWS S3 — as the object snapshot store (boxes/objectstore.py) uses it: every
request counted, every failure turned into a BoxError that says what to fix.

The client is obstore (Rust's `object_store` crate): bench/store.py measured it against boto3
on the wake path (docs/boxes.md has the numbers). Credentials come from its AWS chain:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, a web identity token
(AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN: Kubernetes service accounts), ECS/EKS container
credentials, then the EC2 instance role; never profile files.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from boxes.errors import StoreUnavailableError

if TYPE_CHECKING:
    from obstore.store import S3Config

# How long to wait for a connection, for a whole request (a 50 MB blob on a slow link), and
# for a request's retries in all, before a pack or a restore fails with StoreUnavailableError.
CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 300.0
RETRY_TIMEOUT_S = 15.0
# Pieces a download is handed over in.
GET_CHUNK = 1 << 20
_FORBIDDEN = re.compile(r"\b403\b")


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store's prefix
    size: int
    modified: float  # LastModified: the store's clock, seconds since the epoch


class Objects(Protocol):
    """What the object snapshot store asks of its bucket; keys are relative to its prefix.
    A missing object is FileNotFoundError; anything else that fails, StoreUnavailableError."""

    requests: Counter[str]

    def get(self, key: str, write: Callable[[bytes], object]) -> None: ...
    def read(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes | Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...
    def delete(self, keys: Sequence[str]) -> None: ...
    def copy(self, source: str, target: str) -> None: ...
    def check(self) -> None: ...


def _short(exc: BaseException) -> str:
    """obstore's message without its debug dump."""
    text = str(exc).split("\n", 1)[0]
    return text[:300]


class ObjectClient:
    def __init__(self, bucket: str, prefix: str, *, endpoint: str | None = None,
                 region: str | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S,
                 retry_timeout_s: float = RETRY_TIMEOUT_S) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.where = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint}" if endpoint else "")
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        config: S3Config = {}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        self._store = S3Store(
            bucket, prefix=self.prefix or None, config=config,
            client_options={
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
                "connect_timeout": timedelta(seconds=connect_timeout_s),
                "timeout": timedelta(seconds=request_timeout_s)},
            retry_config={
                "max_retries": 3, "retry_timeout": timedelta(seconds=retry_timeout_s),
                "backoff": {"init_backoff": timedelta(milliseconds=100),
                            "max_backoff": timedelta(seconds=2), "base": 2}})

    def _count(self, op: str) -> None:
        with self._lock:
            self.requests[op] += 1

    def _failed(self, op: str, key: str, exc: ObstoreError) -> StoreUnavailableError:
        # (a status, not any digits: "in 334.774403ms" is a timing in the same message)
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or \
                _FORBIDDEN.search(str(exc)):
            return StoreUnavailableError(
                f"the snapshot store {self.where} refused this host's credentials ({op} "
                f"{key!r}): {_short(exc)}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                "give the host a role) with read, write, list and delete on the bucket")
        if "NoSuchBucket" in str(exc):
            return StoreUnavailableError(
                f"the bucket {self.bucket!r} does not exist at "
                f"{self.endpoint or 'AWS S3'}: create it, or fix BURROW_STORE_URL")
        return StoreUnavailableError(
            f"the snapshot store {self.where} did not answer ({op} {key!r}): {_short(exc)}; "
            "check BURROW_S3_ENDPOINT and that the store runs")

    def get(self, key: str, write: Callable[[bytes], object]) -> None:
        """Stream the object to `write`, piece by piece."""
        self._count("get")
        try:
            for chunk in obstore.get(self._store, key).stream(min_chunk_size=GET_CHUNK):
                write(bytes(chunk))
        except ObstoreError as exc:
            raise self._failed("get", key, exc) from exc

    def read(self, key: str) -> bytes:
        self._count("get")
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except ObstoreError as exc:
            raise self._failed("get", key, exc) from exc

    def put(self, key: str, data: bytes | Path) -> None:
        self._count("put")
        try:
            obstore.put(self._store, key, data)
        except ObstoreError as exc:
            raise self._failed("put", key, exc) from exc

    def exists(self, key: str) -> bool:
        self._count("head")
        try:
            obstore.head(self._store, key)
        except FileNotFoundError:
            return False
        except ObstoreError as exc:
            raise self._failed("head", key, exc) from exc
        return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._count("list")  # one per page of 1,000, counted as the pages come
        try:
            for n, page in enumerate(obstore.list(self._store, prefix, chunk_size=1000)):
                if n:
                    self._count("list")
                for meta in page:
                    yield ObjectInfo(meta["path"], meta["size"],
                                     meta["last_modified"].timestamp())
        except ObstoreError as exc:
            raise self._failed("list", prefix, exc) from exc

    def delete(self, keys: Sequence[str]) -> None:
        """Delete the objects (missing ones are no error), up to 1,000 a request."""
        for start in range(0, len(keys), 1000):
            self._count("delete")
            try:
                obstore.delete(self._store, list(keys[start:start + 1000]))
            except ObstoreError as exc:
                raise self._failed("delete", keys[start], exc) from exc

    def copy(self, source: str, target: str) -> None:
        self._count("copy")
        try:
            obstore.copy(self._store, source, target)
        except ObstoreError as exc:
            raise self._failed("copy", source, exc) from exc

    def check(self) -> None:
        """List, write and delete once: StoreUnavailableError with what to fix unless this
        host can do all three in the bucket."""
        next(self.list("snapshots/"), None)
        probe = f"gc/probes/{socket.gethostname()}-{os.getpid()}"
        self.put(probe, b"")
        self.delete([probe])
