"""One agent run with a third-party CLI (Agent.CLAUDE_CODE, CODEX, OPEN_CODE), inside the box:
the counterpart of the built-in harness (tenant_agent/runs/harness.py), with the same protocol.

The gateway starts it through the box daemon with the run on stdin — `{prompt, model,
harness, response_schema?, max_turns?, timeout_s?, trim?}` — and reads one JSON event per line
on stdout: `text`, `tool_call`, `tool_result` as the CLI works, then `result` with the run's
status, result, output, error and usage (turns = model calls).

Invariants:
- The CLI talks to a loopback relay in this process (tenant_agent/runs/relay.py), never to a
  provider: it gets the relay's URL and a dummy key; the box token stays out of its
  environment.
- `max_turns` counts model calls (every inference call the relay passes on); the call past it
  is refused and the CLI stopped. A run past `timeout_s` is stopped too, and so is one whose
  model endpoint failed `ENDPOINT_FAILURES` times in a row (CLIs retry a dead endpoint for
  minutes); the result names the cause.
- Stopping is SIGTERM then SIGKILL to the CLI's whole session (its process group and anything
  that left it but not the session); at the end of every run whatever the CLI left running is
  ended, and its private home (HOME, TMPDIR, config, sessions) is deleted: nothing stays in
  /tmp.
- With `response_schema` the prompt asks for a JSON answer of that shape; an answer that is
  not one is sent back in the same CLI session with the reason, `SCHEMA_ATTEMPTS` times at
  most.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

from tenant_agent.runs.clis import CLIS, RunSpec, entry
from tenant_agent.runs.clistreams import StreamParser
from tenant_agent.runs.harness import SCHEMA_ATTEMPTS, RunFailed, emit
from tenant_agent.runs.jsonschema import untitled, validate
from tenant_agent.runs.relay import Relay
from tenant_agent.runs.sessions import end_session

ENDPOINT_FAILURES = 3
TICK_S = 0.2
STDERR_TAIL = 1500


def _lines(stream: IO[bytes], out: queue.Queue[str | None]) -> None:
    for raw in stream:
        out.put(raw.decode(errors="replace"))
    out.put(None)


class CliRun:
    def __init__(self, job: dict[str, Any]) -> None:
        self.harness = str(job["harness"])
        self.cli = CLIS[self.harness]
        self.model = str(job["model"])
        self.prompt = str(job["prompt"])
        self.schema: dict[str, Any] | None = job.get("response_schema")
        self.max_turns = int(job.get("max_turns") or 10)
        self.timeout_s = float(job.get("timeout_s") or 600)
        self.deadline = time.monotonic() + self.timeout_s
        trim = job.get("trim")
        self.trim = self.model.startswith("local/") if trim is None else bool(trim)
        self.workdir = str(job.get("workdir") or "/workspace")
        servers = job.get("mcp_servers")
        self.mcp_servers: dict[str, dict[str, Any]] = servers if isinstance(servers, dict) else {}
        self.texts: list[str] = []
        self.usage = {"input_tokens": 0, "output_tokens": 0, "turns": 0, "tool_calls": 0}
        self.relay: Relay | None = None
        self.home = ""

    def run(self) -> tuple[str, Any, str | None]:
        """(status, result, error); the chunks go out as they come."""
        socket_path = os.environ.get("BURROW_HOST_SOCKET")
        token = os.environ.get("BURROW_BOX_TOKEN")
        if not socket_path or not token:
            return "failed", None, ("not inside a Burrow box: BURROW_HOST_SOCKET or "
                                    "BURROW_BOX_TOKEN is not set")
        self.home = tempfile.mkdtemp(prefix="burrow-run-")
        # A trimmed run shows a small model its few tools alone; with MCP servers it keeps all
        # (their tools' names are not known before the CLI lists them).
        headers = ({"X-Burrow-Tools": ",".join(self.cli.small_tools)}
                   if self.trim and not self.mcp_servers else {})
        self.relay = Relay(self.cli.family, socket_path, token,
                           os.environ.get("BURROW_RUN_ID", ""), max_calls=self.max_turns,
                           headers=headers)
        try:
            self.relay.start()
            return self._work()
        except RunFailed as exc:
            return exc.status, None, str(exc)
        finally:
            self.relay.close()
            self.usage["turns"] = self.relay.calls
            shutil.rmtree(self.home, ignore_errors=True)

    def _work(self) -> tuple[str, Any, str | None]:
        prompt = self.prompt
        if self.schema is not None:
            prompt += ("\n\nWhen the task is done, reply with only a JSON value matching this "
                       f"JSON schema, and nothing else:\n{json.dumps(untitled(self.schema))}")
        parser = self.attempt(prompt, None)
        if parser.final is None:
            raise RunFailed("failed", parser.error or "the CLI ended without an answer")
        if self.schema is None:
            return "completed", parser.final, None
        problem = ""
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return "completed", self.parsed(parser.final or ""), None
            except ValueError as exc:  # SchemaError is a ValueError, as is bad JSON
                problem = str(exc)
            if attempt + 1 == SCHEMA_ATTEMPTS or not parser.session:
                break
            parser = self.attempt(f"That is not valid: {problem}. Reply with the JSON only.",
                                  parser.session)
        return "failed", None, (f"the answer did not match response_schema after "
                                f"{SCHEMA_ATTEMPTS} attempts: {problem}")

    def parsed(self, text: str) -> Any:
        assert self.schema is not None
        text = text.strip()
        if text.startswith("```"):
            text = text.split("\n", 1)[1] if "\n" in text else ""
            text = text.rsplit("```", 1)[0]
        value = json.loads(text, strict=False)
        validate(value, self.schema)
        return value

    def attempt(self, prompt: str, session: str | None) -> StreamParser:
        """Run the CLI once, to its end or until it must be stopped."""
        assert self.relay is not None
        spec = RunSpec(prompt=prompt, model=self.model, base_url=self.relay.base_url,
                       home=self.home, timeout_s=max(1.0, self.deadline - time.monotonic()),
                       trim=self.trim, workdir=self.workdir, session=session,
                       mcp_servers=self.mcp_servers)
        invocation = self.cli.invocation(spec, entry(self.harness))
        for directory in invocation.dirs:
            os.makedirs(directory, exist_ok=True)
        for path, content in invocation.files.items():
            target = os.path.join(self.home, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(content)
        parser = self.cli.parser()
        with open(os.path.join(self.home, "stderr.log"), "wb") as stderr:
            proc = subprocess.Popen(invocation.argv, env=invocation.env, cwd=self.workdir,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=stderr, start_new_session=True)
            try:
                self._follow(proc, parser)
            finally:
                end_session(proc)
                # also when the run is stopped: what it did so far is reported
                self.usage["input_tokens"] += parser.usage["input_tokens"]
                self.usage["output_tokens"] += parser.usage["output_tokens"]
                self.usage["tool_calls"] += parser.tool_calls
                self.texts += parser.texts
        if parser.final is None and parser.error is None:
            parser.error = (f"{self.cli.name} exited with code {proc.returncode} without an "
                            f"answer: {self._stderr_tail()}")
        return parser

    def _follow(self, proc: subprocess.Popen[bytes], parser: StreamParser) -> None:
        assert proc.stdout is not None and self.relay is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=TICK_S)
            except queue.Empty:
                line = ""
            if line is None:
                proc.wait()
                return
            for chunk in parser.feed(line) if line else []:
                emit(**chunk)
            self._check()

    def _check(self) -> None:
        """Raise RunFailed when the run must end now."""
        assert self.relay is not None
        if time.monotonic() >= self.deadline:
            raise RunFailed("timed_out", f"the run reached its timeout ({self.timeout_s:.0f} s)")
        if self.relay.limit_reached:
            raise RunFailed("failed", f"no final answer after {self.max_turns} model calls "
                                    "(max_turns); raise max_turns or make the task smaller")
        if self.relay.failures_in_row >= ENDPOINT_FAILURES:
            raise RunFailed("failed", f"the model endpoint failed {self.relay.failures_in_row} "
                                    f"times in a row: {self.relay.last_failure}")

    def _stderr_tail(self) -> str:
        try:
            with open(os.path.join(self.home, "stderr.log"), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - STDERR_TAIL))
                return " ".join(f.read().decode(errors="replace").split())[-500:]
        except OSError:
            return ""


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the run's cleanup


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    job = json.loads(sys.stdin.read())
    run = CliRun(job)
    try:
        status, result, error = run.run()
    except FileNotFoundError as exc:  # the CLI is not installed for this box
        status, result, error = "failed", None, str(exc)
    emit(type="result", status=status, result=result, output="\n".join(run.texts),
         error=error, usage=run.usage)

