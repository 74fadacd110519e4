"""`burrow box start | ps | logs | kill`: background processes in a box, which outlive the
command that started them (a dev server), supervised by the box."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import click

from burrow.cli.app import call, client, failure, json_option, seg
from burrow.cli.boxes import box
from burrow.cli.output import echo_json, table
from burrow.cli.params import Pair

SIGNALS = ("HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP")


@box.command("start")
@click.argument("box_id", metavar="ID")
@click.argument("command", metavar="-- CMD...", nargs=-1, required=True)
@click.option("--cwd", help="working directory in the box  [default: /workspace]")
@click.option("-e", "--env", "env", multiple=True, type=Pair("="), metavar="K=V",
              help="environment variable for this process; repeatable")
@click.option("--restart", type=click.Choice(["never", "on-wake", "on-failure"]),
              default="never", show_default=True,
              help="on-wake: start it again when the box wakes from a freeze; on-failure: "
                   "also when it exits non-zero (back-off 1 s doubling to 60 s)")
@click.option("--stdin", is_flag=True, help="keep its stdin open (write with the SDK or API)")
@click.option("-q", "--quiet", is_flag=True, help="print only the process's id")
@json_option
def box_start(box_id: str, command: tuple[str, ...], cwd: str | None,
              env: tuple[tuple[str, str], ...], restart: str, stdin: bool, quiet: bool,
              as_json: bool) -> None:
    """Start a background process in a box; it runs on after this returns.

    One CMD argument runs with `sh -c`; several run as they are. A freeze ends it (state
    stopped); see its output with `burrow box logs ID PROCESS -f`.
    """
    body: dict[str, Any] = {"command": command[0] if len(command) == 1 else list(command),
                            "restart": restart, "stdin": stdin}
    if cwd:
        body["cwd"] = cwd
    if env:
        body["env"] = dict(env)
    proc = call("POST", f"/v1/boxes/{seg(box_id)}/processes", body)
    if as_json:
        echo_json(proc)
    elif quiet:
        click.echo(proc["id"])
    else:
        click.echo(f"{proc['id']} {proc['state']}" + (f" pid {proc['pid']}" if proc["pid"]
                                                       else f": {proc['error'] or ''}"))


@box.command("ps")
@click.argument("box_id", metavar="ID")
@json_option
def box_ps(box_id: str, as_json: bool) -> None:
    """List a box's background processes: state, exit code, restarts."""
    procs = call("GET", f"/v1/boxes/{seg(box_id)}/processes")
    if as_json:
        echo_json(procs)
        return
    if not procs:
        click.echo("no processes; start one with `burrow box start ID -- CMD`")
        return
    table(["ID", "PID", "STATE", "EXIT", "RESTART", "RESTARTS", "STARTED", "COMMAND"],
          [(p["id"], p["pid"] or "-", p["state"],
            "-" if p["exit_code"] is None else p["exit_code"], p["restart"], p["restarts"],
            time.strftime("%H:%M:%S", time.localtime(p["started_at"])) if p["started_at"]
            else "-", _command(p["command"])) for p in procs], right=("PID", "RESTARTS"))


def _command(command: str | list[str]) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    return text if len(text) <= 60 else text[:57] + "..."


@box.command("logs")
@click.argument("box_id", metavar="ID")
@click.argument("process_id", metavar="PROCESS")
@click.option("-f", "--follow", is_flag=True,
              help="go on printing output as it comes; exit with the process's code when it ends")
def box_logs(box_id: str, process_id: str, follow: bool) -> None:
    """Print a background process's output (stdout to stdout, stderr to stderr): what the
    box keeps of it, the last 1-2 MiB of each stream."""
    path = f"/v1/boxes/{seg(box_id)}/processes/{seg(process_id)}/logs"
    if follow:
        sys.exit(_follow(path))
    offsets = {"stdout": 0, "stderr": 0}
    while True:
        page = call("GET", path, params={f"{k}_offset": str(v) for k, v in offsets.items()})
        if not page["stdout"]["data"] and not page["stderr"]["data"]:
            return
        for name, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            out.write(page[name]["data"])
            out.flush()
            offsets[name] = page[name]["next_offset"]


def _lines(path: str) -> Iterator[dict[str, Any]]:
    from burrow._errors import BurrowError

    try:
        yield from client().lines(path, method="GET", params={"follow": "true"})
    except BurrowError as exc:
        raise failure(exc) from None


def _follow(path: str) -> int:
    for chunk in _lines(path):
        kind = chunk.get("type")
        if kind in ("stdout", "stderr"):
            out = sys.stderr if kind == "stderr" else sys.stdout
            out.write(str(chunk.get("data", "")))
            out.flush()
        elif kind == "exit":
            code = chunk.get("exit_code")
            click.echo(f"process {chunk.get('state')}"
                       + ("" if code is None else f" with exit code {code}"), err=True)
            return int(code or 0) & 0xFF
        elif kind == "error":
            click.echo(f"error: {chunk.get('message')}", err=True)
            return 1
    click.echo("error: the stream ended before the process did (the server went away?)",
               err=True)
    return 1


@box.command("kill")
@click.argument("box_id", metavar="ID")
@click.argument("process_id", metavar="PROCESS")
@click.option("-s", "--signal", "signal", type=click.Choice(SIGNALS),
              help="send this signal instead, and keep the process's record and logs")
@json_option
def box_kill(box_id: str, process_id: str, signal: str | None, as_json: bool) -> None:
    """Kill a background process (and its process group) and forget it, or send it a
    signal with --signal."""
    path = f"/v1/boxes/{seg(box_id)}/processes/{seg(process_id)}"
    if signal:
        proc = call("POST", f"{path}/signal", {"signal": signal})
        if as_json:
            echo_json(proc)
        else:
            click.echo(f"sent {signal} to {process_id}")
        return
    call("DELETE", path)
    if as_json:
        echo_json({"killed": process_id})
    else:
        click.echo(f"killed {process_id}")
