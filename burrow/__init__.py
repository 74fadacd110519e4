"""Burrow's Python SDK: `Box` (sync) and `AsyncBox`, each a persistent sandbox on a Burrow
server. Settings: BURROW_URL (default http://127.0.0.1:8420) and BURROW_API_KEY, or api_key= /
base_url= per call."""

from burrow._async.agent import AsyncAgentRuns, AsyncRunStream
from burrow._async.box import AsyncBox
from burrow._async.exec import AsyncExec
from burrow._async.files import AsyncFiles
from burrow._async.git import AsyncGit
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
    AgentConfig,
    BoxInfo,
    ExecChunk,
    ExecResult,
    FileEntry,
    GitChange,
    GitStatus,
    Run,
    RunChunk,
    RunUsage,
    Snapshot,
)
from burrow._sync.agent import AgentRuns, RunStream
from burrow._sync.box import Box
from burrow._sync.exec import Exec
from burrow._sync.files import Files
from burrow._sync.git import Git

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentRuns",
    "AsyncAgentRuns",
    "AsyncBox",
    "AsyncExec",
    "AsyncFiles",
    "AsyncGit",
    "AsyncRunStream",
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
    "Files",
    "Git",
    "GitChange",
    "GitError",
    "GitStatus",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Run",
    "RunChunk",
    "RunStream",
    "RunUsage",
    "ServiceUnavailableError",
    "Snapshot",
    "TimeoutError",
]
