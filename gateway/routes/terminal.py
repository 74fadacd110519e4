"""A box's terminal: `POST /v1/boxes/{id}/pty/tickets` (a one-use ticket, for browsers) and the
WebSocket `GET /v1/boxes/{id}/pty` that carries it (docs/terminal.md).

WebSockets do not pass the front door (gateway/frontdoor.py, HTTP only), so the socket route
does its own checks, in this order, before it opens anything: the Origin (a browser's must be
the gateway's own: a page on the preview origin or anywhere else opens nothing), the query, who
is calling (a key in the Authorization header, or a ticket), that the box is theirs (another
tenant's box is "not found", as on every route), and the limits on open terminals
(core/terminals.py). Each refusal is a close with a 44xx code and a reason that says what to do.

Frames: binary both ways are the terminal's bytes; text frames are JSON control: a resize from
the client, `{"type": "exit", "code": N}` from here once the shell ends, then close 1000. The
gateway reads the box's output only as fast as the client takes frames, and the client's
keystrokes only as fast as the shell reads them (boxes/terminals.py), so a flood either way
holds bounded memory here. Keystrokes are the box's activity for the idle policy; output is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from boxes import (
    BoxError,
    BoxFileError,
    BoxNotFoundError,
    BoxState,
    InvalidRequestError,
)
from boxes.terminals import Terminal
from core import authz
from core.authz import Principal
from core.errors import ApiError
from core.services import Core
from core.terminals import RENEW_S, TICKET_TTL_S, Lease, Terminals
from gateway.deps import CoreDep, OwnedBoxDep, UserDep, bearer_key
from gateway.schemas import ErrorOut, PtyTicket

log = logging.getLogger("burrow.terminal")

router = APIRouter(prefix="/v1/boxes/{box_id}/pty", tags=["terminal"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 503: {"model": ErrorOut}})

SIZE_MAX = 1000  # columns or rows (the daemon's bound)
CWD_MAX = 4096
BAD_REQUEST, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, OVER_LIMIT = 4400, 4401, 4403, 4404, 4429
_TICKET_HINT = "POST /v1/boxes/{id}/pty/tickets"


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@router.post("/tickets", status_code=201)
async def new_ticket(box: OwnedBoxDep, who: UserDep, core: CoreDep) -> PtyTicket:
    """A ticket that opens this box's terminal once, within 30 s, for the caller: a browser
    passes it as `?ticket=` to the WebSocket `GET /v1/boxes/{id}/pty` (docs/terminal.md),
    since it cannot set an Authorization header there."""
    ticket = await Terminals(core.redis, core.keys).ticket(box.id, who)
    return PtyTicket(ticket=ticket, expires_in=TICKET_TTL_S)


def _reason(text: str) -> str:
    """A close reason fits 123 bytes of UTF-8."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


def _same_origin(ws: WebSocket) -> bool:
    """No Origin (not a browser), or the gateway's own: scheme http(s) and the host the request
    was sent to."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = ws.headers.get("host", "").lower()
    default = {"http": ":80", "https": ":443"}.get(parts.scheme)
    if default is None or not parts.netloc:
        return False
    netloc = parts.netloc.lower()
    return host in (netloc, netloc.removesuffix(default)) or \
        netloc in (host, host.removesuffix(default))


def _size(ws: WebSocket, name: str, default: int) -> int:
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) <= SIZE_MAX:
        raise _Refused(BAD_REQUEST, f"{name} must be a whole number from 1 to {SIZE_MAX}")
    return int(raw)


def _cwd(ws: WebSocket) -> str | None:
    cwd = ws.query_params.get("cwd")
    if cwd is not None and (not cwd or len(cwd) > CWD_MAX or "\0" in cwd):
        raise _Refused(BAD_REQUEST, "cwd must be a directory path in the box")
    return cwd


async def _principal(ws: WebSocket, core: Core, box_id: str) -> Principal:
    header = ws.headers.get("authorization")
    if header is not None:
        try:
            return await core.authenticator.authenticate(bearer_key(header))
        except ApiError as exc:
            raise _Refused(UNAUTHENTICATED, exc.message) from None
    ticket = ws.query_params.get("ticket")
    if ticket is None:
        raise _Refused(UNAUTHENTICATED, "send Authorization: Bearer <key>, or ?ticket= from "
                                        + _TICKET_HINT)
    who = await Terminals(core.redis, core.keys).redeem(ticket, box_id)
    if who is None:
        raise _Refused(UNAUTHENTICATED, "this ticket is used, expired or for another box; "
                                        "get a new one: " + _TICKET_HINT)
    return who


async def _owned(core: Core, box_id: str, who: Principal) -> str | None:
    """The box's owner, if the caller may open its terminal."""
    try:
        authz.require_user(who)
    except ApiError:
        raise _Refused(FORBIDDEN, "a box token cannot open a terminal; use a tenant or "
                                  "operator key") from None
    try:
        box = await core.manager.get(box_id)
    except BoxNotFoundError:
        box = None
    if box is None or not authz.may_see_box(box, who) or box.state == BoxState.DELETED:
        raise _Refused(NOT_FOUND, f"no box {box_id!r}")
    return box.owner


async def _open(core: Core, box_id: str, cols: int, rows: int, cwd: str | None) -> Terminal:
    try:
        return await core.manager.open_terminal(box_id, cols, rows, cwd)
    except BoxNotFoundError:
        raise _Refused(NOT_FOUND, f"no box {box_id!r}") from None
    except BoxFileError as exc:
        if exc.code in ("not_found", "not_a_directory", "invalid_path", "permission_denied"):
            raise _Refused(BAD_REQUEST, exc.message) from None
        raise _Refused(1011, f"the box could not open a terminal: {exc.message}") from None
    except InvalidRequestError as exc:
        raise _Refused(BAD_REQUEST, exc.message) from None
    except BoxError as exc:
        log.warning("terminal of box %s: %s", box_id, exc)
        raise _Refused(1011, f"the box is not available right now ({exc.message}); try "
                             "again shortly") from None


@router.websocket("")
async def terminal(websocket: WebSocket, box_id: str) -> None:
    """The box user's shell on a terminal in the box (docs/terminal.md)."""
    core: Core = websocket.app.state.core
    terminals = Terminals(core.redis, core.keys)
    await websocket.accept()
    lease: Lease | None = None
    term: Terminal | None = None
    try:
        if not _same_origin(websocket):
            raise _Refused(FORBIDDEN, "a page of another origin cannot open a terminal here")
        cols, rows, cwd = _size(websocket, "cols", 80), _size(websocket, "rows", 24), \
            _cwd(websocket)
        who = await _principal(websocket, core, box_id)
        owner = await _owned(core, box_id, who)
        taken = await terminals.take(box_id, owner)
        if taken == "box":
            raise _Refused(OVER_LIMIT, f"box {box_id} has {terminals.max_per_box} terminals "
                                       "open, the most it may; close one and try again")
        if taken == "tenant":
            raise _Refused(OVER_LIMIT, f"this tenant has {terminals.max_per_tenant} terminals "
                                       "open, the most it may; close one and try again")
        lease = taken
        term = await _open(core, box_id, cols, rows, cwd)
        await _Session(websocket, core, terminals, lease, box_id, term).run()
    except _Refused as refused:
        await _close(websocket, refused.code, refused.reason)
    except RedisError as exc:
        log.warning("Redis does not answer on the terminal route: %s", exc)
        await _close(websocket, 1011, "the server's Redis does not answer; try again shortly")
    finally:
        if term is not None:
            await term.close()
        if lease is not None:
            with contextlib.suppress(RedisError):
                await terminals.release(lease)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await ws.close(code, _reason(reason))


class _Session:
    """An open terminal: keystrokes to the box, output to the client, the lease kept."""

    def __init__(self, ws: WebSocket, core: Core, terminals: Terminals, lease: Lease,
                 box_id: str, term: Terminal) -> None:
        self.ws = ws
        self.activity = core.manager.activity
        self.terminals = terminals
        self.lease = lease
        self.box_id = box_id
        self.term = term

    async def to_box(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                self.activity.touch(self.box_id)  # typing is activity; output is not
                await self.term.write(data)
                continue
            cols, rows = _resize(message.get("text") or "")
            await self.term.resize(cols, rows)

    async def to_client(self) -> None:
        while True:
            piece = await self.term.read()
            if isinstance(piece, int):
                await self.ws.send_text(json.dumps({"type": "exit", "code": piece}))
                raise _Refused(1000, "the shell ended")
            await self.ws.send_bytes(piece)

    async def renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            with contextlib.suppress(RedisError):
                await self.terminals.renew(self.lease)

    async def run(self) -> None:
        """Until the shell ends or the client leaves; _Refused says how to close."""
        tasks = [asyncio.create_task(self.to_box()), asyncio.create_task(self.to_client()),
                 asyncio.create_task(self.renew())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for failed in (t.exception() for t in tasks if not t.cancelled()):
            if isinstance(failed, _Refused):
                raise failed
            if isinstance(failed, BoxError):
                raise _Refused(1011, f"{failed.message}; open the terminal again")
            if failed is not None and not isinstance(failed, WebSocketDisconnect | OSError):
                raise failed


def _resize(text: str) -> tuple[int, int]:
    try:
        control = json.loads(text)
    except ValueError:
        control = None
    if not isinstance(control, dict) or control.get("type") != "resize" or not all(
            isinstance(control.get(k), int) and not isinstance(control.get(k), bool)
            and 0 < control[k] <= SIZE_MAX for k in ("cols", "rows")):
        raise _Refused(BAD_REQUEST, 'a text frame must be {"type":"resize","cols":N,"rows":N} '
                                    f"with N from 1 to {SIZE_MAX}")
    return int(control["cols"]), int(control["rows"])
