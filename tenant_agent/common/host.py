"""Calls to Burrow's host services socket, the one way out of a box without network, made
with this box's token (BURROW_HOST_SOCKET, BURROW_BOX_TOKEN)."""

from __future__ import annotations

import _socket
import os

from tenant_agent.common.wire import dumps, loads


class HostError(Exception):
    """The host answered with an error, or could not be reached; the message says which."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call(path: str, body: object, timeout_s: float) -> object:
    """POST `body` as JSON to `path` on the host socket; the decoded JSON answer."""
    socket_path = os.environ.get("BURROW_HOST_SOCKET")
    token = os.environ.get("BURROW_BOX_TOKEN")
    if not socket_path or not token:
        raise HostError(0, "not inside a Burrow box: BURROW_HOST_SOCKET or BURROW_BOX_TOKEN "
                           "is not set")
    payload = dumps(body)
    head = (f"POST {path} HTTP/1.1\r\nHost: burrow\r\nConnection: close\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    data = b""
    try:
        sock.connect(socket_path)
        sock.sendall(head + payload)
        while chunk := sock.recv(65536):
            data += chunk
    except OSError as exc:
        raise HostError(0, f"the host services socket did not answer: {exc}") from None
    finally:
        sock.close()
    status_line, _, rest = data.partition(b"\r\n")
    headers, _, answer = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        answer = _unchunk(answer)
    try:
        status = int(status_line.split()[1])
        decoded = loads(answer)
    except (IndexError, ValueError):
        raise HostError(0, "the host services socket gave an unreadable answer") from None
    if status != 200:
        message = "the host refused the call"
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            message = str(decoded["error"].get("message", message))
        raise HostError(status, message)
    return decoded


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out
