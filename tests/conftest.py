"""Shared fixtures: a real redis-server for the session, real boxes per test, leak checks."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from boxes import BoxManager, RuntimeConfig
from workers.embedded_redis import EmbeddedRedis

# Box uids for tests sit apart from a `burrow serve` a developer may run on the same machine.
TEST_UID_BASE = 3_000_000


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def host_tcp_service() -> AsyncIterator[int]:
    """A TCP service on the host's loopback, which no box may reach; yields its port."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HOST-SECRET\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def box_processes() -> list[int]:
    """Live (non-zombie) processes running as any box uid of the test range."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if "\nState:\tZ" in status:
            continue  # exited; only waiting for its parent (host init) to reap it
        for line in status.splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                if TEST_UID_BASE < uid < TEST_UID_BASE + 1_000_000:
                    found.append(int(entry))
    return found


def make_config(data_dir: Path) -> RuntimeConfig:
    return RuntimeConfig(data_dir=data_dir, uid_base=TEST_UID_BASE, prefreeze_grace_s=1.0)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[RuntimeConfig]:
    cfg = make_config(tmp_path / "data")
    yield cfg
    shutil.rmtree(cfg.run_dir, ignore_errors=True)


@pytest.fixture
async def manager(config: RuntimeConfig, redis: Redis) -> AsyncIterator[BoxManager]:
    mgr = await BoxManager.open(config, redis)
    yield mgr
    await mgr.close()
    leftovers = mgr.backend.leftovers()
    assert leftovers == {"processes": [], "mounts": [], "cgroups": []}, leftovers
    assert box_processes() == [], "box processes outlived the test"
