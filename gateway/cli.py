"""The server's commands of `burrow`: serve, gateway, worker, doctor and harness. The client
distribution owns the `burrow` command; this distribution adds these to it through the
`burrow.commands` entry-point group (pyproject.toml), so a client-only install has no server
code. They import server code only when they run, so `burrow --help` stays quick."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from core.settings import Settings


def require_server_parts() -> None:
    """A one-line error when the server's code is installed without its dependencies (say,
    with pip's --no-deps)."""
    try:
        import fastapi  # noqa: F401
        import redis  # noqa: F401
        import zstandard  # noqa: F401
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"the server's dependencies are not installed ({exc.name} is missing): "
            "pip install 'burrow[server]'") from None


def _require_cluster(settings: Settings, role: str) -> None:
    """What a gateway or worker of a cluster shares with every other role."""
    if settings.server_secret is None:
        raise click.ClickException(
            f"burrow {role} needs BURROW_SERVER_SECRET, the one every role of the cluster "
            "shares (its box hosts refuse requests signed with another)")
    if not settings.store_url:
        raise click.ClickException(
            f"burrow {role} needs BURROW_STORE_URL, the snapshot store the box hosts share "
            "(s3://bucket/prefix); for one machine use `burrow serve`")


def _settings(**overrides: object) -> Settings:
    """Server settings from the environment, with command-line options on top; a bad
    setting is a one-line error, not a traceback."""
    require_server_parts()
    from pydantic import ValidationError

    from core.settings import Settings

    try:
        settings = Settings()
        return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise click.ClickException(message) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8420, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port to listen on")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where boxes, snapshots and Redis data live  [default: $BURROW_DATA_DIR "
                   "or ./.burrow]")
@click.option("--local-model", is_flag=True,
              help="also start the local model server (local/smollm2-135m, "
                   "local/gemma-3-270m) for agent runs  [env: BURROW_LOCAL_MODEL=1]")
def serve(host: str, port: int, data_dir: Path | None, local_model: bool) -> None:
    """Run gateway, worker and embedded Redis in one process.

    Redis and Qdrant are embedded unless REDIS_URL and QDRANT_URL are set.
    """
    require_server_parts()
    from gateway.server import serve as run

    # Only a given flag overrides: without it, BURROW_LOCAL_MODEL decides.
    run(_settings(data_dir=data_dir, local_model=True if local_model else None), host, port)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8420, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port to listen on")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where boxes and snapshots live  [default: $BURROW_DATA_DIR or ./.burrow]")
def gateway(host: str, port: int, data_dir: Path | None) -> None:
    """Run the HTTP gateway alone, for scale-out.

    Needs REDIS_URL and QDRANT_URL; run `burrow worker` beside it.
    """
    require_server_parts()
    from gateway.server import serve as run

    settings = _settings(data_dir=data_dir)
    if not settings.redis_url or not settings.qdrant_url:
        raise click.ClickException("burrow gateway needs REDIS_URL and QDRANT_URL (the Redis "
                                   "and Qdrant every gateway and worker shares); for one "
                                   "machine use `burrow serve`")
    _require_cluster(settings, "gateway")
    run(settings, host, port, with_worker=False, remote=True)


@click.group(invoke_without_command=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where this host's boxes and store cache live  [default: $BURROW_DATA_DIR "
                   "or ./.burrow]")
@click.pass_context
def host(ctx: click.Context, data_dir: Path | None) -> None:
    """Run this machine's boxes as a box host of a cluster; or list and drain the hosts.

    `burrow host` runs as root (boxes need namespaces, cgroups and loop devices). It needs
    REDIS_URL, BURROW_SERVER_SECRET and BURROW_STORE_URL, the ones every role of the cluster
    shares, and serves the gateways and the worker on BURROW_HOST_LISTEN.
    """
    if ctx.invoked_subcommand is not None:
        return
    require_server_parts()
    from gateway import hostrunner

    settings = _settings(data_dir=data_dir)
    problem = hostrunner.requirements(settings)
    if problem is not None:
        raise click.ClickException(problem)
    hostrunner.run(settings)


@host.command("ls")
def host_ls() -> None:
    """The box hosts: lease, load, draining, and the boxes placed on each."""
    from core.hosts import host_rows

    settings = _settings()
    if not settings.redis_url:
        raise click.ClickException("burrow host ls reads REDIS_URL (the cluster's Redis)")
    rows = asyncio.run(host_rows(settings))
    if not rows:
        click.echo("no box host is registered")
    for line in rows:
        click.echo(line)


@host.command("drain")
@click.argument("host_id")
@click.option("--undo", is_flag=True, help="place boxes on the host again")
def host_drain(host_id: str, undo: bool) -> None:
    """Place no new box on HOST_ID; it freezes its boxes and gives them up, so that each
    wakes on another host at its next request. A rolling upgrade drains one host at a time."""
    from core.hosts import drain

    settings = _settings()
    if not settings.redis_url:
        raise click.ClickException("burrow host drain writes REDIS_URL (the cluster's Redis)")
    try:
        click.echo(asyncio.run(drain(settings, host_id, not undo)))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="the gateways' data dir  [default: $BURROW_DATA_DIR or ./.burrow]")
@click.option("--check", is_flag=True, help="exit 0 if a worker on REDIS_URL reported itself "
                                            "alive lately (workers report every 10 s), 1 if not")
def worker(data_dir: Path | None, check: bool) -> None:
    """Run the background worker alone, for scale-out.

    Needs REDIS_URL and QDRANT_URL, the ones the gateways use.
    """
    require_server_parts()
    from workers import runner

    settings = _settings(data_dir=data_dir)
    if check:
        alive, detail = runner.alive(settings)
        click.echo(detail)
        sys.exit(0 if alive else 1)
    _require_cluster(settings, "worker")
    runner.run(settings)


@click.command()
def doctor() -> None:
    """Check that this host can run boxes, and start one to prove it; with the local-model
    extra, also run one completion on each bundled model."""
    require_server_parts()
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
    runtime_root = _settings().runtime_dir
    if os.geteuid() == 0:
        try:
            asyncio.run(_start_one_box(runtime_root))
            check("start, exec, freeze, wake and delete a box", None)
        except Exception as exc:  # report anything, as one line
            check("start, exec, freeze, wake and delete a box", f"{type(exc).__name__}: {exc}")
    _check_local_models(check)
    sys.exit(0 if all(problem is None for _, problem in checks) else 1)


def _check_local_models(check: Callable[[str, str | None], None]) -> None:
    """The bundled models, when the local-model extra is installed: the CPU floor, the build's
    instruction sets, and one short real completion on each."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        click.echo("--   local models: the local-model extra is not installed (optional)")
        return
    from models import servers as modelservers

    try:
        modelservers.check_cpu()
        check("CPU meets the llama.cpp floor (AVX2, FMA, F16C)", None)
    except modelservers.LocalModelError as exc:
        check("CPU meets the llama.cpp floor (AVX2, FMA, F16C)", str(exc))
        return
    try:
        info = modelservers.system_info()
        above = [name for name in modelservers.ABOVE_FLOOR if info.get(name)]
        check("llama.cpp built for the floor, not natively",
              None if not above else f"the installed build uses {', '.join(above)}, which "
              "can crash on some CPUs; reinstall with `make install` (it builds with "
              "GGML_NATIVE=OFF)")
    except Exception as exc:  # report anything, as one line
        check("llama.cpp loads", f"{type(exc).__name__}: {exc}")
        return
    for alias, result in _complete_once().items():
        check(f"a completion with local/{alias}", result)


def _complete_once() -> dict[str, str | None]:
    """Start the bundled servers in a scratch dir and ask each for a few tokens; per model,
    None with the time printed, or the failure with what to do."""
    import tempfile
    import time

    import httpx

    from models.servers import LocalModelError, LocalModels

    scratch = Path(tempfile.mkdtemp(prefix="burrow-doctor-models-"))
    models = LocalModels(scratch)
    results: dict[str, str | None] = {}
    try:
        try:
            routes = models.start()
        except LocalModelError as exc:
            return {"bundled models": f"{exc}"}
        for alias, url in routes.items():
            started = time.perf_counter()
            try:
                r = httpx.post(url + "/chat/completions", timeout=120, json={
                    "model": alias, "max_tokens": 8, "temperature": 0,
                    "messages": [{"role": "user", "content": "Say hello."}]})
                r.raise_for_status()
                text = r.json()["choices"][0]["message"]["content"] or ""
                click.echo(f"     local/{alias}: {(time.perf_counter() - started) * 1000:.0f} "
                           f"ms for {text.strip()[:40]!r}")
                results[alias] = None
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                why = models.failure(alias) or f"{type(exc).__name__}: {exc}"
                results[alias] = (f"{why}; its log: {models.health[alias].log_path}; "
                                  "`make install` rebuilds llama.cpp for this CPU's floor")
    finally:
        models.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


async def _start_one_box(runtime_root: Path) -> None:
    import tempfile

    from redis.asyncio import Redis

    from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
    from core.embedded_redis import EmbeddedRedis
    from core.keys import Keys

    scratch = Path(tempfile.mkdtemp(prefix="burrow-doctor-"))
    server = EmbeddedRedis(scratch / "redis", appendonly=False)
    server.start()
    redis = Redis.from_url(server.url)
    config = RuntimeConfig(data_dir=scratch / "data", runtime_root=runtime_root,
                           launcher_pool=0)
    manager = await BoxManager.open(config, redis, Keys())
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


@click.group()
def harness() -> None:
    """The agent CLIs boxes can run (Claude Code, Codex, OpenCode), installed on this host."""


@harness.command("install")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def harness_install(names: tuple[str, ...]) -> None:
    """Install pinned releases from npm (all three by default; ~1 GB, needs npm), read-only,
    where every box sees them. Restart `burrow serve` to give them to boxes."""
    require_server_parts()
    from models.relay import harnesses

    for name in names or tuple(harnesses.HARNESSES):
        try:
            found = harnesses.install(name)
        except harnesses.HarnessError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{name} {found.harness.version}: {found.bytes / 1e6:.0f} MB at "
                   f"{found.path}")


@harness.command("ls")
def harness_ls() -> None:
    """Which agent CLIs are installed, and where."""
    require_server_parts()
    from models.relay import harnesses

    for name in harnesses.HARNESSES:
        found = harnesses.installed(name)
        click.echo(f"{name:12} " + ("not installed" if found is None else
                                    f"{found.harness.version}, {found.bytes / 1e6:.0f} MB, "
                                    f"{found.path}"))
