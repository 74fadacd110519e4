"""The agent of a box and its runs, as data: the harness and model a box's agent runs with
(`AgentConfig`, stored with the box), a run asked for (`RunCreate`) and the run's record
(`RunPublic`, kept in Redis and shown as it is). The HTTP API shows these same models
(gateway/schemas.py names them with the rest); core/runs.py runs them."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models.providers import PROVIDERS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_MODEL = re.compile(rf"^({'|'.join(PROVIDERS)})/[A-Za-z0-9._:@/-]{{1,200}}$")
_MODEL_HELP = ("provider/name: anthropic/…, openai/…, openrouter/… or local/… (the server at "
               "BURROW_LOCAL_MODEL_URL)")


def _model_name(value: str) -> str:
    if not _MODEL.match(value):
        raise ValueError(f"{value!r} is not a model name; write it as {_MODEL_HELP}, for "
                         "example local/smollm2-135m or anthropic/claude-sonnet-4-5")
    return value


ModelName = Annotated[str, AfterValidator(_model_name), Field(description=_MODEL_HELP)]


# --- MCP servers for agent runs ------------------------------------------------------------

MCP_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_MCP_SERVERS = 16
MAX_MCP_BYTES = 32768  # a box's servers are kept in its record, read by every listing
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HIDDEN = "***"  # what a box's listing shows for an MCP server's env and header values


def _env(env: dict[str, str]) -> dict[str, str]:
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"env name {name[:40]!r} is not a variable name (letters, digits "
                             "and _, not starting with a digit)")
        if "\x00" in value:
            raise ValueError(f"env {name}: a value cannot hold a NUL character")
    return env


def _headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"header name {name[:40]!r} is not an HTTP header name")
        if _CONTROL.search(value.replace("\t", "")):
            raise ValueError(f"header {name}: a value cannot hold line breaks or control "
                             "characters")
    return headers


def _mcp_url(url: str) -> str:
    if _CONTROL.search(url) or " " in url:
        raise ValueError("the url cannot hold spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError(f"{url[:80]!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url[:80]!r}: an MCP server's url is http(s)://host[:port]/path")
    if parts.username is not None or parts.password is not None:
        raise ValueError("put credentials in headers (Authorization: Bearer …), not in the url")
    return url


class McpServer(Strict):
    """An MCP server the agent of a run may use: a `command` the run starts inside the box,
    speaking MCP over its stdin and stdout (stdio), or a `url` (streamable HTTP) the box
    reaches through its own network — never the server on the box's behalf: a box with
    network "none" reaches only its own loopback, an "egress" box what its egress rules allow.
    Its tools reach the model as `mcp__<server>__<tool>`."""

    command: str | None = Field(None, min_length=1, max_length=4096,
                                description="stdio: the program, run in the box (with args)")
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=256, description="stdio: the program's arguments")
    env: Annotated[dict[Annotated[str, Field(max_length=128)], Annotated[
        str, Field(max_length=8192)]], AfterValidator(_env)] = Field(
        default_factory=dict, max_length=64,
        description="stdio: variables added to the server's environment, as given (nothing of "
                    "the host's is ever added; the box token is left out)")
    cwd: str | None = Field(None, min_length=1, max_length=4096,
                            description="stdio: its working directory (default /workspace)")
    url: Annotated[str, Field(max_length=2048), AfterValidator(_mcp_url)] | None = Field(
        None, description="streamable HTTP: the server's endpoint")
    headers: Annotated[dict[str, Annotated[str, Field(max_length=8192)]],
                       AfterValidator(_headers)] = Field(
        default_factory=dict, max_length=32,
        description="streamable HTTP: headers sent with every request (Authorization …)")
    timeout_s: float | None = Field(
        None, gt=0, le=600, description="seconds each request to it may take: its start "
                                        "(default 30) and each tool call (default 60)")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server has a command (stdio, run in the box) or a url "
                             "(streamable HTTP), one of the two")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("args, env and cwd are for a command; a url server takes headers")
        if self.command is not None and self.headers:
            raise ValueError("headers are for a url server; a command takes env")
        return self

    def shown(self) -> McpServer:
        """This server with its env and header values hidden (a box's listing)."""
        return self.model_copy(update={"env": dict.fromkeys(self.env, HIDDEN),
                                       "headers": dict.fromkeys(self.headers, HIDDEN)})


def _mcp_servers(servers: dict[str, McpServer]) -> dict[str, McpServer]:
    for name in servers:
        if not MCP_NAME.match(name):
            raise ValueError(f"MCP server name {name[:40]!r}: 1 to 32 of a-z, 0-9, _ and - "
                             "(it prefixes the server's tools: mcp__<name>__<tool>)")
    if len(servers) > MAX_MCP_SERVERS:
        raise ValueError(f"{len(servers)} MCP servers; at most {MAX_MCP_SERVERS}")
    size = len(json.dumps({k: v.model_dump(exclude_defaults=True)
                           for k, v in servers.items()}).encode())
    if size > MAX_MCP_BYTES:
        raise ValueError(f"the MCP servers take {size} bytes as JSON; at most {MAX_MCP_BYTES} "
                         "(write long settings to a file in the box)")
    return servers


McpServers = Annotated[dict[str, McpServer], AfterValidator(_mcp_servers), Field(
    description=f"MCP servers by name (at most {MAX_MCP_SERVERS}; a name is 1 to 32 of a-z, "
                "0-9, _ and -)")]


def merged_mcp_servers(box: dict[str, McpServer],
                       run: dict[str, McpServer] | None) -> dict[str, McpServer]:
    """A run's MCP servers: the box's, with the run's added (a name the box has is the run's
    server). ValueError when the two together are more than a run may have."""
    return _mcp_servers({**box, **(run or {})})


class AgentConfig(Strict):
    """The agent that runs in a box: a harness and a model, and the MCP servers its runs
    may use. Provider keys are never part of it: they stay in the server's environment, and
    model calls get them on the host."""

    harness: Literal["burrow", "claude-code", "codex", "opencode"] = "burrow"
    model: ModelName
    mcp_servers: McpServers = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and any("key" in str(k).lower() for k in data):
            raise ValueError("provider keys never go into a box: set ANTHROPIC_API_KEY, "
                             "OPENAI_API_KEY or OPENROUTER_API_KEY in the Burrow server's "
                             "environment and leave api_key out")
        return data

    @classmethod
    def stored(cls, value: Any) -> AgentConfig | None:
        """The agent a box was created with (None if it has none or it no longer parses)."""
        try:
            return cls.model_validate(value) if value else None
        except ValueError:
            return None

    def shown(self) -> AgentConfig:
        """As a box's listing shows it: the MCP servers' env and header values hidden."""
        return self.model_copy(update={"mcp_servers": {
            name: server.shown() for name, server in self.mcp_servers.items()}})


MAX_SCHEMA_BYTES = 65536  # a run's response_schema is kept with the run (in Redis) for a week


def _small_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    size = len(json.dumps(schema).encode()) if schema is not None else 0
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"the schema is {size} bytes as JSON; at most {MAX_SCHEMA_BYTES}")
    return schema


class RunCreate(Strict):
    prompt: str = Field(min_length=1, max_length=200_000)
    response_schema: Annotated[dict[str, Any] | None, AfterValidator(_small_schema)] = Field(
        None, description="a JSON schema the result must match (retried when it does not); "
                          f"at most {MAX_SCHEMA_BYTES} bytes as JSON")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="default 600")
    max_turns: int | None = Field(None, ge=1, le=200, description="model calls before the "
                                                                   "run gives up; default 10")
    model: ModelName | None = Field(None, description="instead of the box's model")
    harness: Literal["burrow", "claude-code", "codex", "opencode"] | None = None
    trim: bool | None = Field(
        None, description="agent CLIs only: a trimmed tool set and prompt for small-context "
                          "models (default: on for local/ models)")
    mcp_servers: McpServers | None = Field(
        None, description="MCP servers for this run, added to the box's agent's (a name the "
                          "box has is replaced for this run)")


class RunUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    tool_calls: int = 0
    duration_ms: float = 0.0


class RunPublic(BaseModel):
    id: str
    box_id: str
    status: Literal["running", "completed", "failed", "timed_out"]
    result: Any = Field(None, description="the validated object when a response_schema was "
                                          "given, else the final answer's text")
    output: str = Field("", description="everything the agent said during the run")
    error: str | None = None
    usage: RunUsage = Field(default_factory=RunUsage)
    model: str
    harness: str
    created_at: float
    finished_at: float | None = None
