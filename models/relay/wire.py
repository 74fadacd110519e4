"""What every wire API module provides (`WireApi`), and the pieces they share: the refusal
they raise for input they cannot take, tool arguments as objects, text out of content parts.

A wire API here is one of the three request/answer formats agent CLIs speak: Anthropic's
Messages API (`messages`), OpenAI's Responses API (`responses`) and OpenAI's chat completions
(`chat`). Each module reads a request of its format into Burrow's `ChatRequest` and writes a
`ChatResponse` back in its format, as one JSON answer or as the server-sent events a streaming
client expects. Reading never fails on a field it does not know: unknown and unsupported
fields are dropped (or mapped where Burrow has an equivalent); only a request that has no
meaning without them (no messages, a tool without a name) is refused, with a `RelayError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from pydantic import ValidationError

from models.chat import ChatRequest, ChatResponse, Usage
from models.errors import ModelError
from models.relay.sse import SseParser


class RelayError(ModelError):
    """A relayed call refused or failed; rendered in the caller's wire format."""


class WireApi(Protocol):
    name: str
    content_type: str  # of a streamed answer

    def to_chat(self, body: dict[str, Any], model: str,
                max_tokens: int | None = None) -> ChatRequest:
        """`body` as Burrow's chat request for `model` (provider/name), its output bounded by
        `max_tokens` when given."""
        ...

    def answer(self, response: ChatResponse, body: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming answer to `body`."""
        ...

    def events(self, response: ChatResponse, body: dict[str, Any]) -> Iterator[bytes]:
        """The streamed answer to `body`: the event sequence a client of this API reads."""
        ...

    def error(self, status: int, code: str, message: str) -> dict[str, Any]:
        """An error body in this API's shape."""
        ...

    def error_event(self, code: str, message: str) -> bytes:
        """An error inside a stream that has already started."""
        ...

    def observe_usage(self, usage: Usage, doc: dict[str, Any]) -> bool:
        """Update `usage` from one event's data, or from a whole JSON answer, of this API;
        True when it carried the call's final usage (the whole call is counted)."""
        ...


class UsageTap:
    """Reads the usage a provider reports out of an answer passed through unchanged: events
    of a stream as they go by, or the whole JSON answer (kept up to `limit` bytes).
    `complete` once the provider's final usage has gone by: until then what the call cost is
    not known (a stream cut short is billed for what was written)."""

    def __init__(self, wire: WireApi, streaming: bool, limit: int = 16 << 20) -> None:
        self.wire = wire
        self.usage = Usage()
        self.complete = False
        self.streaming = streaming
        self.limit = limit
        self._parser = SseParser()
        self._body = b""

    def feed(self, chunk: bytes) -> None:
        if self.streaming:
            for item in self._parser.feed(chunk):
                doc = item.json()
                if doc is not None and self.wire.observe_usage(self.usage, doc):
                    self.complete = True
        elif len(self._body) < self.limit:
            self._body += chunk

    def finish(self) -> Usage:
        if not self.streaming and self._body:
            try:
                doc = json.loads(self._body)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and self.wire.observe_usage(self.usage, doc):
                self.complete = True
            self._body = b""
        return self.usage


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments (a JSON string) as the object APIs with structured input want;
    text that is no JSON object is kept under a key rather than lost."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def arguments_text(value: Any) -> str:
    """Tool arguments as the JSON string chat completions carry."""
    if isinstance(value, str):
        return value or "{}"
    return json.dumps(value if value is not None else {})


def text_of(content: Any, kinds: tuple[str, ...] = ("text", "input_text", "output_text")) -> str:
    """The text of a content field: a string, or a list of parts of which the text kinds are
    joined and the rest (images, documents, audio) marked as left out."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") in kinds:
            parts.append(str(part.get("text") or ""))
        elif isinstance(part, dict):
            parts.append(f"[{part.get('type', 'content')} left out: this model reads text only]")
    return "\n".join(p for p in parts if p)


def chat_request(fields: dict[str, Any]) -> ChatRequest:
    """Build the ChatRequest, a translation that breaks its rules refused as a bad request."""
    try:
        return ChatRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise RelayError(400, "invalid_request",
                         f"the request cannot be relayed: {where}: {first.get('msg')}") from None


def bounded(requested: Any, ceiling: int | None) -> int | None:
    """The output bound to ask for: the client's, no higher than the ceiling."""
    value = requested if isinstance(requested, int) and requested > 0 else None
    if ceiling is None:
        return value
    return min(value, ceiling) if value is not None else ceiling


def merged_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One system message first, with every system text in order: chat templates of small
    models (Gemma's) refuse a system turn anywhere else."""
    system = [m["content"] for m in messages if m["role"] == "system" and m.get("content")]
    rest = [m for m in messages if m["role"] != "system"]
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + rest
