"""The snapshot store on S3 (SeaweedFS on loopback) against the local store, in one run:

1. a GET by object size (what a request costs against what its bytes cost: where small files
   are better packed together than fetched one by one);
2. restoring a 1 MB layer (69 files) and a 50 MB one (the same and a 49 MB file) on a host
   with a cold cache and on one with a warm cache, with pack objects (the store's format) and
   with every file a blob of its own (the format before them), next to the local store;
3. freezing: the 1 MB layer from scratch, again unchanged, again after a restart of the host,
   with one small file changed, with the same file changed again, and with another small
   file deleted, in both formats and in the local store.

    .venv/bin/python bench/store.py                # 15 runs of 1 MB, 5 of 50 MB, 10 freezes
    .venv/bin/python bench/store.py --runs 30 --big-runs 10 --boto3

Each restore is the whole of it (the record and manifest, every object fetched, checked and
written into an empty layer, the layer synced). "wake" is what a waking box waits for
(begin_restore: files of 256 KB and more are written after it, their blobs fetched
meanwhile); "whole" adds finish(). The ratio is against the local store's whole restore (or
freeze) of the same layer. The "blobs" freezes after a restart are as that format's code made
them: its memory of what the bucket holds was lost with the process. A freeze that changed
or deleted a small file writes, with pack objects, the rest of the pack object that held its
old content too (no snapshot names an object holding content the box no longer has:
boxes/objectpack.py), apart from the new content; the same file changed again then rewrites
only its own small object. `--boto3` adds
a cold restore through boto3 (sync, in the store's threads) behind the same `Objects`
protocol: the client comparison docs/boxes.md quotes. aioboto3 is not measured: it pins
botocore to one release (installing it would hold boto3 back to that release) and brings
aiohttp's stack, for an async API the store, which runs in threads, would not use. Nothing
here is asserted: the output is the result.
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
from boxes.packfiles import SMALL_MAX
from boxes.seen import Seen
from boxes.snapshots import LAZY_MIN, LayerIndex, LocalSnapshotStore
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


class Table:
    def __init__(self, title: str, first: str) -> None:
        print(f"\n{title}\n{first:<24}{'engine':<32}{'n':>4}{'median ms':>11}{'p90 ms':>9}"
              f"{'x local':>9}{'requests':>18}")
        print("-" * 107)

    def row(self, label: str, name: str, samples: list[float], base_ms: float,
            requests: Counter[str] | None = None) -> None:
        med = statistics.median(samples)
        p90 = sorted(samples)[max(0, int(len(samples) * 0.9) - 1)]
        asked = " ".join(f"{k}={v}" for k, v in sorted((requests or Counter()).items()))
        print(f"{label:<24}{name:<32}{len(samples):>4}{med:>11.1f}{p90:>9.1f}"
              f"{med / base_ms:>9.2f}  {asked}")


def lazy(path: str, size: int) -> bool:
    return size >= LAZY_MIN


Store = ObjectSnapshotStore | LocalSnapshotStore
Engine = Callable[[Path], Store]


def requests_of(store: Store) -> Counter[str]:
    return Counter(store.objects.requests) if isinstance(store, ObjectSnapshotStore) else Counter()


def restore_once(make: Engine, sid: str, work: Path) -> tuple[float, float, Counter[str]]:
    """(wake ms, whole ms, requests) of one restore into a fresh layer."""
    cache, layer = work / "cache", work / "layer"
    layer.mkdir()
    store = make(cache)
    before = requests_of(store)
    start = time.perf_counter()
    pending = store.begin_restore(sid, layer, UID, lazy)
    wake = (time.perf_counter() - start) * 1000
    pending.finish()
    whole = (time.perf_counter() - start) * 1000
    asked = requests_of(store) - before
    if isinstance(store, ObjectSnapshotStore) and store.cache.root == cache:
        store.close()
    shutil.rmtree(layer)
    shutil.rmtree(cache, ignore_errors=True)
    return wake, whole, asked


Client = Callable[[str], Objects]  # a client of the bucket under this prefix


def object_store(client: Client, cache: Path, parallel: int,
                 small_max: int = SMALL_MAX) -> ObjectSnapshotStore:
    """A host's store; each format under its own prefix (one finding the other's blobs there
    would not upload, nor cache, them)."""
    prefix = f"{PREFIX}-{'packs' if small_max else 'blobs'}"
    return ObjectSnapshotStore(client(prefix), BlobCache(cache, 1 << 34),
                               fetch_parallel=parallel, small_max=small_max)


def measure_restores(label: str, work: Path, layer: Path, runs: int,
                     clients: dict[str, Client], parallel: int) -> None:
    """Restore `layer` `runs` times with each engine, a round at a time."""
    local = LocalSnapshotStore(work / "local")
    local_sid = local.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                           index=None).record.id
    engines: dict[str, tuple[Engine, str]] = {"local store": (lambda _: local, local_sid)}
    packers = []
    for fmt, small_max in (("packs", SMALL_MAX), ("blobs", 0)):
        packer = object_store(clients["obstore"], work / f"packer-{fmt}", parallel, small_max)
        sid = packer.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                          index=None).record.id
        packers.append(packer)
        for name, client in clients.items():
            if fmt == "packs" and name != "obstore":
                continue

            def cold(cache: Path, client: Client = client, small_max: int = small_max) -> Store:
                return object_store(client, cache, parallel, small_max)

            suffix = "" if name == "obstore" else f", {name}"
            engines[f"s3 cold, {fmt}{suffix}"] = (cold, sid)
        engines[f"s3 warm, {fmt}"] = (lambda _, p=packer: p, sid)
    samples: dict[str, tuple[list[float], list[float], Counter[str]]] = {
        name: ([], [], Counter()) for name in engines}
    for _ in range(runs):  # each engine once a round: the machine's drift hits them all
        for name, (make, snapshot) in engines.items():
            wake, whole, asked = restore_once(make, snapshot, work)
            samples[name][0].append(wake)
            samples[name][1].append(whole)
            samples[name][2].update(asked)
    base = statistics.median(samples["local store"][1])
    table = Table(f"restore, {label}", "layer")
    for name, (wake, whole, asked) in samples.items():
        per_run = Counter({k: v // runs for k, v in asked.items()})
        table.row(label, f"{name}: wake", wake, base, per_run)
        table.row(label, f"{name}: whole" + (" (baseline)" if name == "local store" else ""),
                  whole, base)
    for packer in packers:
        packer.close()


def measure_freezes(work: Path, runs: int, client: Client, parallel: int) -> None:
    """Freeze the 1 MB layer from scratch, unchanged, unchanged after a restart, with one
    small file changed, with that file changed again and with another one deleted, with each
    engine; new content each run (nothing is in the bucket)."""
    cases = ["from scratch", "unchanged", "unchanged, restarted", "one small file changed",
             "the same file again", "another one deleted"]
    engines = ["local store", "s3, packs", "s3, blobs"]
    samples: dict[tuple[str, str], list[float]] = {(c, e): [] for c in cases for e in engines}
    asked: dict[tuple[str, str], Counter[str]] = {
        (c, e): Counter() for c in cases for e in engines}
    for run in range(runs):
        layer = make_layer(work / f"layer{run}", 1 << 20, 0)
        for engine in engines:
            place = work / f"{engine}-{run}".replace(" ", "").replace(",", "")
            times = _freeze_cases(engine, place, layer, client, parallel)
            for case, (ms, requests) in times.items():
                samples[(case, engine)].append(ms)
                asked[(case, engine)].update(requests)
        shutil.rmtree(layer)
    table = Table("freeze, 1 MB layer (69 files)", "case")
    for case in cases:
        base = statistics.median(samples[(case, "local store")])
        for engine in engines:
            per_run = Counter({k: v // runs for k, v in asked[(case, engine)].items()})
            table.row(case, engine + (" (baseline)" if engine == "local store" else ""),
                      samples[(case, engine)], base, per_run)


def _freeze_cases(engine: str, place: Path, source: Path, client: Client,
                  parallel: int) -> dict[str, tuple[float, Counter[str]]]:
    """One run of every case with one engine, on its own copy of the layer."""
    layer = place / "layer"
    shutil.copytree(source, layer, symlinks=True)

    def store() -> Store:
        if engine == "local store":
            return LocalSnapshotStore(place / "store")
        small_max = 0 if "blobs" in engine else SMALL_MAX
        made = object_store(client, place / "cache", parallel, small_max)
        if "blobs" in engine:  # that format's code kept its memory of the bucket in memory only
            made.seen = Seen(made.seen.trust_s)
        return made

    out: dict[str, tuple[float, Counter[str]]] = {}

    def timed(case: str, on: Store, index: LayerIndex | None) -> LayerIndex:
        before = requests_of(on)
        start = time.perf_counter()
        result = on.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=index)
        asked = requests_of(on) - before
        asked["kB_written"] = result.record.new_bytes // 1000  # objects and manifest, zstd
        out[case] = ((time.perf_counter() - start) * 1000, asked)
        return result.index

    first = store()
    index = timed("from scratch", first, None)
    index = timed("unchanged", first, index)
    if isinstance(first, ObjectSnapshotStore):
        first.close()
    again = store()  # the host restarted: its cache and log are there
    index = timed("unchanged, restarted", again, index)
    (layer / "workspace/f0003.txt").write_bytes(os.urandom(16384))
    index = timed("one small file changed", again, index)
    (layer / "workspace/f0003.txt").write_bytes(os.urandom(16384))
    index = timed("the same file again", again, index)
    (layer / "workspace/f0010.txt").unlink()
    timed("another one deleted", again, index)
    if isinstance(again, ObjectSnapshotStore):
        again.close()
    shutil.rmtree(place)
    return out


def measure_gets(client: Objects) -> None:
    """A GET's time by object size: the request's own cost against its bytes'."""
    sizes = [1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20]
    for size in sizes:
        client.put(f"get-by-size/{size}", os.urandom(size))
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(20):
        for size in sizes:
            start = time.perf_counter()
            client.read(f"get-by-size/{size}")
            samples[size].append((time.perf_counter() - start) * 1000)
    base = statistics.median(samples[sizes[0]])
    print(f"\none GET by object size (obstore, SeaweedFS on loopback)\n{'size':>10}"
          f"{'median ms':>11}{'x 1 KiB':>9}")
    for size in sizes:
        med = statistics.median(samples[size])
        print(f"{size >> 10:>7} KiB{med:>11.2f}{med / base:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="restores of the 1 MB layer")
    parser.add_argument("--big-runs", type=int, default=5, help="restores of the 50 MB layer")
    parser.add_argument("--freezes", type=int, default=10, help="runs of each freeze")
    parser.add_argument("--parallel", type=int, default=8, help="objects fetched at once")
    parser.add_argument("--boto3", action="store_true", help="add cold restores through boto3")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="burrow-bench-store-"))
    seaweed = SeaweedFS(root / "seaweed").start()
    try:
        os.environ.update(seaweed.env())
        bucket = seaweed.make_bucket("bench", warm=True)
        clients: dict[str, Client] = {
            "obstore": lambda prefix: ObjectClient(bucket, prefix, endpoint=seaweed.endpoint)}
        if args.boto3:
            clients["boto3"] = lambda prefix: Boto3Objects(bucket, prefix, seaweed.endpoint,
                                                           2 * args.parallel)
        measure_gets(clients["obstore"](PREFIX))
        # the 1 MB layer's small files, and for the 50 MB one a 49 MB file beside them
        for label, total, big, runs in (("1 MB", 1 << 20, 0, args.runs),
                                        ("50 MB", 50 << 20, 49 << 20, args.big_runs)):
            work = root / label.replace(" ", "")
            measure_restores(label, work, make_layer(work / "src", total, big), runs, clients,
                             args.parallel)
        measure_freezes(root / "freeze", args.freezes, clients["obstore"], args.parallel)
        for name, make in clients.items():
            start = time.perf_counter()
            make(PREFIX)
            print(f"{name}: a client made in {(time.perf_counter() - start) * 1000:.1f} ms")
    finally:
        seaweed.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
