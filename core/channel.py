"""The box host's wire protocol: how a gateway or the worker of a cluster asks a box host
(`burrow host`) for something, or reaches into one of its boxes.

A connection to a host's listener (BURROW_HOST_LISTEN) opens with one line, a JSON object
signed with the server secret's transport key (core/transport.py): the op, the box, the
op's arguments, the host it is for, the time, a nonce and an HMAC over all of them. The
host refuses a line that is not signed, signed for another host, outside the time window,
or whose nonce it has seen (a replay), and answers one JSON line:
`{"ok": true, "result": ...}` or `{"ok": false, "error": {"type", "code", "message"}}`.
For an op that asks a question (create, wake, freeze, usages, ...) that line is the answer
and the connection ends. For `daemon` and `service` it says the box is ready, and from then
on the connection is the box's socket itself — its daemon's protocol (boxes/client.py) or
its service's HTTP (boxes/servicehttp.py) — spliced through by the host; a service
connection stays open for the requests that follow (the gateway pools them).

The signature covers the opening line, so whoever cannot sign cannot open a connection,
and a copied line is refused; the bytes after it are the box's protocol, as on the host's
own unix socket: on a network others can read or alter, run the hosts on an encrypted pod
network (docs/scale-out.md). A host also answers plain `GET /healthz` and `GET /readyz`
(core/roles.py) unsigned, for the kubelet: its first byte tells the two apart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from boxes import errors
from boxes.errors import BoxError
from core.roles import parse_listen
from core.transport import DEFAULT_WINDOW_S, Nonces, TransportError

MAX_LINE = 64 * 1024          # an opening line, and the host's first answer line
MAX_ANSWER = 16 << 20         # an op's answer (the usages of many boxes)
OPEN_TIMEOUT_S = 10.0         # to connect and send the line; the host's to read it
CALL_TIMEOUT_S = 600.0        # an op's answer: a freeze packs a whole layer
_DOMAIN = b"burrow-channel v1\n"
# The errors a host's answer may name: raised again as themselves on the caller's side.
_ERRORS: dict[str, type[BoxError]] = {
    cls.__name__: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, BoxError)}


def _canonical(fields: dict[str, Any]) -> bytes:
    return _DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def opening(key: bytes, host: str, op: str, box: str, args: dict[str, Any],
            now: float | None = None) -> bytes:
    """The signed first line of a connection to box host `host`."""
    fields = {"v": 1, "host": host, "op": op, "box": box, "args": args,
              "at": round(time.time() if now is None else now, 3),
              "nonce": secrets.token_urlsafe(18)}
    mac = hmac.new(key, _canonical(fields), hashlib.sha256).hexdigest()
    return json.dumps({**fields, "mac": mac}, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class Opening:
    op: str
    box: str
    args: dict[str, Any]


async def verify(key: bytes, nonces: Nonces, host: str, line: bytes, *,
                 window_s: float = DEFAULT_WINDOW_S, now: float | None = None) -> Opening:
    """The op a first line asks for, once it is shown signed for `host`, fresh and not seen
    before (TransportError otherwise, in words that help no one without the key)."""
    try:
        fields = json.loads(line)
        mac = fields.pop("mac")
        at = float(fields["at"])
        op, box, args = fields["op"], fields["box"], fields["args"]
        if not (isinstance(op, str) and isinstance(box, str) and isinstance(args, dict)
                and isinstance(mac, str) and isinstance(fields["nonce"], str)):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TransportError("not a signed request between Burrow's roles") from exc
    expected = hmac.new(key, _canonical(fields), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        raise TransportError("bad signature (another secret, or changed on the way)")
    if fields.get("host") != host:
        raise TransportError("signed for another box host")
    if abs((time.time() if now is None else now) - at) > window_s:
        raise TransportError(f"signed more than {window_s:g} s away from this host's clock")
    if not await nonces.first_seen(fields["nonce"], 2 * window_s):
        raise TransportError("replayed: this request was already received")
    return Opening(op, box, args)


def answer(result: Any) -> bytes:
    return json.dumps({"ok": True, "result": result}, separators=(",", ":")).encode() + b"\n"


def failure(exc: BoxError | TransportError) -> bytes:
    kind = type(exc).__name__ if isinstance(exc, BoxError) else "TransportError"
    code = exc.code if isinstance(exc, BoxError) else "unauthenticated"
    message = exc.message if isinstance(exc, BoxError) else str(exc)
    return json.dumps({"ok": False, "error": {"type": kind, "code": code,
                                              "message": message}}).encode() + b"\n"


def _raise(error: Any, host: str) -> None:
    if not isinstance(error, dict):
        raise errors.BoxUnavailableError(f"box host {host} answered something malformed")
    message = str(error.get("message", "failed"))
    kind = _ERRORS.get(str(error.get("type")))
    if kind is errors.BoxFileError:
        raise errors.BoxFileError(str(error.get("code", "error")), message)
    if kind is None:  # the transport refused us: a configuration error, said as it is
        raise errors.BoxUnavailableError(f"box host {host} refused the request: {message}")
    raise kind(message)


def parse(raw: bytes, host: str) -> Any:
    """The result of a host's answer line, or its error raised as the box runtime's."""
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise errors.BoxUnavailableError(f"box host {host} answered something malformed")
    if reply.get("ok") is not True:
        _raise(reply.get("error"), host)
    return reply.get("result")


class HostClient:
    """The caller's side: ops and connections to box hosts, each opened with a signed
    line."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    async def _open(self, host_id: str, address: str, op: str, box: str,
                    args: dict[str, Any], limit: int
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        where, port = parse_listen(address)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(where, port, limit=limit), OPEN_TIMEOUT_S)
        try:
            writer.write(opening(self.key, host_id, op, box, args))
        except RuntimeError as exc:  # uvloop's word for a transport the host closed already
            writer.close()
            raise ConnectionResetError(f"box host {host_id} closed the connection") from exc
        return reader, writer

    async def call(self, host_id: str, address: str, op: str, box: str = "",
                   args: dict[str, Any] | None = None) -> Any:
        """Ask box host `host_id` (at `address`) for `op`; its result. An unreachable
        host: DaemonUnreachableError (nothing was done)."""
        try:
            reader, writer = await self._open(host_id, address, op, box, args or {},
                                              MAX_ANSWER)
        except (OSError, TimeoutError) as exc:
            raise errors.DaemonUnreachableError(
                f"box host {host_id} at {address} does not answer: {exc}") from exc
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                raw = await reader.readline()
        except (OSError, ValueError, TimeoutError) as exc:
            raise errors.BoxUnavailableError(
                f"box host {host_id} broke off its answer to {op}: {exc}") from exc
        finally:
            writer.close()
        if not raw:
            raise errors.BoxUnavailableError(f"box host {host_id} closed before answering {op}")
        return parse(raw, host_id)

    async def connect(self, host_id: str, address: str, op: str, box: str,
                      args: dict[str, Any], limit: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection that is the box's `op` socket once the host said it is ready
        (ConnectionError when the host does not answer or refuses: the caller's retry looks
        the box up again)."""
        reader, writer = await self._open(host_id, address, op, box, args, limit)
        try:
            raw = await asyncio.wait_for(reader.readline(), OPEN_TIMEOUT_S)
            if not raw:
                raise ConnectionResetError(f"box host {host_id} closed the connection")
            parse(raw, host_id)
        except BoxError as exc:
            writer.close()
            if isinstance(exc, errors.BoxNotFoundError | errors.BoxStateError):
                raise
            raise ConnectionRefusedError(exc.message) from exc
        except BaseException:
            writer.close()
            raise
        return reader, writer


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_bytes(text: Any) -> bytes:
    if not isinstance(text, str):
        raise errors.InvalidRequestError("expected base64 text")
    with contextlib.suppress(ValueError):
        return base64.b64decode(text, validate=True)
    raise errors.InvalidRequestError("expected base64 text")
