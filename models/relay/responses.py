"""OpenAI's Responses API (what Codex speaks: `POST /v1/responses`, streamed) ⇄ Burrow's chat
API.

Reading: `instructions` and `system` / `developer` messages become one leading system message
(small models' chat templates take no other); `message` items of text parts; `function_call` /
`function_call_output` items as tool calls and results, calls folded into the assistant turn
before them; `custom_tool_call(_output)` likewise, a custom (free-form) tool offered as a
function of one string argument `input`. Mapped: `text.format` (structured output) to
`response_format`, `max_output_tokens` to `max_tokens`, `tool_choice: none` to no tools.
Dropped: `reasoning` items and settings, `include`, `store`, `prompt_cache_key`,
`client_metadata`, `parallel_tool_calls`, other `tool_choice`s, and tools Burrow cannot run
through a chat model (`web_search`, `namespace` groups, `local_shell`, `image_generation`…).

Writing: one `response` object, or the stream — `response.created`, `response.in_progress`, per
output item `response.output_item.added`, its deltas (`output_text`, `function_call_arguments`,
`custom_tool_call_input`) and their `.done`, `response.output_item.done`, then
`response.completed` with usage (`response.incomplete` when the output hit its bound).
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
    tool_input,
)

CUSTOM_PARAMETERS = {"type": "object", "properties": {"input": {"type": "string"}},
                     "required": ["input"]}
_SYSTEM_ROLES = ("system", "developer")
_SKIPPED_ITEMS = frozenset({"reasoning", "web_search_call", "local_shell_call",
                            "local_shell_call_output", "image_generation_call", "compaction",
                            "item_reference", "mcp_call", "mcp_list_tools"})


def _output_text(value: Any) -> str:
    return value if isinstance(value, str) else text_of(value)


class _Conversation:
    """Input items folded into chat messages."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def call(self, call_id: Any, name: Any, arguments: str) -> None:
        last = self.messages[-1] if self.messages else None
        call = {"id": str(call_id or new_id("call_")), "type": "function",
                "function": {"name": str(name or ""), "arguments": arguments}}
        if last is not None and last["role"] == "assistant":
            last["tool_calls"] = [*(last.get("tool_calls") or []), call]
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def add(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise RelayError(400, "invalid_request", "input: each item is an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = str(item.get("role") or "user")
            role = "system" if role in _SYSTEM_ROLES else role
            if role not in ("user", "assistant", "system"):
                return
            self.messages.append({"role": role, "content": text_of(item.get("content"))})
        elif kind == "function_call":
            self.call(item.get("call_id"), item.get("name"),
                      arguments_text(item.get("arguments")))
        elif kind == "custom_tool_call":
            self.call(item.get("call_id"), item.get("name"),
                      arguments_text({"input": str(item.get("input") or "")}))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.messages.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                                  "content": _output_text(item.get("output"))})
        # anything else (reasoning, server tool calls, unknown kinds) is dropped


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    if body.get("tool_choice") == "none":
        return None
    tools = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "function":
            parameters = tool.get("parameters")
            tools.append({"type": "function", "function": {
                "name": str(tool.get("name") or ""),
                "description": str(tool.get("description") or ""),
                "parameters": parameters if isinstance(parameters, dict) else {
                    "type": "object", "properties": {}}}})
        elif tool.get("type") == "custom":
            tools.append({"type": "function", "function": {
                "name": str(tool.get("name") or ""),
                "description": str(tool.get("description") or ""),
                "parameters": CUSTOM_PARAMETERS}})
    return tools or None


def _custom_names(body: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(t.get("name")) for t in body.get("tools") or []
                     if isinstance(t, dict) and t.get("type") == "custom")


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return {"type": "json_schema", "json_schema": {
            "name": str(fmt.get("name") or "output"), "schema": fmt["schema"]}}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


class ResponsesApi:
    name = "responses"
    content_type = "text/event-stream"

    def to_chat(self, body: dict[str, Any], model: str,
                max_tokens: int | None = None) -> ChatRequest:
        conversation = _Conversation()
        instructions = body.get("instructions")
        if isinstance(instructions, str) and instructions:
            conversation.messages.append({"role": "system", "content": instructions})
        given = body.get("input")
        if isinstance(given, str):
            conversation.messages.append({"role": "user", "content": given})
        elif isinstance(given, list):
            for item in given:
                conversation.add(item)
        else:
            raise RelayError(400, "invalid_request", "input: a string or a list of items is "
                                                     "required")
        messages = merged_system(conversation.messages)
        if not messages:
            raise RelayError(400, "invalid_request", "input: nothing to answer")
        fields: dict[str, Any] = {
            "model": model, "messages": messages, "tools": _tools(body),
            "response_format": _response_format(body),
            "max_tokens": bounded(body.get("max_output_tokens"), max_tokens)}
        if isinstance(body.get("temperature"), int | float):
            fields["temperature"] = body["temperature"]
        return chat_request(fields)

    def _items(self, response: ChatResponse, body: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if response.message.content:
            items.append({"type": "message", "id": new_id("msg_"), "status": "completed",
                          "role": "assistant", "content": [
                              {"type": "output_text", "text": response.message.content,
                               "annotations": []}]})
        custom = _custom_names(body)
        for call in response.message.tool_calls:
            arguments = tool_input(call.function.arguments)
            if call.function.name in custom:
                items.append({"type": "custom_tool_call", "id": new_id("ctc_"),
                              "status": "completed", "call_id": call.id,
                              "name": call.function.name,
                              "input": str(arguments.get("input") or "")})
            else:
                items.append({"type": "function_call", "id": new_id("fc_"),
                              "status": "completed", "call_id": call.id,
                              "name": call.function.name,
                              "arguments": arguments_text(arguments)})
        return items

    def answer(self, response: ChatResponse, body: dict[str, Any]) -> dict[str, Any]:
        cut = response.finish_reason == "length" and not response.message.tool_calls
        usage = response.usage
        return {
            "id": new_id("resp_"), "object": "response", "created_at": int(time.time()),
            "status": "incomplete" if cut else "completed", "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "model": str(body.get("model") or response.model),
            "output": self._items(response, body),
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                      "total_tokens": usage.input_tokens + usage.output_tokens,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}}

    def events(self, response: ChatResponse, body: dict[str, Any]) -> Iterator[bytes]:
        done = self.answer(response, body)
        started = {**done, "status": "in_progress", "output": [], "usage": None,
                   "incomplete_details": None}
        numbers = iter(range(1 << 30))

        def emit(kind: str, **fields: Any) -> bytes:
            return event({"type": kind, "sequence_number": next(numbers), **fields}, kind)

        yield emit("response.created", response=started)
        yield emit("response.in_progress", response=started)
        for index, item in enumerate(done["output"]):
            yield emit("response.output_item.added", output_index=index,
                       item=_opened(item))
            yield from _item_deltas(emit, index, item)
            yield emit("response.output_item.done", output_index=index, item=item)
        final = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
        yield emit(final, response=done)

    def error(self, status: int, code: str, message: str) -> dict[str, Any]:
        kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "code": code, "param": None}}

    def error_event(self, code: str, message: str) -> bytes:
        return event({"type": "response.failed", "response": {
            "id": new_id("resp_"), "object": "response", "status": "failed", "output": [],
            "error": {"code": code, "message": message}}}, "response.failed")

    def observe_usage(self, usage: Usage, doc: dict[str, Any]) -> bool:
        found = doc.get("usage") if doc.get("object") == "response" else None
        if isinstance(doc.get("response"), dict):
            found = doc["response"].get("usage")
        if not isinstance(found, dict):
            return False
        usage.input_tokens = int(found.get("input_tokens") or 0)
        usage.output_tokens = int(found.get("output_tokens") or 0)
        # a whole response, or a stream's last event (completed, incomplete, failed)
        return doc.get("object") == "response" or doc.get("type") in (
            "response.completed", "response.incomplete", "response.failed")


def _opened(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as `output_item.added` shows it: in progress, nothing streamed yet."""
    empty: dict[str, dict[str, Any]] = {"message": {"content": []},
                                        "function_call": {"arguments": ""},
                                        "custom_tool_call": {"input": ""}}
    return {**item, **empty[item["type"]], "status": "in_progress"}


def _item_deltas(emit: Any, index: int, item: dict[str, Any]) -> Iterator[bytes]:
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "message":
        part = item["content"][0]
        yield emit("response.content_part.added", **where, content_index=0,
                   part={**part, "text": ""})
        yield emit("response.output_text.delta", **where, content_index=0, delta=part["text"])
        yield emit("response.output_text.done", **where, content_index=0, text=part["text"])
        yield emit("response.content_part.done", **where, content_index=0, part=part)
    elif item["type"] == "function_call":
        yield emit("response.function_call_arguments.delta", **where, delta=item["arguments"])
        yield emit("response.function_call_arguments.done", **where,
                   arguments=item["arguments"])
    else:
        yield emit("response.custom_tool_call_input.delta", **where, delta=item["input"])
        yield emit("response.custom_tool_call_input.done", **where, input=item["input"])
