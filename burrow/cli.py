"""The `burrow` command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from burrow._api import Api
    from gateway.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="burrow")
def main() -> None:
    """Burrow: a small persistent Linux computer per tenant, frozen when idle."""


def _settings(**overrides: object) -> Settings:
    """Server settings from the environment, with command-line options on top; a bad
    setting is a one-line error, not a traceback."""
    from pydantic import ValidationError

    from gateway.settings import Settings

    try:
        settings = Settings()
        return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise click.ClickException(message) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8420, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where boxes, snapshots and Redis data live  [default: $BURROW_DATA_DIR "
                   "or ./.burrow]")
def serve(host: str, port: int, data_dir: Path | None) -> None:
    """Run everything in one process: gateway, worker, embedded Redis (unless REDIS_URL)."""
    from gateway.server import serve as run

    run(_settings(data_dir=data_dir), host, port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8420, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where boxes and snapshots live  [default: $BURROW_DATA_DIR or ./.burrow]")
def gateway(host: str, port: int, data_dir: Path | None) -> None:
    """Run the HTTP gateway alone (scale-out): needs REDIS_URL; run `burrow worker` beside it."""
    from gateway.server import serve as run

    settings = _settings(data_dir=data_dir)
    if not settings.redis_url or not settings.qdrant_url:
        raise click.ClickException("burrow gateway needs REDIS_URL and QDRANT_URL (the Redis "
                                   "and Qdrant every gateway and worker shares); for one "
                                   "machine use `burrow serve`")
    run(settings, host, port, with_worker=False)


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="the gateways' data dir  [default: $BURROW_DATA_DIR or ./.burrow]")
@click.option("--check", is_flag=True, help="exit 0 if a worker on REDIS_URL reported itself "
                                            "alive lately (workers report every 10 s), 1 if not")
def worker(data_dir: Path | None, check: bool) -> None:
    """Run the background worker alone (scale-out): needs REDIS_URL and QDRANT_URL."""
    from gateway.server import run_worker, worker_alive

    settings = _settings(data_dir=data_dir)
    if check:
        alive, detail = worker_alive(settings)
        click.echo(detail)
        sys.exit(0 if alive else 1)
    run_worker(settings)


@main.command()
def doctor() -> None:
    """Check that this host can run boxes, and start one to prove it."""
    from boxes import HostUnsupportedError, disk, network

    checks: list[tuple[str, str | None]] = []

    def check(name: str, problem: str | None) -> None:
        checks.append((name, problem))
        mark = click.style("ok  ", fg="green") if problem is None else click.style("FAIL", fg="red")
        click.echo(f"{mark} {name}" + ("" if problem is None else f": {problem}"))

    for name, fn in (("root, loop devices, mkfs.ext4", disk.check_host),
                     ("egress networking (slirp4netns)", network.check_host)):
        try:
            fn()
            check(name, None)
        except HostUnsupportedError as exc:
            check(name, exc.message)
    check("/usr/bin/python3 for the box daemon",
          None if Path("/usr/bin/python3").exists() else "missing; install python3")
    check("node for runtime='node'",
          None if shutil.which("node") else "missing (only the node runtime needs it)")
    if os.geteuid() == 0:
        try:
            asyncio.run(_start_one_box())
            check("start, exec, freeze, wake and delete a box", None)
        except Exception as exc:  # report anything, as one line
            check("start, exec, freeze, wake and delete a box", f"{type(exc).__name__}: {exc}")
    sys.exit(0 if all(problem is None for _, problem in checks) else 1)


async def _start_one_box() -> None:
    import tempfile

    from redis.asyncio import Redis

    from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
    from workers.embedded_redis import EmbeddedRedis

    scratch = Path(tempfile.mkdtemp(prefix="burrow-doctor-"))
    server = EmbeddedRedis(scratch / "redis", appendonly=False)
    server.start()
    redis = Redis.from_url(server.url)
    config = RuntimeConfig(data_dir=scratch / "data", launcher_pool=0)
    manager = await BoxManager.open(config, redis)
    try:
        box = await manager.create(BoxSpec())
        result = await manager.exec(box.id, ExecRequest(command="echo ok > f && cat f"))
        if result.stdout != "ok\n":
            raise RuntimeError(f"exec returned {result!r}")
        await manager.freeze(box.id)
        await manager.wake(box.id)
        if await manager.read_file(box.id, "f") != b"ok\n":
            raise RuntimeError("a file did not survive freeze and wake")
        await manager.delete(box.id)
    finally:
        await manager.close()
        await redis.aclose()
        server.stop()
        shutil.rmtree(config.run_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


# --- operator commands (over HTTP: BURROW_URL, BURROW_API_KEY) ----------------------------

def _api() -> Api:
    from burrow._api import Api, ApiCallError

    try:
        return Api()
    except ApiCallError as exc:
        raise click.ClickException(str(exc)) from None


def _call(method: str, path: str, json: object = None) -> Any:
    from burrow._api import ApiCallError

    try:
        return _api().call(method, path, json)
    except ApiCallError as exc:
        raise click.ClickException(str(exc)) from None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NEVER = {"never", "off", "none", "null"}


class Duration(click.ParamType[float | None]):
    """Seconds from `90`, `90s`, `5m`, `2h`, `7d`; `never` clears the setting."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float | None:
        text = str(value).strip().lower()
        if text in _NEVER:
            return None
        unit = text[-1] if text and text[-1] in _UNITS else "s"
        number = text[:-1] if text and text[-1] in _UNITS else text
        try:
            return float(number) * _UNITS[unit]
        except ValueError:
            self.fail(f"{value!r} is not a duration; use e.g. 90s, 5m, 2h, 7d or never",
                      param, ctx)


class Size(click.ParamType[int | None]):
    """Bytes from `500M`, `20G`, `1T` or a number; `none` clears the limit."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
        if text in _NEVER:
            return None
        unit = text[-1] if text and text[-1] in _SIZES else ""
        try:
            return int(float(text[:-1] if unit else text) * _SIZES[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size; use e.g. 500M, 20G or none", param, ctx)


class Count(click.ParamType[int | None]):
    name = "count"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        text = str(value).strip().lower()
        if text in _NEVER:
            return None
        if not text.isdigit():
            self.fail(f"{value!r} is not a whole number (or none for no limit)", param, ctx)
        return int(text)


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _human_s(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _human_bytes(count: int | None) -> str:
    if count is None:
        return "no limit"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@main.group()
def policy() -> None:
    """Show or change the idle freeze policy (operator key)."""


@policy.command("show")
@click.option("--tenant", help="show this tenant's overrides and what applies to it")
@click.option("--history", is_flag=True, help="also list recent changes: who, when, what")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def policy_show(tenant: str | None, history: bool, as_json: bool) -> None:
    """The global policy (or a tenant's overrides); applies on every sweep."""
    current = _call("GET", "/v1/policy")
    data: dict[str, Any] = {"global": current}
    if tenant:
        data["tenant"] = _call("GET", f"/v1/tenants/{tenant}")["policy"] or {}
    if history:
        data["history"] = _call("GET", "/v1/policy/history?limit=20")
    if as_json:
        _echo_json(data)
        return
    values = dict(current["policy"])
    by = current["updated_by"] or "nobody (defaults)"
    click.echo(f"global policy, version {current['version']}, last changed by {by}")
    if tenant:
        click.echo(f"tenant {tenant} overrides: "
                   + (", ".join(f"{k}={v}" for k, v in data["tenant"].items()) or "none"))
        values.update(data["tenant"])
    for name in ("pause_after_s", "freeze_after_s", "archive_after_s"):
        click.echo(f"  {name:26} {_human_s(values[name])}")
    click.echo(f"  {'keep_alive':26} {'yes' if values['keep_alive'] else 'no'}")
    warm = values["max_warm_boxes"]
    click.echo(f"  {'max_warm_boxes':26} {'no limit' if warm is None else warm}")
    click.echo(f"  {'local_layer_budget_bytes':26} "
               f"{_human_bytes(values['local_layer_budget_bytes'])}")
    for change in data.get("history", []):
        fields = ", ".join(f"{k} {v['from']}->{v['to']}" for k, v in change["changes"].items())
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(change["at"]))
        click.echo(f"  {when}  {change['scope']:18} {change['by']}: {fields or 'no change'}")


@policy.command("set")
@click.option("--tenant", help="override for this tenant only (not for --max-warm and "
                               "--layer-budget, which are global)")
@click.option("--pause-after", type=Duration(), help="pause (RAM kept) after this idle time; "
                                                     "e.g. 5m, or never")
@click.option("--freeze-after", type=Duration(), help="freeze to disk after this idle time")
@click.option("--archive-after", type=Duration(),
              help="drop a frozen box's local layer after this idle time")
@click.option("--keep-alive/--no-keep-alive", default=None, help="never idle-freeze")
@click.option("--max-warm", type=Count(), help="most running or paused boxes; none: no limit")
@click.option("--layer-budget", type=Size(), help="most local disk for frozen layers, e.g. 20G")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def policy_set(ctx: click.Context, /, tenant: str | None, as_json: bool, **values: Any) -> None:
    """Change only the given settings; the next sweep applies them."""
    names = {"pause_after": "pause_after_s", "freeze_after": "freeze_after_s",
             "archive_after": "archive_after_s", "keep_alive": "keep_alive",
             "max_warm": "max_warm_boxes", "layer_budget": "local_layer_budget_bytes"}
    given = {names[k]: v for k, v in values.items()
             if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    if not given:
        raise click.UsageError("nothing to change; give at least one setting (see --help)")
    path = f"/v1/tenants/{tenant}/policy" if tenant else "/v1/policy"
    result = _call("PUT", path, given)
    if as_json:
        _echo_json(result)
    elif tenant:
        click.echo(f"tenant {tenant} overrides: " + (", ".join(
            f"{k}={v}" for k, v in (result["policy"] or {}).items()) or "none"))
    else:
        click.echo(f"global policy is now version {result['version']}; the next sweep "
                   "applies it")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def stats(as_json: bool) -> None:
    """Boxes per state, memory, storage, observation queue and knowledge base (operator)."""
    data = _call("GET", "/v1/stats")
    if as_json:
        _echo_json(data)
        return
    states = ", ".join(f"{n} {s}" for s, n in data["boxes"].items() if n) or "none"
    storage = data["storage"]
    sweep = data["sweep"]
    last = ("never" if sweep["last_at"] is None
            else f"{data['now'] - sweep['last_at']:.0f}s ago")
    click.echo(f"tenants        {data['tenants']}")
    click.echo(f"boxes          {states}")
    click.echo(f"warm memory    {_human_bytes(data['warm_memory_bytes'])}")
    click.echo(f"local layers   {_human_bytes(storage['local_layer_bytes'])}")
    click.echo(f"snapshots      {_human_bytes(storage['logical_bytes'])} logical, "
               f"{_human_bytes(storage['stored_bytes'])} stored")
    click.echo(f"observations   {data['observations']['queue_depth']} queued jobs, "
               f"{data['observations']['backlog']} pairs waiting")
    click.echo(f"knowledge      {data['knowledge']['insights']} insights")
    click.echo(f"last sweep     {last} (every {sweep['interval_s']:g}s)")


@main.group()
def tenant() -> None:
    """Tenants (operator key)."""


@tenant.command("ls")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def tenant_ls(as_json: bool) -> None:
    """Every tenant with its home box state, idle time and storage."""
    tenants = _call("GET", "/v1/tenants")
    if as_json:
        _echo_json(tenants)
        return
    if not tenants:
        click.echo("no tenants; create one with POST /v1/tenants")
        return
    now = time.time()
    click.echo(f"{'TENANT':24} {'STATE':9} {'IDLE':>8} {'STORAGE':>10} {'BOXES':>5}  POLICY")
    for t in tenants:
        override = ", ".join(f"{k}={v}" for k, v in (t["policy"] or {}).items()) or "-"
        click.echo(f"{t['id']:24} {t['state']:9} {_human_s(round(now - t['last_active_at'])):>8} "
                   f"{_human_bytes(t['storage_bytes']):>10} {t['boxes']:>5}  {override}")
