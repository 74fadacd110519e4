"""A terminal in a box, host side: the daemon's `pty` op (boxes/daemon.py) as the shell's output
and then its exit, with keystrokes and resizes sent the other way.

Frames both ways are a kind byte, a 4-byte big-endian length and that many bytes (at most
64 KiB): `d` bytes (keystrokes in, output out), `r` a resize in, `x` the exit code out, last.
What the daemon sends is checked here (code in the box may have replaced it): a malformed frame
ends the terminal as a daemon that broke off does, with BoxUnavailableError. Nothing is read
ahead of the caller beyond the stream's small buffer, so a box printing without end waits for
whoever reads this."""

from __future__ import annotations

import asyncio
import contextlib

from boxes.errors import BoxUnavailableError

FRAME_MAX = 1 << 16
_EXIT_DIGITS = 8


class Terminal:
    """One open terminal: `read()` until it gives the exit code; `write`, `resize`, `close`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 shell: str) -> None:
        self.reader = reader
        self.writer = writer
        self.shell = shell
        self.exit_code: int | None = None

    async def read(self) -> bytes | int:
        """The next piece of output, or the shell's exit code (an int) once it has ended."""
        if self.exit_code is not None:
            return self.exit_code
        try:
            head = await self.reader.readexactly(5)
            length = int.from_bytes(head[1:], "big")
            if length > FRAME_MAX:
                raise BoxUnavailableError("the box daemon sent a malformed terminal frame")
            data = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise BoxUnavailableError("the box's terminal broke off (the box stopped or its "
                                      "daemon ended)") from exc
        kind = head[:1]
        if kind == b"d" and data:
            return data
        if kind == b"x" and 0 < len(data) <= _EXIT_DIGITS and data.lstrip(b"-").isdigit():
            self.exit_code = int(data)
            return self.exit_code
        raise BoxUnavailableError("the box daemon sent a malformed terminal frame")

    async def write(self, data: bytes) -> None:
        """Keystrokes; returns once the daemon took them (it takes them as the shell reads)."""
        for start in range(0, len(data), FRAME_MAX):
            piece = data[start:start + FRAME_MAX]
            self.writer.write(b"d" + len(piece).to_bytes(4, "big") + piece)
            await self._drain()

    async def resize(self, cols: int, rows: int) -> None:
        self.writer.write(b"r\x00\x00\x00\x04" + cols.to_bytes(2, "big") + rows.to_bytes(2, "big"))
        await self._drain()

    async def _drain(self) -> None:
        try:
            await self.writer.drain()
        except OSError as exc:
            raise BoxUnavailableError("the box's terminal broke off") from exc

    async def close(self) -> None:
        """Hang up: the daemon sends the shell SIGHUP (and SIGKILL if it stays)."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
