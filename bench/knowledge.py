"""Knowledge-store benchmark: Qdrant Edge (the embedded default) against qdrant-client's local
mode on disk (the baseline), at 10k and 100k insights: random unit 384-d vectors with an integer
`support` payload (no text is embedded). Every Edge figure is printed with its ratio to the
client's, measured in the same run.

    .venv/bin/python bench/knowledge.py                       # both sizes, ~8 minutes on 2 cores
    .venv/bin/python bench/knowledge.py --sizes 10000 --queries 500

qdrant-client's local mode scans every point in Python per query (and a filtered query decodes
every payload), so its search loops stop after a time budget (`--client-budget`, at least 20
queries); the number of queries measured is printed.
Nothing here is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# This file is bench/knowledge.py: without this, `import knowledge` would import the script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from knowledge.vectors import EdgeVectorStore, QdrantClientStore, VectorStore

DIM = 384
BATCH = 1000
LIMIT = 10
MIN_SUPPORT = 3  # support is uniform in 1..5, so the filter keeps ~60% of the points
PACE_S = 0.1  # between searches while optimize runs: light traffic, not a load test

Point = tuple[str, list[float], dict[str, Any]]


@dataclass
class Result:
    upsert_s: float = 0.0
    optimize_s: float | None = None
    plain_ms: list[float] = field(default_factory=list)
    filtered_ms: list[float] = field(default_factory=list)
    during_optimize_ms: list[float] = field(default_factory=list)
    reopen_s: float = 0.0


@dataclass
class Engine:
    name: str
    open: Callable[[Path], VectorStore]
    budget_s: float | None  # per search loop; None = run every query


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.normal(size=(n, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def make_points(n: int, rng: np.random.Generator) -> list[list[Point]]:
    batches = []
    for start in range(0, n, BATCH):
        vectors = unit_rows(rng, min(BATCH, n - start)).tolist()
        supports = rng.integers(1, 6, size=len(vectors)).tolist()
        batches.append(
            [(str(uuid.uuid4()), v, {"support": s}) for v, s in zip(vectors, supports, strict=True)]
        )
    return batches


def timed_searches(
    store: VectorStore,
    queries: list[list[float]],
    min_support: int | None,
    budget_s: float | None,
) -> list[float]:
    """Latencies in ms; stops at the end of `queries` or after `budget_s` (at least 20 queries)."""
    samples: list[float] = []
    started = time.perf_counter()
    for query in queries:
        t = time.perf_counter()
        store.search(query, LIMIT, min_support=min_support)
        samples.append((time.perf_counter() - t) * 1000)
        if budget_s is not None and len(samples) >= 20 and t - started > budget_s:
            break
    return samples


def search_while_optimizing(store: VectorStore, queries: list[list[float]]) -> list[float]:
    """Run `optimize` in another thread while this one searches at ~10 queries/s, like light
    request traffic: shows whether the index build leaves the rest of the process free (the
    Edge store builds in a child process) without the searches slowing the build much."""
    worker = threading.Thread(target=store.optimize)
    worker.start()
    samples: list[float] = []
    while worker.is_alive():
        t = time.perf_counter()
        store.search(queries[len(samples) % len(queries)], LIMIT)
        samples.append((time.perf_counter() - t) * 1000)
        time.sleep(PACE_S)
    worker.join()
    return samples


def run(
    engine: Engine, workdir: Path, batches: list[list[Point]], queries: list[list[float]]
) -> Result:
    result = Result()
    store = engine.open(workdir)
    t = time.perf_counter()
    for batch in batches:
        store.upsert(batch)
    result.upsert_s = time.perf_counter() - t
    if isinstance(store, EdgeVectorStore):
        t = time.perf_counter()
        result.during_optimize_ms = search_while_optimizing(store, queries)
        result.optimize_s = time.perf_counter() - t
    result.plain_ms = timed_searches(store, queries, None, engine.budget_s)
    result.filtered_ms = timed_searches(store, queries, MIN_SUPPORT, engine.budget_s)
    store.close()
    t = time.perf_counter()
    store = engine.open(workdir)
    store.search(queries[0], LIMIT)
    result.reopen_s = time.perf_counter() - t
    store.close()
    return result


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


def ratio(edge: float | None, client: float | None) -> str:
    if edge is None or client is None or client == 0:
        return "-"
    return f"{edge / client:.3f}"


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(size: int, edge: Result, client: Result, client_budget: float) -> None:
    print(f"\n{size:,} insights, {DIM}-d, top {LIMIT}")
    print(f"{'measure':<40}{'Qdrant Edge':>14}{'client local':>14}{'Edge/client':>13}")
    print("-" * 81)
    rows: list[tuple[str, float | None, float | None, int]] = [
        ("upsert, batches of 1000 (s)", edge.upsert_s, client.upsert_s, 2),
        ("optimize, 10 searches/s meanwhile (s)", edge.optimize_s, None, 2),
        ("search p50 (ms)", percentile(edge.plain_ms, 50), percentile(client.plain_ms, 50), 3),
        ("search p99 (ms)", percentile(edge.plain_ms, 99), percentile(client.plain_ms, 99), 3),
        (
            f"search support>={MIN_SUPPORT} p50 (ms)",
            percentile(edge.filtered_ms, 50),
            percentile(client.filtered_ms, 50),
            3,
        ),
        (
            f"search support>={MIN_SUPPORT} p99 (ms)",
            percentile(edge.filtered_ms, 99),
            percentile(client.filtered_ms, 99),
            3,
        ),
        ("reopen + one search (s)", edge.reopen_s, client.reopen_s, 3),
    ]
    for name, e, c, digits in rows:
        print(f"{name:<40}{fmt(e, digits):>14}{fmt(c, digits):>14}{ratio(e, c):>13}")
    counts = [len(edge.plain_ms), len(client.plain_ms), len(edge.filtered_ms)]
    print(f"{'queries measured (plain)':<40}{counts[0]:>14}{counts[1]:>14}")
    print(f"{'queries measured (filtered)':<40}{counts[2]:>14}{len(client.filtered_ms):>14}")
    during = edge.during_optimize_ms
    print(
        f"  Edge served {len(during)} searches while optimize ran in another thread"
        f" (p50 {percentile(during, 50):.2f} ms, max {max(during, default=0):.1f} ms);"
        " the client has no optimize step."
    )
    if len(client.filtered_ms) < len(edge.filtered_ms):
        print(
            f"  client searches capped by a {client_budget:.0f} s budget per loop"
            " (full scan in Python per query)."
        )


def main(args: argparse.Namespace) -> None:
    # qdrant-client warns on every open and upsert past 20k points in local mode; this benchmark
    # measures exactly that on purpose.
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    rng = np.random.default_rng(2024)
    queries = unit_rows(rng, args.queries).tolist()
    total = time.perf_counter()
    for size in args.sizes:
        batches = make_points(size, rng)
        engines = [
            Engine("edge", lambda p: EdgeVectorStore(p / "shard", DIM), None),
            Engine(
                "client", lambda p: QdrantClientStore(DIM, path=p / "qdrant"), args.client_budget
            ),
        ]
        results = []
        for engine in engines:
            workdir = Path(tempfile.mkdtemp(prefix=f"burrow-bench-{engine.name}-"))
            try:
                print(f"... {size:,} points, {engine.name}", flush=True)
                results.append(run(engine, workdir, batches, queries))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        report(size, results[0], results[1], args.client_budget)
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300, help="queries per search loop")
    parser.add_argument(
        "--client-budget",
        type=float,
        default=20.0,
        help="seconds per qdrant-client search loop (at least 20 queries run)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
