"""Server-sent events both ways: `event()` encodes one, `SseParser` splits a byte stream into
events as it arrives (a passthrough stream is read for its usage without being held back)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def event(data: dict[str, Any] | str, name: str | None = None) -> bytes:
    """One event; `data` as compact JSON unless it is already text (`[DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


@dataclass
class SseEvent:
    name: str | None
    data: str

    def json(self) -> dict[str, Any] | None:
        """The data as a JSON object, or None (`[DONE]`, a keep-alive, bad JSON)."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class SseParser:
    """Feed bytes in any cut; complete events come out. Comments and ids are skipped; a
    buffer that grows past `max_event` without an event boundary is dropped, so a stream
    that never frames an event cannot grow it without bound."""

    def __init__(self, max_event: int = 4 << 20) -> None:
        self._buffer = b""
        self.max_event = max_event

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events = []
        while (end := self._buffer.find(b"\n\n")) >= 0:
            block, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            parsed = _parse_block(block.decode(errors="replace"))
            if parsed is not None:
                events.append(parsed)
        if len(self._buffer) > self.max_event:
            self._buffer = b""
        return events


def _parse_block(block: str) -> SseEvent | None:
    name: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if not data:
        return None
    return SseEvent(name, "\n".join(data))
