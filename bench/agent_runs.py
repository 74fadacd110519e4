"""Agent-run benchmark against a real `burrow serve --local-model`, with baselines from the
same run:

- one chat completion straight to the bundled llama.cpp server (the baseline) vs the same
  request made from inside a box through the host services socket (box -> host socket ->
  gateway -> provider -> llama.cpp): the difference is what Burrow's model path adds;
- a whole agent run that needs no tool (start the harness in the box, one model call with the
  tools offered, the result back) vs that baseline;
- generation speed of both local models (tokens/s), and alternating between the two models
  as `burrow serve` runs them (a llama.cpp server each) vs one server holding both (which
  swaps the loaded model on every switch).

    sudo .venv/bin/python bench/agent_runs.py [--runs 10]

Needs root and the local-model extra. Nothing is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.serving import run_as_root, served_with_local_models
from models.servers import LocalModelServer, bundled_models

OPERATOR_KEY = "bench-operator-key-" + "y" * 24
UID_BASE = "4800000"
PROMPT = "Name three colours."
MODELS = ("smollm2-135m", "gemma-3-270m")
# Run inside the box: the same request as the baseline, through the host services socket.
IN_BOX = r"""
import json, sys, time
sys.path.insert(0, "/opt/burrow")
from tenant_agent.common import host
body = json.loads(sys.argv[1])
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    host.call("/v1/model/chat", body, 120)
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps(times))
"""


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def row(name: str, samples: list[float], base: list[float] | None = None) -> None:
    med = statistics.median(samples)
    vs = "" if base is None else f"{med / statistics.median(base):>9.2f}x"
    print(f"{name:<58}{len(samples):>5}{med:>10.1f}{max(samples):>10.1f}{vs}")


def direct(client: httpx.Client, url: str, model: str, runs: int) -> tuple[list[float], float]:
    """Chat completions straight to llama.cpp; (latencies ms, tokens/s)."""
    times, tokens, seconds = [], 0, 0.0
    for _ in range(runs):
        start = time.perf_counter()
        r = client.post(f"{url}/chat/completions", json={
            "model": model, "temperature": 0, "max_tokens": 32,
            "messages": [{"role": "user", "content": PROMPT}]})
        r.raise_for_status()
        times.append(ms_since(start))
        tokens += r.json()["usage"]["completion_tokens"]
        seconds += times[-1] / 1000
    return times, tokens / seconds


def bench(url: str, routes: dict[str, str], data_dir: Path, runs: int) -> None:
    llama = routes[MODELS[0]]
    api = httpx.Client(base_url=url, timeout=300,
                       headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    llm = httpx.Client(timeout=300)
    print(f"{'':<58}{'n':>5}{'p50 ms':>10}{'max ms':>10}{'vs base':>10}")
    direct(llm, llama, MODELS[0], 5)  # load and warm the first model
    base, speed = direct(llm, llama, MODELS[0], runs)
    row(f"baseline: chat completion straight to llama.cpp ({MODELS[0]})", base)

    box = api.post("/v1/boxes", json={
        "agent": {"harness": "burrow", "model": f"local/{MODELS[0]}"}}).json()["id"]
    body = {"model": f"local/{MODELS[0]}", "temperature": 0, "max_tokens": 32,
            "messages": [{"role": "user", "content": PROMPT}]}
    r = api.post(f"/v1/boxes/{box}/exec", json={
        "command": ["/usr/bin/python3", "-c", IN_BOX, json.dumps(body), str(runs)]}).json()
    row("the same from inside a box, through the host socket", json.loads(r["stdout"]), base)

    runs_ms, turns = [], []
    for _ in range(runs):
        start = time.perf_counter()
        run = api.post(f"/v1/boxes/{box}/agent/runs", json={
            "prompt": "Answer without using a tool: " + PROMPT, "max_turns": 2}).json()
        runs_ms.append(ms_since(start))
        turns.append(run["usage"]["turns"])
    row(f"agent run, no tool needed (model calls per run: {statistics.median(turns):.0f})",
        runs_ms, base)
    api.delete(f"/v1/boxes/{box}")

    direct(llm, routes[MODELS[1]], MODELS[1], 1)
    gemma, gemma_speed = direct(llm, routes[MODELS[1]], MODELS[1], runs)
    row(f"{MODELS[1]}, same model each time", gemma, base)
    alternating = []
    for i in range(runs):
        alternating += direct(llm, routes[MODELS[i % 2]], MODELS[i % 2], 1)[0]
    row("alternating the two models, a server each (as served)", alternating, base)
    with LocalModelServer(data_dir / "one-server",
                          models=bundled_models(data_dir / "one-server" / "models")) as one:
        direct(llm, one.url, MODELS[0], 1)
        swapping = []
        for i in range(runs):
            swapping += direct(llm, one.url, MODELS[i % 2], 1)[0]
    row("alternating the two models in one server (swaps)", swapping, base)
    print(f"\ngeneration: {MODELS[0]} {speed:.0f} tokens/s, {MODELS[1]} {gemma_speed:.0f} "
          "tokens/s (32-token answers, prompt included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with served_with_local_models(OPERATOR_KEY, UID_BASE, "burrow-bench-runs-") as (
            url, routes, data_dir):
        if set(routes) != set(MODELS):
            sys.exit("burrow serve --local-model did not start both bundled models")
        bench(url, routes, data_dir, args.runs)


if __name__ == "__main__":
    run_as_root("bench/agent_runs.py", main)
