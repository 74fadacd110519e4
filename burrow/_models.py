"""What the SDK returns: pydantic models of the server's answers, and the Agent enum."""

from __future__ import annotations

import enum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Agent(enum.StrEnum):
    """The agent harness that runs prompts in a box (`agent={"harness": Agent.BURROW, ...}`)."""

    BURROW = "burrow"
    CLAUDE_CODE = "claude-code"
    CODEX = "codex"
    OPEN_CODE = "opencode"


class _Model(BaseModel):
    # Fields the server adds later are ignored, so an older SDK keeps working.
    model_config = ConfigDict(extra="ignore", frozen=True)


class McpServer(_Model):
    """An MCP server of a box's agent runs: a `command` (with `args`, `env`, `cwd`) the run
    starts inside the box, or a `url` (with `headers`) the box reaches through its own
    network. A box's listing shows env and header values as ***."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = None


class AgentConfig(_Model):
    harness: str = Agent.BURROW.value
    model: str
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict)


class BoxInfo(_Model):
    """A box as the server last described it. `state` is one of creating running paused
    freezing frozen archived waking deleting deleted failed."""

    id: str
    tenant: str | None = None
    name: str | None = None
    state: str
    runtime: str = "python"
    labels: dict[str, str] = Field(default_factory=dict)
    network: str = "none"
    created_at: float = 0.0
    last_active_at: float = 0.0
    idle_s: float = 0.0
    memory_bytes: int = 0
    disk_bytes: int = 0
    reason: str | None = None
    agent: AgentConfig | None = None


class ExecResult(_Model):
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool
    truncated: bool = False  # output beyond max_output_chars was dropped

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class ExecChunk(_Model):
    """One line of a streamed exec: output (`data`) or, last, the `exit_code`."""

    type: Literal["stdout", "stderr", "exit"]
    data: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    duration_ms: float | None = None


class FileEntry(_Model):
    name: str
    path: str
    type: str = Field(description="file, dir, symlink or other")
    size: int
    mtime: float


class Snapshot(_Model):
    id: str
    name: str | None = None
    box_id: str
    tenant: str | None = None
    created_at: float
    files: int = 0
    logical_bytes: int = 0


class PublicUrl(_Model):
    """A preview URL of one of a box's ports (box.get_public_url()). `token` (bearer) and a
    made `password` (basic) are shown only when the port is opened."""

    port: int
    url: str
    auth: Literal["bearer", "basic", "public"]
    created_at: float = 0.0
    token: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def browser_url(self) -> str:
        """The URL with its token, to open once in a browser (which then keeps a cookie and
        drops the token from the address)."""
        return f"{self.url}?token={self.token}" if self.token else self.url


class GitChange(_Model):
    status: str = Field(description="the two-letter porcelain status, e.g. ' M', '??', 'A '")
    path: str


class GitStatus(_Model):
    branch: str | None = Field(description="the current branch; None when detached")
    changes: list[GitChange]

    @property
    def clean(self) -> bool:
        return not self.changes


class RunUsage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    tool_calls: int = 0
    duration_ms: float = 0.0


class Run(_Model, Generic[T]):
    """An agent run. `result` is the validated object when a response_schema was given (an
    instance of the pydantic model, if one was passed), else the final text; None unless the
    run completed."""

    id: str
    box_id: str
    status: Literal["completed", "failed", "timed_out"] | str
    result: T | None = None
    output: str = ""
    error: str | None = None
    usage: RunUsage = Field(default_factory=RunUsage)
    model: str = ""
    harness: str = ""
    created_at: float = 0.0
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class RunChunk(_Model):
    """One event of a streamed run: start, text, tool_call, tool_result, then finish (with
    the whole `run`), always last."""

    type: Literal["start", "text", "tool_call", "tool_result", "finish"] | str
    run_id: str | None = None
    text: str = ""
    name: str | None = None
    input: dict[str, Any] | None = None
    output: str | None = None
    is_error: bool = False
    run: Run[Any] | None = None


class TenantInfo(_Model):
    id: str
    api_key: str | None = None  # only when just created
    home_box_id: str | None = None
    created_at: float | None = None
    state: str | None = None
    last_active_at: float | None = None
    storage_bytes: int | None = None
    boxes: int | None = None
    policy: dict[str, Any] | None = None  # the tenant's overrides of the operator's policy
    observations: dict[str, int] | None = None  # its backlog: size, max, dropped, unanswered


class AgentAnswer(_Model):
    """A tenant agent's answer: its HTTP status, its body (JSON decoded when it is JSON), and
    the request id the answer's observation is recorded under."""
    status: int
    body: Any = None
    request_id: str | None = None


class Insight(_Model):
    """A shared insight: general knowledge that `support` distinct tenants taught."""
    id: str
    text: str
    kind: str
    score: float
    support: int
    helpful: int = 0
    unhelpful: int = 0
    updated_at: float | None = None
    visible: bool = True


# --- background processes --------------------------------------------------------------------

ProcessState = Literal["starting", "running", "restarting", "exited", "failed", "stopped"]


class Process(_Model):
    """A background process in a box. `id` stays the same across its restarts; `pid` (as the
    box's processes see it) is its current run's, None when it is not running. `state` is
    starting, running, restarting (waiting out its back-off), exited, failed (could not start)
    or stopped (ended by a freeze)."""

    id: str
    pid: int | None = None
    command: str | list[str]
    cwd: str = "/workspace"
    restart: Literal["never", "on-wake", "on-failure"] = "never"
    stdin: bool = False
    state: ProcessState | str
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    restarts: int = 0
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running", "restarting")


class ProcessLogPiece(_Model):
    """Output of one stream from byte `offset` (later than asked when older output was
    dropped: a box keeps the last 1-2 MiB of each stream); ask from `next_offset` for more."""

    data: str
    offset: int
    next_offset: int


class ProcessLogs(_Model):
    process: Process
    stdout: ProcessLogPiece
    stderr: ProcessLogPiece


class ProcessChunk(_Model):
    """One line of a followed log: output (`data` at byte `offset` of its stream), then, last,
    `exit` (with `state` and `exit_code`) or `error` (the box stopped answering: `message`)."""

    type: Literal["stdout", "stderr", "exit", "error"] | str
    data: str = ""
    offset: int | None = None
    state: ProcessState | str | None = None
    exit_code: int | None = None
    message: str | None = None


# --- file watching ---------------------------------------------------------------------------

class FileEvent(_Model):
    """What happened to a file in a box: `type` created, modified, deleted or moved (with
    `from_path`, the old path) at `path`; `overflow` (events were lost: list the files again); or,
    last, `end` with a `reason` (the path is gone, or the box is freezing)."""

    type: Literal["created", "modified", "deleted", "moved", "overflow", "end"] | str
    path: str | None = None
    from_path: str | None = None
    is_dir: bool | None = None
    reason: str | None = None
