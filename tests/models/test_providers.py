"""Model providers speak each upstream's protocol (checked by scripted upstreams on real HTTP),
route by the model's `provider/` prefix, map failures to what a caller can act on, and never
let a key out; boxes reach them through the host socket with their box token."""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from core.keys import Keys
from core.settings import Settings
from models.budgets import ModelBudgets
from models.chat import ChatRequest
from models.providers import ProviderError, Providers
from tests.conftest import Gateway, gateway_settings, running_gateway

OPENAI_KEY = "sk-openai-" + "a1" * 20
OPENROUTER_KEY = "sk-or-v1-" + "b2" * 20
ANTHROPIC_KEY = "sk-ant-api03-" + "c3" * 20

Reply = tuple[int, dict[str, Any], dict[str, str]]


class FakeUpstream:
    """A scripted model API on localhost: it records what it was sent, refuses a wrong key
    the way the real one does, and answers the replies queued with `script` in order."""

    path = "/"

    def __init__(self, key: str) -> None:
        self.key = key
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.replies: deque[Reply] = deque()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, reply, extra = fake.answer(self.path, headers, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **extra}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def script(self, body: dict[str, Any], status: int = 200,
               headers: dict[str, str] | None = None) -> None:
        self.replies.append((status, body, headers or {}))

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        self.requests.append((headers, body))
        if path != self.path:
            return 404, {"error": {"message": f"no route {path}"}}, {}
        refused = self.check(headers, body)
        if refused is not None:
            return refused
        return self.replies.popleft() if self.replies else self.default(body)

    def check(self, headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
        raise NotImplementedError

    def default(self, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1][1]


class FakeOpenAI(FakeUpstream):
    """OpenAI's (and OpenRouter's) chat completions."""

    path = "/v1/chat/completions"

    def check(self, headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
        if headers.get("authorization") != f"Bearer {self.key}":
            given = headers.get("authorization", "").removeprefix("Bearer ")
            return 401, {"error": {"message": f"Incorrect API key provided: {given}.",
                                   "type": "invalid_request_error"}}, {}
        assert not body["model"].startswith(("openai/", "openrouter/")), body["model"]
        for m in body["messages"]:
            assert m["role"] in ("system", "user", "assistant", "tool"), m
            if m["role"] == "tool":
                assert m["tool_call_id"], m
        return None

    def default(self, body: dict[str, Any]) -> Reply:
        return 200, openai_reply(content="hello from " + body["model"]), {}


def openai_reply(content: str | None = None, calls: list[dict[str, Any]] | None = None,
                 finish: str = "stop") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


class FakeAnthropic(FakeUpstream):
    """Anthropic's Messages API: the key in x-api-key, a version header, the system prompt
    apart, max_tokens required, user and assistant turns alternating."""

    path = "/v1/messages"

    def check(self, headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
        if headers.get("x-api-key") != self.key:
            return 401, {"type": "error", "error": {"type": "authentication_error",
                                                    "message": "invalid x-api-key"}}, {}
        if not headers.get("anthropic-version"):
            return 400, {"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "anthropic-version: header is required"}}, {}
        problems = []
        if not isinstance(body.get("max_tokens"), int):
            problems.append("max_tokens: Field required")
        roles = [m["role"] for m in body["messages"]]
        if any(r not in ("user", "assistant") for r in roles):
            problems.append("messages: roles must be user or assistant")
        if any(a == b for a, b in itertools.pairwise(roles)) or roles[:1] != ["user"]:
            problems.append("messages: roles must alternate, starting with user")
        if problems:
            return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "; ".join(problems)}}, {}
        return None

    def default(self, body: dict[str, Any]) -> Reply:
        return 200, anthropic_reply([{"type": "text", "text": "hello from claude"}]), {}


def anthropic_reply(content: list[dict[str, Any]], stop: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": stop,
            "usage": {"input_tokens": 21, "output_tokens": 9}}


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(OPENAI_KEY)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def fake_openrouter() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(OPENROUTER_KEY)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(ANTHROPIC_KEY)
    yield fake
    fake.close()


def provider_settings(openai: FakeOpenAI, openrouter: FakeOpenAI, anthropic: FakeAnthropic,
                      **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "openai_api_key": OPENAI_KEY, "openai_url": openai.url + "/v1",
        "openrouter_api_key": OPENROUTER_KEY, "openrouter_url": openrouter.url + "/v1",
        "anthropic_api_key": ANTHROPIC_KEY, "anthropic_url": anthropic.url}
    return {**values, **extra}


@pytest.fixture
async def providers(fake_openai: FakeOpenAI, fake_openrouter: FakeOpenAI,
                    fake_anthropic: FakeAnthropic) -> AsyncIterator[Providers]:
    for fake in (fake_openai, fake_openrouter, fake_anthropic):
        fake.replies.clear()
        fake.requests.clear()
    registry = Providers(Settings(**provider_settings(fake_openai, fake_openrouter,
                                                      fake_anthropic)))
    yield registry
    await registry.aclose()


WRITE_FILE = {"type": "function", "function": {
    "name": "write_file", "description": "Write a file.",
    "parameters": {"type": "object", "required": ["path", "content"],
                   "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}}

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "create hello.txt containing hi"},
    {"role": "assistant", "content": "Writing it.", "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "write_file",
                     "arguments": json.dumps({"path": "hello.txt", "content": "hi"})}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "wrote 2 bytes"},
]


def chat(model: str, **extra: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": model, "messages": [
        {"role": "user", "content": "hi"}], **extra})


async def test_openai_gets_the_bearer_key_and_the_bare_model_name(
        providers: Providers, fake_openai: FakeOpenAI) -> None:
    r = await providers.chat(chat("openai/gpt-4o-mini", max_tokens=50, temperature=0.2))
    assert r.model == "openai/gpt-4o-mini"
    assert r.message.content == "hello from gpt-4o-mini" and r.message.tool_calls == []
    assert (r.usage.input_tokens, r.usage.output_tokens, r.finish_reason) == (11, 7, "stop")
    body = fake_openai.last
    assert body["model"] == "gpt-4o-mini" and body["max_completion_tokens"] == 50
    assert body["temperature"] == 0.2 and "tools" not in body


async def test_openai_tool_calls_and_results_round_trip(
        providers: Providers, fake_openai: FakeOpenAI) -> None:
    fake_openai.script(openai_reply(calls=[{
        "id": "call_2", "type": "function",
        "function": {"name": "write_file", "arguments": '{"path": "b.txt", "content": "x"}'}}],
        finish="tool_calls"))
    request = ChatRequest.model_validate({"model": "openai/gpt-4o", "messages": CONVERSATION,
                                          "tools": [WRITE_FILE]})
    r = await providers.chat(request)
    call = r.message.tool_calls[0]
    assert (call.id, call.function.name, r.finish_reason) == ("call_2", "write_file",
                                                              "tool_calls")
    assert json.loads(call.function.arguments) == {"path": "b.txt", "content": "x"}
    sent = fake_openai.last
    assert sent["tools"] == [WRITE_FILE]
    assert sent["messages"] == CONVERSATION


async def test_openrouter_uses_its_own_key_and_base_url(
        providers: Providers, fake_openai: FakeOpenAI, fake_openrouter: FakeOpenAI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake_openrouter.script(openai_reply(content='{"n": 3}'))
    r = await providers.chat(chat("openrouter/meta-llama/llama-3.1-8b", max_tokens=9,
                                  response_format={"type": "json_schema", "json_schema": {
                                      "name": "count", "schema": schema}}))
    assert json.loads(r.message.content or "") == {"n": 3}
    body = fake_openrouter.last
    assert body["model"] == "meta-llama/llama-3.1-8b" and body["max_tokens"] == 9
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "count", "schema": schema}}
    assert fake_openai.requests == []


async def test_anthropic_gets_system_tools_and_results_in_its_own_shape(
        providers: Providers, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(anthropic_reply([
        {"type": "text", "text": "Reading it back."},
        {"type": "tool_use", "id": "toolu_9", "name": "write_file",
         "input": {"path": "c.txt", "content": "y"}}], stop="tool_use"))
    request = ChatRequest.model_validate({"model": "anthropic/claude-sonnet-4-5",
                                          "messages": CONVERSATION, "tools": [WRITE_FILE]})
    r = await providers.chat(request)
    headers, body = fake_anthropic.requests[-1]
    assert headers["x-api-key"] == ANTHROPIC_KEY and headers["anthropic-version"]
    assert "authorization" not in headers
    assert body["model"] == "claude-sonnet-4-5" and body["system"] == "You are terse."
    assert body["max_tokens"] > 0
    assert body["tools"] == [{"name": "write_file", "description": "Write a file.",
                              "input_schema": WRITE_FILE["function"]["parameters"]}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text",
                                      "text": "create hello.txt containing hi"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Writing it."},
            {"type": "tool_use", "id": "call_1", "name": "write_file",
             "input": {"path": "hello.txt", "content": "hi"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                      "content": "wrote 2 bytes"}]}]
    assert r.message.content == "Reading it back." and r.finish_reason == "tool_calls"
    call = r.message.tool_calls[0]
    assert (call.id, call.function.name) == ("toolu_9", "write_file")
    assert json.loads(call.function.arguments) == {"path": "c.txt", "content": "y"}
    assert (r.usage.input_tokens, r.usage.output_tokens) == (21, 9)


async def test_anthropic_is_asked_for_json_matching_the_schema(
        providers: Providers, fake_anthropic: FakeAnthropic) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    fake_anthropic.script(anthropic_reply([{"type": "text", "text": '{"ok": true}'}]))
    r = await providers.chat(chat("anthropic/claude-haiku-4-5", response_format={
        "type": "json_schema", "json_schema": {"name": "r", "schema": schema}}))
    assert r.message.content == '{"ok": true}' and r.finish_reason == "stop"
    assert json.dumps(schema) in fake_anthropic.last["system"]


async def test_an_unknown_provider_is_400_naming_the_four(providers: Providers) -> None:
    for model in ("gemini/pro", "gpt-4o", "openai/"):
        with pytest.raises(ProviderError) as caught:
            await providers.chat(chat(model))
        assert caught.value.status == 400 and caught.value.code == "unknown_provider"
        assert all(p in caught.value.message
                   for p in ("anthropic", "openai", "openrouter", "local"))


async def test_a_provider_without_a_key_is_503_saying_which_setting() -> None:
    registry = Providers(Settings())
    try:
        for model, setting in (("anthropic/claude-x", "ANTHROPIC_API_KEY"),
                               ("openai/gpt-4o", "OPENAI_API_KEY"),
                               ("openrouter/x/y", "OPENROUTER_API_KEY"),
                               ("local/smollm2-135m", "BURROW_LOCAL_MODEL_URL")):
            with pytest.raises(ProviderError) as caught:
                await registry.chat(chat(model))
            assert caught.value.status == 503 and setting in caught.value.message
    finally:
        await registry.aclose()


async def test_upstream_failures_map_to_what_the_caller_can_do(
        providers: Providers, fake_openai: FakeOpenAI) -> None:
    cases = [
        (500, {"error": {"message": "overloaded"}}, {}, 503, "model_unavailable"),
        (429, {"error": {"message": "slow down"}}, {"retry-after": "7"}, 429, "rate_limited"),
        (400, {"error": {"message": "bad " + "x" * 2000}}, {}, 400, "model_rejected"),
    ]
    for status, body, headers, expected, code in cases:
        fake_openai.script(body, status, headers)
        with pytest.raises(ProviderError) as caught:
            await providers.chat(chat("openai/gpt-4o"))
        assert (caught.value.status, caught.value.code) == (expected, code)
        assert len(caught.value.message) < 700
    fake_openai.script({"error": {"message": "slow down"}}, 429, {"retry-after": "7"})
    with pytest.raises(ProviderError) as caught:
        await providers.chat(chat("openai/gpt-4o"))
    assert caught.value.headers == {"Retry-After": "7"} and "slow down" in caught.value.message


async def test_an_unreachable_upstream_is_503() -> None:
    closed = FakeOpenAI(OPENAI_KEY)
    closed.close()
    registry = Providers(Settings(openai_api_key=OPENAI_KEY, openai_url=closed.url + "/v1"))
    try:
        with pytest.raises(ProviderError) as caught:
            await registry.chat(chat("openai/gpt-4o"))
        assert caught.value.status == 503 and "retry" in caught.value.message
    finally:
        await registry.aclose()


async def test_a_rejected_key_is_reported_without_the_key(
        fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    wrong = "sk-wrong-" + "d4" * 20
    registry = Providers(Settings(openai_api_key=wrong, openai_url=fake_openai.url + "/v1",
                                  anthropic_api_key=wrong, anthropic_url=fake_anthropic.url))
    try:
        for model, setting in (("openai/gpt-4o", "OPENAI_API_KEY"),
                               ("anthropic/claude-x", "ANTHROPIC_API_KEY")):
            with pytest.raises(ProviderError) as caught:
                await registry.chat(chat(model))
            assert caught.value.status == 503 and setting in caught.value.message
            assert wrong not in caught.value.message and "d4d4" not in caught.value.message
    finally:
        await registry.aclose()


# -- through the host socket, from inside a box ---------------------------------------------------

ASK_MODEL = """
import json, os, socket, sys
def post(token, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["BURROW_HOST_SOCKET"])
    data = json.dumps(body).encode()
    s.sendall((f"POST /v1/model/chat HTTP/1.1\\r\\nHost: h\\r\\nAuthorization: Bearer {token}"
               f"\\r\\nContent-Type: application/json\\r\\nContent-Length: {len(data)}\\r\\n"
               "Connection: close\\r\\n\\r\\n").encode() + data)
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
    head, _, body = reply.partition(b"\\r\\n\\r\\n")
    return int(head.split()[1]), json.loads(body)
token = os.environ["BURROW_BOX_TOKEN"]
print(json.dumps([post(token, json.loads(arg)) for arg in sys.argv[2:]]
                 + [post(sys.argv[1], json.loads(sys.argv[2]))]))
"""


@pytest.fixture
async def gateway_with_models(tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis,
                              fake_openai: FakeOpenAI, fake_openrouter: FakeOpenAI,
                              fake_anthropic: FakeAnthropic) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                **provider_settings(fake_openai, fake_openrouter,
                                                    fake_anthropic))
    async with running_gateway(settings) as gw:
        yield gw


@pytest.mark.boxes
async def test_a_box_calls_models_through_the_host_socket_and_never_sees_a_key(
        gateway_with_models: Gateway, fake_anthropic: FakeAnthropic, redis: Redis) -> None:
    gw = gateway_with_models
    headers, home = await gw.tenant("m")
    tenant_key = headers["Authorization"].split()[1]
    fake_anthropic.script(anthropic_reply([{"type": "text", "text": "hi from the host"}]))
    bodies = [{"model": "anthropic/claude-x", "messages": [{"role": "user", "content": "hi"}]},
              {"model": "gemini/pro", "messages": [{"role": "user", "content": "hi"}]},
              {"model": "openai/gpt-4o", "messages": []}]
    r = await gw.client.post(f"/v1/boxes/{home}/exec", json={
        "command": ["python3", "-c", ASK_MODEL, tenant_key, *map(json.dumps, bodies)],
        "env": {}}, headers=headers)
    assert r.json()["exit_code"] == 0, r.json()["stderr"]
    (ok, answer), (unknown, error), (invalid, _), (forbidden, _) = json.loads(r.json()["stdout"])
    assert ok == 200 and answer["message"]["content"] == "hi from the host"
    assert answer["usage"] == {"input_tokens": 21, "output_tokens": 9}
    assert unknown == 400 and error["error"]["code"] == "unknown_provider"
    assert (invalid, forbidden) == (422, 401)  # a tenant key is no box token
    env = await gw.client.post(f"/v1/boxes/{home}/exec", json={"command": "env"},
                               headers=headers)
    assert all(k not in env.json()["stdout"] for k in (ANTHROPIC_KEY, OPENAI_KEY,
                                                        OPENROUTER_KEY))
    assert ANTHROPIC_KEY not in r.text
    usage = await redis.hgetall(ModelBudgets(redis, Keys()).usage_key("m"))
    assert usage[b"anthropic:calls"] == b"1" and usage[b"anthropic:output_tokens"] == b"9"


def test_chat_request_rejects_what_no_provider_takes() -> None:
    with pytest.raises(ValueError):
        ChatRequest.model_validate({"model": "openai/x", "messages": [{"role": "robot"}]})
    with pytest.raises(ValueError):
        ChatRequest.model_validate({"model": "openai/x", "messages": [
            {"role": "user", "content": "x"}], "max_tokens": 0})
