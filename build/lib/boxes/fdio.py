"""Awaiting raw pipe fds (bwrap's info fd, readiness fds) on the event loop, without threads."""

from __future__ import annotations

import asyncio
import os


async def read_until(fd: int, done: bytes | None, timeout_s: float, limit: int = 1 << 16) -> bytes:
    """Read from `fd` until `done` appears (or EOF when `done` is None), EOF, or the timeout.

    Returns what was read; the caller decides whether it is enough.
    """
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    data = bytearray()
    finished: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data.extend(chunk)
        complete = not chunk or (done is not None and done in data) or len(data) >= limit
        if complete and not finished.done():
            finished.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(finished, timeout_s)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)
    return bytes(data)
