"""What a small local model gets from the relay (the bundled ones run in a 4k context and copy
whatever pattern they are shown):

- **fewer tools**, when the box's run names the ones it needs (`X-Burrow-Tools`, a comma list
  the in-box runner sends for trimmed runs): the CLIs offer tools a tiny model only misuses
  (Codex's `write_stdin` and `request_user_input`, measured: SmolLM2 called `write_stdin` on
  every turn);
- **shorter tools**: a description cut to its first sentence, parameters cut to the required
  ones (OpenCode's `bash` alone is 5.3 KB, which with the rest overflowed the 4k context);
- **an answer instead of a loop**: a model that repeats the tool call it just made (and has
  seen the result of) is asked once more, without tools and in at most 256 tokens, for its
  final answer — as the built-in harness does. The CLI sees that answer as the model's.

Only translated calls to `local/` models are touched; what the CLI sent and gets back keeps
its format.
"""

from __future__ import annotations

from typing import Any

from models.chat import ChatMessage, ChatRequest, ChatResponse, ToolCall, ToolDef
from models.relay.wire import tool_input

TOOLS_HEADER = "x-burrow-tools"
DESCRIPTION_CHARS = 200
CONCLUSION_TOKENS = 256  # a tiny model without a grammar may run on to max_tokens (measured:
# Gemma 3 270M repeated one word for its whole 1,024-token bound, ~5 min on a loaded 2 cores)
CONCLUDE = ("You already did that step and saw its result. Do not call a tool again: give "
            "your final answer now.")


def _first_sentence(text: str) -> str:
    first = text.strip().split("\n\n", 1)[0].replace("\n", " ")
    end = first.find(". ")
    first = first[:end + 1] if end >= 0 else first
    return first[:DESCRIPTION_CHARS]


def _required_only(parameters: dict[str, Any]) -> dict[str, Any]:
    required = parameters.get("required")
    properties = parameters.get("properties")
    if not isinstance(required, list) or not required or not isinstance(properties, dict):
        return parameters
    kept = {k: v for k, v in properties.items() if k in required}
    return {**{k: v for k, v in parameters.items() if k != "$schema"}, "properties": kept}


def slim(chat: ChatRequest, wanted: str | None = None) -> ChatRequest:
    """`chat` with its tools cut down as this module says."""
    if not chat.tools:
        return chat
    names = {n.strip() for n in (wanted or "").split(",") if n.strip()}
    tools = [t for t in chat.tools if not names or t.function.name in names]
    slimmed = [ToolDef(function=t.function.model_copy(update={
        "description": _first_sentence(t.function.description),
        "parameters": _required_only(t.function.parameters)})) for t in tools]
    return chat.model_copy(update={"tools": slimmed or None})


def _same(new: ToolCall, old: ToolCall) -> bool:
    """The same call: same tool, and every argument given now given before with this value
    (CLIs fill in their tools' defaults before they send a call back, so the earlier call can
    hold more)."""
    if new.function.name != old.function.name:
        return False
    before = tool_input(old.function.arguments)
    return all(before.get(k) == v for k, v in tool_input(new.function.arguments).items())


def repeats(chat: ChatRequest, response: ChatResponse) -> bool:
    """Whether the answer calls again what the last assistant turn called."""
    calls = response.message.tool_calls
    last = next((m for m in reversed(chat.messages) if m.role == "assistant"), None)
    if not calls or last is None or not last.tool_calls or len(calls) != len(last.tool_calls):
        return False
    return all(_same(new, old) for new, old in zip(calls, last.tool_calls, strict=True))


def conclusion(chat: ChatRequest) -> ChatRequest:
    """The request that asks for the final answer, without tools."""
    bound = min(chat.max_tokens or CONCLUSION_TOKENS, CONCLUSION_TOKENS)
    return chat.model_copy(update={
        "tools": None, "max_tokens": bound,
        "messages": [*chat.messages, ChatMessage(role="user", content=CONCLUDE)]})
