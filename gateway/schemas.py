"""Request and response models of the HTTP API, in families (XCreate in, XPublic out)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from boxes import BoxRecord, FileEntry, SnapshotRecord

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


# --- tenants ---------------------------------------------------------------------------------

class Policy(Strict):
    """Freeze policy overrides for a tenant (applied by the idle sweeper)."""

    pause_after_s: int | None = Field(None, ge=0, le=30 * 86400)
    freeze_after_s: int | None = Field(None, ge=0, le=365 * 86400)
    archive_after_s: int | None = Field(None, ge=0, le=10 * 365 * 86400)
    keep_alive: bool | None = None


class TenantCreate(Strict):
    id: str | None = Field(None, pattern=ID_PATTERN,
                           description="lowercase letters, digits, _ and -; generated if absent")
    policy: Policy | None = None


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
    policy: Policy | None = None


# --- boxes -----------------------------------------------------------------------------------

class LimitsIn(Strict):
    memory_mb: int | None = Field(None, ge=16, le=1 << 20)
    pids: int | None = Field(None, ge=8, le=1 << 16)
    cpus: float | None = Field(None, ge=0.05, le=1024)
    disk_mb: int | None = Field(None, ge=64, le=1 << 24)


class GitIn(Strict):
    token: str | None = Field(None, max_length=4096)
    user_name: str | None = Field(None, max_length=256)
    user_email: str | None = Field(None, max_length=256)


class BoxCreate(Strict):
    runtime: Literal["python", "node", "base"] = "python"
    name: str | None = Field(None, min_length=1, max_length=128)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    keep_alive: bool = False
    network: Literal["none", "egress"] = "none"
    limits: LimitsIn | None = None
    agent: dict[str, Any] | None = Field(None, description="agent harness and model for runs")
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
    reason: str | None = None

    @classmethod
    def of(cls, box: BoxRecord) -> BoxPublic:
        return cls(id=box.id, tenant=box.owner, name=box.name, state=box.state.value,
                   runtime=box.runtime, labels=box.labels, network=box.network,
                   created_at=box.created_at, last_active_at=box.last_active_at,
                   reason=box.reason)


class ExecIn(Strict):
    command: str | list[str] = Field(description="a shell command (run by sh -c) or an argv")
    cwd: str | None = Field(None, max_length=4096)
    env: dict[str, str] | None = None
    timeout_s: float | None = Field(None, gt=0, le=86400)
    stdin: str | None = None


class ExecOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool


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


class KnowledgeQuery(Strict):
    query: str = Field(min_length=1, max_length=2000)
    limit: int = Field(5, ge=1, le=100)


class InsightOut(BaseModel):
    id: str
    text: str
    kind: str
    score: float
    support: int = Field(description="how many distinct tenants support it")


class InsightPage(BaseModel):
    items: list[InsightOut]
    next_offset: str | None


class WhoAmI(BaseModel):
    kind: Literal["operator", "tenant", "box"]
    tenant: str | None
    box_id: str | None
