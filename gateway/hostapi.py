"""A box host's listener (BURROW_HOST_LISTEN): the gateways' and the worker's way to the boxes
this host runs, in the protocol of core/channel.py — a signed first line, then either one
answer or the box's own socket spliced through — and the host's health for the kubelet.

Only this host's boxes are served: a box placed elsewhere is refused (FencedError), and a
wake runs only for a box placed here. Connections are capped in number, and a first line in
size and time, so that no caller, signed or not, can hold the host's memory or its fds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from boxes import BoxError, BoxManager, BoxSpec, BoxState, InvalidRequestError, Limits
from boxes.hosts import HostLease
from core import channel
from core.roles import HOST_API_HEALTH_PATHS, parse_listen
from core.transport import Nonces, TransportError

log = logging.getLogger("burrow.host")

MAX_CONNECTIONS = 4096
CLOSE_WAIT_S = 5.0
SPLICE_CHUNK = 64 * 1024
Op = Callable[[str, dict[str, Any]], Awaitable[Any]]


def _spec(raw: Any) -> BoxSpec:
    if not isinstance(raw, dict):
        raise InvalidRequestError("a box spec is an object")
    try:
        limits = Limits(**raw.pop("limits", None) or {})
        for name in ("egress_allow", "egress_deny"):
            raw[name] = tuple(raw.get(name) or ())
        return BoxSpec(**raw, limits=limits).validate()
    except TypeError as exc:
        raise InvalidRequestError(f"not a box spec: {exc}") from None


def _record(box: Any) -> Any:
    return None if box is None else box.to_dict()


class HostAPI:
    """This host's listener: serve() until aclose()."""

    def __init__(self, manager: BoxManager, lease: HostLease, key: bytes, nonces: Nonces,
                 ready: Callable[[], str | None], window_s: float) -> None:
        self.manager = manager
        self.lease = lease
        self.key = key
        self.nonces = nonces
        self.ready = ready  # None when ready, else why not
        self.window_s = window_s
        self._server: asyncio.Server | None = None
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._spliced: set[asyncio.StreamWriter] = set()  # a box's socket from here on
        m = manager
        self.ops: dict[str, Op] = {
            "create": lambda _, a: self._create(a),
            "wake": lambda box, _: m.wake(box),
            "ensure": lambda box, _: m.ensure_running(box),
            "pause": lambda box, _: m.pause(box),
            "resume": lambda box, _: m.resume(box),
            "freeze": lambda box, _: m.freeze(box),
            "archive": lambda box, _: m.archive(box),
            "delete": lambda box, _: m.delete(box),
            "recover": lambda box, _: m.recover(box),
            "cool": lambda box, a: m.cool(box, BoxState(a["to"]), float(a["idle_since"])),
            "snapshot": lambda box, a: self._snapshot(box, a),
            "checkpoint": lambda box, _: self._checkpoint(box),
            "usages": lambda _, a: self._usages(a),
            "keep": lambda box, a: m.keep(box, str(a["name"]),
                                          channel.decode_bytes(a["data"])),
            "health": lambda box, _: m.health(box),
        }

    async def serve(self, listen: str) -> None:
        address, port = parse_listen(listen)
        self._server = await asyncio.start_server(self._accept, address, port,
                                                  limit=channel.MAX_LINE)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop listening; let the ops in flight answer (within CLOSE_WAIT_S: a request that
        reached this host as it left gets its answer, such as "draining: place it elsewhere",
        rather than a connection closed under it); then end every connection left, the
        boxes' sockets spliced through it among them (aborted, so each handler ends on its
        own: a cancelled one would be logged by asyncio as an error)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._spliced):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_WAIT_S)
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_WAIT_S)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve_one(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass  # the caller went away, or sent a line over the limit
        finally:
            self._open -= 1
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        line = await asyncio.wait_for(reader.readline(), channel.OPEN_TIMEOUT_S)
        if line[:1] != b"{":
            await self._health(line, writer)
            return
        try:
            opening = await channel.verify(self.key, self.nonces, self.lease.host_id, line,
                                           window_s=self.window_s)
        except TransportError as exc:
            log.warning("refused a request to this box host: %s", exc)
            writer.write(channel.failure(exc))
            await writer.drain()
            return
        if not self.lease.valid():
            writer.write(channel.failure(BoxError(
                f"box host {self.lease.host_id} no longer holds its lease")))
            return
        if opening.op in ("daemon", "port", "service"):
            self._spliced.add(writer)
            try:
                await self._splice(opening, reader, writer)
            finally:
                self._spliced.discard(writer)
            return
        op = self.ops.get(opening.op)
        try:
            if op is None:
                raise InvalidRequestError(f"no op {opening.op!r} on a box host")
            result = await op(opening.box, opening.args)
            writer.write(channel.answer(_record(result) if hasattr(result, "to_dict")
                                        else result))
        except BoxError as exc:
            writer.write(channel.failure(exc))
        except (KeyError, TypeError, ValueError) as exc:
            writer.write(channel.failure(InvalidRequestError(
                f"bad arguments to {opening.op}: {exc}")))
        await writer.drain()

    async def _create(self, args: dict[str, Any]) -> Any:
        return await self.manager.create(_spec(dict(args.get("spec") or {})))

    async def _snapshot(self, box_id: str, args: dict[str, Any]) -> Any:
        return asdict(await self.manager.snapshot(box_id, str(args["name"])))

    async def _checkpoint(self, box_id: str) -> Any:
        taken = await self.manager.checkpoint(box_id)
        return None if taken is None else asdict(taken)

    async def _usages(self, args: dict[str, Any]) -> dict[str, Any]:
        ids = [i for i in args.get("boxes", []) if isinstance(i, str)]
        boxes = [b for b in await self.manager.list() if b.id in set(ids)
                 and b.host == self.manager.host]
        usages = await self.manager.usages(boxes)
        return {b.id: asdict(u) for b, u in zip(boxes, usages, strict=True)}

    async def _splice(self, opening: channel.Opening, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """The box's socket, once it runs here: the connection is it from the answer on."""
        box_id = opening.box
        try:
            box = await self.manager.get(box_id)
            if box.host != self.manager.host:
                raise BoxError(f"box {box_id} is not on box host {self.manager.host}")
            if opening.op in ("daemon", "port"):
                path = await self.manager.daemon_path(box_id)
            else:
                await self.manager.ensure_running(box_id)
                path = str(self.manager.service_path(box_id))
            inner_reader, inner_writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path), channel.OPEN_TIMEOUT_S)
        except BoxError as exc:
            writer.write(channel.failure(exc))
            await writer.drain()
            return
        except (OSError, TimeoutError) as exc:
            writer.write(channel.failure(BoxError(f"box {box_id}'s socket does not answer: "
                                                  f"{exc}")))
            await writer.drain()
            return
        writer.write(channel.answer(None))
        # A daemon call is the box's activity while it lasts; a port's connection (a preview,
        # `port`: the daemon's protocol too) is not: the gateway counts its visitor's requests.
        in_flight = (self.manager.activity.in_flight(box_id) if opening.op == "daemon"
                     else contextlib.nullcontext())
        with in_flight:
            try:
                await _pipe_both(reader, writer, inner_reader, inner_writer)
            finally:
                inner_writer.close()

    async def _health(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        """`GET /healthz` (this process serves) and `GET /readyz` (it holds its lease and
        its store answers), unsigned: nothing in them helps a caller without the secret."""
        parts = line.split()
        path = parts[1].decode("latin-1") if len(parts) >= 2 else ""
        if path == HOST_API_HEALTH_PATHS[0]:
            status, body = 200, {"status": "ok"}
        elif path == HOST_API_HEALTH_PATHS[1]:
            why = self.ready()
            status, body = (200, {"status": "ready"}) if why is None else \
                (503, {"status": "not ready", "reason": why})
        else:
            status, body = 404, {"error": "a box host answers only signed requests"}
        data = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
                     + data)
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(SPLICE_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _pipe_both(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                     b_reader: asyncio.StreamReader, b_writer: asyncio.StreamWriter) -> None:
    """Bytes both ways until both have ended, or either side breaks."""
    tasks = [asyncio.create_task(_pipe(a_reader, b_writer)),
             asyncio.create_task(_pipe(b_reader, a_writer))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    except (OSError, ConnectionError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
