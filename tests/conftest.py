"""Shared fixtures: a real redis-server for the session, real boxes per test, leak checks; and
the test tiers."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from boxes import BoxManager, RuntimeConfig
from core.embedded_redis import EmbeddedRedis
from core.keys import Keys
from core.services import Core
from core.settings import Settings
from gateway.app import create_app
from tests.fakes import FakeOpenAI
from tests.hosts import OPERATOR_KEY, TEST_UID_BASE, box_processes
from tests.seaweed import S3Place, SeaweedFS

if TYPE_CHECKING:
    from tests.served import Served

# The tiers. A test that needs more than the server's Python packages says so with one of these
# marks; `make check` runs every test with none of them, as any user, in seconds; `make test`
# (and CI) runs them all.
TIERS = {
    "boxes": "starts boxes (root, bubblewrap, loop devices, cgroups), or a gateway, which "
             "starts tenants' home boxes",
    "browser": "drives Debian's headless chromium",
    "agent_clis": "runs Claude Code, Codex or OpenCode, installed from npm",
    "local_model": "runs llama.cpp and the bundled small models",
    "node": "runs the TypeScript SDK on Node.js with its npm dependencies",
    "venv": "builds fresh virtual environments with pip",
    "model_children": "loads the embedding or the name-detection model again in child processes "
                      "it kills (about 20 s each)",
}
# Taking one of these fixtures puts a test in a tier.
S3_BUCKET = "burrow-tests"
FIXTURE_TIERS = {"manager": "boxes", "gateway": "boxes", "learning": "boxes", "served": "boxes",
                 "client_venv": "venv"}


def pytest_configure(config: pytest.Config) -> None:
    for name, what in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {what}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in FIXTURE_TIERS:
                item.add_marker(FIXTURE_TIERS[fixture])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3-compatible store (SeaweedFS) for the session; unsigned requests are refused.
    Each test makes its own bucket (`s3_bucket`)."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweed")).start()
    server.make_bucket(S3_BUCKET, warm=True)
    yield server
    server.stop()


@pytest.fixture
def s3(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> S3Place:
    """A prefix of the test's own in the session's bucket, and the AWS chain's variables set
    to the store's credentials."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    return S3Place(seaweed, S3_BUCKET, "t-" + secrets.token_hex(6))


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


def make_config(data_dir: Path) -> RuntimeConfig:
    return RuntimeConfig(data_dir=data_dir, uid_base=TEST_UID_BASE, prefreeze_grace_s=1.0)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[RuntimeConfig]:
    cfg = make_config(tmp_path / "data")
    yield cfg
    shutil.rmtree(cfg.run_dir, ignore_errors=True)


@pytest.fixture
async def manager(config: RuntimeConfig, redis: Redis) -> AsyncIterator[BoxManager]:
    mgr = await BoxManager.open(config, redis, Keys())
    yield mgr
    await mgr.close()
    leftovers = mgr.backend.leftovers()
    assert leftovers == {"processes": [], "mounts": [], "cgroups": []}, leftovers
    assert box_processes() == [], "box processes outlived the test"




@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    operator: dict[str, str]

    @property
    def core(self) -> Core:
        opened: Core = self.app.state.core
        return opened

    @property
    def manager(self) -> BoxManager:
        return self.core.manager

    async def tenant(self, tenant_id: str) -> tuple[dict[str, str], str]:
        """Create a tenant; return its auth headers and home box id."""
        r = await self.client.post("/v1/tenants", json={"id": tenant_id}, headers=self.operator)
        assert r.status_code == 201, r.text
        body = r.json()
        return {"Authorization": f"Bearer {body['api_key']}"}, body["home_box_id"]


def gateway_settings(data_dir: Path, redis_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {"data_dir": data_dir, "redis_url": redis_url,
                                 "operator_key": OPERATOR_KEY, "dev": True,
                                 "uid_base": TEST_UID_BASE, "launcher_pool": 1, **extra}
    return Settings(**values)


ECHO_AGENT = ["/usr/bin/python3", "-I", "-S", "-c",
              (Path(__file__).parent / "echo_agent.py").read_text()]


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, *,
                          others_running: bool = False) -> AsyncIterator[Gateway]:
    """The app with its lifespan, a client for it, and the leak checks after (of its own
    boxes only while `others_running`: another gateway's boxes are in the same uid range)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://burrow",
                                     timeout=60) as client:
            yield Gateway(app, client, {"Authorization": f"Bearer {OPERATOR_KEY}"})
    manager = app.state.core.manager
    assert manager.backend.leftovers() == {"processes": [], "mounts": [], "cgroups": []}
    assert others_running or box_processes() == [], "box processes outlived the test"
    shutil.rmtree(manager.config.run_dir, ignore_errors=True)


@pytest.fixture
async def gateway(tmp_path: Path, redis: Redis,
                  redis_server: EmbeddedRedis) -> AsyncIterator[Gateway]:
    """The gateway without its worker; tenants' home boxes run an echo agent, so tests can
    see exactly what the agent route forwards."""
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT)
    async with running_gateway(settings) as gw:
        yield gw


@pytest.fixture
async def learning(tmp_path: Path, redis: Redis,
                   redis_server: EmbeddedRedis) -> AsyncIterator[Gateway]:
    """The gateway with its in-process worker and the built-in tenant agent, as `burrow
    serve` runs them: what is observed is delivered and learned."""
    async with running_gateway(gateway_settings(tmp_path / "gw", redis_server.url,
                                                run_worker=True)) as gw:
        yield gw


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 60,
                what: str = "the condition") -> None:
    """Wait until `check()` holds, looking every 0.2 s; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A scripted model server on loopback (OpenAI, Anthropic and Responses APIs)."""
    model = FakeOpenAI()
    yield model
    model.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real `burrow serve` process on a free port, stopped and leak-checked after."""
    from tests.served import Served, stop_and_check

    server = Served(tmp_path / "data").start()
    yield server
    stop_and_check(server)
