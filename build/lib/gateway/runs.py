"""Agent runs: a harness started in the box through its daemon, its events read as they
arrive, and every run's record kept in Redis for a week (newest 100 per box).

The built-in harness (tenant_agent/harness.py) runs inside the box; its model calls come back
out through the host services socket, where the gateway adds the provider's key.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from redis.asyncio import Redis

from boxes import BoxManager, BoxRecord, ExecRequest
from gateway.errors import ApiError
from gateway.schemas import AgentConfig, RunCreate, RunPublic, RunUsage

DEFAULT_TIMEOUT_S = 600.0
KEEP_S = 7 * 86400
KEEP_PER_BOX = 100
STDERR_TAIL = 2000
# The harness writes one JSON event per line; a longer line is refused, not held.
MAX_EVENT_CHARS = 4 << 20
# Harnesses that are programs of their own, run in a box that has them installed.
EXTERNAL = {
    "claude-code": ("claude", "npm install -g @anthropic-ai/claude-code"),
    "codex": ("codex", "npm install -g @openai/codex"),
    "opencode": ("opencode", "npm install -g opencode-ai"),
}


class AgentRuns:
    def __init__(self, redis: Redis, manager: BoxManager, harness_command: list[str],
                 check_model: Callable[[str], object] | None = None) -> None:
        self.redis = redis
        self.manager = manager
        self.harness_command = harness_command
        # Raises ApiError when no provider could serve the model (unknown, no key set), so a
        # run fails before it starts rather than at its first model call.
        self.check_model = check_model
        self.prefix = manager.config.key_prefix

    async def get(self, box_id: str, run_id: str) -> RunPublic:
        raw = await self.redis.get(f"{self.prefix}:run:{run_id}")
        run = RunPublic.model_validate_json(raw) if raw else None
        if run is None or run.box_id != box_id:
            raise ApiError(404, "not_found", f"no run {run_id!r} in box {box_id}")
        return run

    async def list(self, box_id: str) -> list[RunPublic]:
        key = f"{self.prefix}:runs:{box_id}"
        ids = await self.redis.lrange(key, 0, KEEP_PER_BOX - 1)  # type: ignore[misc]
        if not ids:
            return []
        raws = await self.redis.mget([f"{self.prefix}:run:{i.decode()}" for i in ids])
        return [RunPublic.model_validate_json(raw) for raw in raws if raw]

    async def _save(self, run: RunPublic, new: bool = False) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}:run:{run.id}", run.model_dump_json(), ex=KEEP_S)
            if new:
                key = f"{self.prefix}:runs:{run.box_id}"
                pipe.lpush(key, run.id)
                pipe.ltrim(key, 0, KEEP_PER_BOX - 1)
                pipe.expire(key, KEEP_S)
            await pipe.execute()

    async def _prepare(self, box: BoxRecord, body: RunCreate) -> RunPublic:
        configured = AgentConfig.stored(box.meta.get("agent"))
        model = body.model or (configured.model if configured else None)
        harness = body.harness or (configured.harness if configured else "burrow")
        if model is None:
            raise ApiError(409, "agent_not_configured",
                           f"box {box.id} has no agent: create it with agent={{'harness': "
                           "'burrow', 'model': 'local/smollm2-135m'}, or pass model in the run")
        if harness in EXTERNAL:
            await self._require_installed(box, harness)
            raise ApiError(409, "harness_unsupported",
                           f"{harness} is installed in box {box.id}, but this server cannot "
                           "relay its model calls yet; use harness 'burrow'")
        if self.check_model is not None:
            self.check_model(model)
        return RunPublic(id="run_" + secrets.token_hex(8), box_id=box.id, status="running",
                         model=model, harness=harness, created_at=time.time())

    async def _require_installed(self, box: BoxRecord, harness: str) -> None:
        program, install = EXTERNAL[harness]
        found = await self.manager.exec(box.id, ExecRequest(
            command=["/bin/sh", "-c", f"command -v {program}"], timeout_s=10))
        if found.exit_code != 0:
            raise ApiError(409, "harness_not_installed",
                           f"{harness} needs the `{program}` program in the box, and box "
                           f"{box.id} has none: install it with `burrow box exec {box.id} -- "
                           f"{install}` in a box created with runtime='node' and "
                           "network='egress', or use harness 'burrow'")

    async def start(self, box: BoxRecord, body: RunCreate) -> AsyncGenerator[dict[str, Any], None]:
        """Check the run can start (raising ApiError if not), then return its chunks: start,
        text / tool_call / tool_result as they happen, and finish with the Run last."""
        run = await self._prepare(box, body)
        await self._save(run, new=True)
        return self._events(run, body)

    async def _events(self, run: RunPublic,
                      body: RunCreate) -> AsyncGenerator[dict[str, Any], None]:
        timeout_s = body.timeout_s or DEFAULT_TIMEOUT_S
        job = {"prompt": body.prompt, "model": run.model, "response_schema": body.response_schema,
               "max_turns": body.max_turns, "timeout_s": timeout_s}
        started = time.monotonic()
        yield {"type": "start", "run_id": run.id}
        outcome: dict[str, Any] = {}
        try:
            async for event in self._harness(run, job, timeout_s):
                if event.get("type") == "result":
                    outcome = outcome or event  # the harness's own report wins
                else:
                    yield event
        finally:
            # Also when the client went away mid-stream: the record says how the run ended.
            final = _finished(run, outcome, (time.monotonic() - started) * 1000)
            await self._save(final)
        yield {"type": "finish", "run": final.model_dump(mode="json")}

    async def _harness(self, run: RunPublic, job: dict[str, Any],
                       timeout_s: float) -> AsyncGenerator[dict[str, Any], None]:
        request = ExecRequest(command=self.harness_command, cwd="/workspace",
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


def _finished(run: RunPublic, outcome: dict[str, Any], duration_ms: float) -> RunPublic:
    usage = outcome.get("usage") if isinstance(outcome.get("usage"), dict) else {}
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
