"""Local files for upload and download, in both colours: the async client reads and writes in
a thread so the event loop never blocks on the disk."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

StrPath = str | os.PathLike[str]


def _write(path: StrPath, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


class Local:
    @staticmethod
    def read_bytes(path: StrPath) -> bytes:
        return Path(path).read_bytes()

    @staticmethod
    def write_bytes(path: StrPath, data: bytes) -> None:
        _write(path, data)


class AsyncLocal:
    @staticmethod
    async def read_bytes(path: StrPath) -> bytes:
        return await asyncio.to_thread(Path(path).read_bytes)

    @staticmethod
    async def write_bytes(path: StrPath, data: bytes) -> None:
        await asyncio.to_thread(_write, path, data)
