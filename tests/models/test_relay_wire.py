"""The relay's wire formats and policy, without a network: requests shaped as Claude Code,
Codex and OpenCode send them (fields recorded from the pinned CLIs) read into Burrow's chat
API, and answers written back as each client reads them — streams reassembled here the way
a client does, event by event."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import zstandard

from models.chat import AssistantMessage, ChatResponse, FunctionCall, ToolCall, Usage
from models.relay import (
    WIRES,
    RelayAllowance,
    RelayError,
    clamp_output,
    client_headers,
    pin_model,
    route,
)
from models.relay.allowlist import screen
from models.relay.policy import read_body, requested_output
from models.relay.sse import SseParser
from models.relay.wire import UsageTap
from models.worstcase import call_tokens
from tests.fakes import (
    anthropic_events,
    chat_events,
    output_bound,
    prompt_tokens,
    responses_events,
    text_reply,
    tool_reply,
)

BASH = {"name": "Bash", "description": "execute shell commands", "input_schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {"command": {"type": "string"}}, "required": ["command"]}}

CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5", "max_tokens": 32000, "temperature": 1, "stream": True,
    "thinking": {"budget_tokens": 31999, "type": "enabled"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": "{\"device_id\":\"d\"}"}, "some_future_field": {"x": 1},
    "output_config": {"effort": "high"},
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332;"},
        {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "CWD: /workspace"}],
    "tools": [BASH,
              {"name": "DeferredToolPlaceholder", "description": "", "defer_loading": True,
               "input_schema": {"type": "object"}},
              {"type": "web_search_20250305", "name": "web_search"}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "create hello.txt",
                                      "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Creating it."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash",
             "input": {"command": "echo hi > hello.txt"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "permission denied"}]},
            {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
            {"type": "text", "text": "try again"}]}]}


def tool_response(name: str, arguments: dict[str, Any], text: str | None = None,
                  ) -> ChatResponse:
    return ChatResponse(
        model="local/smollm2-135m", finish_reason="tool_calls", usage=Usage(
            input_tokens=120, output_tokens=9),
        message=AssistantMessage(content=text, tool_calls=[ToolCall(
            id="call_abc", function=FunctionCall(name=name, arguments=json.dumps(arguments)))]))


def events(data: bytes) -> list[tuple[str | None, dict[str, Any] | str]]:
    parsed = SseParser().feed(data)
    return [(e.name, e.json() or e.data) for e in parsed]


def stream_of(wire: str, response: ChatResponse, body: dict[str, Any]) -> bytes:
    return b"".join(WIRES[wire].events(response, body))


# -- Anthropic Messages --------------------------------------------------------------------------

def test_a_claude_code_request_reads_as_a_chat_request_without_what_it_cannot_use() -> None:
    chat = WIRES["messages"].to_chat(CLAUDE_CODE_REQUEST, "local/smollm2-135m", 1024)
    roles = [m.role for m in chat.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert chat.messages[0].content == "You are a Claude agent.\n\nCWD: /workspace"
    assistant = chat.messages[2]
    assert assistant.content == "Creating it."
    assert assistant.tool_calls is not None and assistant.tool_calls[0].id == "toolu_1"
    assert json.loads(assistant.tool_calls[0].function.arguments) == {
        "command": "echo hi > hello.txt"}
    assert chat.messages[3].tool_call_id == "toolu_1"
    assert chat.messages[3].content == "error: permission denied"
    assert chat.messages[4].content is not None and "try again" in chat.messages[4].content
    assert "image left out" in chat.messages[4].content
    assert [t.function.name for t in chat.tools or []] == ["Bash"]
    assert "$schema" not in (chat.tools or [])[0].function.parameters
    assert chat.max_tokens == 1024 and chat.temperature is None  # 1 is the API's default
    assert chat.response_format is None


def test_messages_structured_output_and_tool_choice_none_are_mapped() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    body = {**CLAUDE_CODE_REQUEST, "temperature": 0.2, "tool_choice": {"type": "none"},
            "output_config": {"format": {"type": "json_schema", "schema": schema}}}
    chat = WIRES["messages"].to_chat(body, "openai/gpt-test")
    assert chat.tools is None and chat.temperature == 0.2 and chat.max_tokens == 32000
    assert chat.response_format is not None and chat.response_format.json_schema is not None
    assert chat.response_format.json_schema.schema_ == schema


@pytest.mark.parametrize("body", [{"messages": []}, {"messages": "hi"}, {}, {"messages": [1]}])
def test_a_messages_request_without_messages_is_refused_not_crashed(body: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        WIRES["messages"].to_chat(body, "local/x")
    assert caught.value.status == 400


def test_a_messages_stream_reassembles_to_the_answer_like_a_client_reads_it() -> None:
    response = tool_response("Bash", {"command": "ls"}, text="Looking.")
    seen = events(stream_of("messages", response, {"model": "smollm2-135m"}))
    names = [n for n, _ in seen]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks: dict[int, dict[str, Any]] = {}
    for name, data in seen:
        assert isinstance(data, dict) and data["type"] == name
        if name == "content_block_start":
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif name == "content_block_delta":
            delta = data["delta"]
            block = blocks[data["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                block["json"] += delta["partial_json"]
    assert blocks[0]["text"] == "Looking."
    assert blocks[1]["type"] == "tool_use" and blocks[1]["name"] == "Bash"
    assert blocks[1]["id"] == "call_abc" and json.loads(blocks[1]["json"]) == {"command": "ls"}
    start, delta = seen[0][1], seen[-2][1]
    assert isinstance(start, dict) and isinstance(delta, dict)
    assert start["message"]["model"] == "smollm2-135m"
    assert start["message"]["usage"]["input_tokens"] == 120
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 9


def test_a_messages_answer_maps_finish_reasons() -> None:
    cut = ChatResponse(model="m", message=AssistantMessage(content="abc"), finish_reason="length")
    answer = WIRES["messages"].answer(cut, {"model": "m"})
    assert answer["stop_reason"] == "max_tokens" and answer["content"] == [
        {"type": "text", "text": "abc"}]
    garbled = tool_response("Bash", {})
    garbled.message.tool_calls[0].function.arguments = "not json"
    answer = WIRES["messages"].answer(garbled, {"model": "m"})
    assert answer["content"][0]["input"] == {"arguments": "not json"}


# -- OpenAI Responses ----------------------------------------------------------------------------

CODEX_REQUEST: dict[str, Any] = {
    "model": "gpt-test", "stream": True, "store": False, "tool_choice": "auto",
    "parallel_tool_calls": True, "reasoning": {"summary": "auto"},
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
    "client_metadata": {"session_id": "s"}, "instructions": "Base instructions.",
    "max_output_tokens": 5000,
    "tools": [
        {"type": "function", "name": "exec_command", "description": "Runs a command.",
         "strict": False, "parameters": {"type": "object", "properties": {
             "cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "custom", "name": "apply_patch", "description": "Patch files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
        {"type": "namespace", "name": "multi_agent_v1", "tools": []},
        {"type": "web_search", "external_web_access": True}],
    "input": [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "Be precise."}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context/>"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "create hello.txt"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "xx"},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "On it."}]},
        {"type": "function_call", "call_id": "call_1", "name": "exec_command",
         "arguments": "{\"cmd\":\"echo hi > hello.txt\"}"},
        {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch",
         "input": "*** Begin Patch"},
        {"type": "function_call_output", "call_id": "call_1", "output": "done"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "patched"},
        {"type": "message", "role": "developer", "content": "Later note."}]}


def test_a_codex_request_reads_as_a_chat_request_with_one_system_message() -> None:
    chat = WIRES["responses"].to_chat(CODEX_REQUEST, "local/gemma-3-270m", 1024)
    roles = [m.role for m in chat.messages]
    assert roles == ["system", "user", "user", "assistant", "tool", "tool"]
    assert chat.messages[0].content == "Base instructions.\n\nBe precise.\n\nLater note."
    calls = chat.messages[3].tool_calls or []
    assert chat.messages[3].content == "On it."
    assert [c.id for c in calls] == ["call_1", "call_2"]
    assert json.loads(calls[1].function.arguments) == {"input": "*** Begin Patch"}
    assert [m.tool_call_id for m in chat.messages[4:]] == ["call_1", "call_2"]
    assert [t.function.name for t in chat.tools or []] == ["exec_command", "apply_patch"]
    assert chat.max_tokens == 1024


def test_a_responses_stream_reassembles_to_its_completed_response() -> None:
    response = tool_response("exec_command", {"cmd": "ls"}, text="Listing.")
    seen = events(stream_of("responses", response, CODEX_REQUEST))
    names = [n for n, _ in seen]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    numbers = [d["sequence_number"] for _, d in seen if isinstance(d, dict)]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    text = "".join(d["delta"] for n, d in seen if n == "response.output_text.delta"
                   and isinstance(d, dict))
    arguments = "".join(d["delta"] for n, d in seen
                        if n == "response.function_call_arguments.delta" and isinstance(d, dict))
    assert text == "Listing." and json.loads(arguments) == {"cmd": "ls"}
    done = [d["item"] for n, d in seen if n == "response.output_item.done" and isinstance(d, dict)]
    final = seen[-1][1]
    assert isinstance(final, dict)
    assert final["response"]["output"] == done
    assert done[1]["call_id"] == "call_abc" and done[1]["type"] == "function_call"
    assert final["response"]["usage"]["input_tokens"] == 120


def test_a_call_of_a_custom_tool_goes_back_as_a_custom_tool_call() -> None:
    response = tool_response("apply_patch", {"input": "*** Begin Patch\n*** End Patch"})
    answer = WIRES["responses"].answer(response, CODEX_REQUEST)
    assert answer["output"][0]["type"] == "custom_tool_call"
    assert answer["output"][0]["input"] == "*** Begin Patch\n*** End Patch"
    seen = events(stream_of("responses", response, CODEX_REQUEST))
    assert "response.custom_tool_call_input.delta" in [n for n, _ in seen]


def test_a_responses_answer_cut_at_its_bound_is_incomplete() -> None:
    cut = ChatResponse(model="m", message=AssistantMessage(content="abc"), finish_reason="length")
    seen = events(stream_of("responses", cut, {"model": "m"}))
    final = seen[-1][1]
    assert seen[-1][0] == "response.incomplete" and isinstance(final, dict)
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


# -- OpenAI chat completions ---------------------------------------------------------------------

OPENCODE_REQUEST: dict[str, Any] = {
    "model": "m", "max_tokens": 32000, "stream": True, "tool_choice": "auto",
    "stream_options": {"include_usage": True}, "top_p": 0.9,
    "tools": [{"type": "function", "function": {
        "name": "write", "description": "Write a file.", "strict": False,
        "parameters": {"type": "object", "properties": {"filePath": {"type": "string"}}}}}],
    "messages": [
        {"role": "system", "content": "You are opencode."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "create hello.txt"},
                                     {"type": "image_url", "image_url": {"url": "data:"}}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "write", "arguments": "{\"filePath\":\"hello.txt\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "ok"}]}]}


def test_an_opencode_request_reads_as_a_chat_request() -> None:
    chat = WIRES["chat"].to_chat(OPENCODE_REQUEST, "local/smollm2-135m", 1024)
    assert [m.role for m in chat.messages] == ["system", "user", "assistant", "tool"]
    assert chat.messages[0].content == "You are opencode.\n\nBe brief."
    assert chat.messages[2].content is None and chat.messages[3].content == "ok"
    assert chat.max_tokens == 1024 and [t.function.name for t in chat.tools or []] == ["write"]


def test_a_chat_stream_reassembles_and_ends_with_done() -> None:
    response = tool_response("write", {"filePath": "a.txt"}, text="Writing.")
    seen = events(stream_of("chat", response, OPENCODE_REQUEST))
    assert seen[-1] == (None, "[DONE]")
    chunks = [d for _, d in seen[:-1] if isinstance(d, dict)]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert text == "Writing." and calls[0]["function"]["name"] == "write"
    assert json.loads(calls[0]["function"]["arguments"]) == {"filePath": "a.txt"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 120, "completion_tokens": 9,
                                   "total_tokens": 129}


# -- usage read from providers' own streams (the fake's encoders, not ours) ---------------------

@pytest.mark.parametrize(("wire", "encode"), [("messages", anthropic_events),
                                              ("responses", responses_events),
                                              ("chat", chat_events)])
def test_usage_is_read_from_a_provider_stream_cut_anywhere(wire: str, encode: Any) -> None:
    data = b"".join(encode(tool_reply("write", path="a"), "m"))
    tap = UsageTap(WIRES[wire], streaming=True)
    for i in range(0, len(data), 7):  # cut mid-event, mid-line
        tap.feed(data[i:i + 7])
    assert tap.finish().model_dump() == {"input_tokens": 11, "output_tokens": 7}


def test_usage_is_read_from_a_whole_json_answer() -> None:
    from tests.fakes import anthropic_message
    tap = UsageTap(WIRES["messages"], streaming=False)
    tap.feed(json.dumps(anthropic_message(text_reply("hi"), "m")).encode())
    assert tap.finish().model_dump() == {"input_tokens": 11, "output_tokens": 7}


# -- policy --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("family", "method", "path"), [
    ("anthropic", "GET", "/v1/models"), ("anthropic", "POST", "/v1/messages/count_tokens"),
    ("anthropic", "POST", "/v1/files"), ("anthropic", "POST", "/v1/messages/batches"),
    ("anthropic", "POST", "/v1/messages/../files"), ("anthropic", "POST", "/v1/%6Dessages"),
    ("anthropic", "POST", "/v1/responses"), ("openai", "POST", "/v1/messages"),
    ("openai", "GET", "/v1/responses/resp_1"), ("openai", "POST", "/v1/embeddings"),
    ("openai", "POST", "/v1/files"), ("google", "POST", "/v1/messages"),
])
def test_only_inference_paths_are_relayed(family: str, method: str, path: str) -> None:
    with pytest.raises(RelayError) as caught:
        route(family, method, path)
    assert caught.value.status == 404 and caught.value.code == "not_relayed"


def test_inference_paths_route_to_their_wire_api() -> None:
    assert route("anthropic", "POST", "/v1/messages?beta=true").wire == "messages"
    assert route("anthropic", "POST", "v1/messages").wire == "messages"
    assert route("openai", "post", "/v1/responses").wire == "responses"
    assert route("openai", "POST", "/v1/chat/completions/").wire == "chat"
    with pytest.raises(RelayError) as caught:
        route("anthropic", "GET", "/v1/messages")
    assert caught.value.status == 405


def test_client_credentials_organisation_and_project_headers_never_pass() -> None:
    sent = {"Authorization": "Bearer dummy", "x-api-key": "dummy", "OpenAI-Organization": "o",
            "OpenAI-Project": "p", "anthropic-organization-id": "o", "chatgpt-account-id": "a",
            "Cookie": "c", "x-stainless-os": "Linux", "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219", "OpenAI-Beta": "responses=v1"}
    assert client_headers("messages", sent) == {"anthropic-version": "2023-06-01"}
    assert client_headers("responses", sent) == {}  # beta flags only when the policy names them
    assert client_headers("chat", sent) == {}
    allow = RelayAllowance(betas=("claude-code-*", "responses=v1"))
    sent["anthropic-beta"] = "mcp-client-2025-04-04, claude-code-20250219"
    assert client_headers("messages", sent, allow) == {"anthropic-version": "2023-06-01",
                                                       "anthropic-beta": "claude-code-20250219"}
    assert client_headers("responses", sent, allow) == {"openai-beta": "responses=v1"}


def test_the_model_is_pinned_and_output_clamped_not_refused() -> None:
    body = pin_model(CLAUDE_CODE_REQUEST, "claude-opus-4")
    assert body["model"] == "claude-opus-4" and CLAUDE_CODE_REQUEST["model"] != body["model"]
    assert requested_output("messages", body) == 32000
    clamped = clamp_output("messages", body, 8192)
    assert clamped["max_tokens"] == 8192 and clamped["thinking"]["budget_tokens"] == 8191
    assert "thinking" not in clamp_output("messages", body, 1000)
    assert clamp_output("responses", {"input": "x"}, 500)["max_output_tokens"] == 500
    assert clamp_output("chat", {"max_completion_tokens": 9000}, 500) == {
        "max_completion_tokens": 500}
    assert clamp_output("chat", {"max_tokens": 100}, 500) == {"max_tokens": 100}


def test_bodies_are_read_in_their_encoding_and_bounded() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 1000}]}
    raw = json.dumps(body).encode()
    assert read_body(raw) == body
    assert read_body(gzip.compress(raw), "gzip") == body
    assert read_body(zstandard.ZstdCompressor().compress(raw), "zstd") == body
    bomb = json.dumps({"x": "a" * (20 << 20)}).encode()
    for encoded, coding in ((gzip.compress(bomb), "gzip"),
                            (zstandard.ZstdCompressor().compress(bomb), "zstd"),
                            (bomb, None)):
        with pytest.raises(RelayError) as caught:
            read_body(encoded, coding)
        assert caught.value.status == 413
    for raw_body, coding in ((b"[1]", None), (b"{", None), (b"xx", "gzip"), (b"{}", "br")):
        with pytest.raises(RelayError) as caught:
            read_body(raw_body, coding)
        assert caught.value.status in (400, 415)


# -- what reaches a provider (models/relay/allowlist.py) -----------------------------------------

def test_the_clis_requests_keep_what_a_model_needs_and_lose_what_reaches_out() -> None:
    claude = screen("messages", {**CLAUDE_CODE_REQUEST, "tool_choice": {
        "type": "tool", "name": "web_search"}, "service_tier": "auto"})
    assert [t.get("name") for t in claude["tools"]] == ["Bash", "DeferredToolPlaceholder"]
    assert "tool_choice" not in claude  # it named a tool left out
    for gone in ("context_management", "some_future_field", "service_tier"):
        assert gone not in claude
    for kept in ("thinking", "output_config", "metadata", "system", "messages", "stream"):
        assert claude[kept] == CLAUDE_CODE_REQUEST[kept]
    codex = screen("responses", CODEX_REQUEST)
    assert [t["type"] for t in codex["tools"]] == ["function", "custom"]  # an empty group goes
    grouped = screen("responses", {**CODEX_REQUEST, "tools": [{"type": "namespace", "tools": [
        {"type": "function", "name": "spawn"}, {"type": "web_search"}]}]})
    assert grouped["tools"] == [{"type": "namespace", "tools": [
        {"type": "function", "name": "spawn"}]}]
    assert codex["store"] is False and "client_metadata" not in codex
    assert codex["include"] == CODEX_REQUEST["include"] and codex["input"] == CODEX_REQUEST[
        "input"]
    opencode = screen("chat", OPENCODE_REQUEST)
    assert opencode["stream_options"] == {"include_usage": True}
    assert opencode["top_p"] == 0.9 and opencode["tools"] == OPENCODE_REQUEST["tools"]
    asked = screen("chat", {**OPENCODE_REQUEST, "stream_options": None, "n": 1})
    assert asked["stream_options"] == {"include_usage": True} and "n" not in asked


def test_what_the_policy_names_passes_and_nothing_else() -> None:
    body = {"model": "m", "input": "hi", "store": True, "background": True,
            "tools": [{"type": "web_search"}, {"type": "namespace", "name": "n", "tools": [
                {"type": "function", "name": "f"}, {"type": "mcp", "server_url": "x"}]}]}
    allow = RelayAllowance(fields=frozenset({"store", "background"}), tools=("web_*",))
    out = screen("responses", body, allow)
    assert out["store"] is True and out["background"] is True
    assert out["tools"] == [{"type": "web_search"}, {"type": "namespace", "name": "n",
                                                     "tools": [{"type": "function",
                                                                "name": "f"}]}]
    with pytest.raises(RelayError) as caught:
        screen("responses", body)
    assert caught.value.status == 400 and caught.value.code == "field_not_allowed"
    assert "relay_allow_fields" in caught.value.message


def test_an_inline_pdf_becomes_a_note_and_inputs_by_url_or_id_are_refused() -> None:
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                          "data": "JVBERi0x"}}
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                           "data": "plain"}}
    out = screen("messages", {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [pdf, text]}]}]})
    inner = out["messages"][0]["content"][0]["content"]
    assert inner[0]["type"] == "text" and "left out" in inner[0]["text"] and inner[1] == text
    # a tool call's own input is the box's data, never read as content
    call = {"type": "tool_use", "id": "t", "name": "get", "input": {"file_url": "https://x"}}
    assert screen("messages", {"messages": [{"role": "assistant", "content": [call]}]})
    for wire, part, where in (
            ("chat", {"type": "file", "file": {"file_id": "file-1"}}, "file.file_id"),
            ("chat", {"type": "image_url", "image_url": "https://x/a.png"}, "image_url"),
            ("responses", {"type": "input_image", "file_id": "file-1"}, "file_id")):
        key = "input" if wire == "responses" else "messages"
        with pytest.raises(RelayError) as caught:
            screen(wire, {key: [{"role": "user", "content": [part]}]})
        assert where in caught.value.message, caught.value.message
    data = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert screen("chat", {"messages": [{"role": "user", "content": [data]}]})


def test_usage_is_complete_only_once_the_final_count_has_gone_by() -> None:
    for wire, encode in (("messages", anthropic_events), ("responses", responses_events),
                         ("chat", chat_events)):
        data = b"".join(encode(text_reply("hello"), "m"))
        cut = UsageTap(WIRES[wire], streaming=True)
        cut.feed(data[:len(data) // 2])
        assert not cut.complete, wire  # cut short: what it cost is not known
        whole = UsageTap(WIRES[wire], streaming=True)
        whole.feed(data)
        assert whole.complete, wire
    silent = UsageTap(WIRES["chat"], streaming=True)
    silent.feed(b"".join(chat_events(text_reply("hello"), "m", usage=False)))
    assert not silent.complete


@pytest.mark.parametrize("text", ["!#" * 5000, "你好世界" * 2500, "🦀" * 3000,
                                  "plain words of english text " * 400])
@pytest.mark.parametrize("api", ["chat", "messages", "responses"])
def test_a_calls_worst_case_is_never_below_what_the_provider_bills(text: str, api: str) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}
    tool = {"name": "f", "description": text[:100], "input_schema": {"type": "object"}}
    body: dict[str, Any] = {
        "chat": {"messages": [{"role": "user", "content": text},
                              {"role": "assistant", "tool_calls": [{"id": "c", "function": {
                                  "name": "f", "arguments": text}}]}],
                 "tools": [{"type": "function", "function": tool}], "max_tokens": 10},
        "messages": {"system": text, "messages": [{"role": "user", "content": [
            {"type": "text", "text": text}, image]}], "tools": [tool], "max_tokens": 10},
        "responses": {"instructions": text, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": text},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}],
            "max_output_tokens": 10}}[api]
    assert call_tokens(body, 10) >= prompt_tokens(api, body) + output_bound(api, body)
