"""Generates the sync client (burrow/_sync/) from the async one (burrow/_async/), the way
httpcore does: token rules, no AST, so the output reads like the input.

    python -m burrow._unasync            # rewrite burrow/_sync/
    python -m burrow._unasync --check    # exit 1 if burrow/_sync/ is stale
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from collections.abc import Callable
from pathlib import Path

PACKAGE = Path(__file__).parent
SOURCE = PACKAGE / "_async"
TARGET = PACKAGE / "_sync"

HEADER = "# Generated from burrow/_async/{name} by `python -m burrow._unasync`; do not edit.\n"
# The renames reorder first-party imports (_async < _models < _sync).
UNSORTED = "# ruff: noqa: I001\n"
# A file-wide exemption from an async-only lint rule means nothing in the sync file.
ASYNC_ONLY = re.compile(r"# ruff: noqa: ASYNC\d+")

# Applied in order, each to the whole file.
RULES: list[tuple[str, str]] = [
    (r"\bAsyncGenerator\[(.+?), None\]", r"Generator[\1, None, None]"),
    (r"\bAsync([A-Z]\w*)", r"\1"),        # AsyncBox -> Box, httpx.AsyncClient -> Client
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\banext\(", "next("),
    (r"\baclose\b", "close"),
    (r"\baiter_lines\b", "iter_lines"),
    (r"\baread\b", "read"),
    (r"\bburrow\._async\b", "burrow._sync"),
    (r"\bwebsockets\.asyncio\b", "websockets.sync"),  # the terminal's WebSocket client
]


def unasync_line(text: str) -> str:
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    return text


def _open_brackets(source: str) -> dict[int, list[tuple[int, int]]]:
    """For each line where a token starts: the brackets still open there, as (line, col)."""
    stack: list[tuple[int, int]] = []
    at: dict[int, list[tuple[int, int]]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        row = tok.start[0] - 1
        at.setdefault(row, list(stack))
        if tok.type == tokenize.OP and tok.string in "([{":
            stack.append((row, tok.start[1]))
        elif tok.type == tokenize.OP and tok.string in ")]}" and stack:
            stack.pop()
    return at


def unasync(source: str) -> str:
    """Rewrite line by line; a continuation line aligned with an opening bracket moves with
    that bracket when the text before it got shorter (`async def f(` -> `def f(`)."""
    brackets = _open_brackets(source)
    columns: dict[int, Callable[[int], int]] = {}
    out = []
    for row, line in enumerate(source.splitlines(keepends=True)):
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        new_indent = indent
        open_ = brackets.get(row)
        if open_:
            opened_row, opened_col = open_[-1]
            if indent == opened_col + 1 and opened_row in columns:
                new_indent = columns[opened_row](opened_col) + 1
        columns[row] = _columns(line, indent, new_indent)
        if not ASYNC_ONLY.match(line):
            out.append(" " * new_indent + unasync_line(body))
    return "".join(out)


def _columns(line: str, indent: int, new_indent: int) -> Callable[[int], int]:
    """Where a column of the async line lands in the sync one."""
    def column(col: int) -> int:
        return new_indent + len(unasync_line(line[indent:col]))
    return column


def expected() -> dict[str, str]:
    """The generated files, by name, as they should be."""
    out = {}
    for source in sorted(SOURCE.glob("*.py")):
        text = source.read_text()
        header = HEADER.format(name=source.name)
        if "burrow._async." in text:
            header += UNSORTED
        out[source.name] = header + unasync(text)
    return out


def stale() -> list[str]:
    """What in burrow/_sync/ differs from what the generator would write."""
    want = expected()
    found = {p.name: p.read_text() for p in TARGET.glob("*.py")} if TARGET.is_dir() else {}
    problems = [f"burrow/_sync/{name} is {'missing' if name not in found else 'stale'}"
                for name, text in want.items() if found.get(name) != text]
    problems += [f"burrow/_sync/{name} has no source in burrow/_async/"
                 for name in sorted(set(found) - set(want))]
    return problems


def write() -> list[str]:
    TARGET.mkdir(exist_ok=True)
    written = []
    for name, text in expected().items():
        path = TARGET / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(f"burrow/_sync/{name}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m burrow._unasync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if burrow/_sync/ is not what it would be")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `python -m burrow._unasync` to regenerate", file=sys.stderr)
        return 1 if problems else 0
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
