"""HTTP/1.1 on a box's service socket, the in-box side: read one request (keep-alive, a
Content-Length body) and answer one JSON response. Stdlib only and fast to import: the tenant
agent uses it, and so does any program of Burrow's that serves the agent protocol in a box
(the echo agent of the tests imports it from /opt/burrow, where the box sees this package).
"""

from __future__ import annotations

import _socket

from tenant_agent.common.wire import dumps

MAX_HEADER = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Content Too Large", 500: "Internal Server Error"}


class HttpError(Exception):
    CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
             413: "too_large"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> dict[str, object]:
        """Burrow's error format, so the agent route answers one way whoever failed."""
        return {"error": {"code": self.CODES.get(self.status, "error"),
                          "message": self.message}}


def read_request(conn: _socket.socket, buf: bytes) -> tuple[dict[str, object], bytes] | None:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > MAX_HEADER:
            raise HttpError(400, "headers too large")
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    while len(buf) < length:
        chunk = conn.recv(min(65536, length - len(buf)))
        if not chunk:
            return None
        buf += chunk
    body, buf = buf[:length], buf[length:]
    path, _, query = target.partition("?")
    return {"method": method, "path": path, "query": query, "headers": headers,
            "body": body}, buf


def respond(conn: _socket.socket, status: int, payload: object, head_only: bool = False,
            headers: dict[str, str] | None = None) -> None:
    body = dumps(payload)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    conn.sendall(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
                 .encode() + (b"" if head_only else body))
