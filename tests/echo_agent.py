"""An echo agent for tests of the agent route: it answers every request with what it got
(method, path, query, headers, body) and a request counter kept in the workspace, so it
survives freezes. Run in a box as `python3 -I -S -c <this file>` (BURROW_AGENT_COMMAND)."""

from __future__ import annotations

import _json
import _socket
import _thread
import os

STATE_DIR = "/workspace/.burrow-agent"
COUNTER = STATE_DIR + "/requests"
MAX_HEADER = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


def _no_default(obj: object) -> None:
    raise TypeError(f"cannot encode {type(obj).__name__}")


# json.dumps without importing json (it pulls in re and enum: milliseconds at every wake)
_encode = _json.make_encoder(None, _no_default, _json.encode_basestring_ascii, None,
                             ":", ",", False, False, True)


def dumps(obj: object) -> bytes:
    return "".join(_encode(obj, 0)).encode()


class Counter:
    """How many requests this tenant's agent has answered, kept across freezes."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        os.makedirs(STATE_DIR, exist_ok=True)
        try:
            with open(COUNTER) as f:
                self.value = int(f.read().strip() or 0)
        except (OSError, ValueError):
            self.value = 0

    def next(self) -> int:
        with self.lock:
            self.value += 1
            tmp = COUNTER + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(self.value))
            os.replace(tmp, COUNTER)
            return self.value


def read_request(conn: _socket.socket, buf: bytes) -> tuple[dict[str, object], bytes] | None:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > MAX_HEADER:
            raise ValueError("headers too large")
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(buf) < length:
        chunk = conn.recv(min(65536, length - len(buf)))
        if not chunk:
            return None
        buf += chunk
    body, buf = buf[:length], buf[length:]
    path, _, query = target.partition("?")
    return {"method": method, "path": path, "query": query, "headers": headers,
            "body": body}, buf


def respond(conn: _socket.socket, status: int, payload: object, head_only: bool = False) -> None:
    body = dumps(payload)
    conn.sendall(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + (b"" if head_only else body))


def handle(request: dict[str, object], counter: Counter) -> tuple[int, object]:
    if request["path"] == "/health":
        return 200, {"ok": True}
    if str(request["path"]).startswith("/_burrow/"):  # observations: taken, not counted
        return 200, {}
    body = request["body"]
    assert isinstance(body, bytes)
    return 200, {"echo": {"method": request["method"], "path": request["path"],
                          "query": request["query"], "headers": request["headers"],
                          "body": body.decode("utf-8", "replace")},
                 "requests": counter.next()}


def serve_connection(conn: _socket.socket, counter: Counter) -> None:
    buf = b""
    try:
        while True:
            parsed = read_request(conn, buf)
            if parsed is None:
                return
            request, buf = parsed
            status, payload = handle(request, counter)
            respond(conn, status, payload, head_only=request["method"] == "HEAD")
            headers = request["headers"]
            assert isinstance(headers, dict)
            if headers.get("connection", "").lower() == "close":
                return
    except (OSError, ValueError) as exc:
        try:
            respond(conn, 400, {"error": str(exc)})
        except OSError:
            pass
    finally:
        conn.close()


def main() -> None:
    listener = _socket.socket(fileno=int(os.environ.get("BURROW_SERVICE_FD", "3")))
    counter = Counter()
    while True:
        fd, _ = listener._accept()  # type: ignore[attr-defined]
        _thread.start_new_thread(serve_connection, (_socket.socket(fileno=fd), counter))


main()
