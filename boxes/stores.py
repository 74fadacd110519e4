"""Which snapshot store a process uses, from BURROW_STORE_URL: `file:///path` (this machine's
disk; unset: the data dir's store/) or `s3://bucket/prefix` on any S3-compatible store, with
BURROW_S3_ENDPOINT (unset: AWS S3) and this host's cache under the data dir."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from boxes.blobcache import BlobCache
from boxes.config import RuntimeConfig
from boxes.objectclient import ObjectClient
from boxes.objectstore import ObjectSnapshotStore
from boxes.packfiles import SMALL_MAX
from boxes.snapshots import LocalSnapshotStore, SnapshotStore

# S3's bucket naming rules (R2, Ceph, Garage and SeaweedFS accept the same names).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class StoreURL:
    path: Path | None = None  # file://
    bucket: str | None = None  # s3://
    prefix: str = ""


def parse_store_url(url: str) -> StoreURL | None:
    """The store a BURROW_STORE_URL names (None: unset, the data dir's); ValueError that says
    what to write instead."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"BURROW_STORE_URL {url!r}: a file store is file:///absolute/path")
        return StoreURL(path=Path(parts.path))
    if parts.scheme == "s3":
        if not _BUCKET_RE.match(parts.netloc):
            raise ValueError(f"BURROW_STORE_URL {url!r}: s3://bucket/prefix needs a bucket name "
                             "of 3 to 63 lowercase letters, digits, dots and hyphens")
        if parts.query or parts.fragment:
            raise ValueError(f"BURROW_STORE_URL {url!r}: s3://bucket/prefix takes no ?query "
                             "or #fragment (the endpoint is BURROW_S3_ENDPOINT)")
        prefix = parts.path.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"BURROW_STORE_URL {url!r}: the prefix has an empty, '.' or "
                             "'..' part")
        return StoreURL(bucket=parts.netloc, prefix=prefix)
    raise ValueError(f"BURROW_STORE_URL {url!r}: use file:///path (this machine's disk) or "
                     "s3://bucket/prefix (an S3-compatible store)")


def check_endpoint(endpoint: str | None) -> str | None:
    """BURROW_S3_ENDPOINT, checked: http(s)://host[:port]."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"BURROW_S3_ENDPOINT {endpoint!r}: use http(s)://host[:port] of the "
                         "S3 API (for example http://seaweedfs:8333)")
    return endpoint.rstrip("/")


def open_store(config: RuntimeConfig) -> SnapshotStore:
    """The store `config` names; nothing is asked of it yet (its `check` does that)."""
    url = parse_store_url(config.store_url)
    if url is None:
        return LocalSnapshotStore(config.store_dir)
    if url.path is not None:
        return LocalSnapshotStore(url.path)
    assert url.bucket is not None
    client = ObjectClient(url.bucket, url.prefix, endpoint=check_endpoint(config.s3_endpoint),
                          region=config.s3_region)
    # format 1: no file is small enough for a pack object
    return ObjectSnapshotStore(client, BlobCache(config.store_cache_dir, config.store_cache_bytes),
                               fetch_parallel=config.store_fetch_parallel,
                               small_max=SMALL_MAX if config.store_format >= 2 else 0)
