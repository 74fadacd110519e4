"""The tenant agent: an HTTP/1.1 server (keep-alive, a thread per connection) on the socket
the host handed in. It runs inside the tenant's home box under the box's /usr/bin/python3,
stdlib only, and imports only what loads fast: the first request after a wake waits for it
(sqlite3, re and the memory modules load on the first request that needs them).

The protocol (what a replacement agent, set with BURROW_AGENT_COMMAND, must speak): HTTP/1.1
on the listening socket in fd $BURROW_SERVICE_FD (3), JSON bodies. Times in answers are ISO
8601 UTC strings; times in requests may be ISO 8601 or unix seconds. Vectors (embeddings) are
JSON lists of numbers or base64 of little-endian float32, of the host's embedding model.

    GET  /health                 -> {"ok": true}
    POST /ask {"question", "query_embedding"?, "explain"?}
                                 -> {"answer", "model": the model that answered or null,
                                     "used": {"memories": [ids], "episodes": [ids],
                                              "insights": [ids], "request_ids": [...],
                                              "tokens": context tokens (<= 800),
                                              "profile": [preferences used, first shape]},
                                     "context"?: the context text, when explain is true}
         (the gateway names the model that answers, when one is set, in x-burrow-model;
          the agent calls it through the host services socket: POST /v1/model/chat)
    POST /recall {"query", "limit"? (10, <= 100), "since"?, "until"?, "query_embedding"?,
                  "kinds"?: ["preference", "fact", "event", "plan", "episode"]}
         (without query_embedding the agent asks the host socket, POST /v1/embed
          {"texts": [query]} -> {"model", "vectors"}, and uses full text alone if it cannot)
                                 -> {"results": [{"id", "kind", "text", "at", "score",
                                                  "request_ids", ...}]}
         most relevant first; memories ("m_…", kind preference|fact|event|plan, with
         subject, valid_from, valid_to, superseded_by, confidence, source) and episodes
         ("e_…", kind episode: the tenant's words, with "reply", and "context": the turns
         just before and after it in the conversation, [{"request_id", "text", "reply",
         "at", "before"}], their ids in its request_ids after its own); `at` is when the
         tenant said it; `request_ids` are the X-Request-Ids of the requests it came from;
         `score` is relative to the best result (1.0)
    GET  /profile                -> {"preferences", "facts", "topics", "observed", "last_seq",
                                     "memories", "episodes", "pending", "model"}
    GET  /memories?kind=&status=current|all&limit=50&cursor=
                                 -> {"items": [...], "next_cursor": str|null, "total"}
    GET  /memories/export        -> {"format": "burrow.memory/1", "exported_at", "memories":
                                     [every version], "episodes": [...], "pending", "observed"}
    POST /memories {"text", "kind"?: fact, "subject"?}
                                 -> the memory, source "api" (the tenant says it directly;
                                    the same subject and text again is evidence, not a copy)
    PATCH /memories/{id} {"text"} -> the corrected memory, which supersedes it (history kept)
    GET  /memories/{id}          -> the memory (with "history": what it superseded) or episode
    DELETE /memories/{id}        -> {"deleted": [ids]} (a memory goes with its history and the
                                     turns it came from; 404 if there is no such id)
    DELETE /memories             -> {"deleted": {table: rows}, "replace_snapshot": true}
         and the header X-Burrow-Replace-Snapshot: 1: nothing readable is left in the
         agent's files; the host should replace the box's snapshot at the next freeze
    POST /_burrow/observe {"pairs": [pair, ...]}   (tenant_agent/memory/turns.py: the pair's fields)
                                 -> {"applied": [ids], "skipped": [ids], "last_seq",
                                     "insights": [{"kind", "text"}], "identifiers", "queued"}
         (idempotent by pair id, applied in seq order; insights are candidates for the
          shared knowledge base: general statements, none the host judged episodic (a
          pair's "episodic": tenant_agent/memory/episodes.py), scrubbed again by the worker; the
          worker names the tenant agents' model in x-burrow-model here too, so the model's
          extraction pass can run before any /ask arrives; sent empty, it says the tenant's
          agent has no model any more: the rules alone learn)
    POST /_burrow/extract {"max_batches"?}
                                 -> {"batches", "turns", "operations", "pending", "errors"}
         runs the model's extraction pass now instead of in the background (tests, benches,
         a host that wants the queue empty before a freeze)
    GET  /_burrow/log?after=N    -> {"applied": [{"n", "id", "seq"}]}  (in application order)

Not learned from: the agent's own protocol (/recall, /profile, /health, /memories…), whoever
calls it. Errors are {"error": {"code", "message"}}, like the rest of Burrow's API. Everything
under /_burrow/ is for Burrow itself: the gateway never forwards it from outside.
On SIGTERM (the pre-freeze signal) the agent checkpoints its database and exits; the model's
queue is in the database, so a freeze loses none of it.

Environment: BURROW_SERVICE_FD (the listening socket), BURROW_HOST_SOCKET and
BURROW_BOX_TOKEN (the host services socket), BURROW_AGENT_MODEL (the model for memory
extraction, when the host sets it for the tenant; else the last x-burrow-model it was sent),
BURROW_AGENT_STATE_DIR (default /workspace/.burrow-agent; tests and benches run the agent
outside a box), BURROW_AGENT_RULES=off (the model alone learns: to measure it against the
rules), BURROW_AGENT_ANSWER_TIMEOUT_S (how long /ask waits for its model; 120).
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os
import sys
import time

from tenant_agent.common.http1 import HttpError, read_request, respond
from tenant_agent.common.wire import loads
from tenant_agent.memory.episodes import proposable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and sqlite3 cost ms at every wake; only the type checker needs them
    from tenant_agent.memory.extract import Extractor
    from tenant_agent.memory.memory import Memory

STATE_DIR = "/workspace/.burrow-agent"
REFUSALS_AFTER_S = 1.0  # after a start, when the refusals of shared candidates are compiled

_memory: list[Memory] = []  # opened at start by a thread of its own (_warm), or first use
_extractor: list[Extractor] = []
_memory_lock = _thread.allocate_lock()


def memory() -> Memory:
    with _memory_lock:
        if not _memory:
            from tenant_agent.memory.memory import Memory

            state = os.environ.get("BURROW_AGENT_STATE_DIR", STATE_DIR)
            os.makedirs(state, exist_ok=True)
            _memory.append(Memory(state + "/memory.db",
                                  rules=os.environ.get("BURROW_AGENT_RULES") != "off"))
        mem = _memory[0]
        if mem.model and not _extractor:
            from tenant_agent.memory.extract import Extractor

            _extractor.append(Extractor(mem))
        return mem


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


def _param(query: str, name: str) -> str:
    from urllib.parse import parse_qs

    values = parse_qs(query).get(name)
    return values[0] if values else ""


def _model(request: dict[str, object]) -> str | None:
    """x-burrow-model: a model's name, "" (the header sent empty: no model any more), or None
    (no header: nothing said)."""
    headers = request["headers"]
    model = headers.get("x-burrow-model") if isinstance(headers, dict) else None
    return None if model is None else str(model)


def _request_id(request: dict[str, object]) -> str:
    headers = request["headers"]
    value = headers.get("x-request-id") if isinstance(headers, dict) else None
    return str(value) if value else "api"


def _vector(data: dict[str, object], text: str,
            field: str = "query_embedding") -> list[float] | None:
    """The query's embedding: the caller's, else the host's when the tenant's turns have
    vectors (tenant_agent/memory/embed.py), else None (full text only)."""
    if data.get(field) is None:
        model = memory().meta("vector_model")
        if not model:
            return None
        from tenant_agent.memory.embed import query_vector

        return query_vector(text, model)
    from tenant_agent.memory.turns import vector_of

    vector = vector_of(data[field])
    if vector is None:
        raise HttpError(400, f"{field} must be a list of numbers or base64 float32")
    return vector


def _time(data: dict[str, object], field: str) -> float | None:
    if data.get(field) is None:
        return None
    from tenant_agent.memory.turns import parse_time

    at = parse_time(data[field])
    if at is None:
        raise HttpError(400, f"{field} must be an ISO 8601 time or unix seconds")
    return at


def ask(request: dict[str, object]) -> dict[str, object]:
    if request["method"] != "POST":
        raise HttpError(405, "POST a JSON body {\"question\": ...} to /ask")
    data = _json_body(request)
    question = data.get("question")
    if not isinstance(question, str):
        raise HttpError(400, "the body needs a string field 'question'")
    from tenant_agent.memory import answer
    from tenant_agent.memory.recall import first_person

    # x-burrow-model here names the model that answers; the extraction model is the one the
    # worker names on /_burrow/observe (the two may differ: a small one may answer, never
    # extract)
    return answer.ask(memory(), question, _model(request) or None,
                      _vector(data, first_person(question)), bool(data.get("explain")))


def recall(request: dict[str, object]) -> dict[str, object]:
    if request["method"] != "POST":
        raise HttpError(405, "POST a JSON body {\"query\": ...} to /recall")
    data = _json_body(request)
    query, limit, kinds = data.get("query"), data.get("limit", 10), data.get("kinds")
    if not isinstance(query, str):
        raise HttpError(400, "the body needs a string field 'query'")
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise HttpError(400, "limit must be an integer from 1 to 100")
    if kinds is not None and not (isinstance(kinds, list) and all(
            isinstance(k, str) for k in kinds)):
        raise HttpError(400, "kinds must be a list of kinds")
    from tenant_agent.memory import recall as recalling

    # the host embeds the question as the tenant would ask it of itself ("the user" -> "I")
    results = recalling.recall(memory(), query, limit, _time(data, "since"),
                               _time(data, "until"),
                               _vector(data, recalling.first_person(query)), kinds)
    return {"results": results}


def memories(request: dict[str, object]) -> tuple[int, object, dict[str, str]]:
    from tenant_agent.memory import owner

    method, path, query = request["method"], str(request["path"]), str(request["query"])
    item = path[len("/memories"):].strip("/")
    try:
        if method == "GET" and item == "export":
            return 200, owner.export(memory()), {}
        if method == "GET" and item:
            return 200, owner.get_item(memory(), item), {}
        if method == "GET":
            limit = _param(query, "limit")
            return 200, owner.list_items(
                memory(), _param(query, "kind"), _param(query, "status") or "current",
                int(limit) if limit.isdigit() else 50, _param(query, "cursor")), {}
        if method == "POST" and not item:
            return 200, owner.add_item(memory(), _json_body(request), _request_id(request)), {}
        if method in ("PATCH", "PUT") and item:
            return 200, owner.correct_item(memory(), item, _json_body(request),
                                           _request_id(request)), {}
        if method == "DELETE" and item:
            return 200, owner.delete_item(memory(), item), {}
        if method == "DELETE":
            return 200, owner.delete_all(memory()), {"X-Burrow-Replace-Snapshot": "1"}
    except owner.NotFound as exc:
        raise HttpError(404, str(exc)) from None
    except owner.BadRequest as exc:
        raise HttpError(400, str(exc)) from None
    raise HttpError(405, "GET, POST or DELETE /memories; GET, PATCH or DELETE /memories/{id}; "
                         "GET /memories/export")


def observe(request: dict[str, object]) -> dict[str, object]:
    pairs = _json_body(request).get("pairs")
    if not isinstance(pairs, list) or not all(
            isinstance(p, dict) and "id" in p and "seq" in p for p in pairs):
        raise HttpError(400, "pairs must be a list of objects with id and seq")
    mem = memory()
    mem.use_model(_model(request))
    result = mem.observe(pairs)
    result["insights"] = proposable(result["insights"], pairs)  # the host's judgement
    memory()  # a model named just now starts the extraction thread
    return result


def extract(request: dict[str, object]) -> dict[str, object]:
    from tenant_agent.memory import extract as extracting

    data = _json_body(request)
    mem = memory()
    mem.use_model(_model(request))
    limit = data.get("max_batches", 1000)
    if not isinstance(limit, int) or limit < 1:
        raise HttpError(400, "max_batches must be a positive integer")
    report = extracting.drain(mem, mem.model, limit)
    report["model_calls"] = extracting.stats(mem)["model_calls"]
    return report


def handle(request: dict[str, object]) -> tuple[int, object, dict[str, str]]:
    method, path = request["method"], str(request["path"])
    if path == "/health":
        return 200, {"ok": True}, {}
    if path == "/ask":
        return 200, ask(request), {}
    if path == "/recall":
        return 200, recall(request), {}
    if path == "/profile":
        return 200, memory().profile(), {}
    if path == "/memories" or path.startswith("/memories/"):
        return memories(request)
    if path == "/_burrow/observe" and method == "POST":
        return 200, observe(request), {}
    if path == "/_burrow/extract" and method == "POST":
        return 200, extract(request), {}
    if path == "/_burrow/log":
        query = str(request["query"])
        after = int(query.partition("after=")[2].split("&")[0] or 0) if "after=" in query else 0
        return 200, {"applied": memory().log(after)}, {}
    raise HttpError(404, f"the agent has no {path}; it answers /health, /ask, /recall, "
                         "/profile and /memories")


def serve_connection(conn: _socket.socket) -> None:
    buf = b""
    try:
        while True:
            try:
                parsed = read_request(conn, buf)
                if parsed is None:
                    return
                request, buf = parsed
                status, payload, headers = handle(request)
            except HttpError as exc:
                respond(conn, exc.status, exc.payload())
                return
            except Exception as exc:  # a bug of ours: answer, and keep serving
                respond(conn, 500, {"error": {"code": "internal",
                                              "message": f"{type(exc).__name__}: {exc}"}})
                return
            respond(conn, status, payload, head_only=request["method"] == "HEAD",
                    headers=headers)
            request_headers = request["headers"]
            assert isinstance(request_headers, dict)
            if request_headers.get("connection", "").lower() == "close":
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


def _warm() -> None:
    """Open the memory and ready the rules and recall (imports, SQLite, the rules' patterns:
    ~30 ms) while the box's daemon still starts, so that the first request after a wake, the
    catch-up delivery, finds them ready. A failure here is the first request's to report."""
    try:
        memory()
        import tenant_agent.memory.answer  # noqa: F401 (recall's imports, now)
        from tenant_agent.memory import learn

        learn.warm()
        # The refusals only spare sending what the host refuses anyway: compiled once the
        # wake's first requests are served, not beside them (a first answer took ~8 ms more).
        time.sleep(REFUSALS_AFTER_S)
        learn.warm_refusals()
    except Exception:  # memory() raises it again where it can be answered
        pass


def main() -> None:
    _signal.signal(_signal.SIGTERM, _stop)
    # A request must not wait behind _warm's CPU-bound start (SQLite, imports, patterns) for
    # the interpreter's default 5 ms switch interval: hand the GIL over every 0.2 ms.
    sys.setswitchinterval(0.0002)
    listener = _socket.socket(fileno=int(os.environ.get("BURROW_SERVICE_FD", "3")))
    _thread.start_new_thread(_warm, ())
    while True:
        fd, _ = listener._accept()  # type: ignore[attr-defined]
        _thread.start_new_thread(serve_connection, (_socket.socket(fileno=fd),))
