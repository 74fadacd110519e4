"""Agent runs: a harness started in the box through its daemon, its events read as they
arrive, and every run's record kept in Redis for a week (newest 100 per box).

The built-in harness (tenant_agent/harness.py) runs inside the box; its model calls come back
out through the host services socket, where the gateway adds the provider's key.
"""

from __future__ import annotations

import builtins
import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from boxes import BoxRecord, ExecRequest
from core.agents import (
    AgentConfig,
    McpServer,
    RunCreate,
    RunPublic,
    RunUsage,
    merged_mcp_servers,
)
from core.errors import ApiError
from core.inbox import CLI_RUN_COMMAND
from core.keys import Keys
from core.remote import Boxes
from models.chat import Usage
from models.relay import harnesses

DEFAULT_TIMEOUT_S = 600.0
KEEP_S = 7 * 86400
KEEP_PER_BOX = 100
STDERR_TAIL = 2000
# The harness writes one JSON event per line; a longer line is refused, not held.
MAX_EVENT_CHARS = 4 << 20
# Harnesses that are agent CLIs of their own (Claude Code, Codex, OpenCode): installed on the
# host (models/relay/harnesses.py), bound read-only into boxes, run by tenant_agent/clirun.py,
# their model calls relayed through the host socket (models/relay).
EXTERNAL = frozenset(harnesses.HARNESSES)
DEFAULT_MAX_TURNS = 10
SCHEMA_ATTEMPTS = 3  # the answer's shape is asked for again up to this many times


# The longest a run's CLI may hold a box's relay: its timeout (at most RunCreate's 3600 s) and
# the exec's grace. A run in progress is recorded at most this long, should its end be lost.
IN_PROGRESS_S = 3600 + 120


@dataclass(frozen=True)
class RelayedRun:
    """What the host pins on a relayed call of a run: its id, model, answer's schema."""
    id: str
    model: str
    schema: dict[str, Any] | None = None


class AgentRuns:
    def __init__(self, redis: Redis, keys: Keys, manager: Boxes,
                 harness_command: list[str],
                 check_model: Callable[[str], object] | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.manager = manager
        self.harness_command = harness_command
        # Raises ApiError when no provider could serve the model (unknown, no key set), so a
        # run fails before it starts rather than at its first model call.
        self.check_model = check_model

    async def get(self, box_id: str, run_id: str) -> RunPublic:
        raw = await self.redis.get(self.keys.run(run_id))
        run = RunPublic.model_validate_json(raw) if raw else None
        if run is None or run.box_id != box_id:
            raise ApiError(404, "not_found", f"no run {run_id!r} in box {box_id}")
        return run

    async def list(self, box_id: str) -> list[RunPublic]:
        ids = await self.redis.lrange(self.keys.box_runs(box_id),  # type: ignore[misc]
                                      0, KEEP_PER_BOX - 1)
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.run(i.decode()) for i in ids])
        return [RunPublic.model_validate_json(raw) for raw in raws if raw]

    # --- the host's meter of a third-party harness's run (its calls come through the relay)

    def _meter(self, run_id: str) -> str:
        return self.keys.run_meter(run_id)

    def _in_progress_key(self, box_id: str) -> str:
        return self.keys.runs_in_progress(box_id)

    async def _in_progress(self, box_id: str) -> builtins.list[str]:
        """The box's third-party harness runs in progress, the oldest first."""
        key = self._in_progress_key(box_id)
        raw = await self.redis.hgetall(key)  # type: ignore[misc]
        now = time.time()
        runs = sorted((float(v), k.decode()) for k, v in raw.items())
        lost = [run for deadline, run in runs if deadline < now]  # their end was never recorded
        if lost:
            await self.redis.hdel(key, *lost)  # type: ignore[misc]
        return [run for deadline, run in runs if deadline >= now]

    async def relayed_call(self, box_id: str, run_id: str | None) -> RelayedRun | None:
        """A model call a box relays: counted against a run, refused past the run's
        max_turns (plus the answer's schema retries), and pinned to the run's model (returned
        with the run's response schema). While a run is in progress in the box, the call is
        that run's whatever its `X-Burrow-Run` header says (one that names another run in
        progress there goes to that one): code in the box cannot leave a run's limits by
        dropping or changing the header. Otherwise the run the header names, if it is this
        box's; None when there is none (the box's own model applies)."""
        in_progress = await self._in_progress(box_id)
        if in_progress and run_id not in in_progress:
            run_id = in_progress[0]
        if not run_id:
            return None
        key = self._meter(run_id)
        meter = {k.decode(): v.decode()
                 for k, v in (await self.redis.hgetall(key)).items()}  # type: ignore[misc]
        if meter.get("box") != box_id:
            return None  # not this box's run: the box's own model applies
        calls = int(await self.redis.hincrby(key, "calls", 1))  # type: ignore[misc]
        if calls > int(meter["max_calls"]):
            raise ApiError(429, "max_turns",
                           f"run {run_id} made its {int(meter['max_calls'])} model calls, "
                           "the most its max_turns allows")
        schema = json.loads(meter["schema"]) if meter.get("schema") else None
        return RelayedRun(run_id, str(meter["model"]), schema)

    async def relayed_usage(self, run_id: str | None, usage: Usage) -> None:
        if not run_id or not (usage.input_tokens or usage.output_tokens):
            return
        key = self._meter(run_id)
        if await self.redis.exists(key):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(key, "input_tokens", usage.input_tokens)
                pipe.hincrby(key, "output_tokens", usage.output_tokens)
                await pipe.execute()

    async def _metered(self, run_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self._meter(run_id))  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()
                if k.decode() in ("calls", "input_tokens", "output_tokens")}

    async def _save(self, run: RunPublic, new: bool = False) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.run(run.id), run.model_dump_json(), ex=KEEP_S)
            if new:
                key = self.keys.box_runs(run.box_id)
                pipe.lpush(key, run.id)
                pipe.ltrim(key, 0, KEEP_PER_BOX - 1)
                pipe.expire(key, KEEP_S)
            await pipe.execute()

    async def _prepare(self, box: BoxRecord,
                       body: RunCreate) -> tuple[RunPublic, dict[str, McpServer]]:
        configured = AgentConfig.stored(box.meta.get("agent"))
        model = body.model or (configured.model if configured else None)
        harness = body.harness or (configured.harness if configured else "burrow")
        if model is None:
            raise ApiError(409, "agent_not_configured",
                           f"box {box.id} has no agent: create it with agent={{'harness': "
                           "'burrow', 'model': 'local/smollm2-135m'}, or pass model in the run")
        if harness in EXTERNAL and harnesses.installed(harness) is None:
            raise ApiError(409, "harness_not_installed",
                           f"{harness} is not installed on this server: the operator installs "
                           f"it with `burrow harness install {harness}` (or `make harnesses`), "
                           "then restarts it; or use harness 'burrow'")
        if self.check_model is not None:
            self.check_model(model)
        try:
            servers = merged_mcp_servers(configured.mcp_servers if configured else {},
                                         body.mcp_servers)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", f"mcp_servers: the box's and the run's "
                                                   f"together: {exc}") from None
        run = RunPublic(id="run_" + secrets.token_hex(8), box_id=box.id, status="running",
                        model=model, harness=harness, created_at=time.time())
        return run, servers

    async def start(self, box: BoxRecord, body: RunCreate) -> AsyncGenerator[dict[str, Any], None]:
        """Check the run can start (raising ApiError if not), then return its chunks: start,
        text / tool_call / tool_result as they happen, and finish with the Run last."""
        run, servers = await self._prepare(box, body)
        await self._save(run, new=True)
        return self._events(run, body, servers)

    async def _events(self, run: RunPublic, body: RunCreate,
                      servers: dict[str, McpServer]) -> AsyncGenerator[dict[str, Any], None]:
        timeout_s = body.timeout_s or DEFAULT_TIMEOUT_S
        # The MCP servers go to the harness in the box, which starts the commands there and
        # reaches the URLs through the box's own network: the host never connects to them.
        job = {"prompt": body.prompt, "model": run.model, "response_schema": body.response_schema,
               "max_turns": body.max_turns, "timeout_s": timeout_s,
               "mcp_servers": {name: server.model_dump(exclude_defaults=True)
                               for name, server in servers.items()}}
        external = run.harness in EXTERNAL
        if external:
            job.update(harness=run.harness, trim=body.trim)
            max_calls = (body.max_turns or DEFAULT_MAX_TURNS) + SCHEMA_ATTEMPTS
            await self.redis.hset(self._meter(run.id), mapping={  # type: ignore[misc]
                "box": run.box_id, "model": run.model, "max_calls": max_calls, "calls": 0,
                "schema": json.dumps(body.response_schema) if body.response_schema else ""})
            await self.redis.expire(self._meter(run.id), KEEP_S)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._in_progress_key(run.box_id), run.id,
                          str(time.time() + timeout_s + 30))
                pipe.expire(self._in_progress_key(run.box_id), IN_PROGRESS_S)
                await pipe.execute()
        started = time.monotonic()
        yield {"type": "start", "run_id": run.id}
        outcome: dict[str, Any] = {}
        command = CLI_RUN_COMMAND if external else self.harness_command
        try:
            async for event in self._harness(run, job, timeout_s, command):
                if event.get("type") == "result":
                    outcome = outcome or event  # the harness's own report wins
                else:
                    yield event
        finally:
            # Also when the client went away mid-stream: the record says how the run ended.
            if external:
                await self.redis.hdel(self._in_progress_key(run.box_id),  # type: ignore[misc]
                                      run.id)
            metered = await self._metered(run.id) if external else {}
            final = _finished(run, outcome, (time.monotonic() - started) * 1000, metered)
            await self._save(final)
        yield {"type": "finish", "run": final.model_dump(mode="json")}

    async def _harness(self, run: RunPublic, job: dict[str, Any], timeout_s: float,
                       command: builtins.list[str]) -> AsyncGenerator[dict[str, Any], None]:
        request = ExecRequest(command=command, cwd="/workspace",
                              env={"BURROW_RUN_ID": run.id}, timeout_s=timeout_s + 15,
                              stdin=json.dumps(job))
        buffer, stderr = "", ""
        async for event in self.manager.exec_stream(run.box_id, request):
            if event.type == "stdout":
                buffer += event.data or ""
                *lines, buffer = buffer.split("\n")
                if len(buffer) > MAX_EVENT_CHARS:  # a line that never ends: not the harness
                    yield {"type": "result", "status": "failed",
                           "error": f"the harness wrote a line over {MAX_EVENT_CHARS} "
                                    "characters; the run was stopped"}
                    return
                for line in lines:
                    parsed = _parse(line)
                    if parsed is not None:
                        yield parsed
            elif event.type == "stderr":
                stderr = (stderr + (event.data or ""))[-STDERR_TAIL:]
            elif event.exit_code != 0 or event.timed_out:
                what = ("was stopped at its timeout" if event.timed_out
                        else f"exited with code {event.exit_code}")
                yield {"type": "result", "status": "timed_out" if event.timed_out else "failed",
                       "error": f"the harness {what}: {stderr.strip()[-500:]}".rstrip(": ")}


def _parse(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def _finished(run: RunPublic, outcome: dict[str, Any], duration_ms: float,
              metered: dict[str, int] | None = None) -> RunPublic:
    given = outcome.get("usage")
    usage: dict[str, Any] = given if isinstance(given, dict) else {}
    if metered:  # what the relay counted on the host (a CLI killed mid-run reports nothing)
        usage = {**usage, "input_tokens": metered.get("input_tokens", 0),
                 "output_tokens": metered.get("output_tokens", 0),
                 "turns": metered.get("calls", 0)}
    status = outcome.get("status")
    if status not in ("completed", "failed", "timed_out"):
        status, outcome = "failed", {"error": "the run ended before the harness reported a "
                                              "result (the client left, or the box stopped)"}
    return run.model_copy(update={
        "status": status, "result": outcome.get("result"),
        "output": str(outcome.get("output") or ""), "error": outcome.get("error"),
        "usage": RunUsage(**{k: v for k, v in (usage or {}).items()
                             if k in RunUsage.model_fields}, duration_ms=round(duration_ms, 1)),
        "finished_at": time.time()})
