"""The tenant agent: an HTTP/1.1 server (keep-alive, a thread per connection) on the socket
the host handed in. It runs inside the tenant's home box under the box's /usr/bin/python3,
stdlib only, and imports only what loads fast: the first request after a wake waits for it.

The protocol (what a replacement agent, set with BURROW_AGENT_COMMAND, must speak): HTTP/1.1
on the listening socket in fd $BURROW_SERVICE_FD (3), JSON bodies.

    GET  /health                 -> {"ok": true}
    POST /ask {"question"}       -> {"answer", "used": {"profile": [...], "insights": [ids]},
                                     "model": the model that answered, or null}
         (the gateway names the tenant agents' model, when one is set, in x-burrow-model;
          the agent calls it through the host services socket: POST /v1/model/chat)
    GET  /profile                -> {"preferences", "facts", "topics", "observed", "last_seq"}
    POST /_burrow/observe {"pairs": [{id, seq, request: {method, path, query, body},
                           response: {status, body}, latency_ms, at}]}
                                 -> {"applied": [ids], "skipped": [ids], "last_seq",
                                     "insights": [{"kind", "text"}]}
         (idempotent by pair id, applied in seq order; insights are candidates for the
          shared knowledge base: general statements, scrubbed again by the worker)
    GET  /_burrow/log?after=N    -> {"applied": [{"n", "id", "seq"}]}  (in application order)

Errors are {"error": {"code", "message"}}, like the rest of Burrow's API. Everything under
/_burrow/ is for Burrow itself: the gateway never forwards it from outside.
On SIGTERM (the pre-freeze signal) the agent checkpoints its database and exits.
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os

from tenant_agent import host, knowledge
from tenant_agent.wire import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and sqlite3 cost ms at every wake; only the type checker needs them
    from tenant_agent.memory import Memory

STATE_DIR = "/workspace/.burrow-agent"
MAX_HEADER = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Content Too Large", 500: "Internal Server Error"}

_memory: list[Memory] = []  # opened on first use (sqlite3 takes ms to import)
_memory_lock = _thread.allocate_lock()


def memory() -> Memory:
    with _memory_lock:
        if not _memory:
            from tenant_agent.memory import Memory

            os.makedirs(STATE_DIR, exist_ok=True)
            _memory.append(Memory(STATE_DIR + "/memory.db"))
        return _memory[0]


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


def respond(conn: _socket.socket, status: int, payload: object, head_only: bool = False) -> None:
    body = dumps(payload)
    conn.sendall(f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + (b"" if head_only else body))


def _json_body(request: dict[str, object]) -> dict[str, object]:
    body = request["body"]
    assert isinstance(body, bytes)
    try:
        data = loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "the body must be JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    return data


MODEL_TIMEOUT_S = 120.0


def ask(question: str, model: str | None = None) -> dict[str, object]:
    """Answer from the tenant's profile and the shared knowledge: through the model when the
    gateway names one (x-burrow-model), else assembled from them."""
    profile = memory().profile()
    words = {w.strip(".,!?").lower() for w in question.split()}
    prefs = profile["preferences"]
    relevant = [p for p in prefs if words & set(str(p["value"]).lower().split())] or prefs[:3]
    insights = knowledge.search(question, limit=3) if question.strip() else []
    about = "; ".join(f"the user {'prefers' if p['polarity'] == 'likes' else 'avoids'} "
                      f"{p['value']}" for p in relevant)  # as the model reads it
    about_you = "; ".join(f"you {'prefer' if p['polarity'] == 'likes' else 'avoid'} "
                          f"{p['value']}" for p in relevant)
    shared = " ".join(str(i.get("text", "")) for i in insights)
    used = {"profile": relevant, "insights": [i.get("id") for i in insights]}
    note = ""
    if model:
        try:
            return {"answer": _ask_model(model, question, about, shared), "used": used,
                    "model": model}
        except host.HostError as exc:
            note = f"The model {model} could not answer ({exc}), "
    parts = [note + ("so this answer" if note else "No model is configured for this agent, "
                                                    "so this answer")
             + " is assembled from what it knows."]
    if about_you:
        parts.append(f"About you: {about_you}.")
    if shared:
        parts.append("From other users: " + shared)
    if not about and not shared:
        parts.append("It has nothing on this yet; it learns from your requests.")
    return {"answer": " ".join(parts), "used": used, "model": None}


def _ask_model(model: str, question: str, about: str, shared: str) -> str:
    context = "You are this user's personal assistant. Answer briefly and helpfully."
    if about:
        context += f" What you know about the user: {about}."
    if shared:
        context += f" What helped other users: {shared}"
    answer = host.call("/v1/model/chat", {"model": model, "max_tokens": 300, "messages": [
        {"role": "system", "content": context}, {"role": "user", "content": question}]},
        MODEL_TIMEOUT_S)
    message = answer.get("message") if isinstance(answer, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise host.HostError(0, "the model gave an empty answer")
    return text.strip()


def handle(request: dict[str, object]) -> tuple[int, object]:
    method, path = request["method"], request["path"]
    if path == "/health":
        return 200, {"ok": True}
    if path == "/ask":
        if method != "POST":
            raise HttpError(405, "POST a JSON body {\"question\": ...} to /ask")
        question = _json_body(request).get("question")
        if not isinstance(question, str):
            raise HttpError(400, "the body needs a string field 'question'")
        headers = request["headers"]
        model = headers.get("x-burrow-model") if isinstance(headers, dict) else None
        return 200, ask(question, model or None)
    if path == "/profile":
        return 200, memory().profile()
    if path == "/_burrow/observe" and method == "POST":
        pairs = _json_body(request).get("pairs")
        if not isinstance(pairs, list) or not all(
                isinstance(p, dict) and "id" in p and "seq" in p for p in pairs):
            raise HttpError(400, "pairs must be a list of objects with id and seq")
        return 200, memory().observe(pairs)
    if path == "/_burrow/log":
        query = str(request["query"])
        after = int(query.partition("after=")[2].split("&")[0] or 0) if "after=" in query else 0
        return 200, {"applied": memory().log(after)}
    raise HttpError(404, f"the agent has no {path}; it answers /health, /ask and /profile")


def serve_connection(conn: _socket.socket) -> None:
    buf = b""
    try:
        while True:
            try:
                parsed = read_request(conn, buf)
                if parsed is None:
                    return
                request, buf = parsed
                status, payload = handle(request)
            except HttpError as exc:
                respond(conn, exc.status, exc.payload())
                return
            except Exception as exc:  # a bug of ours: answer, and keep serving
                respond(conn, 500, {"error": {"code": "internal",
                                              "message": f"{type(exc).__name__}: {exc}"}})
                return
            respond(conn, status, payload, head_only=request["method"] == "HEAD")
            headers = request["headers"]
            assert isinstance(headers, dict)
            if headers.get("connection", "").lower() == "close":
                return
    except OSError:
        pass  # the client went away
    finally:
        conn.close()


def _stop(signum: int, frame: object) -> None:
    """SIGTERM before a freeze: leave the database whole, then go."""
    with _memory_lock:
        for mem in _memory:
            mem.close()
    os._exit(0)


def main() -> None:
    _signal.signal(_signal.SIGTERM, _stop)
    listener = _socket.socket(fileno=int(os.environ.get("BURROW_SERVICE_FD", "3")))
    while True:
        fd, _ = listener._accept()  # type: ignore[attr-defined]
        _thread.start_new_thread(serve_connection, (_socket.socket(fileno=fd),))
