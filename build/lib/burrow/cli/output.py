"""What the CLI prints: JSON documents, tables, human sizes and durations, and a progress
line on stderr that only a terminal sees."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import click


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def human_s(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def human_age(seconds: float) -> str:
    """An idle time, rounded to its largest unit: 42s, 7m, 3h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def human_bytes(count: int | None) -> str:
    if count is None:
        return "no limit"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]],
          right: Sequence[str] = ()) -> None:
    """Columns as wide as their widest cell; the last column is not padded."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        parts = [cell.rjust(w) if headers[i] in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        parts[-1] = row[-1].rjust(widths[-1]) if headers[-1] in right else row[-1]
        click.echo("  ".join(parts).rstrip())


_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Progress:
    """A spinner with the elapsed time, redrawn on stderr while a slow call runs. Only when
    stderr is a terminal: piped or captured output never sees it, and stdout never does."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> Progress:
        if sys.stderr.isatty():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and erase the line (idempotent); output may follow on the terminal."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(0.1 if frame else 0.0):
            sys.stderr.write(f"\r\x1b[2K{_FRAMES[frame % len(_FRAMES)]} {self.label} "
                             f"{self.elapsed_s:.1f}s")
            sys.stderr.flush()
            frame += 1


@contextlib.contextmanager
def progress(label: str) -> Iterator[Progress]:
    shown = Progress(label).start()
    try:
        yield shown
    finally:
        shown.stop()


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    """`name  value` lines, names aligned."""
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        click.echo(f"{name:{width}}  {value}")
