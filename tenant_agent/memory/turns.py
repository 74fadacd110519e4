"""One delivered pair, read: the tenant's own newest words, the reply, when the words were said,
which request they came in, and whether the agent should learn from the pair at all.

What a pair may carry (the gateway records it, the worker delivers it; only `id` and `seq` are
required, everything else is optional and read leniently):

    {"id", "seq", "at": unix seconds the gateway saw the request,
     "request_id": its X-Request-Id (the client's own, when it sent one),
     "request": {"method", "path", "query", "body": excerpt, "body_tail": the body's last bytes
                 when the excerpt cut it, "headers": {lower-case name: value} (at least
                 x-burrow-user-text and x-burrow-said-at when the client sent them)},
     "response": {"status", "body": excerpt, "body_tail"},
     "turn": summary(pair with the whole bodies), when the host computed it,
     "embedding": {"model": name, "user": vector of turn["user"]},
     "parse": the host's parse of turn["user"] (core/parsing.py; read by structure.py),
     "memory_vectors": {"model": name, "texts": {memory text: vector}}}

The most robust is `turn`: the host calls `summary()` on the pair with its whole bodies before
cutting them (the resent-history fingerprint and the reply before need the whole chat), and
embeds `turn["user"]` (nothing when `learn` is false or the words are empty). Without it the
agent reads the same from the excerpts, as below.

The tenant's words are, in order of precedence:
1. the JSON field the request names in `X-Burrow-User-Text` (a path such as `input.text` or
   `messages[-1].content`);
2. in a chat body (`messages` of OpenAI or Anthropic, `input` of OpenAI Responses, `contents`
   of Gemini), the last entry whose role is `user`, and only it: a conversation resent with
   its history teaches each turn once;
3. one of the usual single fields (`question`, `prompt`, `query`, `input`, `message`, `text`,
   `content`);
4. every string in the JSON body, or the body itself when it is not JSON.
A body cut short by the gateway's excerpt is searched from its tail (`body_tail`) for the last
user message, so the newest turn is the one kept.

When they were said: `X-Burrow-Said-At` (ISO 8601 or unix seconds, for imported history), else
a timestamp on the chat message itself (`at`, `timestamp`, `created_at`), else the pair's `at`
(the time the gateway saw it: a backlog delivered after a freeze keeps its own time).

Not learned from: the agent's own protocol (`/recall`, `/profile`, `/health`, `/memories…`,
`/_burrow/…`), and requests without a body.
"""

from __future__ import annotations

import _json
import time
from _blake2 import blake2b  # not hashlib: it costs 10 ms of a wake

from tenant_agent.common.wire import loads

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

MAX_USER = 8000
MAX_REPLY = 4000
PROTOCOL = ("/recall", "/profile", "/health", "/memories", "/_burrow", "/ask/context")
_SINGLE = ("question", "prompt", "query", "input", "message", "text", "content", "q")
_REPLY = ("answer", "reply", "response", "output_text", "output", "text", "content", "message",
          "result")
_STAMP = ("at", "timestamp", "created_at", "time", "date")
_USER_ROLES = ("user", "human")


class Turn:
    """One pair as the agent reads it (a plain class: see learn.Statement)."""

    __slots__ = (
        "asked",
        "at",
        "fingerprint",
        "learn",
        "memory_vectors",
        "pair_id",
        "parse",
        "reply",
        "reply_before",
        "request_id",
        "user",
        "vector_model",
        "vectors",
    )

    def __init__(self, pair_id: str, request_id: str, at: float, user: str,
                 reply: str = "") -> None:
        self.pair_id = pair_id
        self.request_id = request_id
        self.at = at
        self.user = user                # the tenant's newest words ("" when there are none)
        self.reply = reply              # what was answered
        self.reply_before = ""          # what the assistant said just before (for a "yes")
        self.fingerprint = ""           # a resent chat turn has the same one ("": a lone one)
        self.learn = True               # False: a call to the agent's own protocol
        self.asked = False              # said to the agent's /ask (a question is no episode)
        self.vectors: dict[str, list[float]] = {}  # "user": the host's embedding
        self.vector_model = ""
        self.parse: object = None       # the host's parse of `user`, when it sent one
        self.memory_vectors: dict[str, list[float]] = {}  # memory text -> the host's vector


def agent_path(path: str) -> str:
    """The path on the agent: '/v1/tenants/t/agent/recall' -> '/recall'."""
    if path.startswith("/v1/tenants/"):
        _, _, rest = path.partition("/agent")
        return rest or "/"
    return path or "/"


def read(pair: dict[str, Any]) -> Turn:
    request = pair.get("request") if isinstance(pair.get("request"), dict) else {}
    response = pair.get("response") if isinstance(pair.get("response"), dict) else {}
    assert isinstance(request, dict) and isinstance(response, dict)
    headers = request.get("headers") if isinstance(request.get("headers"), dict) else {}
    assert isinstance(headers, dict)
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    at = _number(pair.get("at")) or time.time()
    turn = Turn(str(pair.get("id")), str(pair.get("request_id") or pair.get("id")), at, "")
    path = agent_path(str(request.get("path") or "/"))
    if path.startswith(PROTOCOL) or str(request.get("method", "POST")).upper() in (
            "GET", "HEAD", "OPTIONS", "DELETE"):
        turn.learn = False
        return turn
    turn.asked = path == "/ask" or path.startswith("/ask?")
    body = str(request.get("body") or "")
    tail = str(request.get("body_tail") or "")
    user, stamp = _user_words(body, tail, headers.get("x-burrow-user-text", ""), turn)
    turn.user = user[:MAX_USER]
    said = parse_time(headers.get("x-burrow-said-at", "")) or stamp
    turn.at = said or at
    turn.reply = reply_text(str(response.get("body") or ""),
                            str(response.get("body_tail") or ""))[:MAX_REPLY]
    _vectors(pair.get("embedding"), turn)
    if isinstance(pair.get("turn"), dict):
        _read_already(pair["turn"], turn)
    turn.parse = pair.get("parse")
    _memory_vectors(pair.get("memory_vectors"), turn)
    return turn


def summary(pair: dict[str, Any]) -> dict[str, Any]:
    """What the agent reads in a pair, for the host to compute from the whole bodies before
    it cuts them to excerpts, and to send as the pair's `turn` (and to know which words to
    embed): {"learn", "user", "at", "reply", "reply_before", "fingerprint"}."""
    turn = read(pair)
    return {"learn": turn.learn, "user": turn.user, "at": turn.at, "reply": turn.reply,
            "reply_before": turn.reply_before, "fingerprint": turn.fingerprint}


def _read_already(given: dict[str, Any], turn: Turn) -> None:
    """A pair's `turn`, read by the host from the whole bodies, wins over the excerpts."""
    if given.get("learn") is False:
        turn.learn = False
    for key in ("user", "reply", "reply_before", "fingerprint"):
        if isinstance(given.get(key), str):
            setattr(turn, key, given[key][:MAX_USER if key == "user" else MAX_REPLY])
    at = parse_time(given.get("at"))
    if at is not None:
        turn.at = at


def _user_words(body: str, tail: str, named: str, turn: Turn) -> tuple[str, float | None]:
    try:
        data = loads(body) if body.strip()[:1] in ("{", "[") else None
    except (ValueError, UnicodeDecodeError):
        # Cut by the excerpt: the newest user message is at the end of the body.
        return _from_tail(tail or body), None
    if data is None:
        return body.strip(), None
    if named:
        found = _at_path(data, named)
        if isinstance(found, str):
            return found, None
    if isinstance(data, dict):
        chat = _chat(data, turn)
        if chat is not None:
            return chat
        for key in _SINGLE:
            if isinstance(data.get(key), str):
                return str(data[key]), None
    return "\n".join(_strings(data)), None


def _chat(data: dict[str, Any], turn: Turn) -> tuple[str, float | None] | None:
    messages = next((data[k] for k in ("messages", "input", "contents")
                     if isinstance(data.get(k), list)), None)
    if not messages:
        return None
    last = None
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") in _USER_ROLES:
            last = i
            break
    if last is None:
        return None
    message = messages[last]
    earlier = [m for m in messages[:last] if isinstance(m, dict)
               and m.get("role") not in ("system", "developer")]
    if earlier:  # a conversation with history: the same history and words are one turn
        digest = blake2b(digest_size=12)
        for m in messages[:last + 1]:
            if isinstance(m, dict):
                digest.update(str(m.get("role")).encode() + b"\0" +
                              message_text(m).encode() + b"\0")
        turn.fingerprint = digest.hexdigest()
        before = [m for m in earlier if m.get("role") in ("assistant", "model")]
        turn.reply_before = message_text(before[-1]) if before else ""
    stamp = next((parse_time(message[k]) for k in _STAMP if k in message), None)
    return message_text(message), stamp


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message: a string, or its text parts."""
    content = message.get("content", message.get("parts"))
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text")) for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _from_tail(text: str) -> str:
    """The last user message's content in a JSON text cut at its start."""
    for marker in ('"role":"user"', '"role": "user"'):
        at = text.rfind(marker)
        if at < 0:
            continue
        for key in ('"content":', '"content": '):
            start = text.find(key, at)
            if 0 <= start < at + 4000:
                value = _string_at(text, start + len(key))
                if value is not None:
                    return value
        back = text.rfind('"content":', 0, at)  # content written before the role
        if back >= 0:
            value = _string_at(text, back + len('"content":'))
            if value is not None:
                return value
    return ""


def _string_at(text: str, i: int) -> str | None:
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != '"':
        return None
    try:
        value, _ = _json.scanstring(text, i + 1, True)
    except (ValueError, SystemError):  # cut short (SystemError: see wire.loads)
        return None
    return str(value)


def _at_path(data: Any, path: str) -> Any:
    """`messages[-1].content` in `data`, or None."""
    for part in path.replace("]", "").replace("[", ".").split("."):
        if not part:
            continue
        if isinstance(data, list):
            try:
                data = data[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def text_of(body: str) -> str:
    """The human text in a request body: its JSON strings if it is JSON, else the body."""
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    return "\n".join(_strings(data))


def reply_text(body: str, tail: str = "") -> str:
    """The words of a reply: Burrow's /ask `answer`, an OpenAI, Anthropic or Responses
    completion, a server-sent event stream of one, or the body itself."""
    text = body.strip()
    if text.startswith(("data:", "event:")):
        return _stream_text(text)
    try:
        data = loads(text) if text[:1] in ("{", "[") else None
    except (ValueError, UnicodeDecodeError):
        return ""
    if data is None:
        return text
    if isinstance(data, dict):
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict):
                return message_text(message)
        if data.get("type") == "message" and isinstance(data.get("content"), list):
            return message_text(data)
        for key in _REPLY:
            if isinstance(data.get(key), str):
                return str(data[key])
    return "\n".join(_strings(data))[:MAX_REPLY]


def _stream_text(text: str) -> str:
    parts = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = loads(line[5:].strip())
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(event, dict):
            continue
        choices = event.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
        delta = event.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("text"), str):
            parts.append(delta["text"])
    return "".join(parts)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def parse_time(value: Any) -> float | None:
    """Unix seconds from a number, a numeric string or an ISO 8601 date-time (UTC unless it
    says otherwise); None if it is none of these."""
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
        return number if number > 0 else None
    except ValueError:
        pass
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(at: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC: '2023-05-08T13:56:00Z'."""
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _vectors(embedding: Any, turn: Turn) -> None:
    if not isinstance(embedding, dict):
        return
    turn.vector_model = str(embedding.get("model") or "")
    for key in ("user",):
        vector = vector_of(embedding.get(key))
        if vector:
            turn.vectors[key] = vector


def _memory_vectors(given: Any, turn: Turn) -> None:
    """The host's vectors of the memories this turn yields, of the turn's vector model."""
    if not isinstance(given, dict) or not isinstance(given.get("texts"), dict):
        return
    model = str(given.get("model") or "")
    if turn.vector_model and model != turn.vector_model:
        return
    turn.vector_model = turn.vector_model or model
    for text, value in list(given["texts"].items())[:64]:
        vector = vector_of(value)
        if isinstance(text, str) and vector:
            turn.memory_vectors[text] = vector


def vector_of(value: Any) -> list[float] | None:
    """A vector from a JSON list of numbers or base64 of little-endian float32."""
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) for x in value):
        return [float(x) for x in value]
    if isinstance(value, str) and value:
        import binascii
        import struct

        try:
            raw = binascii.a2b_base64(value)
        except (binascii.Error, ValueError):
            return None
        if len(raw) % 4 or not raw:
            return None
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return None
