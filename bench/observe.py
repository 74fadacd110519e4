"""Observation benchmark, each result against a baseline from the same run:

- what observing costs a request: agent-route latency with observation on vs off, over HTTP;
- how fast a backlog drains: 5,000 recorded pairs delivered to the tenant's agent and the
  insights it proposes contributed (scrubbed, embedded, merged) by the worker, against two
  baselines: embedding alone of exactly the texts the drain embedded, in the same batches (the
  agent proposes at most 50 insights per 200 pairs, so the drain embeds fewer texts than it
  delivers pairs: this shows what everything but embedding costs), and embedding every text of
  the backlog, one per pair (what a pipeline that embedded each observation would do).

    .venv/bin/python bench/observe.py [--pairs 5000] [--requests 2000]

Needs root. Nothing is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from bench.httpload import Conn, free_port, pct
from core.embedded_redis import EmbeddedRedis
from core.observations import Observations
from core.settings import Settings
from gateway.app import create_app
from workers.worker import close_worker, make_worker

OPERATOR_KEY = "bench-operator-key-" + "x" * 24
UID_BASE = 4_700_000
TOPICS = ["Postgres", "Redis", "Kafka", "Nginx", "Python", "Rust", "Go", "Kubernetes",
          "Terraform", "Docker", "SQLite", "Node", "Java", "Linux", "ZFS", "Qdrant"]
VERBS = ["restarts cleanly after", "slows down under", "needs more memory during",
         "logs a warning on", "recovers quickly from", "keeps working through"]
EVENTS = ["a config reload", "a network partition", "a disk full event", "a version upgrade",
          "a certificate rotation", "a burst of writes", "a cold start", "a failover"]


def statement(i: int) -> str:
    t, v, e = TOPICS[i % len(TOPICS)], VERBS[(i // 16) % len(VERBS)], EVENTS[(i // 96) % 8]
    return f"{t} {v} {e} in setup {i // 768}."


async def request_cost(app: object, port: int, key: str, requests: int) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = b'{"question": "Kafka slows down under a burst of writes."}'
    results = {}
    for observing in (False, True, False, True):  # interleaved: drift hits both alike
        app.state.core.pipeline.enabled = observing  # type: ignore[attr-defined]
        conn = await Conn.open(("127.0.0.1", port))
        samples = []
        for _ in range(requests // 2):
            start = time.perf_counter()
            status, _ = await conn.request("POST", "/v1/tenants/bench/agent/health", headers,
                                           body)
            samples.append((time.perf_counter() - start) * 1000)
            assert status == 200
        conn.close()
        results.setdefault(observing, []).extend(samples)
        await app.state.core.pipeline.drain()  # type: ignore[attr-defined]
    off, on = results[False], results[True]
    print(f"\n{'agent route (POST, small body)':<34}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'  observation off':<34}{len(off):>6}{statistics.median(off):>9.3f}"
          f"{pct(off, 0.99):>9.3f}")
    print(f"{'  observation on':<34}{len(on):>6}{statistics.median(on):>9.3f}"
          f"{pct(on, 0.99):>9.3f}")
    print(f"  observation adds {statistics.median(on) - statistics.median(off):+.3f} ms at p50")


async def drain(app: object, redis_url: str, home: str, pairs: int) -> None:
    state = app.state  # type: ignore[attr-defined]
    observations: Observations = state.observations
    texts = [statement(i) for i in range(pairs)]
    for text in texts:
        await observations.record("bench", home, Observations.pair(
            "POST", "/v1/tenants/bench/agent/ask", "", f'{{"question": "{text}"}}'.encode(),
            200, b"{}", 1.0))
    backlog = observations.backlog_key("bench")
    print(f"\nbacklog: {await state.redis.llen(backlog)} pairs, each a distinct statement")
    embedder = state.kb.embedder
    await asyncio.to_thread(embedder.embed, ["warm up"])

    # what the pipeline embeds and how long its merges take, to compare like with like
    batches: list[list[str]] = []
    merging = [0.0]
    plain_embed, plain_merge = embedder.embed, state.kb._merge_all

    # embed() calls queue when several contributions run: time them one at a time (the
    # embedder serves one at a time anyway), so `busy` is the time spent embedding
    busy = [0.0]
    one_at_a_time = threading.Lock()

    def recording_embed(batch: list[str]) -> list[list[float]]:
        batches.append(batch)
        with one_at_a_time:
            start = time.perf_counter()
            try:
                return plain_embed(batch)
            finally:
                busy[0] += time.perf_counter() - start

    def timed_merge(*args: object) -> list[str]:
        start = time.perf_counter()
        try:
            return plain_merge(*args)  # type: ignore[no-any-return]
        finally:
            merging[0] += time.perf_counter() - start

    embedder.embed = recording_embed  # type: ignore[method-assign]
    state.kb._merge_all = timed_merge
    before = await state.kb.size()
    worker = make_worker(redis_url, manager=state.manager, observations=observations,
                         kb=state.kb, policies=state.policies, sweep_interval_s=5.0)
    start = time.perf_counter()
    task = asyncio.create_task(worker.async_run())
    await state.observer.enqueue("bench", home)
    while True:  # until the backlog and every job it caused are done (cron jobs never are)
        await asyncio.sleep(0.01)
        queued = [j for j in await state.queue.zrange(state.keys.queue(), 0, -1)
                  if not j.startswith(b"cron:")]
        running = [j for j in worker.tasks if not j.startswith("cron:")]
        if not await state.redis.llen(backlog) and not queued and not running:
            break
    elapsed = time.perf_counter() - start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await close_worker(worker)
    embedder.embed = plain_embed  # type: ignore[method-assign]
    del state.kb._merge_all
    added = await state.kb.size() - before

    # the baseline: embedding alone of exactly those texts, in the same batches
    embedded = sum(len(b) for b in batches)
    start = time.perf_counter()
    for batch in batches:
        await asyncio.to_thread(embedder.embed, batch)
    embed_only = time.perf_counter() - start
    print(f"{'embedding only (the same texts, same batches)':<48}{embedded / embed_only:>7.0f} "
          f"texts/s  ({embedded} texts, {embed_only:.2f} s)")
    print(f"{'backlog drained end to end':<48}{embedded / elapsed:>7.0f} texts/s  "
          f"({elapsed:.2f} s; {pairs / elapsed:.0f} pairs/s)")
    print(f"  of which merging into the store (under the lock) {merging[0]:.2f} s; "
          f"{added} insights stored")
    print(f"  the embedder was busy {busy[0]:.2f} s of it (alone, those batches took "
          f"{embed_only:.2f} s)")
    print(f"  drain throughput / embedding-only throughput: {embed_only / elapsed:.2f}")

    # the baseline: embedding every text of the backlog, one per pair
    start = time.perf_counter()
    await asyncio.to_thread(embedder.embed, texts)
    every = time.perf_counter() - start
    print(f"{'embedding only, every backlog text':<48}{pairs / every:>7.0f} texts/s  "
          f"({pairs} texts, {every:.2f} s)")
    print(f"  drain (pairs/s) / embedding every text (texts/s): {every / elapsed:.2f}")


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="burrow-bench-obs-"))
    redis_server = EmbeddedRedis(work / "redis", appendonly=False)
    redis_server.start()
    settings = Settings(data_dir=work / "data", redis_url=redis_server.url,
                        operator_key=OPERATOR_KEY, uid_base=UID_BASE, run_worker=False)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # it failed to start: say why
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            r = await c.post("/v1/tenants", json={"id": "bench"},
                             headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            key, home = r.json()["api_key"], r.json()["home_box_id"]
        # the drain first: its backlog is then exactly the pairs it records
        await drain(app, redis_server.url, home, args.pairs)
        await request_cost(app, port, key, args.requests)
    finally:
        server.should_exit = True
        await serving
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/observe.py needs root (boxes get their own uids and disk images)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
