"""What the bundled local models manage as the model behind each agent harness, against a real
`burrow serve --local-model`, with the built-in harness measured in the same run as the
baseline.

Each harness (burrow, claude-code, codex, opencode) times each bundled model gets the same small
tasks, `--runs` times each, in a fresh box:

- `file`: "Create the file hello.txt containing the word hi." — done when /workspace/hello.txt
  exists and holds "hi" (the harness's own tool must have been called with the right values);
- `answer`: "What is 17 + 25? Reply with the number only." — done when the result holds "42".

Printed per row: runs that ended `completed`, tasks actually done, median wall time, median
model calls and prompt tokens per run (what each CLI's system prompt and tools cost a small
context), and the ratio of wall time to the built-in harness on the same model.

    sudo .venv/bin/python bench/harnesses.py [--runs 3] [--harness codex ...]

Needs root, the local-model extra and the CLIs (`burrow harness install`). Nothing is
asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.serving import run_as_root, served_with_local_models
from models.relay import harnesses

OPERATOR_KEY = "bench-operator-key-" + "h" * 24
UID_BASE = "4900000"
HARNESSES = ("burrow", "claude-code", "codex", "opencode")
MODELS = ("local/smollm2-135m", "local/gemma-3-270m")
TASKS = {
    "file": "Create the file hello.txt containing the word hi.",
    "answer": "What is 17 + 25? Reply with the number only.",
}


def done(api: httpx.Client, box: str, task: str, run: dict) -> bool:
    if task == "answer":
        return "42" in str(run.get("result") or "")
    r = api.post(f"/v1/boxes/{box}/exec", json={"command": "cat /workspace/hello.txt",
                                                  "timeout_s": 30}).json()
    return r.get("exit_code") == 0 and "hi" in r.get("stdout", "").lower()


def one(api: httpx.Client, harness: str, model: str, task: str) -> dict:
    box = api.post("/v1/boxes", json={"runtime": "node", "agent": {
        "harness": harness, "model": model}}).json()["id"]
    try:
        start = time.perf_counter()
        r = api.post(f"/v1/boxes/{box}/agent/runs", json={
            "prompt": TASKS[task], "max_turns": 6, "timeout_s": 300})
        seconds = time.perf_counter() - start
        run = r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}
        usage = run.get("usage") or {}
        return {"completed": run.get("status") == "completed",
                "done": run.get("status") == "completed" and done(api, box, task, run),
                "seconds": seconds, "calls": usage.get("turns", 0),
                "prompt": usage.get("input_tokens", 0), "error": run.get("error")}
    finally:
        api.delete(f"/v1/boxes/{box}")


def bench(url: str, names: list[str], runs: int) -> None:
    api = httpx.Client(base_url=url, timeout=600,
                       headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    print(f"{'harness':<13}{'model':<22}{'task':<8}{'completed':>10}{'done':>6}"
          f"{'p50 s':>8}{'calls':>7}{'prompt tok':>12}{'vs burrow':>11}")
    base: dict[tuple[str, str], float] = {}
    errors: dict[str, str] = {}
    for harness in names:
        for model in MODELS:
            for task in TASKS:
                rows = [one(api, harness, model, task) for _ in range(runs)]
                med = statistics.median(r["seconds"] for r in rows)
                if harness == "burrow":
                    base[(model, task)] = med
                vs = (f"{med / base[(model, task)]:>10.2f}x" if (model, task) in base
                      and harness != "burrow" else f"{'':>11}")
                print(f"{harness:<13}{model:<22}{task:<8}"
                      f"{sum(r['completed'] for r in rows):>7}/{runs:<2}"
                      f"{sum(r['done'] for r in rows):>4}/{runs:<1}{med:>8.1f}"
                      f"{statistics.median(r['calls'] for r in rows):>7.0f}"
                      f"{statistics.median(r['prompt'] for r in rows):>12.0f}{vs}", flush=True)
                for r in rows:
                    if r["error"]:
                        errors.setdefault(f"{harness} {model} {task}", str(r["error"])[:160])
    for where, error in errors.items():
        print(f"  {where}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--harness", action="append", choices=HARNESSES,
                        help="only these (the built-in harness runs first as the baseline)")
    args = parser.parse_args()
    names = ["burrow", *[h for h in args.harness or HARNESSES if h != "burrow"]]
    missing = [n for n in names[1:] if harnesses.installed(n) is None]
    if missing:
        sys.exit(f"not installed: {', '.join(missing)}; run `burrow harness install`")
    with served_with_local_models(OPERATOR_KEY, UID_BASE, "burrow-bench-harnesses-") as (
            url, _routes, _data_dir):
        bench(url, names, args.runs)


if __name__ == "__main__":
    run_as_root("bench/harnesses.py", main)
