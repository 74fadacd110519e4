"""Which parts of a CLI's request reach a provider with the operator's key: the request fields,
tools, content and beta headers each wire API may carry, decided per call before anything is
sent, so that a box without network cannot have the provider fetch, run or keep anything for
it, and cannot spend more than the call's reservation says.

- **Fields**: an allow-list per wire API (`FIELDS`). A field outside it is dropped: the CLIs
  add settings every release (Claude Code's `context_management`, Codex's `client_metadata`),
  and a field the provider does not get at worst loses that setting. Fields that make the
  provider reach out, run code, keep or recall state on the operator's account
  (`PROVIDER_SIDE`: `mcp_servers`, `container`, `previous_response_id`, `conversation`,
  `background`, `prompt`, `store: true`, `web_search_options`, OpenRouter's `plugins`) are
  refused instead, 400 naming the field: dropping them would silently change what the call
  means (a conversation without its history, a tool that is not there). The policy's
  `relay_allow_fields` names fields to forward as sent.
- **Tools**: only the client's own (Messages: no `type` or `custom`; Responses and chat
  completions: `function` and `custom`, and a Responses `namespace` of those). Every other
  type — server-side tools such as web search and fetch, code execution, computer use, MCP,
  file search, image generation — is left out (Claude Code and Codex offer web search on
  every call; refusing would stop them), unless `relay_allow_tools` names its type (`*`
  patterns). A `tool_choice` naming a tool left out goes too.
- **Content**: a URL or a provider-side file id as an input (an image or document `source` of
  type `url` or `file`, `image_url` that is not a `data:` URL, `file_url`, `file_id`,
  `item_reference`) is refused, 400 naming where: the provider would fetch it. A PDF or file
  given inline is replaced by a note saying so: its cost in tokens cannot be bounded before
  the call (pages become images and text) — the box can extract its text and send that.
- **Choices**: `n` above 1 is refused (one choice per call, so a call's output is bounded by
  its `max_tokens`); ask again for another answer.
- **Usage**: a chat-completions stream asks the provider for its usage
  (`stream_options.include_usage`), so that it is counted; a Responses call is not stored
  (`store: false`; the API stores by default).
- **Headers**: `anthropic-beta` and `openai-beta` carry only the flags `relay_allow_betas`
  names (none by default): betas switch on what the allow-lists above do not know of.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.relay.wire import RelayError

if TYPE_CHECKING:
    from models.limits import ModelLimits

FIELDS: dict[str, frozenset[str]] = {
    "messages": frozenset({
        "model", "messages", "system", "max_tokens", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "metadata", "tools", "tool_choice", "thinking", "output_config"}),
    "responses": frozenset({
        "model", "input", "instructions", "max_output_tokens", "stream", "temperature", "top_p",
        "tools", "tool_choice", "parallel_tool_calls", "reasoning", "text", "include",
        "prompt_cache_key", "truncation", "store", "safety_identifier", "user", "top_logprobs",
        "stream_options"}),
    "chat": frozenset({
        "model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options",
        "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
        "logit_bias", "logprobs", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "user", "safety_identifier", "prompt_cache_key", "reasoning_effort",
        "verbosity", "reasoning", "n"}),
}
PROVIDER_SIDE: dict[str, dict[str, str]] = {
    "messages": {"mcp_servers": "has the provider connect to MCP servers",
                 "container": "runs code in a container at the provider"},
    "responses": {"previous_response_id": "recalls a response stored at the provider",
                  "conversation": "recalls a conversation stored at the provider",
                  "background": "leaves a response running at the provider",
                  "prompt": "recalls a prompt stored at the provider",
                  "store": "stores the response at the provider"},
    "chat": {"store": "stores the completion at the provider",
             "web_search_options": "has the provider search the web",
             "plugins": "has the provider run plugins (OpenRouter's web search)"},
}
# The client's own tools, by `type` (None: Messages' custom tools name none; a Responses
# `namespace` groups functions, such as Codex's multi-agent tools, and keeps only those).
CLIENT_TOOLS: dict[str, frozenset[str | None]] = {
    "messages": frozenset({None, "custom"}),
    "responses": frozenset({"function", "custom", "namespace"}),
    "chat": frozenset({"function", "custom"}),
}
BETA_HEADERS = {"messages": "anthropic-beta", "responses": "openai-beta", "chat": "openai-beta"}
INLINE_FILE_NOTE = ("[{what} left out: the model relay passes text and images only; extract "
                    "the text and send that]")
_TOOL_CALL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


@dataclass(frozen=True)
class RelayAllowance:
    """What the operator's policy lets through beyond the allow-lists (core/policy.py:
    `relay_allow_fields`, `relay_allow_tools`, `relay_allow_betas`)."""

    fields: frozenset[str] = frozenset()
    tools: tuple[str, ...] = ()  # tool types, * patterns
    betas: tuple[str, ...] = ()  # beta flags, * patterns

    @classmethod
    def of(cls, policy: ModelLimits) -> RelayAllowance:
        return cls(frozenset(policy.relay_allow_fields), tuple(policy.relay_allow_tools),
                   tuple(policy.relay_allow_betas))

    def tool(self, kind: str) -> bool:
        return any(fnmatch.fnmatchcase(kind, p) for p in self.tools)

    def beta(self, flag: str) -> bool:
        return any(fnmatch.fnmatchcase(flag, p) for p in self.betas)


STRICT = RelayAllowance()


def screen(wire: str, body: dict[str, Any], allow: RelayAllowance = STRICT) -> dict[str, Any]:
    """`body` as it may reach the provider, or the RelayError (400) naming what may not."""
    out: dict[str, Any] = {}
    refusable = PROVIDER_SIDE[wire]
    for name, value in body.items():
        if name in allow.fields:
            out[name] = value
        elif name in refusable:
            # off (`store: false`, `mcp_servers: []`) passes as absent; `{}` can mean on
            # (`web_search_options: {}` searches with the defaults)
            if value is not None and value is not False and value != []:
                raise RelayError(400, "field_not_allowed", (
                    f"{name}: the model relay does not pass it ({refusable[name]}, with the "
                    "operator's key); leave it out, or ask the operator to name it in the "
                    "policy's relay_allow_fields"))
        elif name in FIELDS[wire]:
            out[name] = value
    _check_choices(out)
    _screen_tools(wire, out, allow)
    _screen_content(wire, out)
    if wire == "responses" and "store" not in allow.fields:
        out["store"] = False
    if wire == "chat" and out.get("stream") is True:
        options = out.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return out


def beta_headers(wire: str, headers: Mapping[str, str],
                 allow: RelayAllowance = STRICT) -> dict[str, str]:
    """The beta header of `wire`'s provider to forward: only the flags the policy names (none
    by default)."""
    name = BETA_HEADERS[wire]
    flags = [f.strip() for key, value in headers.items() if key.lower() == name
             for f in value.split(",") if allow.beta(f.strip())]
    return {name: ",".join(flags)} if flags else {}


def _check_choices(body: dict[str, Any]) -> None:
    n = body.pop("n", None)
    if n is None or n == 1:
        return
    raise RelayError(400, "field_not_allowed",
                     f"n={n!r}: the model relay answers one choice per call, so that a "
                     "call's cost is bounded by its max_tokens; leave n out (or 1) and call "
                     "again for another answer")


def kind_of(part: dict[str, Any]) -> str | None:
    """A part's `type`, if it is a name (in a JSON schema, `type` can be anything)."""
    kind = part.get("type")
    return kind if isinstance(kind, str) else None


# -- tools ----------------------------------------------------------------------------------------

def _tool_name(wire: str, tool: dict[str, Any]) -> str:
    function = tool.get("function")
    if wire == "chat" and isinstance(function, dict):
        return str(function.get("name"))
    return str(tool.get("name"))


def _screen_tools(wire: str, body: dict[str, Any], allow: RelayAllowance) -> None:
    tools = body.get("tools")
    if not isinstance(tools, list):
        body.pop("tools", None)
        kept: list[Any] = []
    else:
        kept = _client_tools(wire, tools, allow)
        if kept:
            body["tools"] = kept
        else:
            body.pop("tools")
    names = {_tool_name(wire, t) for t in kept}
    choice = body.get("tool_choice")
    if not kept:
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    elif isinstance(choice, dict) and not _choice_kept(wire, choice, names, allow):
        body.pop("tool_choice")


def _client_tools(wire: str, tools: list[Any], allow: RelayAllowance) -> list[Any]:
    """The tools of `tools` the provider may get; a group the policy allows (such as Codex's
    `namespace`) keeps only such tools in turn."""
    kept = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else ""
        if not isinstance(tool, dict) or not (kind is None or isinstance(kind, str)) or not (
                kind in CLIENT_TOOLS[wire] or allow.tool(str(kind))):
            continue
        if "tools" in tool:  # a group: what it holds is screened alike; empty, it goes
            inner = _client_tools(wire, tool["tools"] if isinstance(tool["tools"], list)
                                  else [], allow)
            if not inner:
                continue
            tool = {**tool, "tools": inner}
        kept.append(tool)
    return kept


def _choice_kept(wire: str, choice: dict[str, Any], names: set[str],
                 allow: RelayAllowance) -> bool:
    """Whether a `tool_choice` object still names something the request offers."""
    kind = choice.get("type")
    if wire == "messages":
        return kind != "tool" or str(choice.get("name")) in names
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    if kind in ("function", "custom"):
        return str(name) in names
    return kind in ("allowed_tools", "auto", "required", "none") or allow.tool(str(kind))


# -- content --------------------------------------------------------------------------------------

def _refuse_source(where: str, what: str) -> RelayError:
    return RelayError(400, "input_not_allowed", (
        f"{where}: {what} — the model relay does not let the provider fetch or recall inputs "
        "for a box; send the content itself (base64, a data: URL or text)"))


def _is_remote(url: Any) -> bool:
    return isinstance(url, str) and url[:5].lower() != "data:"


def _inline_file(block: dict[str, Any]) -> str | None:
    """What an inline file part is (a PDF, a file), to leave out; None if it is no such part."""
    kind = block.get("type")
    source = block.get("source")
    if kind == "document" and isinstance(source, dict) and source.get("type") == "base64" and (
            str(source.get("media_type") or "") != "text/plain"):
        return "a document"
    if kind == "input_file" and block.get("file_data"):
        return "a file"
    if kind == "file" and isinstance(block.get("file"), dict) and block["file"].get("file_data"):
        return "a file"
    return None


def _check_part(where: str, part: dict[str, Any]) -> None:
    kind = part.get("type")
    source = part.get("source")
    if isinstance(source, dict) and source.get("type") in ("url", "file"):
        raise _refuse_source(f"{where}.source", f"a source of type {source.get('type')}")
    if kind in ("item_reference", "container_upload"):
        raise _refuse_source(where, f"an {kind}")
    for key in ("file_id", "file_url"):
        if part.get(key):
            raise _refuse_source(f"{where}.{key}", key)
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if image is not None and _is_remote(url):
        raise _refuse_source(f"{where}.image_url", "an image by URL")
    inner = part.get("file")
    if isinstance(inner, dict) and inner.get("file_id"):
        raise _refuse_source(f"{where}.file.file_id", "file_id")


def _walk(where: str, value: Any) -> Any:
    """`value` checked part by part (tool-call inputs are the box's own data: not read), inline
    files replaced by a note."""
    if isinstance(value, list):
        return [_walk(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if kind_of(value) in _TOOL_CALL_BLOCKS:
        return value
    _check_part(where, value)
    what = _inline_file(value)
    if what is not None:
        return {"type": "input_text" if str(value.get("type")).startswith("input_") else "text",
                "text": INLINE_FILE_NOTE.format(what=what)}
    return {k: _walk(f"{where}.{k}", v) for k, v in value.items()}


def _screen_content(wire: str, body: dict[str, Any]) -> None:
    for name in {"messages": ("system", "messages"), "responses": ("input",),
                 "chat": ("messages",)}[wire]:
        if name in body:
            body[name] = _walk(name, body[name])
