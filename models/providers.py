"""Model providers behind the chat API of models/chat.py: Anthropic, OpenAI, OpenRouter or a
local OpenAI-compatible server, picked by the model's `provider/` prefix. The API keys live
here, in the server's settings; they never enter a box."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from models import emulation as localmodel
from models.chat import (
    AssistantMessage,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    FunctionCall,
    ToolCall,
    Usage,
)
from models.errors import ModelError

PROVIDERS = ("anthropic", "openai", "openrouter", "local")
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_MAX_TOKENS = 4096  # the Messages API needs a bound; the chat API leaves it optional
LOCAL_MAX_TOKENS = 1024
UPSTREAM_MESSAGE_CHARS = 500

log = logging.getLogger("burrow.providers")


class ModelProvider(Protocol):
    def body(self, request: ChatRequest) -> dict[str, Any]:
        """What the provider is sent for `request` (its budget reserves for all of it)."""
        ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...


class ProviderSettings(Protocol):
    """What the providers read of the server's settings (core.settings.Settings has it)."""

    anthropic_api_key: SecretStr | None
    openai_api_key: SecretStr | None
    openrouter_api_key: SecretStr | None
    anthropic_url: str
    openai_url: str
    openrouter_url: str
    local_model_url: str | None
    local_model_routes: dict[str, str]
    model_timeout_s: float


class ProviderError(ModelError):
    """A model call that failed; its status and message are what the caller should see.
    `maybe_billed`: the request reached the provider and the call may have cost tokens
    (it timed out or broke off while the provider worked), so its budget keeps the worst
    case; otherwise (refused, unreachable) it cost nothing."""

    maybe_billed = False

    def billed(self) -> ProviderError:
        self.maybe_billed = True
        return self


class LocalServers(Protocol):
    """The supervised local model servers (models/servers.py), when this process runs
    them: they know why one is down."""

    def failure(self, alias: str, wait_s: float = 1.0) -> str | None: ...


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


# -- upstream HTTP -------------------------------------------------------------------------------

def _upstream_message(response: httpx.Response) -> str:
    """The upstream's own explanation ({"error": {"message"}} for all three), trimmed."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        text = str(message) if message else response.text
    except ValueError:
        text = response.text
    text = " ".join(text.split())
    return text[:UPSTREAM_MESSAGE_CHARS] or f"HTTP {response.status_code}"


class Upstream:
    """POSTs to one provider and maps its failures to what a caller can act on."""

    def __init__(self, client: httpx.AsyncClient, label: str, base_url: str,
                 headers: dict[str, str], key: SecretStr | None = None,
                 key_setting: str | None = None) -> None:
        self.client = client
        self.label = label
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.key = key.get_secret_value() if key is not None else None
        self.key_setting = key_setting

    def _scrub(self, text: str) -> str:
        # Some providers quote (part of) a rejected key back; none of it leaves the server.
        if self.key:
            text = text.replace(self.key, "***")
        return text

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(self.base_url + path, json=body,
                                               headers=self.headers)
        except httpx.HTTPError as exc:
            raise self.failed(exc) from exc
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ProviderError(503, "model_unavailable",
                                    f"{self.label} answered something that is not JSON").billed()
            return data
        raise self._error(response)

    def failed(self, exc: httpx.HTTPError) -> ProviderError:
        """The error a caller sees when the provider could not be reached or broke off."""
        sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if isinstance(exc, httpx.TimeoutException):
            error = ProviderError(503, "model_unavailable",
                                  f"{self.label} did not answer in time; retry later")
        else:
            # The address stays in the server's log: boxes read these messages.
            log.warning("cannot reach %s at %s: %r", self.label, self.base_url, exc)
            error = ProviderError(503, "model_unavailable",
                                  f"cannot reach {self.label} ({type(exc).__name__}); "
                                  "retry later")
        return error.billed() if sent else error

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        message = self._scrub(_upstream_message(response))
        if status == 429:
            retry = response.headers.get("retry-after", "")
            headers = {"Retry-After": retry} if retry.isdigit() else None
            return ProviderError(429, "rate_limited",
                                 f"{self.label} is rate limiting: {message}", headers)
        if status in (401, 403) and self.key_setting:
            return ProviderError(503, "model_key_rejected",
                                 f"{self.label} rejected the server's key ({message}); check "
                                 f"{self.key_setting} on the Burrow server")
        if 400 <= status < 500:
            return ProviderError(400, "model_rejected", f"{self.label} rejected the request: "
                                                        f"{message}")
        return ProviderError(503, "model_unavailable",
                             f"{self.label} failed (HTTP {status}): {message}; retry later")


def _key_or_503(key: SecretStr | None, setting: str, provider: str) -> SecretStr:
    if key is None or not key.get_secret_value():
        raise ProviderError(503, "model_not_configured",
                            f"no API key for {provider}/ models: set {setting} on the Burrow "
                            "server")
    return key


# -- OpenAI chat completions (OpenAI, OpenRouter, local servers) --------------------------------

def openai_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        item = m.model_dump(exclude_none=True)
        if m.role == "assistant" and "content" not in item:
            item["content"] = None
        out.append(item)
    return out


def parse_openai(data: dict[str, Any], model: str, label: str) -> ChatResponse:
    try:
        choice = data["choices"][0]
        message = choice["message"]
        calls = [ToolCall(id=c.get("id") or new_call_id(),
                          function=FunctionCall(name=c["function"]["name"],
                                                arguments=c["function"].get("arguments") or "{}"))
                 for c in message.get("tool_calls") or []]
        usage = data.get("usage") or {}
        return ChatResponse(
            model=model,
            message=AssistantMessage(content=message.get("content"), tool_calls=calls),
            usage=Usage(input_tokens=usage.get("prompt_tokens") or 0,
                        output_tokens=usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or ("tool_calls" if calls else "stop"))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProviderError(503, "model_unavailable",
                            f"{label} answered in an unexpected shape") from exc


class OpenAIProvider:
    """OpenAI's chat completions API, and OpenRouter's copy of it."""

    def __init__(self, upstream: Upstream, prefix: str, max_tokens_field: str = "max_tokens",
                 ) -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.max_tokens_field = max_tokens_field

    def body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.name,
                                "messages": openai_messages(request.messages)}
        if request.tools:
            body["tools"] = [t.model_dump() for t in request.tools]
        if request.response_format is not None:
            body["response_format"] = request.response_format.model_dump(
                exclude_none=True, by_alias=True)
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        data = await self.upstream.post("/chat/completions", self.body(request))
        return parse_openai(data, request.model, self.upstream.label)


class LocalProvider(OpenAIProvider):
    """Any OpenAI-compatible server (llama.cpp's by default). Tiny local models cannot call
    functions natively, so tools are emulated with schema-constrained JSON (see localmodel)."""

    def __init__(self, upstream: Upstream, alias: str,
                 servers: LocalServers | None = None) -> None:
        super().__init__(upstream, "local")
        self.alias = alias
        self.servers = servers

    def body(self, request: ChatRequest) -> dict[str, Any]:
        body = super().body(request)
        body.setdefault("temperature", 0.0)  # deterministic unless asked otherwise
        body.setdefault("max_tokens", LOCAL_MAX_TOKENS)
        schema = request.schema_format()
        if request.tools:
            body.pop("tools")
            body.pop("response_format", None)
            tools = [t.function.model_dump() for t in request.tools]
            answer = schema.schema_ if schema is not None else None
            body["messages"] = localmodel.emulation_messages(body["messages"], tools, answer)
            body["response_format"] = localmodel.json_format(
                localmodel.action_schema(tools, answer))
        else:
            # Earlier tool calls and results as plain turns: without tools they would reach
            # the server as OpenAI tool messages, which a tool-less chat template can't take.
            body["messages"] = [localmodel.plain_message(m) for m in body["messages"]]
            if schema is not None:
                body["response_format"] = localmodel.json_format(schema.schema_)
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        try:
            response = await super().chat(request)
        except ProviderError as exc:
            why = (await asyncio.to_thread(self.servers.failure, self.alias)
                   if exc.status == 503 and self.servers is not None else None)
            if why is None:
                raise
            down = ProviderError(503, "model_unavailable", why, {"Retry-After": "5"})
            raise (down.billed() if exc.maybe_billed else down) from exc
        if not request.tools:
            return response
        tools = [t.function.name for t in request.tools]
        content, call = localmodel.read_action(response.message.content or "", tools)
        if call is None:
            response.message = AssistantMessage(content=content)
            if response.finish_reason == "tool_calls":
                response.finish_reason = "stop"
            return response
        name, arguments = call
        response.message = AssistantMessage(tool_calls=[ToolCall(
            id=new_call_id(), function=FunctionCall(name=name, arguments=arguments))])
        response.finish_reason = "tool_calls"
        return response


# -- Anthropic Messages API ----------------------------------------------------------------------

def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def _anthropic_blocks(m: ChatMessage) -> tuple[str, list[dict[str, Any]]]:
    if m.role == "tool":
        return "user", [{"type": "tool_result", "tool_use_id": m.tool_call_id or "",
                         "content": m.content or ""}]
    blocks: list[dict[str, Any]] = []
    if m.content:
        blocks.append({"type": "text", "text": m.content})
    for call in m.tool_calls or []:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                       "input": _tool_input(call.function.arguments)})
    return m.role, blocks


def anthropic_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages): the Messages API takes the system prompt apart, tool results
    as user content blocks, and wants user and assistant turns to alternate."""
    system = [m.content for m in messages if m.role == "system" and m.content]
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role, blocks = _anthropic_blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


_ANTHROPIC_STOP = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls",
                   "max_tokens": "length"}


class AnthropicProvider:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def body(self, request: ChatRequest) -> dict[str, Any]:
        system, messages = anthropic_messages(request.messages)
        schema = request.schema_format()
        wants_json = request.response_format is not None and request.response_format.type in (
            "json_object", "json_schema")
        if wants_json:
            rule = ("Reply with only a JSON object" + (
                f" that matches this JSON schema: {json.dumps(schema.schema_)}"
                if schema is not None else "") + "; no prose, no code fence.")
            system = f"{system}\n\n{rule}" if system else rule
        body: dict[str, Any] = {"model": request.name, "messages": messages,
                                "max_tokens": request.max_tokens or ANTHROPIC_MAX_TOKENS}
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [{"name": t.function.name, "description": t.function.description,
                              "input_schema": t.function.parameters} for t in request.tools]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        data = await self.upstream.post("/v1/messages", self.body(request))
        try:
            texts = [b["text"] for b in data["content"] if b.get("type") == "text"]
            calls = [ToolCall(id=b["id"], function=FunctionCall(
                         name=b["name"], arguments=json.dumps(b.get("input") or {})))
                     for b in data["content"] if b.get("type") == "tool_use"]
            usage = data.get("usage") or {}
            stop = str(data.get("stop_reason") or "end_turn")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderError(503, "model_unavailable",
                                "anthropic answered in an unexpected shape") from exc
        return ChatResponse(
            model=request.model,
            message=AssistantMessage(content="".join(texts) if texts else None,
                                     tool_calls=calls),
            usage=Usage(input_tokens=usage.get("input_tokens") or 0,
                        output_tokens=usage.get("output_tokens") or 0),
            finish_reason=_ANTHROPIC_STOP.get(stop, stop))


# -- the registry --------------------------------------------------------------------------------

class Providers:
    """Every provider the server can reach, over one pooled HTTP client; `chat` routes a
    request by its model's `provider/` prefix."""

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient | None = None,
                 local_servers: LocalServers | None = None) -> None:
        self.settings = settings
        self.local_servers = local_servers
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.model_timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))

    def get(self, model: str) -> ModelProvider:
        provider, _, name = model.partition("/")
        if provider not in PROVIDERS or not name:
            raise ProviderError(400, "unknown_provider",
                                f"model {model!r} names no known provider; use provider/name "
                                f"with provider one of {', '.join(PROVIDERS)} (for example "
                                "anthropic/claude-sonnet-4-5 or local/smollm2-135m)")
        s = self.settings
        json_headers = {"content-type": "application/json"}
        if provider == "anthropic":
            key = _key_or_503(s.anthropic_api_key, "ANTHROPIC_API_KEY", provider)
            return AnthropicProvider(Upstream(
                self.client, "anthropic", s.anthropic_url,
                {**json_headers, "x-api-key": key.get_secret_value(),
                 "anthropic-version": ANTHROPIC_VERSION}, key, "ANTHROPIC_API_KEY"))
        if provider in ("openai", "openrouter"):
            setting = f"{provider.upper()}_API_KEY"
            key = _key_or_503(getattr(s, f"{provider}_api_key"), setting, provider)
            headers = {**json_headers, "authorization": f"Bearer {key.get_secret_value()}"}
            if provider == "openrouter":
                headers["x-title"] = "Burrow"
            return OpenAIProvider(
                Upstream(self.client, provider, getattr(s, f"{provider}_url"), headers, key,
                         setting),
                provider,
                # OpenAI's newer models take only max_completion_tokens; OpenRouter max_tokens.
                "max_completion_tokens" if provider == "openai" else "max_tokens")
        if not s.local_model_url and name not in s.local_model_routes:
            raise ProviderError(503, "model_not_configured",
                                "no local model server: set BURROW_LOCAL_MODEL_URL (any "
                                "OpenAI-compatible server) or start `burrow serve "
                                "--local-model` on the Burrow server")
        url = s.local_model_routes.get(name, s.local_model_url or "")
        return LocalProvider(Upstream(self.client, "the local model server", url, json_headers),
                             name, self.local_servers)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self.get(request.model).chat(request)

    async def aclose(self) -> None:
        await self.client.aclose()
