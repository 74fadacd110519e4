"""Exec and files in a box: each operation is one call to the box's daemon (boxes/client.py),
which resolves paths inside the box's own mount namespace, so a path can only reach the box's
own view.

`BoxAccess` is the half of BoxManager's surface that reaches into a box; BoxManager (the
state machine, boxes/manager.py) is one. Its contract with the state machine is two methods:
`_daemon(box_id, wake)` makes the box ready — woken or resumed first unless `wake` is False
(then BoxStateError when it is not running), and its layer whole — and returns its daemon's
client; `recover(box_id)` records a box whose daemon is gone. Invariants:
- A call whose daemon vanished before anything was sent (it crashed a moment ago) is retried
  once, after `recover`, when waking is allowed; otherwise the error reaches the caller.
- An exec counts as activity for as long as it runs, so the idle sweep never freezes a box
  under it. A background process, or a stream following its logs, does not: a dev server
  must not keep its box warm (only each request about one is activity, as any request is).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from boxes.activity import Activity
from boxes.client import DaemonClient, Socket
from boxes.errors import BoxUnavailableError, DaemonUnreachableError
from boxes.models import BoxRecord, BoxState, ExecEvent, ExecRequest, ExecResult, FileEntry
from boxes.sandbox import SandboxBackend

T = TypeVar("T")


class BoxAccess(ABC):
    activity: Activity
    backend: SandboxBackend

    @abstractmethod
    async def _daemon(self, box_id: str, wake: bool) -> DaemonClient:
        """The box's daemon, once the box runs with all its files."""

    @abstractmethod
    async def recover(self, box_id: str) -> None:
        """Record the box as failed if its sandbox is gone."""

    @abstractmethod
    async def get(self, box_id: str) -> BoxRecord:
        """The box's record; BoxNotFoundError if there is none."""

    async def _call(self, box_id: str, wake: bool,
                    operation: Callable[[DaemonClient], Awaitable[T]]) -> T:
        """Run `operation` against the box's daemon; if the daemon is gone before anything
        was sent, record that and, when allowed, wake and retry."""
        client = await self._daemon(box_id, wake)
        try:
            return await operation(client)
        except DaemonUnreachableError:
            if not wake:
                raise
            await self.recover(box_id)
            return await operation(await self._daemon(box_id, wake))

    async def exec(self, box_id: str, req: ExecRequest, wake: bool = True) -> ExecResult:
        with self.activity.in_flight(box_id):
            return await self._call(box_id, wake, lambda c: c.exec(req))

    async def exec_stream(self, box_id: str, req: ExecRequest,
                          wake: bool = True) -> AsyncGenerator[ExecEvent, None]:
        async def first_event(client: DaemonClient) -> tuple[AsyncIterator[ExecEvent], ExecEvent]:
            stream = client.exec_stream(req)
            return stream, await anext(stream)

        with self.activity.in_flight(box_id):
            stream, event = await self._call(box_id, wake, first_event)
            yield event
            async for event in stream:
                yield event

    async def read_file(self, box_id: str, path: str, wake: bool = True) -> bytes:
        return await self._call(box_id, wake, lambda c: c.read_file(path))

    async def write_file(self, box_id: str, path: str, data: bytes, mode: int | None = None,
                         wake: bool = True) -> None:
        await self._call(box_id, wake, lambda c: c.write_file(path, data, mode))

    async def read_file_stream(self, box_id: str, path: str,
                               wake: bool = True) -> tuple[int, AsyncIterator[bytes]]:
        """A file's size and its bytes as they come, never held whole."""
        return await self._call(box_id, wake, lambda c: c.read_stream(path))

    async def write_file_stream(self, box_id: str, path: str, size: int,
                                pieces: AsyncIterator[bytes], mode: int | None = None,
                                wake: bool = True) -> None:
        await self._call(box_id, wake, lambda c: c.write_stream(path, size, pieces, mode))

    async def list_files(self, box_id: str, path: str, wake: bool = True) -> list[FileEntry]:
        return await self._call(box_id, wake, lambda c: c.list_dir(path))

    async def stat_file(self, box_id: str, path: str, wake: bool = True) -> FileEntry:
        return await self._call(box_id, wake, lambda c: c.stat(path))

    async def delete_file(self, box_id: str, path: str, recursive: bool = False,
                          wake: bool = True) -> None:
        await self._call(box_id, wake, lambda c: c.delete(path, recursive))

    async def mkdir(self, box_id: str, path: str, wake: bool = True) -> None:
        await self._call(box_id, wake, lambda c: c.mkdir(path))

    async def connect_port(self, box_id: str, port: int, wait_s: float, wake: bool = True
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to `port` on the box's own loopback, through its daemon (the box
        needs no network), waking the box first unless `wake` is False. Reaching the box
        counts as its activity once, when the stream opens; the bytes that follow do not."""
        return await self._call(box_id, wake, lambda c: c.connect_port(port, wait_s))

    def service_path(self, box_id: str) -> Socket:
        """The host-side socket of the box's service (BoxSpec.service); connect after waking."""
        return self.backend.service_path(box_id)

    async def health(self, box_id: str) -> dict[str, object]:
        """The daemon's health of a running box (never wakes it: BoxUnavailableError)."""
        box = await self.get(box_id)
        if box.state != BoxState.RUNNING:
            raise BoxUnavailableError(f"box {box_id} is {box.state.value}")
        return await DaemonClient(self.backend.socket_path(box.id)).health()

    # --- background processes (boxes/daemon.py's proc_* ops) ------------------------------

    async def start_process(self, box_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        return await self._call(box_id, True, lambda c: c.proc_start(spec))

    async def list_processes(self, box_id: str) -> list[dict[str, Any]]:
        return await self._call(box_id, True, lambda c: c.proc_list())

    async def get_process(self, box_id: str, process_id: str) -> dict[str, Any]:
        return await self._call(box_id, True, lambda c: c.proc_get(process_id))

    async def process_logs(self, box_id: str, process_id: str, stdout_offset: int = 0,
                           stderr_offset: int = 0, limit: int = 1 << 16) -> dict[str, Any]:
        return await self._call(box_id, True, lambda c: c.proc_logs(
            process_id, stdout_offset, stderr_offset, limit))

    async def follow_process(self, box_id: str, process_id: str, stdout_offset: int = 0,
                             stderr_offset: int = 0) -> AsyncGenerator[dict[str, Any], None]:
        """The process's record, then its output as it comes, then its exit. Not activity
        while it lasts."""
        async for event in self._stream(
                box_id, lambda c: c.proc_follow(process_id, stdout_offset, stderr_offset)):
            yield event

    async def write_process(self, box_id: str, process_id: str, data: bytes,
                            eof: bool = False) -> None:
        await self._call(box_id, True, lambda c: c.proc_write(process_id, data, eof))

    async def signal_process(self, box_id: str, process_id: str,
                             signal: str) -> dict[str, Any]:
        return await self._call(box_id, True, lambda c: c.proc_signal(process_id, signal))

    async def kill_process(self, box_id: str, process_id: str) -> None:
        await self._call(box_id, True, lambda c: c.proc_kill(process_id))

    # --- file watching (boxes/daemon.py's watch op) ----------------------------------------

    async def watch(self, box_id: str, path: str,
                    recursive: bool = False) -> AsyncGenerator[dict[str, Any], None]:
        """The watched path (as the box resolved it), then file events as they happen. Not
        activity while it lasts."""
        async for event in self._stream(box_id, lambda c: c.watch(path, recursive)):
            yield event

    async def _stream(self, box_id: str,
                      open_stream: Callable[[DaemonClient], AsyncGenerator[dict[str, Any], None]]
                      ) -> AsyncGenerator[dict[str, Any], None]:
        """A daemon op's event stream: its first event read under _call (so a box found frozen
        is woken and asked again), then the rest as they come."""
        async def first(client: DaemonClient) -> tuple[AsyncGenerator[dict[str, Any], None],
                                                       dict[str, Any]]:
            stream = open_stream(client)
            return stream, await anext(stream)

        stream, head = await self._call(box_id, True, first)
        try:
            yield head
            async for event in stream:
                yield event
        finally:
            await stream.aclose()
