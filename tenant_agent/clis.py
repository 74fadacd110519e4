"""The third-party agent CLIs a run can use (Claude Code, Codex, OpenCode): how each is started
non-interactively against the in-box relay, and how its JSON output stream reads as Burrow's
run chunks.

Each `Cli` gives an `Invocation` — argv, environment, files to write first — for a prompt, a
model, the relay's base URL and the run's private home; and a `StreamParser` that turns the
lines the CLI prints into chunks of the shapes the built-in harness emits (`text`,
`tool_call`, `tool_result`; the run adds `result`), keeping the final answer, the error, the
usage and the session id (to continue the session, e.g. to ask again for a structured result).

The CLIs are installed on the host (gateway/relay/harnesses.py) and mounted read-only at
`$BURROW_HARNESS_DIR/<harness>` (default /opt/burrow/harnesses), each with a
`burrow-harness.json` that names its executable. Everything they write goes to the run's home
(HOME, TMPDIR, XDG dirs, CODEX_HOME), which the run deletes; the model key they see is a dummy.

`trim` asks for small-context settings (the default for `local/` models, which run in a 4k
context): Claude Code `--bare` (tools Bash, Edit, Read; a 350-character system prompt; ~4 KB a
request instead of ~90 KB), Codex with a short instructions file and its optional tools,
skills, apps and plugins off (~7 KB instead of ~40 KB), OpenCode with a short agent prompt,
bash/read/write/edit only and no title call (~8 KB instead of ~33 KB).

Stdlib only: runs inside boxes under `/usr/bin/python3 -I -S`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

HARNESS_DIR = "/opt/burrow/harnesses"
MANIFEST = "burrow-harness.json"
DUMMY_KEY = "sk-burrow-relay-dummy"  # what the CLI authenticates with; the host ignores it
TRIM_SYSTEM = ("You are a coding agent in a Linux computer; the working directory is "
               "/workspace. Use the tools to do the task, then answer in one or two sentences.")
LOCAL_CONTEXT = 4096
LOCAL_OUTPUT = 1024
MAX_OUTPUT_CHARS = 8000
# Variables of these families configure a CLI's provider; a tenant's own (STRIPE_API_KEY…) stay.
PROVIDER_ENV_PREFIXES = ("ANTHROPIC_", "OPENAI_", "OPENROUTER_", "CODEX_", "OPENCODE_",
                         "CLAUDE_", "AWS_BEARER_TOKEN_BEDROCK", "GOOGLE_APPLICATION_")


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # path in the run's home -> content

    @property
    def dirs(self) -> list[str]:
        """The directories its environment names inside the run's home: made before it starts
        (Codex refuses a CODEX_HOME that does not exist)."""
        home = self.env.get("HOME", "")
        names = ("TMPDIR", "CODEX_HOME", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
                 "XDG_CACHE_HOME", "XDG_STATE_HOME")
        return [self.env[n] for n in names if home and self.env.get(n, "").startswith(home)]


@dataclass
class RunSpec:
    prompt: str
    model: str  # provider/name
    base_url: str  # the relay's, without /v1
    home: str  # the run's private directory
    timeout_s: float
    trim: bool
    workdir: str = "/workspace"
    session: str | None = None  # continue this session instead of starting one

    @property
    def name(self) -> str:
        return self.model.partition("/")[2] or self.model


def entry(harness: str, root: str | None = None) -> str:
    """The installed executable of `harness`, from the manifest the installer wrote."""
    base = os.path.join(root or os.environ.get("BURROW_HARNESS_DIR") or HARNESS_DIR, harness)
    try:
        with open(os.path.join(base, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        raise FileNotFoundError(
            f"{harness} is not installed for this box ({base}/{MANIFEST} is missing): the "
            "server installs it with `burrow harness install` and mounts it into boxes that "
            "ask for it") from None
    return os.path.join(base, str(manifest["entry"]))


def _obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (events are read defensively)."""
    return value if isinstance(value, dict) else {}


def _clip(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[:MAX_OUTPUT_CHARS] + f"\n[... {len(text) - MAX_OUTPUT_CHARS} more characters]"


class StreamParser:
    """Lines of a CLI's JSON output in, run chunks out; what the run needs to report kept."""

    def __init__(self) -> None:
        self.session: str | None = None
        self.final: str | None = None
        self.error: str | None = None
        self.texts: list[str] = []
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.tool_calls = 0

    def feed(self, line: str) -> list[dict[str, Any]]:
        try:
            event = json.loads(line)
        except ValueError:
            return []  # a CLI's log line on stdout: not an event
        return self.event(event) if isinstance(event, dict) else []

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def text(self, text: Any) -> list[dict[str, Any]]:
        if not isinstance(text, str) or not text.strip():
            return []
        self.texts.append(text)
        return [{"type": "text", "text": text}]

    def call(self, name: str, arguments: Any) -> dict[str, Any]:
        self.tool_calls += 1
        return {"type": "tool_call", "name": name,
                "input": arguments if isinstance(arguments, dict) else {"input": arguments}}

    @staticmethod
    def result(name: str, output: Any, is_error: bool) -> dict[str, Any]:
        text = output if isinstance(output, str) else json.dumps(output)
        return {"type": "tool_result", "name": name, "output": _clip(text),
                "is_error": bool(is_error)}


class Cli:
    name = ""
    family = ""  # the API family it speaks through the relay: anthropic | openai
    # With trim, the only tools the model is shown (the host drops the rest for local models):
    # enough to read, run and write, nothing a tiny model only misuses.
    small_tools: tuple[str, ...] = ()

    def invocation(self, spec: RunSpec, executable: str) -> Invocation:
        raise NotImplementedError

    def parser(self) -> StreamParser:
        raise NotImplementedError


def base_env(spec: RunSpec) -> dict[str, str]:
    """The environment every CLI runs in: the run's own (a tenant's box env included, as the
    built-in harness's tools see it) with its home and temp dirs moved into the run's private
    home, without the box token (the CLI has no use for it, and its model's commands could
    otherwise call the relay past max_turns) and without the provider settings a box env may
    carry (keys, base URLs, Bedrock/Vertex switches: the CLI's model is the relay's only)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("BURROW_BOX_TOKEN", "BURROW_HOST_SOCKET")
           and not k.startswith(PROVIDER_ENV_PREFIXES)}
    home = spec.home
    env.update(HOME=home, TMPDIR=os.path.join(home, "tmp"), TERM="dumb", NO_COLOR="1",
               XDG_CONFIG_HOME=os.path.join(home, ".config"),
               XDG_DATA_HOME=os.path.join(home, ".local", "share"),
               XDG_CACHE_HOME=os.path.join(home, ".cache"),
               XDG_STATE_HOME=os.path.join(home, ".local", "state"))
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


# -- Claude Code ---------------------------------------------------------------------------------

class ClaudeCode(Cli):
    name = "claude-code"
    family = "anthropic"
    small_tools = ("Bash", "Edit", "Read")  # what --bare offers

    def invocation(self, spec: RunSpec, executable: str) -> Invocation:
        argv = [executable, "-p", spec.prompt, "--output-format", "stream-json", "--verbose",
                "--model", spec.name, "--permission-mode", "acceptEdits",
                # the box is the sandbox: its commands run without asking
                "--allowedTools", "Bash,Edit,Write,Read,Glob,Grep,NotebookEdit"]
        if spec.trim:
            argv.append("--bare")
        if spec.session:
            argv += ["--resume", spec.session]
        env = base_env(spec)
        env.update(ANTHROPIC_BASE_URL=spec.base_url, ANTHROPIC_API_KEY=DUMMY_KEY,
                   CLAUDE_CONFIG_DIR=os.path.join(spec.home, ".claude"),
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", CLAUDE_CODE_MAX_RETRIES="1",
                   DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1", DISABLE_ERROR_REPORTING="1",
                   API_TIMEOUT_MS=str(int(spec.timeout_s * 1000)), IS_SANDBOX="1")
        if spec.trim:
            env.update(CLAUDE_CODE_DISABLE_THINKING="1",
                       CLAUDE_CODE_MAX_OUTPUT_TOKENS=str(LOCAL_OUTPUT))
        return Invocation(argv, env)

    def parser(self) -> StreamParser:
        return ClaudeStream()


class ClaudeStream(StreamParser):
    """`claude -p --output-format stream-json --verbose`: system init, assistant and user
    messages of content blocks, a result."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}  # tool_use id -> tool name

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        self.session = str(event.get("session_id") or self.session or "") or None
        message = _obj(event.get("message"))
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        chunks: list[dict[str, Any]] = []
        if kind == "assistant" and not event.get("is_api_error_message"):
            for block in blocks:
                if block.get("type") == "text":
                    chunks += self.text(block.get("text"))
                elif block.get("type") == "tool_use":
                    self.names[str(block.get("id"))] = str(block.get("name"))
                    chunks.append(self.call(str(block.get("name")), block.get("input")))
        elif kind == "user":
            for block in blocks:
                if block.get("type") == "tool_result":
                    name = self.names.get(str(block.get("tool_use_id")), "tool")
                    output = block.get("content")
                    if isinstance(output, list):
                        output = "\n".join(str(p.get("text") or "") for p in output
                                           if isinstance(p, dict))
                    chunks.append(self.result(name, output or "", bool(block.get("is_error"))))
        elif kind == "result":
            self._result(event)
        return chunks

    def _result(self, event: dict[str, Any]) -> None:
        usage = _obj(event.get("usage"))
        self.usage["input_tokens"] = sum(int(usage.get(k) or 0) for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        self.usage["output_tokens"] = int(usage.get("output_tokens") or 0)
        text = event.get("result")
        if event.get("is_error") or str(event.get("subtype", "")).startswith("error"):
            self.error = str(text or event.get("subtype") or "Claude Code reported an error")
        else:
            self.final = str(text or "")


# -- Codex ---------------------------------------------------------------------------------------

# Optional tools and prompt sections off (measured: 40 KB -> 7 KB per request; unknown keys
# are silently ignored by this version, so each was checked against the request it changes).
CODEX_TRIM = ("web_search=\"disabled\"", "features.apps=false", "features.plugins=false",
              "features.multi_agent=false", "features.goals=false",
              "features.image_generation=false", "features.shell_snapshot=false",
              "features.view_image=false",
              "skills.include_instructions=false", "skills.bundled.enabled=false")


class Codex(Cli):
    name = "codex"
    family = "openai"
    small_tools = ("exec_command",)  # not write_stdin, request_user_input

    def invocation(self, spec: RunSpec, executable: str) -> Invocation:
        provider = ('{name="Burrow",base_url="' + spec.base_url + '/v1",wire_api="responses",'
                    'env_key="BURROW_RELAY_KEY",request_max_retries=1,stream_max_retries=1,'
                    f'stream_idle_timeout_ms={int(spec.timeout_s * 1000)}}}')
        options = ["model_provider=burrow", f"model_providers.burrow={provider}",
                   "analytics.enabled=false", "check_for_update_on_startup=false"]
        files = {}
        if spec.trim:
            files["codex/instructions.md"] = TRIM_SYSTEM
            options += [*CODEX_TRIM, f"model_context_window={LOCAL_CONTEXT}",
                        f"model_max_output_tokens={LOCAL_OUTPUT}",
                        "model_instructions_file=\"" + os.path.join(
                            spec.home, "codex", "instructions.md") + "\""]
        argv = [executable, "exec"]
        if spec.session:
            argv += ["resume", spec.session]
        argv += ["--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                 "--ignore-user-config", "-m", spec.name]
        if not spec.session:
            argv += ["-C", spec.workdir]
        for option in options:
            argv += ["-c", option]
        argv.append(spec.prompt)
        env = base_env(spec)
        env.update(CODEX_HOME=os.path.join(spec.home, "codex"), BURROW_RELAY_KEY=DUMMY_KEY,
                   CODEX_MANAGED_BY_NPM="1")
        return Invocation(argv, env, files)

    def parser(self) -> StreamParser:
        return CodexStream()


class CodexStream(StreamParser):
    """`codex exec --json`: thread.started, turn.*, item.started / item.completed of
    agent_message, command_execution, file_change, mcp_tool_call, error…"""

    def __init__(self) -> None:
        super().__init__()
        self.started: set[str] = set()

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        item = _obj(event.get("item"))
        if kind == "thread.started":
            self.session = str(event.get("thread_id") or "") or None
        elif kind == "turn.completed":
            usage = _obj(event.get("usage"))
            self.usage["input_tokens"] += int(usage.get("input_tokens") or 0)
            self.usage["output_tokens"] += int(usage.get("output_tokens") or 0)
        elif kind in ("turn.failed", "error"):
            error = _obj(event.get("error")) or event
            self.error = str(error.get("message") or "Codex reported an error")
        elif kind == "item.started":
            return self._started(item)
        elif kind == "item.completed":
            return self._completed(item)
        return []

    def _call(self, item: dict[str, Any]) -> dict[str, Any] | None:
        kind = item.get("type")
        if kind == "command_execution":
            return self.call("shell", {"command": item.get("command")})
        if kind == "file_change":
            return self.call("apply_patch", {"changes": item.get("changes")})
        if kind == "mcp_tool_call":
            return self.call(f"{item.get('server')}.{item.get('tool')}", item.get("arguments"))
        if kind == "web_search":
            return self.call("web_search", {"query": item.get("query")})
        return None

    def _started(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        call = self._call(item)
        if call is None:
            return []
        self.started.add(str(item.get("id")))
        return [call]

    def _completed(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        kind = item.get("type")
        if kind == "agent_message":
            self.final = str(item.get("text") or "")
            return self.text(item.get("text"))
        chunks: list[dict[str, Any]] = []
        if str(item.get("id")) not in self.started:
            call = self._call(item)
            chunks += [call] if call is not None else []
        failed = item.get("status") == "failed"
        if kind == "command_execution":
            code = item.get("exit_code")
            output = f"exit code {code}\n{item.get('aggregated_output') or ''}"
            chunks.append(self.result("shell", output, failed or code not in (0, None)))
        elif kind == "file_change":
            changes = item.get("changes") or []
            output = "\n".join(f"{c.get('kind')} {c.get('path')}" for c in changes
                               if isinstance(c, dict))
            chunks.append(self.result("apply_patch", output, failed))
        elif kind == "mcp_tool_call":
            name = f"{item.get('server')}.{item.get('tool')}"
            chunks.append(self.result(name, item.get("result") or item.get("error") or "",
                                      failed))
        return chunks


# -- OpenCode ------------------------------------------------------------------------------------

class OpenCode(Cli):
    name = "opencode"
    family = "openai"
    small_tools = ("bash", "read", "write", "edit")

    def config(self, spec: RunSpec) -> dict[str, Any]:
        model: dict[str, Any] = {"name": spec.name}
        if spec.trim:
            model["limit"] = {"context": LOCAL_CONTEXT, "output": LOCAL_OUTPUT}
        config: dict[str, Any] = {
            "$schema": "https://opencode.ai/config.json",
            "provider": {"burrow": {
                "npm": "@ai-sdk/openai-compatible", "name": "Burrow",
                "options": {"baseURL": spec.base_url + "/v1", "apiKey": DUMMY_KEY,
                            "timeout": int(spec.timeout_s * 1000)},
                "models": {spec.name: model}}},
            "model": f"burrow/{spec.name}", "small_model": f"burrow/{spec.name}",
            "autoupdate": False, "share": "disabled", "snapshot": False, "lsp": False,
            "formatter": False, "plugin": [],
            "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
            # a run needs no session title: one model call less
            "agent": {"title": {"disable": True}}}
        if spec.trim:
            config["agent"]["build"] = {"prompt": TRIM_SYSTEM}
            config["tools"] = {t: False for t in ("task", "todowrite", "webfetch", "skill",
                                                  "glob", "grep")}
        return config

    def invocation(self, spec: RunSpec, executable: str) -> Invocation:
        argv = [executable, "run", "--format", "json", "--pure", "--dir", spec.workdir,
                "-m", f"burrow/{spec.name}"]
        if spec.session:
            argv += ["--session", spec.session]
        argv.append(spec.prompt)
        env = base_env(spec)
        env.update(OPENCODE_CONFIG_CONTENT=json.dumps(self.config(spec)),
                   OPENCODE_DISABLE_MODELS_FETCH="1", OPENCODE_DISABLE_FFF="1",
                   OPENCODE_DISABLE_AUTOUPDATE="1", OPENCODE_DISABLE_DEFAULT_PLUGINS="1",
                   OPENCODE_DISABLE_LSP_DOWNLOAD="1", OPENCODE_DISABLE_SHARE="1",
                   OPENCODE_DISABLE_CLAUDE_CODE="1", OPENCODE_DISABLE_EXTERNAL_SKILLS="1",
                   OPENCODE_DISABLE_PROJECT_CONFIG="1")
        return Invocation(argv, env)

    def parser(self) -> StreamParser:
        return OpenCodeStream()


class OpenCodeStream(StreamParser):
    """`opencode run --format json`: step_start, text, tool_use (a finished tool call with its
    state), step_finish (tokens, reason), error."""

    def __init__(self) -> None:
        super().__init__()
        self.step_texts: list[str] = []

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        part = _obj(event.get("part"))
        self.session = str(event.get("sessionID") or self.session or "") or None
        if kind == "step_start":
            self.step_texts = []
        elif kind == "text":
            self.step_texts.append(str(part.get("text") or ""))
            return self.text(part.get("text"))
        elif kind == "tool_use":
            state = _obj(part.get("state"))
            name = str(part.get("tool") or "tool")
            failed = state.get("status") == "error"
            output = state.get("error") if failed else state.get("output")
            return [self.call(name, state.get("input")),
                    self.result(name, output or "", failed)]
        elif kind == "step_finish":
            tokens = _obj(part.get("tokens"))
            self.usage["input_tokens"] += int(tokens.get("input") or 0)
            self.usage["output_tokens"] += int(tokens.get("output") or 0)
            if part.get("reason") not in ("tool-calls", "tool_calls"):
                self.final = "".join(self.step_texts)
        elif kind == "error":
            error = _obj(event.get("error"))
            data = _obj(error.get("data"))
            self.error = str(data.get("message") or error.get("name") or "OpenCode reported "
                                                                         "an error")
        return []


CLIS: dict[str, Cli] = {cli.name: cli for cli in (ClaudeCode(), Codex(), OpenCode())}
