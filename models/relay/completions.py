"""OpenAI's chat completions (what OpenCode speaks through `@ai-sdk/openai-compatible`:
`POST /v1/chat/completions`, streamed) ⇄ Burrow's chat API, which is a subset of it.

Reading normalises what the subset leaves out: content given as parts is joined to text
(images marked as left out); `developer` messages are system messages, and all system text
becomes one leading system message (small models' chat templates take no other);
`max_completion_tokens` is `max_tokens`; `tool_choice: none` means no tools. Dropped:
`stream_options`, `top_p`, `stop`, `seed`, penalties, `logprobs`, `user`, other
`tool_choice`s, `parallel_tool_calls`, non-function tools, a tool's `strict` (`n` above 1 is
refused before: models/relay/allowlist.py).

Writing: one `chat.completion`, or `chat.completion.chunk`s — the role, the text, each tool
call whole in one delta, the finish reason with the usage — then `data: [DONE]`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from models.chat import ChatRequest, ChatResponse, Usage
from models.relay.sse import event
from models.relay.wire import (
    RelayError,
    arguments_text,
    bounded,
    chat_request,
    merged_system,
    new_id,
    text_of,
)


def _calls(value: Any) -> list[dict[str, Any]] | None:
    calls = []
    for call in value or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        calls.append({"id": str(call.get("id") or new_id("call_")), "type": "function",
                      "function": {"name": str(function.get("name") or ""),
                                   "arguments": arguments_text(function.get("arguments"))}})
    return calls or None


def _message(m: Any) -> dict[str, Any] | None:
    if not isinstance(m, dict):
        raise RelayError(400, "invalid_request", "messages: each item is an object")
    role = m.get("role")
    content = text_of(m.get("content"))
    if role in ("system", "developer"):
        return {"role": "system", "content": content}
    if role == "user":
        return {"role": "user", "content": content}
    if role == "assistant":
        return {"role": "assistant", "content": content or None,
                "tool_calls": _calls(m.get("tool_calls"))}
    if role == "tool":
        return {"role": "tool", "tool_call_id": str(m.get("tool_call_id") or ""),
                "content": content}
    return None  # function (legacy) and unknown roles


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    if body.get("tool_choice") == "none":
        return None
    tools = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            continue
        parameters = function.get("parameters")
        tools.append({"type": "function", "function": {
            "name": str(function.get("name") or ""),
            "description": str(function.get("description") or ""),
            "parameters": parameters if isinstance(parameters, dict) else {
                "type": "object", "properties": {}}}})
    return tools or None


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    return fmt


class CompletionsApi:
    name = "chat"
    content_type = "text/event-stream"

    def to_chat(self, body: dict[str, Any], model: str,
                max_tokens: int | None = None) -> ChatRequest:
        given = body.get("messages")
        if not isinstance(given, list) or not given:
            raise RelayError(400, "invalid_request", "messages: a non-empty list is required")
        messages = merged_system([m for m in map(_message, given) if m is not None])
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        fields: dict[str, Any] = {
            "model": model, "messages": messages, "tools": _tools(body),
            "response_format": _response_format(body),
            "max_tokens": bounded(requested, max_tokens)}
        if isinstance(body.get("temperature"), int | float):
            fields["temperature"] = body["temperature"]
        return chat_request(fields)

    @staticmethod
    def _usage(usage: Usage) -> dict[str, int]:
        return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens}

    @staticmethod
    def _finish(response: ChatResponse) -> str:
        return "tool_calls" if response.message.tool_calls else response.finish_reason

    def answer(self, response: ChatResponse, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": response.message.content}
        if response.message.tool_calls:
            message["tool_calls"] = [c.model_dump() for c in response.message.tool_calls]
        return {"id": new_id("chatcmpl-"), "object": "chat.completion",
                "created": int(time.time()), "model": str(body.get("model") or response.model),
                "choices": [{"index": 0, "message": message,
                             "finish_reason": self._finish(response)}],
                "usage": self._usage(response.usage)}

    def events(self, response: ChatResponse, body: dict[str, Any]) -> Iterator[bytes]:
        head = {"id": new_id("chatcmpl-"), "object": "chat.completion.chunk",
                "created": int(time.time()), "model": str(body.get("model") or response.model)}

        def chunk(delta: dict[str, Any], finish: str | None = None,
                  **extra: Any) -> bytes:
            return event({**head, "choices": [{"index": 0, "delta": delta,
                                               "finish_reason": finish}], **extra})

        yield chunk({"role": "assistant", "content": ""})
        if response.message.content:
            yield chunk({"content": response.message.content})
        for index, call in enumerate(response.message.tool_calls):
            yield chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                         "function": {"name": call.function.name,
                                                      "arguments": call.function.arguments}}]})
        yield chunk({}, self._finish(response), usage=self._usage(response.usage))
        yield event("[DONE]")

    def error(self, status: int, code: str, message: str) -> dict[str, Any]:
        kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "code": code, "param": None}}

    def error_event(self, code: str, message: str) -> bytes:
        return event(self.error(500, code, message))

    def observe_usage(self, usage: Usage, doc: dict[str, Any]) -> bool:
        found = doc.get("usage")
        if not isinstance(found, dict):
            return False
        usage.input_tokens = int(found.get("prompt_tokens") or 0)
        usage.output_tokens = int(found.get("completion_tokens") or 0)
        return True  # a chunk carries usage only once, last (or the whole completion does)
