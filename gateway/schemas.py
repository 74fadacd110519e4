"""Request and response models of the HTTP API, in families (XCreate in, XPublic out)."""

from __future__ import annotations

import json
import math
import posixpath
import re
import time
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    RootModel,
    model_validator,
)

from boxes import BoxRecord, BoxUsage, FileEntry, SnapshotRecord
from core.agents import AgentConfig as AgentConfig
from core.agents import McpServer as McpServer
from core.agents import ModelName as ModelName
from core.agents import RunCreate as RunCreate
from core.agents import RunPublic as RunPublic
from core.agents import RunUsage as RunUsage
from core.observations import KEPT_HEADERS
from tenant_agent.memory.turns import PROTOCOL

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


# --- tenants ---------------------------------------------------------------------------------

_IDLE = "seconds without traffic or a running exec; null: never"


class TenantPolicy(Strict):
    """A tenant's overrides of the global freeze policy. In a PUT, a field left out stays as
    it is and a null removes the override (the global value applies again)."""

    pause_after_s: float | None = Field(
        None, description=f"pause (RAM kept) after this many {_IDLE}")
    freeze_after_s: float | None = Field(
        None, description=f"freeze to disk after this many {_IDLE}")
    archive_after_s: float | None = Field(
        None, description=f"drop the local layer of a frozen box after this many {_IDLE}")
    keep_alive: bool | None = Field(None, description="never pause, freeze or archive for idleness")
    max_boxes_per_tenant: int | None = Field(None, description="most boxes a tenant may have")
    max_tenant_disk_mb: int | None = Field(
        None, description="most disk (MB) all of a tenant's boxes may ask for together, "
                          "with what its named snapshots hold")
    max_snapshots_per_tenant: int | None = Field(
        None, description="most named snapshots a tenant may keep")
    max_tenant_exec_output_mb: int | None = Field(
        None, description="most output (MB) a tenant's collected execs may hold in the "
                          "gateway at once; beyond it an exec answers 429 (stream it instead)")
    tenant_keep_alive: bool | None = Field(
        None, description="whether the tenant may create keep_alive boxes")
    tenant_token_budget: int | None = Field(
        None, description="model tokens (input + output) a tenant may use per budget period")
    model_allowlist: list[str] | None = Field(
        None, description="models boxes may call (provider/name, * wildcards); null: any")
    agent_model: ModelName | None = Field(
        None, description="the model the tenant agents answer /ask through and, unless it is "
                          "a local/ one, distil memories with (on model_allowlist); null: the "
                          "server's BURROW_AGENT_MODEL")
    relay_allow_fields: list[str] | None = Field(
        None, description="request fields the model relay forwards to providers as sent, "
                          "beyond its allow-lists (e.g. mcp_servers, store, "
                          "previous_response_id, background); default none")
    relay_allow_tools: list[str] | None = Field(
        None, description="server-side tool types the model relay forwards (* wildcards, "
                          "e.g. web_search*); default none: only the client's own tools")
    relay_allow_betas: list[str] | None = Field(
        None, description="beta flags the model relay forwards in anthropic-beta / "
                          "openai-beta headers (* wildcards); default none")
    contribute_min_age_s: float | None = Field(
        None, description="seconds since a tenant was created before what its agent proposes "
                          "counts in the shared knowledge base (default a day; 0: at once)")
    contribute_min_turns: int | None = Field(
        None, description="turns the gateway recorded for a tenant before what its agent "
                          "proposes counts in the shared knowledge base (default 20; 0: none)")
    allow_public_ports: bool | None = Field(
        None, description="whether the tenant may open a port with auth \"public\" (a preview "
                          "URL without a token); off, its public ports answer 403 (default on)")


class PolicyIn(TenantPolicy):
    """Changes to the global freeze policy: a field left out stays as it is; null means never
    (or no limit)."""

    max_warm_boxes: int | None = Field(
        None, description="above this many running or paused boxes, the least recently used "
                          "are frozen")
    local_layer_budget_bytes: int | None = Field(
        None, description="above this many bytes of frozen layers on local disk, the least "
                          "recently used frozen boxes are archived")
    max_box_memory_mb: int | None = Field(None, description="largest memory a tenant box gets")
    max_box_disk_mb: int | None = Field(None, description="largest disk a tenant box gets")
    max_box_pids: int | None = Field(None, description="most processes in a tenant box")
    max_box_cpus: float | None = Field(None, description="most CPUs a tenant box gets")
    max_box_labels: int | None = Field(None, description="most labels on a tenant box")
    max_box_env_bytes: int | None = Field(
        None, description="most bytes of env (names and values) a tenant box may carry")
    egress_allow: list[str] | None = Field(
        None, description="what egress boxes may reach beyond public addresses: IPv4 "
                          "CIDRs or addresses, optionally :port, or *:port")
    egress_deny: list[str] | None = Field(None, description="what egress boxes may never reach")
    model_max_tokens: int | None = Field(
        None, description="largest max_tokens of a model call from a box (larger ones are "
                          "clamped)")
    token_budget_period_s: float | None = Field(
        None, description="the period of tenant_token_budget, in seconds")
    model_calls_per_minute: int | None = Field(
        None, description="model calls a tenant's boxes may make per minute")
    embed_texts_per_minute: int | None = Field(
        None, description="texts a tenant's boxes may have the host embed per minute (the "
                          "tenant agent's recall embeds one query a call)")


class PolicyValues(BaseModel):
    pause_after_s: float | None
    freeze_after_s: float | None
    archive_after_s: float | None
    keep_alive: bool
    max_warm_boxes: int | None
    local_layer_budget_bytes: int | None
    max_box_memory_mb: int | None
    max_box_disk_mb: int | None
    max_box_pids: int | None
    max_box_cpus: float | None
    max_boxes_per_tenant: int | None
    max_tenant_disk_mb: int | None
    max_snapshots_per_tenant: int | None
    max_box_labels: int | None
    max_box_env_bytes: int | None
    max_tenant_exec_output_mb: int | None
    tenant_keep_alive: bool
    egress_allow: list[str]
    egress_deny: list[str]
    model_allowlist: list[str] | None
    model_max_tokens: int | None
    tenant_token_budget: int | None
    token_budget_period_s: float
    model_calls_per_minute: int | None
    embed_texts_per_minute: int | None
    agent_model: str | None
    relay_allow_fields: list[str] = Field(default_factory=list)
    relay_allow_tools: list[str] = Field(default_factory=list)
    relay_allow_betas: list[str] = Field(default_factory=list)
    contribute_min_age_s: float | None
    contribute_min_turns: int | None
    allow_public_ports: bool = True


class PolicyOut(BaseModel):
    policy: PolicyValues
    version: int = Field(description="increases with every change; 0: never changed")
    updated_at: float | None
    updated_by: str | None


class PolicyChange(BaseModel):
    version: int | None = Field(description="the global policy's version; null for a tenant's")
    at: float
    by: str
    scope: str = Field(description='"global" or "tenant:<id>"')
    changes: dict[str, dict[str, Any]] = Field(description='field -> {"from", "to"}')


class StatsOut(BaseModel):
    now: float = Field(description="server time (epoch s); idle time is now - last_active_at")
    tenants: int
    boxes: dict[str, int] = Field(description="boxes per state")
    warm_memory_bytes: int = Field(description="memory of running and paused boxes")
    storage: dict[str, int] = Field(
        description="local_layer_bytes (box layers on local disk), logical_bytes (what the "
                    "snapshots hold), stored_bytes (the deduplicated, compressed store)")
    observations: dict[str, int] = Field(
        description="queue_depth (jobs waiting in the worker's queue), backlog (pairs waiting "
                    "for their agent)")
    knowledge: dict[str, Any] = Field(
        description="insights (in the shared knowledge base), refused (proposals refused, by "
                    "reason: instruction, everyone, shell, url, young_tenant, few_turns; and "
                    "statements refused as episodic)")
    sweep: dict[str, Any] = Field(description="the last idle sweep: when, how long, what it did")
    models: dict[str, int] = Field(
        default_factory=dict, description="model usage from boxes over all tenants: "
                                          "<provider>:calls, :input_tokens, :output_tokens")


# --- the operator's history (the dashboard's charts: core/history.py) ------------------------
# Columns, one list per series, as chart libraries take them: index i of each list is one
# point in time.

class WakeHistory(BaseModel):
    minute: list[int] = Field(description="each minute of the window, oldest first: its start "
                                          "(epoch s); the last is the current minute, so far")
    count: list[int] = Field(description="wakes that ended in the minute (exact)")
    p50_ms: list[float | None] = Field(description="their median duration, ms (null: none)")
    p99_ms: list[float | None] = Field(
        description="their 99th percentile, ms (null: none); exact while the minute had at "
                    "most sample_size wakes, else of a uniform sample of sample_size")
    sampled: list[int] = Field(description="durations the percentiles are of")


class SampleHistory(BaseModel):
    at: list[float] = Field(description="when each sample was taken (epoch s), oldest first; "
                                        "one a minute while a worker runs")
    boxes: dict[str, list[int]] = Field(description="state -> boxes in it at each sample")
    queue_depth: list[int] = Field(description="jobs due in the worker's queue")
    backlog: list[int] = Field(description="observed pairs waiting for their tenant's agent")


class StatsHistoryOut(BaseModel):
    now: float = Field(description="server time (epoch s)")
    hours: int = Field(description="the window asked for")
    kept_hours: int = Field(description="how far back history is kept")
    sample_size: int = Field(description="wake durations kept per minute for the percentiles")
    wakes: WakeHistory
    samples: SampleHistory


class TenantCreate(Strict):
    id: str | None = Field(None, pattern=ID_PATTERN,
                           description="lowercase letters, digits, _ and -; generated if absent")
    policy: TenantPolicy | None = None


class TenantCreated(BaseModel):
    id: str
    api_key: str = Field(description="shown once; store it now")
    home_box_id: str
    created_at: float


class TenantPublic(BaseModel):
    id: str
    created_at: float
    home_box_id: str
    state: str = Field(description="the state of the tenant's home box")
    last_active_at: float
    storage_bytes: int
    boxes: int
    policy: TenantPolicy | None = Field(None, description="overrides of the global policy")
    observations: dict[str, int] = Field(
        default_factory=dict, description="size: pairs waiting for the tenant's agent; max: "
        "the most kept; dropped: pairs dropped because the backlog was full (its agent took "
        "no deliveries); unanswered: deliveries in a row its agent did not answer in time "
        "(while above 0, deliveries to it wait, longer each time)")


# --- boxes -----------------------------------------------------------------------------------

class LimitsIn(Strict):
    memory_mb: int | None = Field(None, ge=16, le=1 << 20)
    pids: int | None = Field(None, ge=8, le=1 << 16)
    cpus: float | None = Field(None, ge=0.05, le=1024)
    disk_mb: int | None = Field(None, ge=64, le=1 << 24)


class EgressIn(Strict):
    """Rules of this box alone; they only narrow what the operator allows. A rule is an IPv4
    address or CIDR, optionally :port, or *:port."""
    allow: list[str] = Field(default_factory=list, max_length=256,
                             description="if any: only these (within the operator's rules)")
    deny: list[str] = Field(default_factory=list, max_length=256)


_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")  # how an IPv4 address's parts may be spelt


def _git_host(host: str) -> str:
    """A forge's name: an address in any spelling the resolver reads (127.1, 2130706433,
    0x7f.0.0.1) or localhost would have the git relay connect to this machine."""
    name = host.rstrip(".")
    if not name or name == "localhost" or name.endswith(".localhost") or _NUMBER.fullmatch(
            name.rpartition(".")[2]):
        raise ValueError(f"{host!r} is not a git host's name; name the forge (github.com, "
                         "gitlab.com, ...), not an address or localhost")
    return name


class GitIn(Strict):
    """Git for the box. The token never enters it: the box's git reaches `https://<host>/`
    through a relay on the host that adds it, for `repos` only (all of host's if none)."""
    token: str | None = Field(None, max_length=4096)
    user_name: str | None = Field(None, max_length=256)
    user_email: str | None = Field(None, max_length=256)
    host: Annotated[str, AfterValidator(_git_host)] = Field("github.com",
                                                            pattern=r"^[a-z0-9.-]{1,253}$")
    repos: list[Annotated[str, Field(max_length=2048)]] = Field(
        default_factory=list, max_length=100,
        description="owner/name or https URLs the token may reach")


class BoxCreate(Strict):
    runtime: Literal["python", "node", "base"] = "python"
    name: str | None = Field(None, min_length=1, max_length=128)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    keep_alive: bool = False
    network: Literal["none", "egress"] = "none"
    egress: EgressIn | None = Field(None, description="narrow an egress box's reach")
    limits: LimitsIn | None = None
    agent: AgentConfig | None = Field(None, description="the harness and model of agent runs")
    git: GitIn | None = None
    from_snapshot: str | None = None
    tenant: str | None = Field(None, pattern=ID_PATTERN,
                               description="operator only: the tenant that owns the box")


class BoxPublic(BaseModel):
    id: str
    tenant: str | None
    name: str | None
    state: str
    runtime: str
    labels: dict[str, str]
    network: str
    created_at: float
    last_active_at: float
    idle_s: float = Field(description="seconds since the last activity")
    memory_bytes: int = Field(description="memory in use (0 unless running or paused)")
    disk_bytes: int = Field(description="what the box's layer takes on local disk")
    reason: str | None = None
    agent: AgentConfig | None = None

    @classmethod
    def of(cls, box: BoxRecord, usage: BoxUsage) -> BoxPublic:
        return cls(id=box.id, tenant=box.owner, name=box.name, state=box.state.value,
                   runtime=box.runtime, labels=box.labels, network=box.network,
                   created_at=box.created_at, last_active_at=box.last_active_at,
                   idle_s=round(max(0.0, time.time() - box.last_active_at), 3),
                   memory_bytes=usage.memory_bytes, disk_bytes=usage.disk_bytes,
                   reason=box.reason, agent=_shown(AgentConfig.stored(box.meta.get("agent"))))


def _shown(agent: AgentConfig | None) -> AgentConfig | None:
    return agent.shown() if agent is not None else None


class ExecIn(Strict):
    command: str | list[str] = Field(description="a shell command (run by sh -c) or an argv")
    cwd: str | None = Field(None, max_length=4096)
    env: dict[str, str] | None = None
    timeout_s: float | None = Field(None, gt=0, le=86400)
    stdin: str | None = None
    max_output_chars: int | None = Field(
        None, ge=1, le=16 * 1024 * 1024,
        description="characters kept of each of stdout and stderr (default 1048576); the "
                    "stream endpoint passes everything")


class ExecOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool
    truncated: bool = Field(False, description="output beyond max_output_chars was dropped")


class ExecOutputChunk(BaseModel):
    type: Literal["stdout", "stderr"]
    data: str


class ExecExitChunk(BaseModel):
    """The last line of a streamed exec."""
    type: Literal["exit"]
    exit_code: int
    timed_out: bool
    duration_ms: float


class ExecChunk(RootModel[Annotated[ExecOutputChunk | ExecExitChunk,
                                     Field(discriminator="type")]]):
    """One line of a streamed exec: output as it arrives, then the exit."""


def ndjson(line: type[BaseModel], description: str) -> dict[str, Any]:
    """The OpenAPI answer of a route that streams `line`s as JSON lines. The route also names
    `line` as its response_model, which puts its schema among the document's components
    (FastAPI documents a StreamingResponse's own content as a plain string)."""
    ref = {"$ref": f"#/components/schemas/{line.__name__}"}
    return {"description": description, "content": {"application/x-ndjson": {"schema": ref}}}


class FileEntryOut(BaseModel):
    name: str
    path: str
    type: str
    size: int
    mtime: float

    @classmethod
    def of(cls, entry: FileEntry) -> FileEntryOut:
        return cls(name=entry.name, path=entry.path, type=entry.type, size=entry.size,
                   mtime=entry.mtime)


class SnapshotCreate(Strict):
    name: str = Field(min_length=1, max_length=128)


class SnapshotPublic(BaseModel):
    id: str
    name: str | None
    box_id: str
    tenant: str | None
    created_at: float
    files: int
    logical_bytes: int

    @classmethod
    def of(cls, snap: SnapshotRecord) -> SnapshotPublic:
        return cls(id=snap.id, name=snap.name, box_id=snap.box_id, tenant=snap.owner,
                   created_at=snap.created_at, files=snap.files,
                   logical_bytes=snap.logical_bytes)


InsightKind = Literal["fact", "preference", "tip"]


class KnowledgeQuery(Strict):
    query: str = Field(min_length=1, max_length=2000)
    limit: int = Field(5, ge=1, le=100)
    kinds: list[InsightKind] = Field(
        default_factory=list, max_length=3, description="only insights of these kinds")
    since: float | None = Field(None, ge=0, description="only insights updated at or after "
                                                        "this time (unix seconds)")
    until: float | None = Field(None, ge=0, description="only insights updated at or before "
                                                        "this time (unix seconds)")

    @model_validator(mode="after")
    def _window(self) -> KnowledgeQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class InsightOut(BaseModel):
    id: str
    text: str
    kind: str
    score: float = Field(description="similarity to the query (0 outside a search)")
    support: int = Field(description="how many distinct tenants support it")
    helpful: int = Field(0, description="tenants that found it helpful")
    unhelpful: int = Field(0, description="tenants that found it unhelpful")
    updated_at: float | None = Field(None, description="when its text or support last changed")
    visible: bool = Field(True, description="whether tenants see it (only the operator sees "
                                            "the others)")


class InsightVote(Strict):
    helpful: bool = Field(description="true: the insight helped; false: it did not (or was "
                                      "wrong). One vote per tenant per insight; the latest "
                                      "counts")


class InsightPage(BaseModel):
    items: list[InsightOut]
    next_offset: str | None


class AgentAsk(BaseModel):
    """What the built-in tenant agent's /ask takes (fields it does not know are passed on)."""
    model_config = ConfigDict(extra="allow")

    question: str


class AgentAskOut(BaseModel):
    """The built-in tenant agent's answer to /ask."""
    model_config = ConfigDict(extra="allow")

    answer: str
    model: str | None = Field(description="the model that answered; null: assembled from "
                                          "what the agent knows, without a model")
    used: dict[str, Any] = Field(description="what the answer drew on: the profile entries "
                                             "and the ids of shared insights")


class AgentProfile(BaseModel):
    """What the built-in tenant agent has learned of its tenant (/profile)."""
    model_config = ConfigDict(extra="allow")

    preferences: list[dict[str, Any]]
    facts: list[dict[str, Any]]
    topics: list[dict[str, Any]]
    observed: int = Field(description="observations (request, answer pairs) applied")
    last_seq: int = Field(description="the sequence number of the last one")


class RecallIn(BaseModel):
    """What the built-in tenant agent's /recall takes (fields it does not know are passed on,
    e.g. `query_embedding`)."""
    model_config = ConfigDict(extra="allow")

    query: str = Field(max_length=10_000)
    limit: int = Field(10, ge=1, le=100)
    since: str | float | None = Field(None, description="ISO 8601 or unix seconds: only what "
                                                        "was said from then on")
    until: str | float | None = Field(None, description="ISO 8601 or unix seconds: only what "
                                                        "was said until then")
    kinds: list[Literal["preference", "fact", "event", "plan", "episode"]] | None = None


class MemoryItem(BaseModel):
    """A memory (`m_…`: kind preference, fact, event or plan, with its validity and evidence)
    or an episode (`e_…`: one of the tenant's turns, kind episode, with the reply)."""
    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    text: str
    at: str | None = Field(description="when the tenant said it (ISO 8601 UTC)")
    request_ids: list[str] = Field(description="the X-Request-Ids of the requests it came from")


class RecallTurn(BaseModel):
    request_id: str
    text: str = Field(description="what the tenant said")
    reply: str = Field(description="what it was answered")
    at: str | None = Field(description="when the tenant said it (ISO 8601 UTC)")
    before: bool = Field(description="said just before the episode (else just after)")


class RecallResult(MemoryItem):
    score: float = Field(description="relative to the best result (1.0)")
    context: list[RecallTurn] | None = Field(
        None, description="for an episode: the turns just before and after it in the same "
                          "conversation (within an hour); their request ids follow the "
                          "episode's own in request_ids")


class RecallOut(BaseModel):
    results: list[RecallResult] = Field(description="most relevant first")


class MemoryPage(BaseModel):
    items: list[MemoryItem] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: "
                                                "this was the last")
    total: int


class MemoryIn(Strict):
    text: str = Field(min_length=1, max_length=1000)
    kind: Literal["preference", "fact", "event", "plan"] = "fact"
    subject: str | None = Field(None, max_length=120)


class MemoryCorrection(Strict):
    text: str = Field(min_length=1, max_length=1000)


class MemoryDeleted(BaseModel):
    deleted: list[str] = Field(description="the ids removed: the memory, the versions it "
                                           "superseded and the turns it came from")


class MemoryWiped(BaseModel):
    deleted: dict[str, int] = Field(description="rows removed, by table")
    backlog_dropped: int = Field(description="observed requests not yet delivered to the "
                                             "agent, dropped unread")
    replace_snapshot: bool = Field(description="the home box's snapshot is replaced at its "
                                               "next freeze")


class MemoryExport(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: Literal["burrow.memory/1"]
    exported_at: str
    memories: list[MemoryItem] = Field(description="every version, superseded ones included")
    episodes: list[MemoryItem]
    pending: int = Field(description="turns waiting for the model's extraction pass")
    observed: int


# --- observations a product sends itself ------------------------------------------------------

MAX_OBSERVED_PAIRS = 1000
FUTURE_SKEW_S = 300.0  # clocks differ: a pair may be this far ahead of the gateway's
OBSERVED_REQUEST_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


def observed_time(value: float | str) -> float:
    """Unix seconds from unix seconds or ISO 8601 (UTC unless it says otherwise); finite,
    after 1970 and not in the future beyond a small clock skew."""
    if isinstance(value, str):
        from datetime import UTC, datetime
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("give an ISO 8601 date-time (2023-05-08T13:56:00Z) or unix "
                             "seconds") from None
        at = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        at = float(value)
    if not math.isfinite(at) or at <= 0:
        raise ValueError("give a finite time after 1970 (ISO 8601 or unix seconds)")
    if at > time.time() + FUTURE_SKEW_S:
        raise ValueError("this time is in the future; give when the request happened")
    return at


def _json_text(value: JsonValue) -> JsonValue:
    if not isinstance(value, str):
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("NaN and Infinity are not JSON; send them as strings or null") \
                from None
    return value


def _kept_headers(headers: dict[str, str]) -> dict[str, str]:
    kept = {name.lower(): value for name, value in headers.items()}
    for name, value in kept.items():
        if name not in KEPT_HEADERS:
            raise ValueError(f"{name!r} is not kept: only {', '.join(KEPT_HEADERS)} reach the "
                             "agent; leave the others out")
        if len(value) > 200:
            raise ValueError(f"{name} is over 200 characters")
    if "x-burrow-said-at" in kept:
        observed_time(kept["x-burrow-said-at"])
    return kept


def plain_path(path: str) -> str:
    """A path however it is spelled (percent-encoded, also twice; dot segments; doubled
    slashes or backslashes) as one plain absolute path: what to check a path against."""
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = posixpath.normpath("/" + path.replace("\\", "/"))
    return "/" + path.lstrip("/")  # normpath keeps a leading "//"


def _product_path(value: str) -> str:
    """The path as the agent would see it, and never one of its own."""
    path, mark, query = value.partition("?")
    path = plain_path(path)
    lowered = path.lower()
    if lowered.startswith(PROTOCOL) or lowered == "/ask" or lowered.startswith("/ask/"):
        raise ValueError(f"{path} is the agent's own protocol, which it never learns from; "
                         "send the product's own requests")
    if any(ord(c) < 32 or ord(c) == 127 for c in path + query):
        raise ValueError("control characters in the path; percent-encode them")
    return path + mark + query


ObservedBody = Annotated[JsonValue, AfterValidator(_json_text)]


class ObservedRequest(Strict):
    method: Literal["POST", "PUT", "PATCH"] = Field(
        "POST", description="the agent learns from requests with a body only")
    path: Annotated[str, AfterValidator(_product_path)] = Field(
        "/", min_length=1, max_length=2048,
        description="the product's path (and ?query), as if it had come through "
                    "/v1/tenants/{id}/agent/{path}; never the agent's own protocol (/ask, "
                    "/recall, /profile, /health, /memories, /_burrow)")
    body: ObservedBody = Field("", description="the request body: a string, or any JSON value")
    headers: Annotated[dict[str, str], AfterValidator(_kept_headers)] = Field(
        default_factory=dict,
        description="x-burrow-user-text (the JSON field with the user's words) and "
                    "x-burrow-said-at (when they were said); nothing else")


class ObservedResponse(Strict):
    status: int = Field(200, ge=100, le=599)
    body: ObservedBody = ""


class ObservedPair(Strict):
    """One request a product served and its answer."""
    request: ObservedRequest
    response: ObservedResponse = Field(default_factory=ObservedResponse)
    at: Annotated[float | str, AfterValidator(observed_time)] | None = Field(
        None, description="when it happened: ISO 8601 or unix seconds; default now")
    request_id: str | None = Field(
        None, pattern=OBSERVED_REQUEST_ID,
        description="its request id, which memories cite; default: this call's "
                    "X-Request-Id with the pair's index (`<id>/3`)")


def _few_enough(pairs: Any) -> Any:
    if isinstance(pairs, list) and len(pairs) > MAX_OBSERVED_PAIRS:
        raise ValueError(f"{len(pairs)} pairs in one call; send at most "
                         f"{MAX_OBSERVED_PAIRS} per call")
    return pairs


class ObservationsIn(Strict):
    pairs: Annotated[list[ObservedPair], BeforeValidator(_few_enough)] = Field(
        min_length=1, max_length=MAX_OBSERVED_PAIRS,
        description=f"in the order they happened; at most {MAX_OBSERVED_PAIRS}")


class ObservationsAccepted(BaseModel):
    accepted: int = Field(description="pairs queued for the agent, which learns them in order")
    dropped: int = Field(description="pairs dropped because the tenant's backlog is full "
                                     "(its agent is not taking deliveries)")


class EmbedIn(Strict):
    """Texts to embed (host services socket)."""
    texts: list[Annotated[str, Field(max_length=10_000)]] = Field(min_length=1, max_length=64)


class EmbedOut(BaseModel):
    model: str
    vectors: list[list[float]]


class WhoAmI(BaseModel):
    kind: Literal["operator", "tenant", "box"]
    tenant: str | None
    box_id: str | None


# --- agent runs ------------------------------------------------------------------------------

# The chunks of a streamed run, one per NDJSON line: start first, finish (with the Run) last.

class RunStartChunk(BaseModel):
    type: Literal["start"]
    run_id: str


class RunTextChunk(BaseModel):
    type: Literal["text"]
    text: str


class RunToolCallChunk(BaseModel):
    type: Literal["tool_call"]
    name: str
    input: dict[str, Any]


class RunToolResultChunk(BaseModel):
    type: Literal["tool_result"]
    name: str
    output: str
    is_error: bool = False


class RunFinishChunk(BaseModel):
    type: Literal["finish"]
    run: RunPublic


class RunChunk(RootModel[Annotated[RunStartChunk | RunTextChunk | RunToolCallChunk
                                    | RunToolResultChunk | RunFinishChunk,
                                    Field(discriminator="type")]]):
    """One line of a streamed run."""


# --- preview URLs of a box's ports ---------------------------------------------------------

class PortCreate(Strict):
    port: int = Field(ge=1, le=65535, description="the TCP port a program in the box listens "
                                                  "on (127.0.0.1 or 0.0.0.0)")
    auth: Literal["bearer", "basic", "public"] = Field(
        "bearer", description="bearer: a token (?token= once in a browser, then a cookie; or "
                              "Authorization: Bearer); basic: a user name and password; "
                              "public: anyone with the URL (the operator's policy may forbid "
                              "it: allow_public_ports)")
    username: str | None = Field(None, max_length=64,
                                 description="basic: the user name (default burrow)")
    password: str | None = Field(None, min_length=8, max_length=256,
                                 description="basic: the password (default: one is made and "
                                             "shown once)")


class PortPublic(BaseModel):
    port: int
    url: str = Field(description="the preview's address (an origin of its own, never the API's)")
    auth: Literal["bearer", "basic", "public"]
    created_at: float
    token: str | None = Field(None, description="bearer: the port's token, shown only when "
                                                "the port is opened")
    username: str | None = Field(None, description="basic: the user name")
    password: str | None = Field(None, description="basic: the password Burrow made, shown "
                                                   "only when the port is opened")


# --- background processes --------------------------------------------------------------------

ProcessRestart = Literal["never", "on-wake", "on-failure"]
ProcessState = Literal["starting", "running", "restarting", "exited", "failed", "stopped"]
ProcessSignal = Literal["HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP"]


class ProcessCreate(Strict):
    command: str | list[str] = Field(description="a shell command (run by sh -c) or an argv")
    cwd: str | None = Field(None, max_length=4096)
    env: dict[str, str] | None = None
    stdin: bool = Field(False, description="keep stdin open for POST …/stdin (else /dev/null)")
    restart: ProcessRestart = Field(
        "never", description="on-wake: started again when the box wakes from a freeze; "
                             "on-failure: also started again when it exits non-zero (1 s back-off, "
                             "doubling up to 60 s), unless it ended by a signal you sent")


class ProcessPublic(BaseModel):
    """A background process. `id` stays the same across restarts; `pid` (as the box's own
    processes see it) is the current run's, null when it is not running."""
    id: str
    pid: int | None
    command: str | list[str]
    cwd: str
    restart: ProcessRestart
    stdin: bool
    state: ProcessState = Field(description="starting running restarting (waiting out its "
                                            "back-off) exited failed (could not start) stopped "
                                            "(ended by a freeze)")
    exit_code: int | None = Field(description="of its last run; 128+N when ended by signal N")
    started_at: float | None
    ended_at: float | None
    restarts: int
    error: str | None


class ProcessLogPiece(BaseModel):
    data: str
    offset: int = Field(description="byte offset of `data` in the stream; past the offset "
                                    "asked for when older output was dropped (the box keeps the "
                                    "last 1-2 MiB of each stream)")
    next_offset: int = Field(description="ask from here for what follows")


class ProcessLogs(BaseModel):
    process: ProcessPublic
    stdout: ProcessLogPiece
    stderr: ProcessLogPiece


class ProcessOutputChunk(BaseModel):
    type: Literal["stdout", "stderr"]
    data: str
    offset: int


class ProcessExitChunk(BaseModel):
    """The last line: the process ended for good (not between on-failure restarts)."""
    type: Literal["exit"]
    state: ProcessState
    exit_code: int | None


class ProcessErrorChunk(BaseModel):
    """The last line when the box stopped answering before the process's end was read."""
    type: Literal["error"]
    message: str


class ProcessChunk(RootModel[Annotated[ProcessOutputChunk | ProcessExitChunk | ProcessErrorChunk,
                                        Field(discriminator="type")]]):
    """One line of a followed process log."""


class ProcessSignalIn(Strict):
    signal: ProcessSignal = Field(description="TERM, INT, QUIT or KILL also stop on-failure "
                                              "restarts")


# --- file watching ---------------------------------------------------------------------------

class FileEvent(BaseModel):
    """One line of a watch. `created`, `modified`, `deleted`, `moved` (with `from_path`) name a
    `path`; `overflow` says events were lost (the box's queue filled while the reader was slow,
    or a recursive watch reached its directory bound): list the files again; `end` (with a
    `reason`) is the last line: the watched path is gone, or the box is freezing."""
    type: Literal["created", "modified", "deleted", "moved", "overflow", "end"]
    path: str | None = None
    from_path: str | None = None
    is_dir: bool | None = None
    reason: str | None = None
