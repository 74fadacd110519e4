"""The bundled local models, for real: llama.cpp's server as a child process with SmolLM2 135M
and Gemma 3 270M, plain chat, schema-held JSON, tool calls emulated for models that have no
function calling, and a box calling them through the host socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from core.settings import Settings
from models import servers as modelservers
from models.chat import ChatRequest
from models.providers import ProviderError, Providers
from models.servers import LocalModels, LocalModelServer
from tests.conftest import Gateway, gateway_settings, running_gateway

pytestmark = pytest.mark.local_model

# The test command installs the local-model extra: without it these tests fail (they never
# skip), so a broken install cannot pass unnoticed.
MODELS = ["local/smollm2-135m", "local/gemma-3-270m"]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    server = LocalModelServer(tmp_path_factory.mktemp("local-model"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def providers(local_server: LocalModelServer) -> AsyncIterator[Providers]:
    registry = Providers(Settings(local_model_url=local_server.url))
    yield registry
    await registry.aclose()


WRITE_FILE = {"type": "function", "function": {
    "name": "write_file", "description": "Create or overwrite a text file.",
    "parameters": {"type": "object", "required": ["path", "content"],
                   "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}}
RUN = {"type": "function", "function": {
    "name": "run", "description": "Run a shell command.",
    "parameters": {"type": "object", "required": ["command"],
                   "properties": {"command": {"type": "string"}}}}}


def request(model: str, messages: list[dict[str, Any]], **extra: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": model, "messages": messages, **extra})


async def test_plain_chat_answers_text(providers: Providers) -> None:
    r = await providers.chat(request("local/smollm2-135m", [
        {"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=16))
    assert r.message.content and r.message.content.strip()
    assert r.message.tool_calls == [] and r.usage.output_tokens > 0
    assert r.model == "local/smollm2-135m"


@pytest.mark.parametrize("model", MODELS)
async def test_a_json_schema_response_format_gives_json_matching_it(
        providers: Providers, model: str) -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["city", "people"],
              "properties": {"city": {"type": "string"},
                             "people": {"type": "integer"},
                             "size": {"enum": ["small", "big"]}}}
    r = await providers.chat(request(model, [
        {"role": "user", "content": "Describe Paris as JSON: its name and population."}],
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "city",
                                                                "schema": schema}}))
    value = json.loads(r.message.content or "")
    assert isinstance(value["city"], str) and isinstance(value["people"], int)
    assert set(value) <= {"city", "people", "size"}
    assert value.get("size", "small") in ("small", "big")


@pytest.mark.parametrize("model", MODELS)
async def test_tools_are_emulated_as_one_well_formed_call(
        providers: Providers, model: str) -> None:
    r = await providers.chat(request(model, [
        {"role": "user", "content": "Create the file hello.txt containing hi"}],
        tools=[RUN, WRITE_FILE], max_tokens=60))
    assert r.finish_reason == "tool_calls" and r.message.content is None
    (call,) = r.message.tool_calls
    assert call.id.startswith("call_") and call.function.name in ("write_file", "run")
    arguments = json.loads(call.function.arguments)
    required = {"write_file": {"path", "content"}, "run": {"command"}}[call.function.name]
    assert set(arguments) == required
    assert all(isinstance(v, str) for v in arguments.values())


async def test_after_a_tool_result_the_model_can_answer(providers: Providers) -> None:
    r = await providers.chat(request("local/smollm2-135m", [
        {"role": "user", "content": "Create the file hello.txt containing hi"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {
                "name": "write_file",
                "arguments": json.dumps({"path": "hello.txt", "content": "hi"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}],
        tools=[WRITE_FILE], max_tokens=60))
    # Whatever it chose, the reply is one well-formed answer or call, never raw JSON text.
    if r.message.tool_calls:
        assert r.finish_reason == "tool_calls"
        json.loads(r.message.tool_calls[0].function.arguments)
    else:
        assert r.finish_reason in ("stop", "length") and r.message.content is not None
        assert not r.message.content.lstrip().startswith('{"tool"')


# -- through the host socket, from inside a box ---------------------------------------------------

ASK_MODEL = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["BURROW_HOST_SOCKET"])
data = sys.argv[1].encode()
s.sendall((f"POST /v1/model/chat HTTP/1.1\\r\\nHost: h\\r\\n"
           f"Authorization: Bearer {os.environ['BURROW_BOX_TOKEN']}\\r\\n"
           f"Content-Type: application/json\\r\\nContent-Length: {len(data)}\\r\\n"
           "Connection: close\\r\\n\\r\\n").encode() + data)
reply = b""
while chunk := s.recv(65536):
    reply += chunk
head, _, body = reply.partition(b"\\r\\n\\r\\n")
print(json.dumps([int(head.split()[1]), json.loads(body)]))
"""


@pytest.fixture
async def gateway_with_local_model(tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis,
                                   local_server: LocalModelServer) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                local_model_url=local_server.url)
    async with running_gateway(settings) as gw:
        yield gw


async def test_a_box_calls_the_local_model_through_the_host_socket(
        gateway_with_local_model: Gateway) -> None:
    gw = gateway_with_local_model
    headers, home = await gw.tenant("local")
    body = {"model": "local/smollm2-135m", "max_tokens": 40, "tools": [WRITE_FILE],
            "messages": [{"role": "user", "content": "Create the file hello.txt containing hi"}]}
    r = await gw.client.post(f"/v1/boxes/{home}/exec", json={
        "command": ["python3", "-c", ASK_MODEL, json.dumps(body)]}, headers=headers)
    assert r.json()["exit_code"] == 0, r.json()["stderr"]
    status, answer = json.loads(r.json()["stdout"])
    assert status == 200, answer
    assert answer["finish_reason"] == "tool_calls"
    assert answer["message"]["tool_calls"][0]["function"]["name"] == "write_file"


# -- the server process ---------------------------------------------------------------------------

ORPHAN = """
import sys, time
from pathlib import Path
from models.servers import LocalModelServer
server = LocalModelServer(Path(sys.argv[1]))
server.start()
print(server.proc.pid, flush=True)
time.sleep(600)
"""


def test_the_server_dies_with_its_parent(local_server: LocalModelServer,
                                         tmp_path: Path) -> None:
    """A `burrow serve` killed outright must not leave the model server holding memory."""
    models = local_server.data_dir / "models"  # the assembled Gemma file, made once
    (tmp_path / "models").symlink_to(models)
    with subprocess.Popen([sys.executable, "-c", ORPHAN, str(tmp_path)],
                          stdout=subprocess.PIPE, cwd=Path(__file__).parents[2]) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{child}").exists() and "\nState:\tZ" not in _status(child):
        assert time.monotonic() < deadline, "the model server outlived its parent"
        time.sleep(0.05)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "\nState:\tZ"


# -- the build and the supervisor -----------------------------------------------------------------

def test_the_installed_llama_cpp_uses_nothing_above_the_floor() -> None:
    """Built for x86-64-v3, never natively: a build that uses AVX-512 or AMX faults on VMs
    that report them but do not let processes use them."""
    info = modelservers.system_info()
    assert info.get("AVX2") and info.get("FMA") and info.get("F16C"), info
    assert [name for name in modelservers.ABOVE_FLOOR if info.get(name)] == [], info


def test_a_cpu_below_the_floor_is_refused_with_what_to_do(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx fma\n")
    with pytest.raises(modelservers.LocalModelError, match=r"AVX2, F16C.*BURROW_LOCAL_MODEL_URL"):
        modelservers.check_cpu(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu avx avx2 fma f16c\n")
    modelservers.check_cpu(cpuinfo)


LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper, "
                                    "with many chapters."}]


@pytest.fixture(scope="module")
def supervised(local_server: LocalModelServer) -> Iterator[LocalModels]:
    models = LocalModels(local_server.data_dir)  # reuses the assembled Gemma file
    models.start()
    yield models
    models.stop()


@pytest.mark.parametrize("model", MODELS)
async def test_a_server_killed_by_sigsegv_mid_request_is_named_and_restarted(
        supervised: LocalModels, model: str) -> None:
    alias = model.removeprefix("local/")
    registry = Providers(Settings(local_model_routes=supervised.routes),
                         local_servers=supervised)
    try:
        pid = supervised.servers[alias].proc.pid  # type: ignore[union-attr]
        call = asyncio.create_task(registry.chat(request(model, LONG, max_tokens=2000)))
        await asyncio.sleep(1.0)  # the server is generating
        assert not call.done()
        os.kill(pid, signal.SIGSEGV)
        with pytest.raises(ProviderError) as raised:
            await call
        error = raised.value
        assert error.status == 503 and "SIGSEGV" in error.message
        assert f"local/{alias}" in error.message and "/" not in error.message.replace(
            f"local/{alias}", "")  # no host path reaches the box that reads it
        assert supervised.status()[alias]["last_exit"] == "SIGSEGV"
        deadline = time.monotonic() + 90
        while True:  # back on the same route, with backoff
            try:
                answer = await registry.chat(request(model, [
                    {"role": "user", "content": "Say hi."}], max_tokens=8))
                break
            except ProviderError as again:
                assert again.status == 503, again.message
                assert time.monotonic() < deadline, "the server was not restarted"
                await asyncio.sleep(0.5)
        assert answer.usage.output_tokens > 0
        # the supervisor marks it running once its readiness check passes, which can be a
        # moment after the server first answers
        while supervised.status()[alias]["state"] != "running":
            assert time.monotonic() < deadline, supervised.status()[alias]
            await asyncio.sleep(0.1)
        assert supervised.status()[alias] == {
            "state": "running", "last_exit": "SIGSEGV", "restarts": 1,
            "log": str(supervised.servers[alias].log_path)}
        assert supervised.servers[alias].proc.pid != pid  # type: ignore[union-attr]
    finally:
        await registry.aclose()
