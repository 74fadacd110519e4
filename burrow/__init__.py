"""Burrow's Python SDK: `Box` (sync) and `AsyncBox`, each a persistent sandbox on a Burrow
server. Settings: BURROW_URL (default http://127.0.0.1:8420) and BURROW_API_KEY, or api_key= /
base_url= per call."""

# Names load on first use (PEP 562): the `burrow` command imports this package too, and
# pydantic plus httpx would cost every command ~0.4 s of start-up it does not need.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from burrow._async.agent import AsyncAgentRuns, AsyncRunStream
    from burrow._async.box import AsyncBox
    from burrow._async.exec import AsyncExec
    from burrow._async.files import AsyncFiles
    from burrow._async.git import AsyncGit
    from burrow._async.knowledge import AsyncKnowledge
    from burrow._async.memory import AsyncMemories
    from burrow._async.processes import AsyncProcesses
    from burrow._async.tenant import AsyncTenant, AsyncTenantAgent
    from burrow._errors import (
        AuthenticationError,
        BoxStateError,
        BurrowError,
        ConflictError,
        ConnectionError,
        GitError,
        InvalidRequestError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ServiceUnavailableError,
        TimeoutError,
    )
    from burrow._models import (
        Agent,
        AgentAnswer,
        AgentConfig,
        BoxInfo,
        ExecChunk,
        ExecResult,
        FileEntry,
        FileEvent,
        GitChange,
        GitStatus,
        Insight,
        Process,
        ProcessChunk,
        ProcessLogPiece,
        ProcessLogs,
        PublicUrl,
        Run,
        RunChunk,
        RunUsage,
        Snapshot,
        TenantInfo,
    )
    from burrow._sync.agent import AgentRuns, RunStream
    from burrow._sync.box import Box
    from burrow._sync.exec import Exec
    from burrow._sync.files import Files
    from burrow._sync.git import Git
    from burrow._sync.knowledge import Knowledge
    from burrow._sync.memory import Memories
    from burrow._sync.processes import Processes
    from burrow._sync.tenant import Tenant, TenantAgent

_WHERE: dict[str, str] = {
    "Agent": "burrow._models",
    "AgentAnswer": "burrow._models",
    "AsyncKnowledge": "burrow._async.knowledge",
    "AsyncMemories": "burrow._async.memory",
    "AsyncProcesses": "burrow._async.processes",
    "Process": "burrow._models",
    "ProcessChunk": "burrow._models",
    "ProcessLogPiece": "burrow._models",
    "ProcessLogs": "burrow._models",
    "Processes": "burrow._sync.processes",
    "Memories": "burrow._sync.memory",
    "AsyncTenant": "burrow._async.tenant",
    "AsyncTenantAgent": "burrow._async.tenant",
    "Insight": "burrow._models",
    "Knowledge": "burrow._sync.knowledge",
    "Tenant": "burrow._sync.tenant",
    "TenantAgent": "burrow._sync.tenant",
    "TenantInfo": "burrow._models",
    "AgentConfig": "burrow._models",
    "AgentRuns": "burrow._sync.agent",
    "AsyncAgentRuns": "burrow._async.agent",
    "AsyncBox": "burrow._async.box",
    "AsyncExec": "burrow._async.exec",
    "AsyncFiles": "burrow._async.files",
    "AsyncGit": "burrow._async.git",
    "AsyncRunStream": "burrow._async.agent",
    "AuthenticationError": "burrow._errors",
    "Box": "burrow._sync.box",
    "BoxInfo": "burrow._models",
    "BoxStateError": "burrow._errors",
    "BurrowError": "burrow._errors",
    "ConflictError": "burrow._errors",
    "ConnectionError": "burrow._errors",
    "Exec": "burrow._sync.exec",
    "ExecChunk": "burrow._models",
    "ExecResult": "burrow._models",
    "FileEntry": "burrow._models",
    "FileEvent": "burrow._models",
    "Files": "burrow._sync.files",
    "Git": "burrow._sync.git",
    "GitChange": "burrow._models",
    "GitError": "burrow._errors",
    "GitStatus": "burrow._models",
    "InvalidRequestError": "burrow._errors",
    "NotFoundError": "burrow._errors",
    "PermissionDeniedError": "burrow._errors",
    "PublicUrl": "burrow._models",
    "RateLimitError": "burrow._errors",
    "Run": "burrow._models",
    "RunChunk": "burrow._models",
    "RunStream": "burrow._sync.agent",
    "RunUsage": "burrow._models",
    "ServiceUnavailableError": "burrow._errors",
    "Snapshot": "burrow._models",
    "TimeoutError": "burrow._errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'burrow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Agent",
    "AgentAnswer",
    "AgentConfig",
    "AgentRuns",
    "AsyncAgentRuns",
    "AsyncBox",
    "AsyncExec",
    "AsyncFiles",
    "AsyncGit",
    "AsyncKnowledge",
    "AsyncMemories",
    "AsyncProcesses",
    "AsyncRunStream",
    "AsyncTenant",
    "AsyncTenantAgent",
    "AuthenticationError",
    "Box",
    "BoxInfo",
    "BoxStateError",
    "BurrowError",
    "ConflictError",
    "ConnectionError",
    "Exec",
    "ExecChunk",
    "ExecResult",
    "FileEntry",
    "FileEvent",
    "Files",
    "Git",
    "GitChange",
    "GitError",
    "GitStatus",
    "Insight",
    "InvalidRequestError",
    "Knowledge",
    "Memories",
    "NotFoundError",
    "PermissionDeniedError",
    "Process",
    "ProcessChunk",
    "ProcessLogPiece",
    "ProcessLogs",
    "Processes",
    "PublicUrl",
    "RateLimitError",
    "Run",
    "RunChunk",
    "RunStream",
    "RunUsage",
    "ServiceUnavailableError",
    "Snapshot",
    "Tenant",
    "TenantAgent",
    "TenantInfo",
    "TimeoutError",
]
