"""`Relay.answer` against scripted providers on loopback: passthrough adds the server's key and
streams the provider's own answer unchanged, translation serves every other model in the
CLI's format, and refusals come back in the CLI's error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.settings import Settings
from models.providers import Providers
from models.relay import Relay
from models.relay.sse import SseParser
from tests.fakes import FakeOpenAI, anthropic_events, text_reply, tool_reply
from tests.models.test_relay_wire import CLAUDE_CODE_REQUEST, CODEX_REQUEST, OPENCODE_REQUEST

ANTHROPIC_KEY = "sk-ant-test-7f3e2d1c0b9a8f7e6d5c"
OPENAI_KEY = "sk-test-openai-5a4b3c2d1e0f9a8b"
CLIENT = {"x-api-key": "dummy", "authorization": "Bearer dummy", "openai-organization": "org",
          "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219"}


@pytest.fixture
async def providers(fake: FakeOpenAI) -> AsyncIterator[Providers]:
    registry = Providers(Settings(
        anthropic_api_key=ANTHROPIC_KEY, anthropic_url=fake.root_url,
        openai_api_key=OPENAI_KEY, openai_url=fake.url, local_model_url=fake.url))
    yield registry
    await registry.aclose()


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def test_passthrough_adds_the_server_key_and_streams_the_provider_answer_unchanged(
        providers: Providers, fake: FakeOpenAI) -> None:
    fake.script = [tool_reply("Bash", command="echo hi > hello.txt")]
    answer = await Relay(providers).answer("anthropic", "POST", "/v1/messages?beta=true", CLIENT,
                                           raw(CLAUDE_CODE_REQUEST), "anthropic/claude-haiku-4")
    data = await answer.read()
    assert answer.status == 200 and answer.mode == "passthrough"
    assert answer.media_type == "text/event-stream"
    assert data == b"".join(anthropic_events(tool_reply("Bash", command="echo hi > hello.txt"),
                                             "claude-haiku-4"))
    assert answer.usage.model_dump() == {"input_tokens": 11, "output_tokens": 7}
    sent, headers = fake.requests[0], fake.headers[0]
    assert fake.paths == ["/v1/messages"] and sent["model"] == "claude-haiku-4"
    assert headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in headers
    assert "openai-organization" not in headers
    assert "anthropic-beta" not in headers  # beta flags: only those the policy names
    assert sent["thinking"] == CLAUDE_CODE_REQUEST["thinking"]  # the provider's own fields stay


async def test_passthrough_of_a_responses_call_to_openai_uses_the_bearer_key(
        providers: Providers, fake: FakeOpenAI) -> None:
    fake.script = [text_reply("done")]
    answer = await Relay(providers).answer("openai", "POST", "/v1/responses", CLIENT,
                                           raw(CODEX_REQUEST), "openai/gpt-test",
                                           max_output_tokens=2000)
    data = await answer.read()
    assert answer.mode == "passthrough" and b"response.completed" in data
    assert fake.paths == ["/v1/responses"]
    assert fake.headers[0]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert fake.requests[0]["max_output_tokens"] == 2000
    assert answer.usage.output_tokens == 7


async def test_claude_code_on_an_openai_model_is_translated_both_ways(
        providers: Providers, fake: FakeOpenAI) -> None:
    fake.script = [tool_reply("Bash", command="ls")]
    answer = await Relay(providers, keepalive_s=None).answer(
        "anthropic", "POST", "/v1/messages", CLIENT, raw(CLAUDE_CODE_REQUEST), "openai/gpt-test")
    events = SseParser().feed(await answer.read())
    assert answer.mode == "translated" and answer.usage.input_tokens == 11
    assert fake.paths == ["/v1/chat/completions"]
    assert fake.headers[0]["authorization"] == f"Bearer {OPENAI_KEY}"
    sent = fake.requests[0]
    assert sent["model"] == "gpt-test" and [t["function"]["name"] for t in sent["tools"]] == [
        "Bash"]
    starts = [e.json() for e in events if e.name == "content_block_start"]
    assert starts[0] is not None and starts[0]["content_block"]["name"] == "Bash"
    delta = next(e.json() for e in events if e.name == "message_delta")
    assert delta is not None and delta["delta"]["stop_reason"] == "tool_use"


async def test_a_local_model_answers_opencode_through_tool_emulation(
        providers: Providers, fake: FakeOpenAI) -> None:
    # A local server answers tools as a JSON action (models/emulation.py); the relay makes it
    # an OpenAI tool call in a chat-completions stream again.
    fake.script = [text_reply(json.dumps({"tool": "write", "arguments": {
        "filePath": "notes.txt"}}))]
    answer = await Relay(providers, keepalive_s=None).answer(
        "openai", "POST", "/v1/chat/completions", CLIENT, raw(OPENCODE_REQUEST),
        "local/smollm2-135m")
    events = SseParser().feed(await answer.read())
    assert events[-1].data == "[DONE]"
    calls = [c for e in events[:-1] if (chunk := e.json()) is not None
             for c in chunk["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "write"
    assert fake.requests[0]["max_tokens"] == 1024  # 32000 asked; local output is bounded
    assert "tools" not in fake.requests[0]  # emulated in the prompt and grammar instead


async def test_a_slow_translated_stream_sends_keepalives_before_the_answer(
        providers: Providers, fake: FakeOpenAI) -> None:
    fake.delay_s = 0.35
    fake.script = [text_reply("late")]
    answer = await Relay(providers, keepalive_s=0.1).answer(
        "openai", "POST", "/v1/responses", CLIENT, raw(CODEX_REQUEST), "anthropic/claude-x")
    assert answer.status == 200  # committed before the model answered
    chunks = [chunk async for chunk in answer.body]
    assert chunks[:2] == [b": keep-alive\n\n"] * 2
    events = SseParser().feed(b"".join(chunks))
    assert events[-1].name == "response.completed"
    assert fake.paths == ["/v1/messages"]  # Codex on an Anthropic model: translated
    assert answer.usage.output_tokens == 7


async def test_a_local_model_repeating_its_last_call_is_asked_for_its_answer(
        providers: Providers, fake: FakeOpenAI) -> None:
    # OPENCODE_REQUEST ends with write(hello.txt) and its result; the model calls it again
    # (the CLI sent its call back with a default filled in: still the same call).
    request = json.loads(json.dumps(OPENCODE_REQUEST))
    request["messages"][3]["tool_calls"][0]["function"]["arguments"] = json.dumps(
        {"filePath": "hello.txt", "overwrite": False})
    fake.script = [text_reply(json.dumps({"tool": "write", "arguments": {
        "filePath": "hello.txt"}})), text_reply("I wrote hello.txt.")]
    answer = await Relay(providers, keepalive_s=None).answer(
        "openai", "POST", "/v1/chat/completions", {"x-burrow-tools": "write,read"},
        raw({**request, "stream": False}), "local/smollm2-135m")
    body = json.loads(await answer.read())
    assert body["choices"][0]["message"]["content"] == "I wrote hello.txt."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "response_format" not in fake.requests[1]  # asked without tools
    assert fake.requests[1]["max_tokens"] == 256
    assert "give your final answer now" in fake.requests[1]["messages"][-1]["content"]
    assert answer.usage.input_tokens == 22  # both calls count


def test_small_models_get_the_named_tools_cut_to_their_first_sentence_and_required_fields(
        ) -> None:
    from models.relay import WIRES, small
    tool = {"type": "function", "function": {
        "name": "bash", "description": "Run a command. It has many rules.\n\nMore text " * 50,
        "parameters": {"type": "object", "required": ["command"], "properties": {
            "command": {"type": "string"}, "timeout": {"type": "number"}}}}}
    other = {"type": "function", "function": {"name": "task", "description": "Sub-agents."}}
    chat = WIRES["chat"].to_chat({**OPENCODE_REQUEST, "tools": [tool, other]}, "local/x")
    slim = small.slim(chat, "bash,write")
    assert [t.function.name for t in slim.tools or []] == ["bash"]
    function = (slim.tools or [])[0].function
    assert function.description == "Run a command."
    assert list(function.parameters["properties"]) == ["command"]
    assert [t.function.name for t in small.slim(chat).tools or []] == ["bash", "task"]


async def test_a_quick_failure_keeps_its_status(providers: Providers, fake: FakeOpenAI) -> None:
    fake.close()  # the provider is gone: the call fails at once
    answer = await Relay(providers, keepalive_s=5).answer(
        "anthropic", "POST", "/v1/messages", CLIENT, raw(CLAUDE_CODE_REQUEST), "openai/gpt-test")
    body = json.loads(await answer.read())
    assert answer.status == 503 and "cannot reach openai" in body["error"]["message"]


async def test_a_failure_after_the_stream_started_is_an_error_event(
        providers: Providers, fake: FakeOpenAI) -> None:
    fake.delay_s = 0.3
    fake.errors = [(500, {"error": {"message": "the GPU caught fire"}})]
    answer = await Relay(providers, keepalive_s=0.1).answer(
        "anthropic", "POST", "/v1/messages", CLIENT, raw(CLAUDE_CODE_REQUEST), "openai/gpt-test")
    assert answer.status == 200
    events = SseParser().feed(await answer.read())
    assert events[-1].name == "error"
    error = events[-1].json()
    assert error is not None and "the GPU caught fire" in error["error"]["message"]


async def test_refusals_come_back_in_the_clients_error_shape(
        providers: Providers, fake: FakeOpenAI) -> None:
    relay = Relay(providers)
    answer = await relay.answer("anthropic", "POST", "/v1/messages/count_tokens", CLIENT,
                                raw(CLAUDE_CODE_REQUEST), "anthropic/claude-haiku-4")
    body = json.loads(await answer.read())
    assert answer.status == 404 and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    answer = await relay.answer("openai", "POST", "/v1/responses", CLIENT, b"{not json",
                                "openai/gpt-test")
    body = json.loads(await answer.read())
    assert answer.status == 400 and body["error"]["code"] == "invalid_request"
    answer = await relay.answer("openai", "POST", "/v1/responses", CLIENT, raw(CODEX_REQUEST),
                                "mistral/large")
    assert answer.status == 400 and b"unknown_provider" in await answer.read()
    assert fake.requests == []


async def test_a_provider_that_rejects_the_key_is_reported_without_the_key(
        providers: Providers, fake: FakeOpenAI) -> None:
    fake.errors = [(401, {"type": "error", "error": {
        "type": "authentication_error", "message": f"invalid x-api-key: {ANTHROPIC_KEY}"}})]
    answer = await Relay(providers).answer("anthropic", "POST", "/v1/messages", CLIENT,
                                           raw(CLAUDE_CODE_REQUEST), "anthropic/claude-x")
    body = await answer.read()
    assert answer.status == 503 and ANTHROPIC_KEY.encode() not in body
    error = json.loads(body)["error"]
    assert error["type"] == "api_error" and "ANTHROPIC_API_KEY" in error["message"]
