"""Gateway benchmark against a real `burrow serve` over HTTP, with baselines from the same run:

- agent route vs calling the box's service socket directly (p50, p99, requests/s at
  concurrency 32): the difference is what the gateway adds;
- exec `true` through the gateway vs through the box daemon's socket;
- wake through the gateway (frozen tenant -> first agent response) of a realistic home box:
  its agent holds HOME_PAIRS observed pairs (sent as a product would, through
  POST /v1/tenants/{id}/observations) and 1 MB of files; then from archived with 1 MB and with
  50 MB (incompressible, not duplicated: 49 more files of 1 MB, as bench/boxes.py's). Each
  next to the floor, python3 -I -S -c pass in a bare sandbox started like a box, and a
  runtime-level wake (BoxManager.wake of a box with 1 MB) in this process, all in the same
  run; and the served wake phase by phase (registry, layer, daemon, catch-up, the agent's
  first answer), as the server's own /metrics report them;
- preview URLs: a page of `python3 -m http.server` in a box through its preview URL vs the
  same port reached through the box daemon's socket directly (its `connect` op: one request
  per connection, as the listener sends them); and frozen -> the first preview page, the
  server started again by an exec sent with the request (what a process restarted on wake
  does), beside the frozen agent wake of the same run and the server's own start (exec to
  port answering, in a running box).

    .venv/bin/python bench/gateway.py [--requests 3000] [--concurrency 32] [--runs 20]
    .venv/bin/python bench/gateway.py --only previews [--runs 20]   # the preview rows, and
                                                      # the frozen agent wake to compare

Needs root. Nothing is asserted: the output is the result. The load generator is a minimal
keep-alive HTTP/1.1 client, so that it costs the 2 cores as little as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis.asyncio import Redis

from bench.httpload import Conn, free_port, load, pct
from bench.serving import phases, run_as_root, served, settle
from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
from boxes.client import DaemonClient
from core.embedded_redis import EmbeddedRedis
from core.keys import Keys

OPERATOR_KEY = "bench-operator-key-" + "x" * 24
UID_BASE = "4500000"


def row(name: str, samples: list[float], base: list[float] | None = None,
        rps: float | None = None) -> None:
    med = statistics.median(samples)
    extra = f"{'':>9}" if base is None else f"{med - statistics.median(base):>+9.2f}"
    rate = f"{rps:>9.0f}" if rps else f"{'':>9}"
    print(f"{name:<46}{len(samples):>6}{med:>9.2f}{pct(samples, 0.99):>9.2f}{extra}{rate}")


async def timed(coro: object) -> float:
    start = time.perf_counter()
    await coro  # type: ignore[misc]
    return (time.perf_counter() - start) * 1000


async def runtime_baselines(runs: int) -> tuple[list[float], list[float]]:
    """(the in-sandbox python floor, BoxManager.wake of a box with a service and 1 MB of
    state), in this process."""
    from bench.boxes import floors

    work = Path(tempfile.mkdtemp(prefix="burrow-bench-rt-"))
    server = EmbeddedRedis(work / "redis", appendonly=False)
    server.start()
    redis = Redis.from_url(server.url)
    config = RuntimeConfig(data_dir=work / "data", uid_base=int(UID_BASE) + 100_000)
    manager = await BoxManager.open(config, redis, Keys())
    try:
        _, python_floor = await floors(manager, runs)
        service = ["/usr/bin/python3", "-c", "import os, socket, time\n"
                   "s = socket.socket(fileno=3)\nwhile True: s.accept()[0].close()"]
        box = await manager.create(BoxSpec(service=service))
        await manager.exec(box.id, ExecRequest(command="head -c 1000000 /dev/urandom > state"))
        samples = []
        for _ in range(runs):
            await manager.freeze(box.id)
            samples.append(await timed(manager.wake(box.id)))
        await manager.delete(box.id)
        return python_floor, samples
    finally:
        await manager.close()
        await redis.aclose()
        server.stop()
        shutil.rmtree(config.run_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


HOME_PAIRS = 300  # what the agent of a realistic home box holds
# Between a freeze (or an archive) and the wake measured: a box frozen for being idle is woken
# seconds or hours later, not while the host still writes back the disk image it unmounted.
SETTLE_S = 0.5
_WORDS = ("garden", "invoice", "trip", "recipe", "meeting", "concert", "bike", "report",
          "dentist", "flight", "puppy", "novel", "budget", "marathon", "paint", "guitar")


def home_pairs(n: int) -> list[dict[str, object]]:
    """n chat turns of a made-up tenant (preferences, events, plans, questions), a minute
    apart, ending an hour ago."""
    start = time.time() - 3600 - 60 * n
    out: list[dict[str, object]] = []
    for i in range(n):
        a, b = _WORDS[i % len(_WORDS)], _WORDS[(i * 7 + 3) % len(_WORDS)]
        said = (f"I like the {a} more than the {b}.", f"Yesterday I went to the {a} with Sam.",
                f"Next week I plan to finish the {b}.", f"Where did I put the {a} notes?",
                f"The {a} took {i % 9 + 1} hours, and the {b} was fine.")[i % 5]
        out.append({"request": {"path": "/chat", "body": {"message": said}},
                    "response": {"status": 200, "body": {"reply": f"Noted about the {a}."}},
                    "at": start + 60 * i, "request_id": f"home-{i}"})
    return out


async def fill_home(c: httpx.AsyncClient, tenant: dict[str, str]) -> None:
    """The agent learns HOME_PAIRS pairs, through the import route and the worker."""
    r = await c.post("/v1/tenants/bench/observations", json={"pairs": home_pairs(HOME_PAIRS)},
                     headers=tenant)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 300
    while (await c.get("/v1/tenants/bench/agent/profile", headers=tenant)).json().get(
            "observed", 0) < HOME_PAIRS:
        if time.monotonic() > deadline:
            raise RuntimeError("the agent did not learn the home box's pairs in 300 s")
        await asyncio.sleep(0.5)


async def served_wakes(url: str, port: int, home: str, tenant: dict[str, str],
                       op: dict[str, str], runs: int, tier: str) -> list[float]:
    """Frozen (or archived) -> the first agent answer through the gateway, `runs` times."""
    wakes = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        for _ in range(runs):
            await c.post(f"/v1/boxes/{home}/freeze", headers=op)
            if tier == "archived":
                r = await c.post(f"/v1/boxes/{home}/archive", headers=op)
                assert r.json()["state"] == "archived", r.text
            await asyncio.sleep(SETTLE_S)
            conn = await Conn.open(("127.0.0.1", port))
            wakes.append(await timed(conn.request("POST", "/v1/tenants/bench/agent/health",
                                                  tenant)))
            conn.close()
    return wakes


async def bench_tenant(url: str) -> tuple[str, dict[str, str]]:
    """The tenant "bench": its home box (1 MB of state in it, its agent running) and
    its headers."""
    op = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        r = await c.post("/v1/tenants", json={"id": "bench"}, headers=op)
        key, home = r.json()["api_key"], r.json()["home_box_id"]
        tenant = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        await c.put(f"/v1/boxes/{home}/files", params={"path": "state.bin"},
                    content=os.urandom(1_000_000), headers=tenant)
        await c.post("/v1/tenants/bench/agent/health", headers=tenant)
    return home, tenant


async def bench(args: argparse.Namespace, url: str, port: int, data_dir: Path,
                server_pid: int, preview_port: int) -> None:
    home, tenant = await bench_tenant(url)
    op = {"Authorization": f"Bearer {OPERATOR_KEY}"}

    run_dir = RuntimeConfig(data_dir=data_dir).run_dir
    service = str(run_dir / "boxes" / home / "service.sock")
    daemon = str(run_dir / "boxes" / home / "daemon.sock")
    print(f"\n{'measure':<46}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'added':>9}{'req/s':>9}")
    print("-" * 88)
    # a short warm-up of both paths, then the measured runs
    # /health: the agent's cheapest answer, so the gateway's own cost shows
    await load(service, "/health", {}, 200, args.concurrency)
    await load(("127.0.0.1", port), "/v1/tenants/bench/agent/health", tenant, 200,
               args.concurrency)
    direct, direct_rps = await load(service, "/health", {}, args.requests, args.concurrency)
    routed, routed_rps = await load(("127.0.0.1", port), "/v1/tenants/bench/agent/health",
                                    tenant, args.requests, args.concurrency)
    row(f"agent socket directly, concurrency {args.concurrency}", direct, rps=direct_rps)
    row(f"agent route via gateway, concurrency {args.concurrency}", routed, direct, routed_rps)
    one_direct, _ = await load(service, "/health", {}, args.runs * 10, 1)
    one_routed, _ = await load(("127.0.0.1", port), "/v1/tenants/bench/agent/health", tenant,
                               args.runs * 10, 1)
    row("agent socket directly, one at a time", one_direct)
    row("agent route via gateway, one at a time", one_routed, one_direct)

    true = ExecRequest(command=["true"])
    client = DaemonClient(daemon)
    daemon_exec = [await timed(client.exec(true)) for _ in range(args.runs)]
    conn = await Conn.open(("127.0.0.1", port))
    body = b'{"command": ["true"]}'
    gateway_exec = [await timed(conn.request("POST", f"/v1/boxes/{home}/exec", tenant, body))
                    for _ in range(args.runs)]
    conn.close()
    row("exec `true` via the daemon socket", daemon_exec)
    row("exec `true` via the gateway", gateway_exec, daemon_exec)
    page_wakes = await previews(args, url, preview_port, data_dir, tenant, server_pid)

    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        await fill_home(c, tenant)
    # let the learning finish, so the wakes below are measured on a quiet server
    await asyncio.to_thread(settle, server_pid)
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        before = phases((await c.get("/metrics", headers=op)).text)
    frozen = await served_wakes(url, port, home, tenant, op, args.runs, "frozen")
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        after = phases((await c.get("/metrics", headers=op)).text)
    archived = await served_wakes(url, port, home, tenant, op, args.runs, "archived")
    async with httpx.AsyncClient(base_url=url, timeout=600) as c:  # 49 files of 1 MB more
        r = await c.post(f"/v1/boxes/{home}/exec", headers=tenant, json={
            "command": "mkdir -p state && for i in $(seq 49); do "
                       "head -c 1M /dev/urandom > state/f$i; done", "timeout_s": 300})
        assert r.json()["exit_code"] == 0, r.text
    archived_large = await served_wakes(url, port, home, tenant, op, args.runs, "archived")
    floor, runtime = await runtime_baselines(args.runs)
    row("floor: python3 -I -S -c pass, bare sandbox", floor)
    row("wake: runtime (BoxManager.wake, 1 MB)", runtime, floor)
    for name, samples in (("wake: frozen -> 1st agent answer, 1 MB", frozen),
                          ("wake: archived -> 1st agent answer, 1 MB", archived),
                          ("wake: archived -> 1st agent answer, 50 MB", archived_large)):
        row(name, samples, floor)
    base = statistics.median(floor)
    print(f"\nserved wakes, p50 as a multiple of the python floor ({base:.2f} ms; the agent "
          f"holds {HOME_PAIRS} pairs): from frozen {statistics.median(frozen) / base:.2f}x, "
          f"archived 1 MB {statistics.median(archived) / base:.2f}x, archived 50 MB "
          f"{statistics.median(archived_large) / base:.2f}x")
    print(f"frozen -> first preview page, p50: "
          f"{statistics.median(page_wakes) / statistics.median(frozen):.2f}x the frozen agent "
          "wake of this run")
    print("\nthe served wake from frozen, phase by phase (mean ms, from /metrics):")
    for phase in ("registry", "layer", "daemon", "catch_up", "agent_answer", "total"):
        (s0, n0), (s1, n1) = before.get(phase, (0.0, 0)), after.get(phase, (0.0, 0))
        if n1 > n0:
            print(f"  {phase:<14}{(s1 - s0) / (n1 - n0) * 1000:>8.2f}")


# --- preview URLs -------------------------------------------------------------------------

HTTP_SERVER = ("cd /workspace/site && setsid -f python3 -m http.server 8000 --bind 127.0.0.1 "
               ">/dev/null 2>&1 </dev/null")
PAGE = b"<!doctype html><title>bench</title><p>" + b"x" * 1000 + b"\n"


async def _direct_page(daemon: DaemonClient) -> None:
    """The page through the daemon's `connect`, as the listener asks for it."""
    reader, writer = await daemon.connect_port(8000, 5.0)
    writer.write(b"GET /index.html HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    if not answer.startswith(b"HTTP/1.0 200") or not answer.endswith(PAGE):
        raise RuntimeError(f"unexpected answer {answer[:80]!r}")


async def _preview_page(conn: Conn, target: str, auth: dict[str, str]) -> None:
    status, body = await conn.request("GET", target, auth)
    if status != 200 or body != PAGE:
        raise RuntimeError(f"status {status}")


def _cpu_s(pid: int) -> float:
    """The process's own CPU time (user + system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def previews(args: argparse.Namespace, url: str, preview_port: int, data_dir: Path,
                   tenant: dict[str, str], server_pid: int) -> list[float]:
    """The preview rows; returns frozen -> first preview page samples."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        box = (await c.post("/v1/boxes", json={}, headers=tenant)).json()["id"]
        await c.put(f"/v1/boxes/{box}/files", params={"path": "/workspace/site/index.html"},
                    content=PAGE, headers=tenant)
        r = await c.post(f"/v1/boxes/{box}/exec", json={"command": HTTP_SERVER},
                         headers=tenant)
        assert r.json()["exit_code"] == 0, r.text
        opened = (await c.post(f"/v1/boxes/{box}/ports", json={"port": 8000},
                               headers=tenant)).json()
    auth = {"Authorization": f"Bearer {opened['token']}"}
    target = f"/{box}/8000/index.html"
    daemon = DaemonClient(str(RuntimeConfig(data_dir=data_dir).run_dir / "boxes" / box
                              / "daemon.sock"))
    conn = await Conn.open(("127.0.0.1", preview_port))
    samples = args.runs * 10
    for _ in range(20):  # warm-up of both paths
        await _direct_page(daemon)
        await _preview_page(conn, target, auth)
    direct, preview = [], []
    cpu = {"direct": 0.0, "preview": 0.0}  # the gateway process's own CPU seconds in each
    for _ in range(samples):  # interleaved, so both see the same machine
        before = _cpu_s(server_pid)
        direct.append(await timed(_direct_page(daemon)))
        middle = _cpu_s(server_pid)
        preview.append(await timed(_preview_page(conn, target, auth)))
        cpu["direct"] += middle - before
        cpu["preview"] += _cpu_s(server_pid) - middle
    conn.close()
    row("page via the daemon socket (connect op)", direct)
    row("page via the preview URL (keep-alive)", preview, direct)
    # What the gateway does meanwhile anyway (its worker, sweeps) runs at the rate seen while
    # the direct pages went by, which never touch it.
    background = cpu["direct"] / (sum(direct) / 1000) * (sum(preview) / 1000)
    print(f"{'  gateway CPU per preview page, ms':<46}{samples:>6}"
          f"{(cpu['preview'] - background) / samples * 1000:>9.2f}"
          f"   (background {cpu['direct'] / (sum(direct) / 1000) * 100:.0f}% of a core, "
          "taken out)")

    # The server's own start in a running box: exec, then the port answers.
    starts = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        for _ in range(args.runs):
            await c.post(f"/v1/boxes/{box}/exec", headers=tenant, json={
                "command": "pkill -f 'http[.]server 8000'; sleep 0.2"})
            start = time.perf_counter()
            await c.post(f"/v1/boxes/{box}/exec", json={"command": HTTP_SERVER},
                         headers=tenant)
            _, writer = await daemon.connect_port(8000, 10.0)
            starts.append((time.perf_counter() - start) * 1000)
            writer.close()
        wakes = []
        for _ in range(args.runs):
            r = await c.post(f"/v1/boxes/{box}/freeze", headers=tenant)
            assert r.json()["state"] == "frozen", r.text
            await asyncio.sleep(SETTLE_S)
            conn = await Conn.open(("127.0.0.1", preview_port))
            start = time.perf_counter()
            restart = asyncio.create_task(c.post(f"/v1/boxes/{box}/exec",
                                                 json={"command": HTTP_SERVER},
                                                 headers=tenant))
            await _preview_page(conn, target, auth)
            wakes.append((time.perf_counter() - start) * 1000)
            await restart
            conn.close()
    row("server start: exec -> port answers (running)", starts)
    row("wake: frozen -> 1st preview page", wakes)
    return wakes


async def bench_previews(args: argparse.Namespace, url: str, port: int, preview_port: int,
                         data_dir: Path, server_pid: int) -> None:
    """The preview rows, and the frozen agent wake of a home box (without the observed pairs
    the full run gives it) to compare with."""
    home, tenant = await bench_tenant(url)
    op = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    print(f"\n{'measure':<46}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'added':>9}{'req/s':>9}")
    print("-" * 88)
    page_wakes = await previews(args, url, preview_port, data_dir, tenant, server_pid)
    agent_wakes = await served_wakes(url, port, home, tenant, op, args.runs, "frozen")
    row("wake: frozen -> 1st agent answer, 1 MB", agent_wakes)
    print(f"\nfrozen -> first preview page, p50: "
          f"{statistics.median(page_wakes) / statistics.median(agent_wakes):.2f}x the frozen "
          "agent wake of this run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", choices=["previews"], help="run only these rows")
    args = parser.parse_args()
    preview_port = free_port()
    with served(OPERATOR_KEY, UID_BASE, "burrow-bench-gw-", {
            "BURROW_PREVIEW_LISTEN": f"127.0.0.1:{preview_port}"}) as server:
        settle(server.pid)
        if args.only == "previews":
            asyncio.run(bench_previews(args, server.url, server.port, preview_port,
                                       server.data_dir, server.pid))
        else:
            asyncio.run(bench(args, server.url, server.port, server.data_dir, server.pid,
                              preview_port))

if __name__ == "__main__":
    run_as_root("bench/gateway.py", main)
