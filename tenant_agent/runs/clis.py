"""The third-party agent CLIs a run can use (Claude Code, Codex, OpenCode): how each is started
non-interactively, offline, against the in-box relay.

Each `Cli` gives an `Invocation` — argv, environment, files to write first — for a prompt, a
model, the relay's base URL and the run's private home; and the `StreamParser` of its output
(tenant_agent/runs/clistreams.py).

The CLIs are installed on the host (models/relay/harnesses.py) and mounted read-only at
`$BURROW_HARNESS_DIR/<harness>` (default /opt/burrow/harnesses), each with a
`burrow-harness.json` that names its executable. Everything they write goes to the run's home
(HOME, TMPDIR, XDG dirs, CODEX_HOME), which the run deletes; the model key they see is a dummy.

A run's MCP servers (`mcp_servers`, as the API takes them) reach each CLI in its own format:
Claude Code a `--mcp-config` file with `--strict-mcp-config` (nothing else it might find is
loaded) and each server's tools allowed as `mcp__<server>`; Codex `-c mcp_servers.<name>=…`
(the keys of its config.toml, which the run tells it to ignore); OpenCode the `mcp` section of
its config. The CLI starts the commands itself, in this box, and reaches the URLs from it.

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
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from tenant_agent.runs.clistreams import ClaudeStream, CodexStream, OpenCodeStream, StreamParser

HARNESS_DIR = "/opt/burrow/harnesses"
MANIFEST = "burrow-harness.json"
DUMMY_KEY = "sk-burrow-relay-dummy"  # what the CLI authenticates with; the host ignores it
TRIM_SYSTEM = ("You are a coding agent in a Linux computer; the working directory is "
               "/workspace. Use the tools to do the task, then answer in one or two sentences.")
LOCAL_CONTEXT = 4096
LOCAL_OUTPUT = 1024
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
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)

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


class Cli(ABC):
    name = ""
    family = ""  # the API family it speaks through the relay: anthropic | openai
    # With trim, the only tools the model is shown (the host drops the rest for local models):
    # enough to read, run and write, nothing a tiny model only misuses.
    small_tools: tuple[str, ...] = ()

    @abstractmethod
    def invocation(self, spec: RunSpec, executable: str) -> Invocation:
        """The CLI's non-interactive command line and environment for this run."""

    @abstractmethod
    def parser(self) -> StreamParser:
        """A fresh reader of the CLI's event stream."""


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


# -- MCP servers, as each CLI takes them -------------------------------------------------------

MCP_START_TIMEOUT_S = 30
MCP_CALL_TIMEOUT_S = 60


def mcp_argv(server: dict[str, Any], workdir: str) -> list[str]:
    """A stdio server's command line; one with a `cwd` starts there through sh, for the CLIs
    whose config has no working directory."""
    argv = [str(server["command"]), *map(str, server.get("args") or [])]
    cwd = server.get("cwd")
    if not cwd:
        return argv
    return ["/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh",
            os.path.join(workdir, str(cwd)), *argv]


def _call_timeout(servers: dict[str, dict[str, Any]]) -> float:
    return max([float(s.get("timeout_s") or MCP_CALL_TIMEOUT_S) for s in servers.values()]
               or [MCP_CALL_TIMEOUT_S])


def claude_mcp_config(spec: RunSpec) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for name, server in spec.mcp_servers.items():
        if server.get("url"):
            servers[name] = {"type": "http", "url": server["url"],
                             "headers": dict(server.get("headers") or {})}
        else:
            argv = mcp_argv(server, spec.workdir)
            servers[name] = {"type": "stdio", "command": argv[0], "args": argv[1:],
                             "env": dict(server.get("env") or {})}
    return {"mcpServers": servers}


def _toml(value: Any) -> str:
    """A TOML inline value: JSON's string escapes are TOML's (ensure_ascii=False keeps
    non-BMP characters whole, where JSON's surrogate pairs are not TOML)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}={_toml(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def codex_mcp_options(spec: RunSpec) -> list[str]:
    options = []
    for name, server in spec.mcp_servers.items():
        timeouts = {"startup_timeout_sec": float(server.get("timeout_s") or MCP_START_TIMEOUT_S),
                    "tool_timeout_sec": float(server.get("timeout_s") or MCP_CALL_TIMEOUT_S)}
        if server.get("url"):
            table: dict[str, Any] = {"url": server["url"],
                                     "http_headers": dict(server.get("headers") or {})}
        else:
            table = {"command": str(server["command"]),
                     "args": [str(a) for a in server.get("args") or []],
                     "env": dict(server.get("env") or {}),
                     "cwd": os.path.join(spec.workdir, str(server.get("cwd") or "."))}
        options.append(f"mcp_servers.{name}={_toml({**table, **timeouts})}")
    return options


def opencode_mcp_config(spec: RunSpec) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for name, server in spec.mcp_servers.items():
        timeout = int(float(server.get("timeout_s") or MCP_CALL_TIMEOUT_S) * 1000)
        if server.get("url"):
            servers[name] = {"type": "remote", "url": server["url"], "enabled": True,
                             "headers": dict(server.get("headers") or {}), "oauth": False,
                             "timeout": timeout}
        else:
            servers[name] = {"type": "local", "enabled": True, "timeout": timeout,
                             "command": mcp_argv({**server, "cwd": None}, spec.workdir),
                             "cwd": os.path.join(spec.workdir, str(server.get("cwd") or ".")),
                             "environment": dict(server.get("env") or {})}
    return servers


# -- Claude Code ---------------------------------------------------------------------------------

class ClaudeCode(Cli):
    name = "claude-code"
    family = "anthropic"
    small_tools = ("Bash", "Edit", "Read")  # what --bare offers

    def invocation(self, spec: RunSpec, executable: str) -> Invocation:
        allowed = ["Bash", "Edit", "Write", "Read", "Glob", "Grep", "NotebookEdit"]
        allowed += [f"mcp__{name}" for name in spec.mcp_servers]  # each server's every tool
        argv = [executable, "-p", spec.prompt, "--output-format", "stream-json", "--verbose",
                "--model", spec.name, "--permission-mode", "acceptEdits",
                # the box is the sandbox: its commands run without asking
                "--allowedTools", ",".join(allowed)]
        files = {}
        if spec.mcp_servers:
            files["claude-mcp.json"] = json.dumps(claude_mcp_config(spec))
            argv += ["--mcp-config", os.path.join(spec.home, "claude-mcp.json"),
                     "--strict-mcp-config"]
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
        if spec.mcp_servers:
            env.update(MCP_TIMEOUT=str(MCP_START_TIMEOUT_S * 1000),
                       MCP_TOOL_TIMEOUT=str(int(_call_timeout(spec.mcp_servers) * 1000)))
        return Invocation(argv, env, files)

    def parser(self) -> StreamParser:
        return ClaudeStream()


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
                   "analytics.enabled=false", "check_for_update_on_startup=false",
                   *codex_mcp_options(spec)]
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
        if spec.mcp_servers:
            config["mcp"] = opencode_mcp_config(spec)
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


CLIS: dict[str, Cli] = {cli.name: cli for cli in (ClaudeCode(), Codex(), OpenCode())}
