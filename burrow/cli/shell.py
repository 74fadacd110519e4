"""`burrow box shell ID`: the box user's shell on this terminal (raw mode, the box's terminal
resized with this one), exiting with the shell's exit code. The terminal's settings come back
whatever way it ends."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from burrow.cli.app import client, fail, failure, seg
from burrow.cli.boxes import box

if TYPE_CHECKING:
    from burrow._sync.pty import Terminal


@box.command("shell")
@click.argument("box_id", metavar="ID")
@click.option("--cwd", help="directory to start in  [default: /workspace]")
def box_shell(box_id: str, cwd: str | None) -> None:
    """Open a shell in a box: its user's bash (else sh) on a terminal in the box.

    A frozen box wakes first. Keys go to the box as typed (raw mode: Ctrl-C reaches the
    box's program); `exit` ends it, and this command exits with the shell's code.
    """
    from burrow._errors import BurrowError
    from burrow._sync.pty import Pty

    cols, rows = _size()
    try:
        term = Pty(client(), seg(box_id)).create(cols=cols, rows=rows, cwd=cwd)
    except BurrowError as exc:
        raise failure(exc) from None
    with term, _raw(sys.stdin.fileno()):
        code, error = _run(term)
    if error is not None:
        fail(error)
    sys.exit(code)


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return max(1, min(size.columns, 1000)), max(1, min(size.lines, 1000))
    except OSError:
        return 80, 24


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """Raw mode while it lasts, when `fd` is a terminal; its settings restored after."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _run(term: Terminal) -> tuple[int, str | None]:
    """Keys in, output out, until the shell ends: (its exit code, an error message or None)."""
    from burrow._errors import BurrowError

    result: list[tuple[int, str | None]] = []
    stop_r, stop_w = os.pipe()
    winch_r, winch_w = os.pipe()
    os.set_blocking(winch_w, False)

    def output() -> None:
        try:
            for piece in term:
                _write_all(sys.stdout.fileno(), piece)
            result.append((term.exit_code if term.exit_code is not None else 1, None))
        except BurrowError as exc:
            result.append((1, f"the terminal ended: {exc.message}"))
        except OSError as exc:
            result.append((1, f"cannot write to this terminal: {exc}"))
        finally:
            os.write(stop_w, b"x")

    # SIGWINCH (this terminal resized) wakes the loop below through a pipe; its handler
    # needs to do nothing else.
    previous = signal.signal(signal.SIGWINCH, lambda *_: None)
    old_wakeup = signal.set_wakeup_fd(winch_w)
    reader = threading.Thread(target=output, daemon=True)
    reader.start()
    stdin = sys.stdin.fileno()
    watched = [stdin, winch_r, stop_r]
    try:
        while True:
            ready, _, _ = select.select(watched, [], [])
            if stop_r in ready:
                break
            if winch_r in ready:
                os.read(winch_r, 512)
                term.resize(*_size())
            if stdin in ready:
                data = os.read(stdin, 1 << 16)
                if not data:  # stdin ended: hang up, as a terminal closing does
                    watched.remove(stdin)
                    term.close()
                    continue
                term.send(data)
    except BurrowError:
        pass  # the output side says why
    finally:
        signal.set_wakeup_fd(old_wakeup)
        signal.signal(signal.SIGWINCH, previous)
        term.close()
        reader.join(10)
        for fd in (stop_r, stop_w, winch_r, winch_w):
            os.close(fd)
    return result[0] if result else (1, "the terminal ended")
