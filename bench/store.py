"""The snapshot store's wake path on S3: restoring a 1 MB and a 50 MB layer on a host with a
cold cache (every blob fetched from SeaweedFS on loopback), through each S3 client, next to
the local store's restore of the same layer in the same run; and a warm cache's.

    .venv/bin/python bench/store.py                # 15 runs of 1 MB, 5 of 50 MB
    .venv/bin/python bench/store.py --runs 30 --big-runs 10

Each restore is the whole of it (the manifest, every blob fetched, hashed and written into an
empty layer, the layer synced). "wake" is what a waking box waits for (begin_restore: files of
256 KB and more are written after it, their blobs fetched meanwhile); "whole" adds finish().
The clients: obstore (what the store uses) and boto3 (sync, in the store's threads), both
behind the store's `Objects` protocol, so the rest of the path is the same code. aioboto3 is
not measured: it pins botocore to one release (installing it would hold boto3 back to that
release) and brings aiohttp's stack, for an async API the store, which runs in threads,
would not use. Nothing here is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

# This file is bench/store.py; the repository's packages are one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boxes.blobcache import BlobCache
from boxes.objectclient import ObjectClient, ObjectInfo, Objects
from boxes.objectstore import ObjectSnapshotStore
from boxes.snapshots import LAZY_MIN, LocalSnapshotStore
from tests.seaweed import SeaweedFS

UID = os.getuid()
PREFIX = "bench"


class Boto3Objects:
    """The store's `Objects` through boto3 (the comparison; the store keeps obstore)."""

    def __init__(self, bucket: str, prefix: str, endpoint: str, connections: int) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/"
        self.requests: Counter[str] = Counter()
        self.s3 = boto3.session.Session().client(
            "s3", endpoint_url=endpoint,
            config=Config(max_pool_connections=connections, retries={"max_attempts": 3}))

    def get(self, key: str, write: Callable[[bytes], object]) -> None:
        self.requests["get"] += 1
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        except self.s3.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        for chunk in body.iter_chunks(1 << 20):
            write(chunk)

    def read(self, key: str) -> bytes:
        parts: list[bytes] = []
        self.get(key, parts.append)
        return b"".join(parts)

    def put(self, key: str, data: bytes | Path) -> None:
        self.requests["put"] += 1
        body = data.read_bytes() if isinstance(data, Path) else data
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body)

    def exists(self, key: str) -> bool:
        self.requests["head"] += 1
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.s3.exceptions.ClientError:
            return False
        return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            self.requests["list"] += 1
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"].removeprefix(self.prefix), item["Size"],
                                 item["LastModified"].timestamp())

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.requests["delete"] += 1
            self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def copy(self, source: str, target: str) -> None:
        self.requests["copy"] += 1
        self.s3.copy_object(Bucket=self.bucket, Key=self.prefix + target,
                            CopySource={"Bucket": self.bucket, "Key": self.prefix + source})

    def check(self) -> None:
        next(self.list("snapshots/"), None)


def make_layer(root: Path, total: int, big: int) -> Path:
    """A box's layer of about `total` bytes: one file of `big` bytes (if any) and files of 4 to
    32 KB, half random and half text (as a box's files are: some compress, some do not)."""
    (root / "workspace/.burrow").mkdir(parents=True)
    if big:
        (root / "workspace/data.bin").write_bytes(os.urandom(big))
    left, n = total - big, 0
    while left > 0:
        size = min(left, 4096 << (n % 4))
        body = os.urandom(size // 2) + (b"line of text %d\n" % n) * (size // 32)
        (root / "workspace" / f"f{n:04}.txt").write_bytes(body[:size])
        left -= size
        n += 1
    return root


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Table:
    def __init__(self) -> None:
        print(f"\n{'layer':<7}{'engine':<34}{'n':>4}{'median ms':>11}{'p90 ms':>9}"
              f"{'x local':>9}")
        print("-" * 74)

    def row(self, layer: str, name: str, samples: list[float], local_ms: float) -> None:
        med = statistics.median(samples)
        p90 = sorted(samples)[max(0, int(len(samples) * 0.9) - 1)]
        print(f"{layer:<7}{name:<34}{len(samples):>4}{med:>11.1f}{p90:>9.1f}"
              f"{med / local_ms:>9.2f}")


def lazy(path: str, size: int) -> bool:
    return size >= LAZY_MIN


Engine = Callable[[Path], ObjectSnapshotStore | LocalSnapshotStore]


def restore_once(make: Engine, sid: str, work: Path) -> tuple[float, float]:
    """(wake ms, whole ms) of one restore into a fresh layer by a fresh store."""
    cache, layer = work / "cache", work / "layer"
    layer.mkdir()
    store = make(cache)
    start = time.perf_counter()
    pending = store.begin_restore(sid, layer, UID, lazy)
    wake = (time.perf_counter() - start) * 1000
    pending.finish()
    whole = (time.perf_counter() - start) * 1000
    if isinstance(store, ObjectSnapshotStore) and store.cache.root == cache:
        store.close()
    shutil.rmtree(layer)
    shutil.rmtree(cache, ignore_errors=True)
    return wake, whole


def measure(table: Table, label: str, work: Path, layer: Path, runs: int,
            clients: dict[str, Callable[[], Objects]], parallel: int) -> None:
    """Restore `layer` `runs` times with each engine, a round at a time."""
    local = LocalSnapshotStore(work / "local")
    local_sid = local.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                           index=None).record.id
    packer = ObjectSnapshotStore(clients["obstore"](), BlobCache(work / "packer", 1 << 34))
    sid = packer.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                      index=None).record.id

    def cold(client: Callable[[], Objects]) -> Engine:
        return lambda cache: ObjectSnapshotStore(client(), BlobCache(cache, 1 << 34),
                                                 fetch_parallel=parallel)

    engines: dict[str, tuple[Engine, str]] = {"local store": (lambda _: local, local_sid)}
    for name, client in clients.items():
        engines[f"s3 cold, {name}"] = (cold(client), sid)
    engines["s3 warm cache"] = (lambda _: packer, sid)
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in engines}
    for _ in range(runs):  # each engine once a round: the machine's drift hits them all
        for name, (make, snapshot) in engines.items():
            wake, whole = restore_once(make, snapshot, work)
            samples[name][0].append(wake)
            samples[name][1].append(whole)
    base = statistics.median(samples["local store"][1])
    for name, (wake, whole) in samples.items():
        table.row(label, f"{name}: wake", wake, base)
        table.row(label, f"{name}: whole" + (" (baseline)" if name == "local store" else ""),
                  whole, base)
    packer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="restores of the 1 MB layer")
    parser.add_argument("--big-runs", type=int, default=5, help="restores of the 50 MB layer")
    parser.add_argument("--parallel", type=int, default=8, help="blobs fetched at once")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="burrow-bench-store-"))
    seaweed = SeaweedFS(root / "seaweed").start()
    try:
        os.environ.update(seaweed.env())
        bucket = seaweed.make_bucket("bench", warm=True)
        clients: dict[str, Callable[[], Objects]] = {
            "obstore": lambda: ObjectClient(bucket, PREFIX, endpoint=seaweed.endpoint),
            "boto3": lambda: Boto3Objects(bucket, PREFIX, seaweed.endpoint, 2 * args.parallel),
        }
        table = Table()
        # the 1 MB layer's small files, and for the 50 MB one a 49 MB file beside them
        for label, total, big, runs in (("1 MB", 1 << 20, 0, args.runs),
                                        ("50 MB", 50 << 20, 49 << 20, args.big_runs)):
            work = root / label.replace(" ", "")
            measure(table, label, work, make_layer(work / "src", total, big), runs, clients,
                    args.parallel)
        for name, make in clients.items():
            start = time.perf_counter()
            make()
            print(f"{name}: a client made in {(time.perf_counter() - start) * 1000:.1f} ms")
    finally:
        seaweed.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
