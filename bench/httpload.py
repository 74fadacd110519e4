"""A minimal keep-alive HTTP/1.1 load generator for the benchmarks: lean, so that on 2 cores
it leaves the CPU to what is measured."""

from __future__ import annotations

import asyncio
import socket
import time


class Conn:
    """One keep-alive HTTP/1.1 connection (TCP or unix socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, address: str | tuple[str, int]) -> Conn:
        if isinstance(address, str):
            return cls(*await asyncio.open_unix_connection(address))
        return cls(*await asyncio.open_connection(*address))

    async def request(self, method: str, target: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = None, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length or 0)
        data = b""
        while (size := int((await self.reader.readline()).strip(), 16)) > 0:
            data += await self.reader.readexactly(size + 2)
        await self.reader.readline()
        return status, data

    def close(self) -> None:
        self.writer.close()


async def load(address: str | tuple[str, int], target: str, headers: dict[str, str],
               total: int, concurrency: int) -> tuple[list[float], float]:
    """`total` POSTs over `concurrency` connections; latencies (ms) and requests/s."""
    latencies: list[float] = []
    remaining = [total]

    async def worker() -> None:
        conn = await Conn.open(address)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                start = time.perf_counter()
                status, _ = await conn.request("POST", target, headers, b'{"q": "hello"}')
                latencies.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    raise RuntimeError(f"status {status}")
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, total / (time.perf_counter() - start)


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
