"""Honest stand-ins for parts outside Burrow, for protocol tests: `FakeOpenAI` is a scripted
model server (the model behind agent runs, when a test needs each step exact; the harness in
the box and the server around it stay real); `FakeHost` is the host services socket a box
calls, with a scripted model behind it (the tenant agent's memory extraction, when a test needs
each answer exact; the agent stays real).

`FakeOpenAI` speaks three wire APIs, chosen by the request's path, each as its provider
documents it and written here independently of Burrow's own translation (models/relay), so
that a test of the relay checks it against the format rather than against itself:
- OpenAI chat completions (any path but the two below), JSON or, with `stream: true`,
  `chat.completion.chunk` events ending in `[DONE]`;
- Anthropic's Messages API (`…/messages`), a `message` or its event stream;
- OpenAI's Responses API (`…/responses`), a `response` or its event stream.
Streams cut text and tool arguments into two deltas each, as real providers split them.
A script entry is a chat-completions choice (`text_reply`, `tool_reply`) whatever the API.

Usage is reported as each API does: always in a JSON answer and in Anthropic's and the
Responses API's streams, in a chat-completions stream only when the request asks for it
(`stream_options.include_usage`). `metered = True` makes the fake bill as a provider would
bill the worst case: every choice (`n`) runs to the request's output bound (the model's own
maximum when it names none), and the prompt is counted from every field the model reads
(`prompt_tokens`); `billed` keeps what each call cost, whether the answer reported it or not.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = {"input": 11, "output": 7}
MODEL_MAX_OUTPUT = 16384  # what a model writes at most when the request names no bound
IMAGE_TOKENS = 1600  # a full-size image, as Anthropic counts one (width * height / 750)
TOOLS_PROMPT_TOKENS = 346  # the system prompt Anthropic adds when a request has tools
# The prompt fields each API's model reads (the rest are settings).
PROMPT_FIELDS = {"chat": ("messages", "tools", "response_format"),
                 "messages": ("system", "messages", "tools", "tool_choice", "output_config"),
                 "responses": ("instructions", "input", "tools", "text")}
OUTPUT_FIELDS = {"chat": ("max_completion_tokens", "max_tokens"), "messages": ("max_tokens",),
                 "responses": ("max_output_tokens",)}
_PIECES = re.compile(r"[A-Za-z]{1,4}|[0-9]{1,3}|\s+|[\x00-\x7f]|[^\x00-\x7f]")
_IMAGE_PARTS = frozenset({"image", "image_url", "input_image"})


class FakeOpenAI:
    """A scripted model endpoint: answers from a script, one reply per call, and keeps what
    it was sent (`requests`, `headers`, `paths`). `metered`: bill as a provider would (see
    the module's docstring), `billed` keeping each call's cost; `held`: that many next calls
    wait until `let_go()` (a call in flight for as long as a test needs)."""

    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.delay_s = 0.0
        # (status, JSON body) answers to give before the script, as a failing provider would
        self.errors: list[tuple[int, dict[str, Any]]] = []
        self.metered = False
        self.billed: list[int] = []  # tokens each answered call cost (input + output)
        self.held = 0  # the next `held` calls wait for let_go() before they are answered
        self._release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                fake.paths.append(self.path)
                with fake._lock:
                    hold, fake.held = fake.held > 0, max(0, fake.held - 1)
                if hold:
                    fake._release.wait(60)
                time.sleep(fake.delay_s)
                if fake.errors:
                    status, error = fake.errors.pop(0)
                    self._send(json.dumps(error).encode(), "application/json", status)
                    return
                reply = fake.script.pop(0) if fake.script else text_reply("(script ended)")
                path = self.path.split("?", 1)[0]
                api = ("messages" if path.endswith("/messages") else
                       "responses" if path.endswith("/responses") else "chat")
                model = str(body.get("model"))
                choices = _choices(body) if api == "chat" else 1
                bill = {"input": USAGE["input"], "output": USAGE["output"]}
                if fake.metered:
                    bound = output_bound(api, body)
                    if not _calls(reply):  # the model runs on to its bound
                        reply = text_reply("word" * bound)
                    bill = {"input": prompt_tokens(api, body), "output": bound * choices}
                fake.billed.append(bill["input"] + bill["output"])
                if body.get("stream") is True:
                    if api == "chat":
                        options = body.get("stream_options") or {}
                        events = chat_events(reply, model, bill, choices,
                                             usage=options.get("include_usage") is True)
                    else:
                        events = {"messages": anthropic_events,
                                  "responses": responses_events}[api](reply, model, bill)
                    self._send(b"".join(events), "text/event-stream")
                else:
                    answer = (chat_completion(reply, model, bill, choices) if api == "chat" else
                              {"messages": anthropic_message, "responses": responses_object
                               }[api](reply, model, bill))
                    self._send(json.dumps(answer).encode(), "application/json")

            def _send(self, data: bytes, content_type: str, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.root_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def let_go(self) -> None:
        """Answer the held calls (and every later one at once)."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def count_tokens(text: str) -> int:
    """Tokens of `text` as a byte-level tokenizer makes them: a run of up to four letters or
    three digits, or a run of spaces, is one; any other character one per UTF-8 byte."""
    return sum(len(p.encode()) if not p.isascii() else 1 for p in _PIECES.findall(text))


def prompt_tokens(api: str, body: dict[str, Any]) -> int:
    """What a provider bills for the prompt of `body`: every field its model reads, an image
    at its size in tokens, and the tool-use system prompt Anthropic adds."""
    images = 0

    def strip(value: Any) -> Any:
        nonlocal images
        if isinstance(value, dict):
            if value.get("type") in _IMAGE_PARTS:
                images += 1
                return ""
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    prompt = strip({k: body[k] for k in PROMPT_FIELDS[api] if k in body})
    tools = TOOLS_PROMPT_TOKENS if api == "messages" and body.get("tools") else 0
    text = json.dumps(prompt, ensure_ascii=False, separators=(",", ":"))
    return count_tokens(text) + images * IMAGE_TOKENS + tools


def output_bound(api: str, body: dict[str, Any]) -> int:
    """The most tokens one choice may write: the request's bound, else the model's."""
    for field in OUTPUT_FIELDS[api]:
        value = body.get(field)
        if isinstance(value, int) and value > 0:
            return value
    return MODEL_MAX_OUTPUT


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def text_reply(content: str) -> dict[str, Any]:
    return {"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}


def tool_reply(name: str, **arguments: Any) -> dict[str, Any]:
    return {"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{name}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(arguments)}}]}}


def _calls(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return list(reply["message"].get("tool_calls") or [])


def _halves(text: str) -> list[str]:
    cut = len(text) // 2
    return [text[:cut], text[cut:]] if cut else [text]


def _sse(data: Any, name: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {name}\n" if name else "").encode() + f"data: {text}\n\n".encode()


# -- OpenAI chat completions ---------------------------------------------------------------------

def chat_completion(reply: dict[str, Any], model: str, bill: dict[str, int] | None = None,
                    choices: int = 1) -> dict[str, Any]:
    bill = bill or USAGE
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{**reply, "index": i} for i in range(choices)],
            "usage": {"prompt_tokens": bill["input"], "completion_tokens": bill["output"]}}


def chat_events(reply: dict[str, Any], model: str, bill: dict[str, int] | None = None,
                choices: int = 1, usage: bool = True) -> Iterator[bytes]:
    """The stream of `choices` choices alike; the usage chunk last when `usage` (the request
    asked for it with stream_options.include_usage)."""
    bill = bill or USAGE
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**head, "choices": [{"index": index, "delta": delta,
                                          "finish_reason": finish}]})

    for n in range(choices):
        yield chunk(n, {"role": "assistant", "content": ""})
        for piece in _halves(reply["message"].get("content") or ""):
            if piece:
                yield chunk(n, {"content": piece})
        for i, call in enumerate(_calls(reply)):
            yield chunk(n, {"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                            "function": {"name": call["function"]["name"],
                                                         "arguments": ""}}]})
            for piece in _halves(call["function"]["arguments"]):
                yield chunk(n, {"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield chunk(n, {}, reply["finish_reason"])
    if usage:
        yield _sse({**head, "choices": [], "usage": {"prompt_tokens": bill["input"],
                                                     "completion_tokens": bill["output"]}})
    yield _sse("[DONE]")


# -- Anthropic Messages --------------------------------------------------------------------------

_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def anthropic_message(reply: dict[str, Any], model: str,
                      bill: dict[str, int] | None = None) -> dict[str, Any]:
    bill = bill or USAGE
    content: list[dict[str, Any]] = []
    if reply["message"].get("content"):
        content.append({"type": "text", "text": reply["message"]["content"]})
    for call in _calls(reply):
        content.append({"type": "tool_use", "id": "toolu_" + call["id"],
                        "name": call["function"]["name"],
                        "input": json.loads(call["function"]["arguments"])})
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": _ANTHROPIC_STOP[reply["finish_reason"]],
            "stop_sequence": None,
            "usage": {"input_tokens": bill["input"], "output_tokens": bill["output"]}}


def anthropic_events(reply: dict[str, Any], model: str,
                     bill: dict[str, int] | None = None) -> Iterator[bytes]:
    bill = bill or USAGE
    message = anthropic_message(reply, model, bill)
    blocks = message["content"]
    yield _sse({"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None,
        "usage": {"input_tokens": bill["input"], "output_tokens": 1}}}, "message_start")
    yield _sse({"type": "ping"}, "ping")
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            opened: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _halves(block["text"])]
        else:
            opened = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _halves(json.dumps(block["input"]))]
        yield _sse({"type": "content_block_start", "index": i, "content_block": opened},
                   "content_block_start")
        for delta in deltas:
            yield _sse({"type": "content_block_delta", "index": i, "delta": delta},
                       "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": i}, "content_block_stop")
    yield _sse({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                   "stop_sequence": None},
                "usage": {"output_tokens": bill["output"]}}, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


# -- OpenAI Responses ----------------------------------------------------------------------------

def _response_items(reply: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply["message"].get("content"):
        items.append({"type": "message", "id": "msg_fake", "status": "completed",
                      "role": "assistant", "content": [
                          {"type": "output_text", "text": reply["message"]["content"],
                           "annotations": []}]})
    for call in _calls(reply):
        items.append({"type": "function_call", "id": "fc_" + call["id"], "status": "completed",
                      "call_id": call["id"], "name": call["function"]["name"],
                      "arguments": call["function"]["arguments"]})
    return items


def responses_object(reply: dict[str, Any], model: str,
                     bill: dict[str, int] | None = None) -> dict[str, Any]:
    bill = bill or USAGE
    return {"id": "resp_fake", "object": "response", "created_at": 1, "status": "completed",
            "model": model, "output": _response_items(reply),
            "usage": {"input_tokens": bill["input"], "output_tokens": bill["output"],
                      "total_tokens": bill["input"] + bill["output"]}}


def responses_events(reply: dict[str, Any], model: str,
                     bill: dict[str, int] | None = None) -> Iterator[bytes]:
    done = responses_object(reply, model, bill)
    numbers = iter(range(1000))

    def emit(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(numbers), **fields}, kind)

    yield emit("response.created", response={**done, "status": "in_progress", "output": [],
                                             "usage": None})
    for i, item in enumerate(done["output"]):
        where = {"item_id": item["id"], "output_index": i}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield emit("response.output_item.added", output_index=i,
                       item={**item, "status": "in_progress", "content": []})
            yield emit("response.content_part.added", **where, content_index=0,
                       part={"type": "output_text", "text": "", "annotations": []})
            for piece in _halves(text):
                yield emit("response.output_text.delta", **where, content_index=0, delta=piece)
            yield emit("response.output_text.done", **where, content_index=0, text=text)
            yield emit("response.content_part.done", **where, content_index=0,
                       part=item["content"][0])
        else:
            yield emit("response.output_item.added", output_index=i,
                       item={**item, "status": "in_progress", "arguments": ""})
            for piece in _halves(item["arguments"]):
                yield emit("response.function_call_arguments.delta", **where, delta=piece)
            yield emit("response.function_call_arguments.done", **where,
                       arguments=item["arguments"])
        yield emit("response.output_item.done", output_index=i, item=item)
    yield emit("response.completed", response=done)


class FakeHost:
    """The host services socket as a box sees it (POST /v1/model/chat in Burrow's chat API,
    POST /v1/knowledge/search, and POST /v1/embed once `embeddings` holds any), on a unix
    socket, answering model calls from a script and
    keeping what it was sent. A script entry is the model's text, an HTTP status to refuse
    with (429: the tenant's model budget is spent; 503: no model server), or a function of
    the request that returns either."""

    TOKEN = "fake-box-token"

    def __init__(self, path: str) -> None:
        import socketserver

        self.path = path
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.insights: list[dict[str, Any]] = []
        self.embeddings: dict[str, list[float]] = {}  # text -> vector, for POST /v1/embed
        self.embed_model = "fake-embedder"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.headers.get("Authorization") != f"Bearer {FakeHost.TOKEN}":
                    return self._send(401, {"error": {"code": "unauthorized",
                                                      "message": "bad box token"}})
                if self.path == "/v1/knowledge/search":
                    return self._send(200, fake.insights[:int(body.get("limit", 5))])
                if self.path == "/v1/embed" and fake.embeddings:
                    return self._send(200, {"model": fake.embed_model, "vectors": [
                        fake.embeddings.get(t, []) for t in body["texts"]]})
                if self.path != "/v1/model/chat":
                    return self._send(404, {"error": {"code": "not_found", "message": "no"}})
                fake.requests.append(body)
                step = fake.script.pop(0) if fake.script else "(script ended)"
                if callable(step):
                    step = step(body)
                if isinstance(step, int):
                    return self._send(step, {"error": {"code": "refused",
                                                       "message": f"refused with {step}"}})
                self._send(200, {"model": body.get("model"), "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": step,
                                             "tool_calls": []},
                                 "usage": {"input_tokens": 10, "output_tokens": 5}})

            def _send(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def address_string(self) -> str:
                return "box"

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        """What a box's process has to reach this host."""
        return {"BURROW_HOST_SOCKET": self.path, "BURROW_BOX_TOKEN": self.TOKEN}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def memory_operations(*operations: dict[str, Any]) -> str:
    """A model's answer to the agent's extraction prompt (tenant_agent/memory/extract.py)."""
    return json.dumps({"operations": [{"id": "", "kind": "fact", "text": "", "turns": [], **op}
                                      for op in operations]})
