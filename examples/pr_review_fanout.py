"""The seed's PR review: three boxes review the diff of a git repository in parallel —
security, code quality, architecture — and a fourth, the jury, turns their findings into one
review comment, written to a file (or posted to the pull request when a GitHub token and the
PR's URL are given).

    burrow serve --local-model          # in another terminal (the README's `make serve`)
    BURROW_API_KEY=<key> python examples/pr_review_fanout.py              # a demo repository
    BURROW_API_KEY=<key> python examples/pr_review_fanout.py --repo ~/src/app --base main
    GITHUB_TOKEN=… python examples/pr_review_fanout.py --repo . --base main \\
        --pr https://github.com/acme/app/pull/42 --model anthropic/claude-sonnet-4-5

Each reviewer box gets the diff as a file and works on it with its own agent; nothing from
the host but the diff enters a box, and model keys stay on the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from burrow import Agent, AsyncBox, BurrowError

ROLES = {
    "security": "security problems: injection, secrets in code, unsafe input handling",
    "quality": "code quality problems: bugs, error handling, naming, missing tests",
    "architecture": "architecture problems: coupling, layering, responsibilities",
}
MAX_DIFF = 6000  # characters of the diff put in each prompt (small local models)


class Finding(BaseModel):
    file: str
    problem: str


class Review(BaseModel):
    findings: list[Finding] = Field(max_length=5)  # the most important ones
    summary: str


class Comment(BaseModel):
    markdown: str


def demo_repository(where: Path) -> tuple[Path, str]:
    """A small repository whose last commit has something to say about in each role."""
    repo = where / "shop"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "dev@example.com")
    git("config", "user.name", "Dev")
    (repo / "orders.py").write_text(
        "def total(items):\n    return sum(i.price * i.quantity for i in items)\n")
    git("add", ".")
    git("commit", "-q", "-m", "orders")
    (repo / "orders.py").write_text(
        "import sqlite3\n\nAPI_KEY = 'sk_live_51Hx9'\n\n"
        "def total(items):\n    return sum(i.price * i.quantity for i in items)\n\n"
        "def find_order(db, order_id):\n"
        "    return db.execute(f\"SELECT * FROM orders WHERE id = {order_id}\").fetchone()\n\n"
        "def send_receipt(order):\n    try:\n        import smtplib\n"
        "        smtplib.SMTP('localhost').sendmail('shop', order.email, 'thanks')\n"
        "    except Exception:\n        pass\n")
    git("commit", "-q", "-am", "look orders up, send receipts")
    return repo, "HEAD~1"


def diff_of(repo: Path, base: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "diff", f"{base}...HEAD"], text=True,
                          capture_output=True)
    if done.returncode != 0:
        sys.exit(f"error: git diff {base}...HEAD in {repo}: {done.stderr.strip()}")
    if not done.stdout.strip():
        sys.exit(f"error: no changes between {base} and HEAD in {repo}")
    return done.stdout


def review_prompt(role: str, diff: str) -> str:
    return (f"You review a pull request for {ROLES[role]}. The diff is in /workspace/pr.diff "
            f"and here:\n\n{diff[:MAX_DIFF]}\n\nList the {role} problems you find, each "
            "with its file, and sum up in one sentence.")


def jury_prompt(reviews: dict[str, Review]) -> str:
    parts = [f"{role} review: {r.summary} Findings: "
             + "; ".join(f"{f.file}: {f.problem}" for f in r.findings)
             for role, r in reviews.items()]
    return ("You are the jury of a code review. The reviews are below; you need no tool. "
            "Answer with one short pull-request comment in Markdown that merges them, most "
            "important first:\n\n" + "\n".join(parts))


async def review(diff: str, model: str) -> tuple[dict[str, Review], str]:
    agent = {"harness": Agent.BURROW, "model": model}
    boxes = await asyncio.gather(*(AsyncBox.create(
        runtime="python", agent=agent, labels={"example": "pr-review", "role": role})
        for role in ROLES))
    jury = None
    try:
        await asyncio.gather(*(box.files.write("/workspace/pr.diff", diff) for box in boxes))
        runs = await asyncio.gather(*(box.agent.run(
            prompt=review_prompt(role, diff), response_schema=Review, max_turns=3)
            for role, box in zip(ROLES, boxes, strict=True)))
        reviews = {}
        for role, run in zip(ROLES, runs, strict=True):
            if run.status != "completed":
                sys.exit(f"error: the {role} review {run.status}: {run.error}")
            reviews[role] = run.result
        jury = await AsyncBox.create(runtime="python", agent=agent,
                                     labels={"example": "pr-review", "role": "jury"})
        verdict = await jury.agent.run(prompt=jury_prompt(reviews), response_schema=Comment,
                                       max_turns=2)
        if verdict.status != "completed":
            sys.exit(f"error: the jury {verdict.status}: {verdict.error}")
        comment = verdict.result.markdown
        await jury.files.write("/workspace/review-comment.md", comment)
        return reviews, await jury.files.read("/workspace/review-comment.md")
    finally:
        await asyncio.gather(*(b.delete() for b in [*boxes, *([jury] if jury else [])]),
                             return_exceptions=True)


def post(pr_url: str, token: str, comment: str) -> str:
    match = re.match(r"https://github\.com/([^/]+)/([^/]+)/pull/(\d+)", pr_url)
    if not match:
        sys.exit("error: --pr must look like https://github.com/OWNER/REPO/pull/NUMBER")
    owner, name, number = match.groups()
    r = httpx.post(f"https://api.github.com/repos/{owner}/{name}/issues/{number}/comments",
                   json={"body": comment}, timeout=30,
                   headers={"Authorization": f"Bearer {token}",
                            "Accept": "application/vnd.github+json"})
    if r.status_code >= 300:
        sys.exit(f"error: GitHub refused the comment ({r.status_code}): {r.text[:200]}")
    return str(r.json().get("html_url", pr_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help="a git repository (default: a demo one)")
    parser.add_argument("--base", default=None, help="compare HEAD with this ref")
    parser.add_argument("--model", default="local/smollm2-135m", help="provider/name")
    parser.add_argument("--out", type=Path, default=Path("review-comment.md"),
                        help="where to write the comment")
    parser.add_argument("--pr", help="a GitHub PR URL to post the comment to (with GITHUB_TOKEN)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repo, base = ((args.repo, args.base or "main") if args.repo
                      else demo_repository(Path(scratch)))
        diff = diff_of(repo, base)
    print(f"reviewing {diff.count(chr(10))} diff lines with {args.model} in "
          f"{len(ROLES)} boxes, then a jury box")
    try:
        reviews, comment = asyncio.run(review(diff, args.model))
    except BurrowError as exc:
        sys.exit(f"error: {exc}")
    for role, r in reviews.items():
        print(f"  {role}: {len(r.findings)} findings. {r.summary}")
    args.out.write_text(comment + "\n")
    print(f"\nthe jury's comment, written to {args.out}:\n\n{comment}")
    token = os.environ.get("GITHUB_TOKEN")
    if args.pr and token:
        print(f"\nposted: {post(args.pr, token, comment)}")
    elif args.pr:
        print("\nnot posted: set GITHUB_TOKEN to post the comment to the pull request")


if __name__ == "__main__":
    main()
