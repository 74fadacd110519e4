"""Host side of the box daemon protocol (see boxes/daemon.py): async calls over its unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from boxes.errors import (
    BoxFileError,
    BoxStateError,
    BoxUnavailableError,
    DaemonUnreachableError,
    InvalidRequestError,
)
from boxes.models import ExecEvent, ExecRequest, ExecResult, FileEntry

# One exec output event is at most 64 KiB of text (6x that JSON-escaped); a longer line is a
# daemon misbehaving, and is refused rather than buffered.
_LINE_LIMIT = 1 << 20
_CONNECT_TIMEOUT_S = 5.0
# What a connection to a box's port reads ahead of its consumer (asyncio pauses reading at
# twice this): a box that sends faster than the far end takes waits, and nothing piles up.
_SPLICE_LIMIT = 1 << 16


class Dialer(Protocol):
    """A way to a box's socket other than its path on this machine: a box host's channel
    (core/channel.py), which a gateway or the worker of a cluster reaches the box through.
    Hashable: connection pools are kept per dialer."""

    async def dial(self, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...


Socket = str | Dialer  # a box's socket: its path on this machine, or a dialer


async def connect(socket: Socket, limit: int, timeout_s: float
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to a box's socket (OSError or TimeoutError when it does not answer)."""
    if isinstance(socket, str):
        return await asyncio.wait_for(asyncio.open_unix_connection(socket, limit=limit),
                                      timeout_s)
    return await asyncio.wait_for(socket.dial(limit), timeout_s)


@dataclass
class _Reply:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed: bool = field(default=False)

    async def line(self) -> dict[str, Any]:
        try:
            raw = await self.reader.readline()
        except (OSError, ValueError) as exc:  # ValueError: a line over the limit
            raise BoxUnavailableError(f"the box daemon's reply broke off: {exc}") from exc
        if not raw:
            raise BoxUnavailableError("the box daemon closed the connection mid-reply")
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):  # whatever runs in a box is not trusted
            raise BoxUnavailableError("the box daemon sent a malformed reply")
        return value

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


def _raise_for(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok", True) is False:
        err = reply.get("error") or {}
        code, message = str(err.get("code", "error")), str(err.get("message", "failed"))
        if code == "invalid":
            raise InvalidRequestError(message)
        raise BoxFileError(code, message)
    return reply


class DaemonClient:
    """Talks to one box's daemon. Cheap to create; each call opens its own connection."""

    def __init__(self, socket_path: Socket) -> None:
        self.socket_path = socket_path

    async def _open(self, request: dict[str, Any], body: bytes = b"",
                    limit: int = _LINE_LIMIT) -> _Reply:
        if body:
            request = {**request, "body_len": len(body)}
        try:
            reader, writer = await connect(self.socket_path, limit, _CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise DaemonUnreachableError(f"box daemon unreachable: {exc}") from exc
        writer.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        if body:
            writer.write(body)
        try:
            await writer.drain()
        except OSError as exc:
            writer.close()
            raise BoxUnavailableError(f"box daemon unreachable: {exc}") from exc
        return _Reply(reader, writer)

    async def call(self, request: dict[str, Any], body: bytes = b"") -> dict[str, Any]:
        reply = await self._open(request, body)
        try:
            return _raise_for(await reply.line())
        finally:
            await reply.close()

    async def health(self) -> dict[str, Any]:
        return await self.call({"op": "health"})

    async def exec_stream(self, req: ExecRequest) -> AsyncIterator[ExecEvent]:
        payload: dict[str, Any] = {"op": "exec", "command": req.command}
        if req.cwd is not None:
            payload["cwd"] = req.cwd
        if req.env:
            payload["env"] = req.env
        if req.timeout_s is not None:
            payload["timeout_s"] = req.timeout_s
        stdin = req.stdin.encode() if isinstance(req.stdin, str) else (req.stdin or b"")
        reply = await self._open(payload, stdin)
        try:
            while True:
                event = _raise_for(await reply.line())
                kind = event["type"]
                if kind == "exit":
                    yield ExecEvent(type="exit", exit_code=int(event["exit_code"]),
                                    timed_out=bool(event["timed_out"]),
                                    duration_ms=float(event["duration_ms"]))
                    return
                yield ExecEvent(type=kind, data=event["data"])
        finally:
            await reply.close()  # closing early kills the command (the daemon sees EOF)

    async def exec(self, req: ExecRequest) -> ExecResult:
        max_output = req.max_output
        out: list[str] = []
        err: list[str] = []
        sizes = {"stdout": 0, "stderr": 0}
        truncated = False
        async for event in self.exec_stream(req):
            if event.type == "exit":
                return ExecResult(exit_code=event.exit_code or 0, stdout="".join(out),
                                  stderr="".join(err), duration_ms=event.duration_ms or 0.0,
                                  timed_out=bool(event.timed_out), truncated=truncated)
            data = event.data or ""
            if sizes[event.type] + len(data) > max_output:
                truncated = True
                data = data[: max(0, max_output - sizes[event.type])]
            sizes[event.type] += len(data)
            (out if event.type == "stdout" else err).append(data)
        raise BoxUnavailableError("the box daemon ended the exec without an exit status")

    async def read_file(self, path: str, max_bytes: int = 1 << 30) -> bytes:
        reply = await self._open({"op": "read", "path": path})
        try:
            head = _raise_for(await reply.line())
            size = head.get("size")
            if not isinstance(size, int) or size < 0:
                raise BoxUnavailableError("the box daemon sent a malformed reply")
            if size > max_bytes:
                raise BoxFileError("too_large", f"{path} is {size} bytes; at most {max_bytes} "
                                   "can be read at once")
            return await reply.reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise BoxUnavailableError("the box daemon stopped mid-file") from exc
        finally:
            await reply.close()

    async def read_stream(self, path: str) -> tuple[int, AsyncIterator[bytes]]:
        """The file's size, and its bytes in pieces of at most 1 MiB as they arrive (an error
        such as a missing file is raised here, before any byte)."""
        reply = await self._open({"op": "read", "path": path})
        try:
            head = _raise_for(await reply.line())
        except BaseException:
            await reply.close()
            raise
        size = head.get("size")
        if not isinstance(size, int) or size < 0:
            await reply.close()
            raise BoxUnavailableError("the box daemon sent a malformed reply")

        async def pieces() -> AsyncIterator[bytes]:
            left = size
            try:
                while left:
                    chunk = await reply.reader.read(min(left, 1 << 20))
                    if not chunk:
                        raise BoxUnavailableError("the box daemon stopped mid-file")
                    left -= len(chunk)
                    yield chunk
            finally:
                await reply.close()
        return size, pieces()

    async def write_stream(self, path: str, size: int, pieces: AsyncIterator[bytes],
                           mode: int | None = None) -> None:
        """Write `size` bytes from `pieces` to `path` without holding them (the daemon writes
        a temp file and renames it into place once all of it arrived)."""
        request: dict[str, Any] = {"op": "write", "path": path, "body_len": size}
        if mode is not None:
            request["mode"] = mode
        reply = await self._open(request)
        try:
            sent = 0
            async for piece in pieces:
                sent += len(piece)
                if sent > size:
                    raise InvalidRequestError("the body is longer than its Content-Length")
                reply.writer.write(piece)
                await reply.writer.drain()
            if sent != size:
                raise InvalidRequestError(f"the body ended after {sent} of {size} bytes")
            _raise_for(await reply.line())
        except OSError as exc:
            raise BoxUnavailableError(f"the box daemon stopped mid-file: {exc}") from exc
        finally:
            await reply.close()

    async def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        request: dict[str, Any] = {"op": "write", "path": path}
        if mode is not None:
            request["mode"] = mode
        reply = await self._open(request, data)
        try:
            _raise_for(await reply.line())
        finally:
            await reply.close()

    async def list_dir(self, path: str) -> list[FileEntry]:
        reply = await self.call({"op": "list", "path": path})
        return [FileEntry(**e) for e in reply["entries"]]

    async def stat(self, path: str) -> FileEntry:
        reply = await self.call({"op": "stat", "path": path})
        return FileEntry(**reply["entry"])

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self.call({"op": "delete", "path": path, "recursive": recursive})

    async def mkdir(self, path: str, parents: bool = True) -> None:
        await self.call({"op": "mkdir", "path": path, "parents": parents})

    async def connect_port(self, port: int, wait_s: float
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to `port` on the box's loopback (the daemon's `connect`), waiting up to
        `wait_s` for something to listen there; BoxFileError `refused` if nothing does. The
        reader holds at most ~2 x 64 KiB before it stops reading (the box then waits)."""
        reply = await self._open({"op": "connect", "port": port, "wait_s": wait_s},
                                 limit=_SPLICE_LIMIT)
        try:
            _raise_for(await reply.line())
        except BaseException:
            await reply.close()
            raise
        return reply.reader, reply.writer

    async def prefreeze(self, hook: str | None, hook_timeout_s: float,
                        grace_s: float) -> dict[str, Any]:
        return await self.call({"op": "prefreeze", "hook": hook,
                                "hook_timeout_s": hook_timeout_s, "grace_s": grace_s})

    # --- background processes (the daemon's proc_* ops) ------------------------------------

    async def _proc(self, request: dict[str, Any], body: bytes = b"") -> dict[str, Any]:
        reply = await self._open(request, body)
        try:
            return _raise_proc(await reply.line())
        finally:
            await reply.close()

    async def proc_start(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start a background process: `spec` has command, and cwd, env, stdin (bool),
        restart; its record as the daemon keeps it."""
        return _record(await self._proc({"op": "proc_start", **spec}), "process")

    async def proc_list(self) -> list[dict[str, Any]]:
        reply = await self._proc({"op": "proc_list"})
        found = reply.get("processes")
        if not isinstance(found, list) or not all(isinstance(p, dict) for p in found):
            raise BoxUnavailableError("the box daemon sent a malformed reply")
        return found

    async def proc_get(self, process_id: str) -> dict[str, Any]:
        return _record(await self._proc({"op": "proc_get", "id": process_id}), "process")

    async def proc_logs(self, process_id: str, stdout_offset: int, stderr_offset: int,
                        limit: int) -> dict[str, Any]:
        """Up to `limit` bytes of each stream from its offset, with the process's record."""
        return await self._proc({"op": "proc_logs", "id": process_id, "limit": limit,
                                 "stdout_offset": stdout_offset,
                                 "stderr_offset": stderr_offset})

    async def proc_follow(self, process_id: str, stdout_offset: int,
                          stderr_offset: int) -> AsyncGenerator[dict[str, Any], None]:
        """The process's record, then its output as it is written, then its exit. Closing
        the stream early leaves the process running."""
        reply = await self._open({"op": "proc_follow", "id": process_id,
                                  "stdout_offset": stdout_offset,
                                  "stderr_offset": stderr_offset})
        try:
            yield _record(_raise_proc(await reply.line()), "process")
            while True:
                event = await reply.line()
                yield event
                if event.get("type") == "exit":
                    return
        finally:
            await reply.close()

    async def proc_write(self, process_id: str, data: bytes, eof: bool) -> None:
        await self._proc({"op": "proc_write", "id": process_id, "eof": eof}, data)

    async def proc_signal(self, process_id: str, signal: str) -> dict[str, Any]:
        return _record(await self._proc({"op": "proc_signal", "id": process_id,
                                         "signal": signal}), "process")

    async def proc_kill(self, process_id: str) -> None:
        await self._proc({"op": "proc_kill", "id": process_id})

    async def proc_wake(self) -> int:
        """Start again what the box's last freeze ended (restart on-wake, on-failure): how
        many."""
        started = (await self._proc({"op": "proc_wake"})).get("started")
        return started if isinstance(started, int) else 0

    # --- file watching (the daemon's watch op) ----------------------------------------------

    async def watch(self, path: str, recursive: bool) -> AsyncGenerator[dict[str, Any], None]:
        """The watched path as the box resolved it (`{"path"}`), then its events as they
        happen, until `end` or until the stream is closed."""
        reply = await self._open({"op": "watch", "path": path, "recursive": recursive})
        try:
            yield _raise_proc(await reply.line())
            while True:
                event = await reply.line()
                yield event
                if event.get("type") == "end":
                    return
        finally:
            await reply.close()


def _raise_proc(reply: dict[str, Any]) -> dict[str, Any]:
    """A process op's failure: not_found is 404, conflict (not running, no room) 409, busy
    (the box freezes, or has no process slot) 503."""
    if reply.get("ok", True) is False:
        err = reply.get("error") or {}
        code, message = str(err.get("code", "error")), str(err.get("message", "failed"))
        if code == "conflict":
            raise BoxStateError(message)
        if code == "busy":
            raise BoxUnavailableError(message)
    return _raise_for(reply)


def _record(reply: dict[str, Any], key: str) -> dict[str, Any]:
    value = reply.get(key)
    if not isinstance(value, dict):
        raise BoxUnavailableError("the box daemon sent a malformed reply")
    return value
