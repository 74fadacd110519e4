"""An echo agent for tests of the agent route: it answers every request with what it got
(method, path, query, headers, body) and a request counter kept in the workspace, so it
survives freezes. Run in a box as `python3 -I -S -c <this file>` (BURROW_AGENT_COMMAND); it
speaks HTTP through the tenant agent's own module (tenant_agent/common/http1.py)."""

from __future__ import annotations

import _socket
import _thread
import os
import sys

sys.path.insert(0, "/opt/burrow")  # where every box sees the tenant agent's package
from tenant_agent.common.http1 import HttpError, read_request, respond

STATE_DIR = "/workspace/.burrow-agent"
COUNTER = STATE_DIR + "/requests"


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
    except HttpError as exc:
        try:
            respond(conn, exc.status, exc.payload())
        except OSError:
            pass
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
