"""Anthropic's Messages API (what Claude Code speaks: `POST /v1/messages?beta=true`, always
streamed) ⇄ Burrow's chat API.

Reading: the system prompt (a string or text blocks), user and assistant turns of content
blocks, `tool_use` / `tool_result` blocks, client tools. Tool results become `tool` messages
placed right after the assistant turn that called them, as chat completions require; text the
same user turn carries follows them. Mapped: `output_config.format` (structured output) to
`response_format`, `tool_choice: none` to no tools. Dropped: `thinking` and `redacted_thinking`
blocks, `thinking`, `context_management`, `cache_control`, `metadata`, `top_k`, `top_p`,
`stop_sequences`, other `tool_choice`s, server tools (a `type` such as `web_search_…`), deferred
tools (`defer_loading`), and the billing-header text Claude Code puts first in its system prompt.
`temperature: 1` is Anthropic's default and Claude Code sends it always, so it reads as unset
(the provider's own default applies; local models run at 0).

Writing: one `message` object, or the event sequence of a stream — `message_start`, per content
block `content_block_start` / `_delta` (`text_delta`, or `input_json_delta` with the whole tool
input as JSON) / `_stop`, then `message_delta` (stop reason, output tokens), `message_stop`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from models.chat import ChatRequest, ChatResponse, Usage
from models.relay.sse import event
from models.relay.wire import (
    RelayError,
    arguments_text,
    bounded,
    chat_request,
    new_id,
    text_of,
    tool_input,
)

BILLING_HEADER = "x-anthropic-billing-header:"
DEFAULT_TEMPERATURE = 1.0
_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 529: "overloaded_error"}


def _system(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    texts = [str(b.get("text") or "") for b in value
             if isinstance(b, dict) and b.get("type") == "text"]
    return "\n\n".join(t for t in texts if t and not t.startswith(BILLING_HEADER))


def _tool_result(block: dict[str, Any]) -> dict[str, Any]:
    text = text_of(block.get("content"))
    if block.get("is_error"):
        text = f"error: {text}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""), "content": text}


def _user(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"role": "user", "content": text_of(content)}]
    results = [_tool_result(b) for b in content
               if isinstance(b, dict) and b.get("type") == "tool_result"]
    rest = [b for b in content if not (isinstance(b, dict) and b.get("type") == "tool_result")]
    text = text_of(rest, ("text",)) if rest else ""
    return results + ([{"role": "user", "content": text}] if text else [])


_SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking", "server_tool_use",
                             "web_search_tool_result", "mcp_tool_use", "mcp_tool_result"})


def _assistant(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"role": "assistant", "content": text_of(content)}]
    texts, calls = [], []
    for block in content:
        if not isinstance(block, dict) or block.get("type") in _SKIPPED_BLOCKS:
            continue
        if block.get("type") == "tool_use":
            calls.append({"id": str(block.get("id") or new_id("toolu_")), "type": "function",
                          "function": {"name": str(block.get("name") or ""),
                                       "arguments": arguments_text(block.get("input"))}})
        elif block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
    if not texts and not calls:
        return []
    return [{"role": "assistant", "content": "".join(texts) or None,
             "tool_calls": calls or None}]


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return None
    tools = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue  # server tools and schema-less built-ins (web_search_…, bash_…)
        if tool.get("defer_loading"):
            continue  # loaded on demand by a tool search the model cannot do here
        schema = tool.get("input_schema")
        schema = {k: v for k, v in schema.items() if k != "$schema"} if isinstance(
            schema, dict) else {"type": "object", "properties": {}}
        tools.append({"type": "function", "function": {
            "name": str(tool.get("name") or ""), "description": str(tool.get("description") or ""),
            "parameters": schema}})
    return tools or None


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(
            fmt.get("schema"), dict):
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    return None


class MessagesApi:
    name = "messages"
    content_type = "text/event-stream"

    def to_chat(self, body: dict[str, Any], model: str,
                max_tokens: int | None = None) -> ChatRequest:
        turns = body.get("messages")
        if not isinstance(turns, list) or not turns:
            raise RelayError(400, "invalid_request", "messages: a non-empty list is required")
        messages: list[dict[str, Any]] = []
        system = _system(body.get("system"))
        if system:
            messages.append({"role": "system", "content": system})
        for turn in turns:
            if not isinstance(turn, dict):
                raise RelayError(400, "invalid_request", "messages: each item is an object")
            if turn.get("role") == "assistant":
                messages += _assistant(turn.get("content"))
            else:
                messages += _user(turn.get("content"))
        temperature = body.get("temperature")
        fields: dict[str, Any] = {
            "model": model, "messages": messages, "tools": _tools(body),
            "response_format": _response_format(body),
            "max_tokens": bounded(body.get("max_tokens"), max_tokens)}
        if isinstance(temperature, int | float) and temperature != DEFAULT_TEMPERATURE:
            fields["temperature"] = temperature
        return chat_request(fields)

    def _blocks(self, response: ChatResponse) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if response.message.content:
            blocks.append({"type": "text", "text": response.message.content})
        for call in response.message.tool_calls:
            blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                           "input": tool_input(call.function.arguments)})
        return blocks

    @staticmethod
    def _stop(response: ChatResponse) -> str:
        if response.message.tool_calls:
            return "tool_use"
        return _STOP.get(response.finish_reason, "end_turn")

    @staticmethod
    def _usage(usage: Usage) -> dict[str, int]:
        return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}

    def answer(self, response: ChatResponse, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": new_id("msg_"), "type": "message", "role": "assistant",
                "model": str(body.get("model") or response.model),
                "content": self._blocks(response), "stop_reason": self._stop(response),
                "stop_sequence": None, "usage": self._usage(response.usage)}

    def events(self, response: ChatResponse, body: dict[str, Any]) -> Iterator[bytes]:
        start = self.answer(response, body)
        blocks, start["content"] = start["content"], []
        start.update(stop_reason=None, usage={**start["usage"], "output_tokens": 0})
        yield event({"type": "message_start", "message": start}, "message_start")
        for index, block in enumerate(blocks):
            opened: dict[str, Any]
            if block["type"] == "text":
                opened = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                opened = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield event({"type": "content_block_start", "index": index,
                         "content_block": opened}, "content_block_start")
            yield event({"type": "content_block_delta", "index": index, "delta": delta},
                        "content_block_delta")
            yield event({"type": "content_block_stop", "index": index}, "content_block_stop")
        yield event({"type": "message_delta",
                     "delta": {"stop_reason": self._stop(response), "stop_sequence": None},
                     "usage": {"output_tokens": response.usage.output_tokens}},
                    "message_delta")
        yield event({"type": "message_stop"}, "message_stop")

    def error(self, status: int, code: str, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def error_event(self, code: str, message: str) -> bytes:
        return event(self.error(500, code, message), "error")

    def observe_usage(self, usage: Usage, doc: dict[str, Any]) -> bool:
        kind = doc.get("type")
        found = doc.get("usage")
        if kind == "message_start" and isinstance(doc.get("message"), dict):
            found = doc["message"].get("usage")
        if not isinstance(found, dict):
            return False
        inputs = sum(int(found.get(k) or 0) for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        if inputs:
            usage.input_tokens = inputs
        if "output_tokens" in found:
            # message_delta carries the running total, message_start a first count
            usage.output_tokens = int(found.get("output_tokens") or 0)
        # the final count: a stream's message_delta, or a whole message
        return kind in ("message_delta", "message") and "output_tokens" in found
