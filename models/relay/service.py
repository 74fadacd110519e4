"""Answering one relayed model call from a box: `Relay.answer`.

A call arrives as the CLI sent it (family, method, path, headers, body) together with the
model the box is configured for. `Relay.prepare` checks it (`policy.route`: inference paths
only), reads its body, pins its model, screens it (`allowlist`: the fields, tools, content
and beta headers that may reach a provider) and bounds its output, and says what it can
cost at most (`RelayCall.worst_case`, for the budget to reserve); `Relay.send` answers it one
of two ways (`Relay.answer` does both):

- **passthrough**, when the box's provider speaks the CLI's wire API itself (Anthropic the
  Messages API; OpenAI the Responses API and chat completions; OpenRouter chat completions):
  the body goes to the provider with the server's key and the allowlisted client headers, and
  the provider's answer — its stream, event for event — comes back unchanged, read on the way
  for the usage it reports;
- **translated**, otherwise (every `local/` model, or Claude Code on an OpenAI model): the body
  becomes a `ChatRequest`, the provider registry answers it, and the `ChatResponse` is written
  back in the CLI's format, as the event sequence its client expects when it asked to stream.

Errors come back in the CLI's own error shape (so it shows the message), with the status a
provider error maps to. A translated stream whose model has not answered within
`keepalive_s` commits to 200 and sends SSE comments while the model works, so a slow local
model never trips a first-byte or idle timeout; a failure after that arrives as the API's
error event (a quick one, such as a prompt over the context, keeps its status, so the CLI
does not retry it). Translated calls to `local/` models are fitted to small models first
(`small`). `RelayAnswer.usage` is final once its
body has been read to the end: settle the tenant's budget from it then — if `metered` says
it is the whole call's usage; otherwise (a stream cut short, a provider that timed out after
it got the call) the call's cost is unknown and its reservation stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from models.chat import ChatRequest, ChatResponse, JsonSchemaFormat, ResponseFormat, Usage
from models.errors import ModelError
from models.providers import LOCAL_MAX_TOKENS, ProviderError, Providers
from models.relay import allowlist, policy, small
from models.relay.allowlist import STRICT, RelayAllowance
from models.relay.completions import CompletionsApi
from models.relay.messages import MessagesApi
from models.relay.responses import ResponsesApi
from models.relay.wire import RelayError, UsageTap, WireApi
from models.worstcase import call_tokens

WIRES: dict[str, WireApi] = {"messages": MessagesApi(), "responses": ResponsesApi(),
                             "chat": CompletionsApi()}
# The wire APIs each provider speaks itself: calls in them pass through unchanged.
NATIVE: dict[str, frozenset[str]] = {"anthropic": frozenset({"messages"}),
                                     "openai": frozenset({"responses", "chat"}),
                                     "openrouter": frozenset({"chat"})}
# Where each wire API lives under the provider's base URL (Anthropic's has no /v1; the
# OpenAI-style ones end in it).
UPSTREAM_PATHS = {"messages": "/v1/messages", "responses": "/responses",
                  "chat": "/chat/completions"}
KEEPALIVE_S = 10.0
KEEPALIVE = b": keep-alive\n\n"
# What a call's output is bounded by when nothing bounds it (a caller that gives no ceiling,
# a request that names none): the largest output models write.
UNBOUNDED_OUTPUT = 128 << 10
_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_JSON = "application/json"


@dataclass
class RelayAnswer:
    """What to send back: status, content type, body (bytes as they come), and the usage
    the call cost — final once the body has been read to its end; `metered` then says
    whether it is the whole call's (False: the cost is unknown, the reservation stands)."""

    status: int
    media_type: str
    body: AsyncIterator[bytes]
    mode: str  # passthrough | translated | refused
    usage: Usage = field(default_factory=Usage)
    headers: dict[str, str] = field(default_factory=dict)
    metered: bool = False

    async def read(self) -> bytes:
        """The whole body (tests, non-streaming callers)."""
        return b"".join([chunk async for chunk in self.body])


@dataclass
class RelayCall:
    """A call checked and ready to send: the body as screened (and, passed through, as the
    provider gets it), the client headers that go with it, its translation when the
    provider does not speak its API, and the most it can cost in tokens."""

    wire: WireApi
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    chat: ChatRequest | None  # None: passed through
    worst_case: int


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _refused(wire: WireApi | None, exc: ModelError) -> RelayAnswer:
    body = (wire.error(exc.status, exc.code, exc.message) if wire is not None
            else {"error": {"code": exc.code, "message": exc.message}})
    return RelayAnswer(exc.status, _JSON, _once(json.dumps(body).encode()), "refused",
                       headers=dict(exc.headers or {}), metered=not _maybe_billed(exc))


def _maybe_billed(exc: ModelError) -> bool:
    return isinstance(exc, ProviderError) and exc.maybe_billed


def _output_bound(body: dict[str, Any]) -> int:
    """The output bound of a body a provider gets (the largest, if it names several)."""
    bounds = [v for k in _OUTPUT_FIELDS if isinstance(v := body.get(k), int) and v > 0]
    return max(bounds, default=UNBOUNDED_OUTPUT)


class Relay:
    """Relays CLI model calls through the server's provider registry (which holds the keys)."""

    def __init__(self, providers: Providers, keepalive_s: float | None = KEEPALIVE_S) -> None:
        self.providers = providers
        self.keepalive_s = keepalive_s

    @staticmethod
    def refusal(family: str, exc: ModelError, path: str | None = None) -> RelayAnswer:
        """A call refused before it was relayed (the host's own reasons: a budget, a run past
        its max_turns; or `prepare`'s), in the error shape the CLI of `family` reads (of the
        API of `path`, when it is one)."""
        return _refused(_family_wire(family, path), exc)

    def prepare(self, family: str, method: str, path: str, headers: Mapping[str, str],
                raw: bytes, model: str, max_output_tokens: int | None = None,
                response_schema: dict[str, Any] | None = None,
                allow: RelayAllowance = STRICT) -> RelayCall:
        """Check one call of a CLI of `family` for a box configured with `model`
        (`provider/name`) and make it ready to send, or raise the ModelError that refuses it.
        Its output is bounded by `max_output_tokens` (for `local/` models the local bound
        when None); `allow` is what the operator's policy lets through beyond the relay's
        allow-lists. `response_schema`: the run's answer must match it; a `local/` model's
        final answer is held to it by the grammar (tiny models cannot be trusted to write
        JSON of a shape from a description)."""
        found = policy.route(family, method, path)
        wire = WIRES[found.wire]
        body = policy.read_body(raw, _header(headers, "content-encoding"))
        provider, _, name = model.partition("/")
        body = allowlist.screen(found.wire, policy.pin_model(body, name), allow)
        target = self.providers.get(model)  # unknown provider, no key: refused before anything
        if found.wire in NATIVE.get(provider, frozenset()):
            if max_output_tokens is not None:
                body = policy.clamp_output(found.wire, body, max_output_tokens)
            return RelayCall(wire, model, body, policy.client_headers(found.wire, headers, allow),
                             None, call_tokens(body, _output_bound(body)))
        ceiling = max_output_tokens or (LOCAL_MAX_TOKENS if provider == "local" else None)
        chat = wire.to_chat(body, model, ceiling)
        if provider == "local":
            chat = small.slim(chat, _header(headers, small.TOOLS_HEADER))
            if response_schema is not None and chat.response_format is None:
                chat.response_format = ResponseFormat(
                    type="json_schema",
                    json_schema=JsonSchemaFormat.model_validate({"schema": response_schema}))
        sent = target.body(chat)
        worst = call_tokens(sent, _output_bound(sent))
        if provider == "local":  # a model that repeats itself is asked once more (_ask)
            again = target.body(small.conclusion(chat))
            worst += call_tokens(again, _output_bound(again))
        return RelayCall(wire, model, body, {}, chat, worst)

    async def send(self, call: RelayCall) -> RelayAnswer:
        """Answer a prepared call: passed through, or translated."""
        if call.chat is not None:
            return await self._translated(call.wire, call.body, call.chat)
        try:
            return await self._passthrough(call.wire, call.model, call.body, call.headers)
        except ModelError as exc:
            return _refused(call.wire, exc)

    async def answer(self, family: str, method: str, path: str, headers: Mapping[str, str],
                     raw: bytes, model: str, max_output_tokens: int | None = None,
                     response_schema: dict[str, Any] | None = None,
                     allow: RelayAllowance = STRICT) -> RelayAnswer:
        """`prepare` and `send` one call (a refusal in the CLI's error shape)."""
        try:
            call = self.prepare(family, method, path, headers, raw, model, max_output_tokens,
                                response_schema, allow)
        except ModelError as exc:  # RelayError, ProviderError
            return self.refusal(family, exc, path)
        return await self.send(call)

    async def _translated(self, wire: WireApi, body: dict[str, Any],
                          chat: ChatRequest) -> RelayAnswer:
        streaming = body.get("stream") is True
        call = asyncio.ensure_future(self._ask(chat))
        # A quick answer, or a quick refusal (a prompt over the context), keeps its own status;
        # only a model slower than keepalive_s gets a stream committed to 200 and kept alive.
        try:
            done, _ = await asyncio.wait(
                {call}, timeout=self.keepalive_s if streaming else None)
        except asyncio.CancelledError:
            call.cancel()
            raise
        if not done:
            return self._kept_alive(wire, body, call)
        try:
            response = call.result()
        except ModelError as exc:
            return _refused(wire, exc)
        answer = (RelayAnswer(200, wire.content_type, _iterate(wire.events(response, body)),
                              "translated")
                  if streaming
                  else RelayAnswer(200, _JSON, _once(json.dumps(wire.answer(response, body))
                                                     .encode()), "translated"))
        answer.usage = response.usage.model_copy()
        answer.metered = True
        return answer

    async def _ask(self, chat: ChatRequest) -> ChatResponse:
        response = await self.providers.chat(chat)
        if chat.provider != "local" or not small.repeats(chat, response):
            return response
        final = await self.providers.chat(small.conclusion(chat))
        final.usage = Usage(input_tokens=response.usage.input_tokens + final.usage.input_tokens,
                            output_tokens=response.usage.output_tokens
                            + final.usage.output_tokens)
        return final

    def _kept_alive(self, wire: WireApi, body: dict[str, Any],
                    call: asyncio.Future[ChatResponse]) -> RelayAnswer:
        answer = RelayAnswer(200, wire.content_type, _once(b""), "translated")

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield KEEPALIVE
                while True:
                    done, _ = await asyncio.wait({call}, timeout=self.keepalive_s)
                    if done:
                        break
                    yield KEEPALIVE
                try:
                    response = call.result()
                except ModelError as exc:
                    answer.metered = not _maybe_billed(exc)
                    yield wire.error_event(exc.code, exc.message)
                    return
                answer.usage.input_tokens = response.usage.input_tokens
                answer.usage.output_tokens = response.usage.output_tokens
                answer.metered = True
                for chunk in wire.events(response, body):
                    yield chunk
            finally:
                if not call.done():  # the client went away: stop waiting for the model
                    call.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await call

        answer.body = stream()
        return answer

    async def _passthrough(self, wire: WireApi, model: str, body: dict[str, Any],
                           headers: dict[str, str]) -> RelayAnswer:
        upstream = getattr(self.providers.get(model), "upstream", None)
        if upstream is None:
            raise RelayError(503, "model_unavailable", f"{model} cannot be relayed")
        request = upstream.client.build_request(
            "POST", upstream.base_url + UPSTREAM_PATHS[wire.name],
            headers={**upstream.headers, **headers}, content=json.dumps(body).encode())
        try:
            response = await upstream.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise upstream.failed(exc) from exc
        if response.status_code != 200:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise upstream._error(response)
        streaming = body.get("stream") is True
        tap = UsageTap(wire, streaming)
        media = response.headers.get("content-type", wire.content_type if streaming else _JSON)

        answer = RelayAnswer(200, media, _once(b""), "passthrough", tap.usage)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    tap.feed(chunk)
                    yield chunk
                tap.finish()
                answer.metered = tap.complete
            except httpx.HTTPError:
                yield wire.error_event("model_unavailable",
                                       f"{upstream.label} broke off the answer; retry")
            finally:
                await response.aclose()

        answer.body = relay()
        return answer


def _family_wire(family: str, path: str | None = None) -> WireApi | None:
    """The error shape a CLI of `family` reads: of the API of `path` when it is one of the
    family's, else the family's first (a call refused before its API is known)."""
    paths = policy.FAMILIES.get(family)
    if not paths:
        return None
    clean = "/" + (path or "").split("?", 1)[0].strip("/")
    return WIRES[paths.get(clean) or next(iter(paths.values()))]


async def _iterate(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
