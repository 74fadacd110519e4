"""The seed's model comparison: N boxes, one model each, the same documentation file and the
same prompt ("extract all API endpoints"); a scorer compares each answer with the endpoints
actually in the file and prints accuracy and hallucination percentage per model.

    burrow serve --local-model          # in another terminal (the README's `make serve`)
    BURROW_API_KEY=<key> python examples/model_comparison.py
    BURROW_API_KEY=<key> python examples/model_comparison.py --models \\
        local/smollm2-135m local/gemma-3-270m anthropic/claude-sonnet-4-5 openai/gpt-4o-mini

Hosted models need their key in the *server's* environment (ANTHROPIC_API_KEY, OPENAI_API_KEY,
OPENROUTER_API_KEY); the boxes never see it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from burrow import Agent, AsyncBox, BurrowError

DOCS = Path(__file__).parent / "data" / "api_docs.md"
REMOTE_DOCS = "/workspace/api_docs.md"
PROMPT = ("Extract all API endpoints from the documentation in /workspace/api_docs.md. "
          "An endpoint is an HTTP method and a path, like GET /v1/things/{{id}}. List each one "
          "once, exactly as written.\n\nThe documentation:\n\n{docs}")
ENDPOINT = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)\s+(/[A-Za-z0-9_{}./:-]*)")


class Endpoint(BaseModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    path: str


class Endpoints(BaseModel):
    endpoints: list[Endpoint] = Field(max_length=30)


@dataclass
class Score:
    model: str
    found: int
    correct: int
    expected: int
    seconds: float
    error: str | None = None

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.expected if self.expected else 0.0

    @property
    def hallucination(self) -> float:
        return 100.0 * (self.found - self.correct) / self.found if self.found else 0.0


def endpoints_in(text: str) -> set[tuple[str, str]]:
    """The ground truth: every METHOD /path the documentation itself contains."""
    return {(m.upper(), p.rstrip(".,;:")) for m, p in ENDPOINT.findall(text)}


def normalise(endpoint: Endpoint) -> tuple[str, str]:
    path = endpoint.path.strip().strip("`").split("?")[0].rstrip("/") or "/"
    return endpoint.method.strip().upper(), path


def score(model: str, answer: Endpoints | None, truth: set[tuple[str, str]],
          seconds: float, error: str | None = None) -> Score:
    found = {normalise(e) for e in answer.endpoints} if answer else set()
    return Score(model, len(found), len(found & truth), len(truth), seconds, error)


async def compare(models: list[str], docs: str, timeout_s: float) -> list[Score]:
    truth = endpoints_in(docs)
    boxes = await asyncio.gather(*(AsyncBox.create(
        runtime="python", labels={"example": "model-comparison"},
        agent={"harness": Agent.BURROW, "model": model}) for model in models))
    try:
        await asyncio.gather(*(box.files.write(REMOTE_DOCS, docs) for box in boxes))

        async def one(model: str, box: AsyncBox) -> Score:
            started = time.perf_counter()
            try:
                run = await box.agent.run(prompt=PROMPT.format(docs=docs),
                                          response_schema=Endpoints, timeout_s=timeout_s,
                                          max_turns=2)
            except BurrowError as exc:
                return score(model, None, truth, time.perf_counter() - started, str(exc))
            answer = run.result if run.status == "completed" else None
            return score(model, answer, truth, time.perf_counter() - started, run.error)

        return list(await asyncio.gather(*(one(m, b) for m, b in zip(models, boxes,
                                                                          strict=True))))
    finally:
        await asyncio.gather(*(box.delete() for box in boxes), return_exceptions=True)


def table(scores: list[Score]) -> str:
    rows = [f"{'model':<32} {'found':>5} {'correct':>7} {'accuracy':>8} {'halluc.':>8} "
            f"{'time':>7}"]
    for s in scores:
        rows.append(f"{s.model:<32} {s.found:>5} {s.correct:>7} {s.accuracy:>7.0f}% "
                    f"{s.hallucination:>7.0f}% {s.seconds:>6.1f}s"
                    + (f"  ({s.error[:60]})" if s.error else ""))
    return "\n".join(rows)


def best(scores: list[Score]) -> Score:
    return max(scores, key=lambda s: (s.error is None, s.accuracy, -s.hallucination, -s.seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+",
                        default=["local/smollm2-135m", "local/gemma-3-270m"],
                        help="provider/name of each model to compare, one box each")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the documentation file")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run")
    args = parser.parse_args()
    docs = args.docs.read_text()
    print(f"{len(endpoints_in(docs))} endpoints in {args.docs.name}; asking "
          f"{len(args.models)} models, one box each")
    try:
        scores = asyncio.run(compare(args.models, docs, args.timeout))
    except BurrowError as exc:
        sys.exit(f"error: {exc}")
    print(table(scores))
    winner = best(scores)
    print(f"best: {winner.model} ({winner.accuracy:.0f}% of the endpoints, "
          f"{winner.hallucination:.0f}% hallucinated)")


if __name__ == "__main__":
    main()
