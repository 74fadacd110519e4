"""`burrow box`: create, list, inspect and delete boxes; pause, resume, freeze and wake them;
snapshots; running commands (streamed live) and agent runs in them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from burrow.cli.app import call, fail, json_option, main, seg, stream
from burrow.cli.output import Progress, echo_json, human_age, human_bytes, kv, progress, table
from burrow.cli.params import Duration, Pair

HARNESSES = ("burrow", "claude-code", "codex", "opencode")


@main.group()
def box() -> None:
    """Create boxes, run commands, copy files, freeze and wake.

    A box is a small persistent Linux computer; a tenant key sees its own, the operator
    key all of them.

    \b
    Examples:
      burrow box create --runtime python --env DEBUG=1 --label team:x
      burrow box ls --label team:x
      burrow box exec b_123 -- pytest -q          # streams output, exits with its code
      burrow box exec b_123 -- 'cd src && make'   # one argument runs in sh -c
      burrow box cp report.md b_123:/workspace/   # upload; b_123:/path ./dir downloads
      burrow box start b_123 --restart on-wake -- python3 -m http.server
      burrow box ps b_123; burrow box logs b_123 p_abc -f; burrow box kill b_123 p_abc
      burrow box freeze b_123; burrow box wake b_123
      burrow box snapshot b_123 base; burrow box create --from-snapshot s_456
      burrow box port open b_123 8000             # a preview URL of a server in the box
    """


def _summary(b: dict[str, Any]) -> str:
    return f"{b['id']} {b['state']}"


@box.command("create")
@click.option("--runtime", type=click.Choice(["python", "node", "base"]), default="python",
              show_default=True, help="what the box comes with")
@click.option("--name", help="a name to recognise the box by (not unique)")
@click.option("--env", "env", multiple=True, type=Pair("="), metavar="K=V",
              help="environment variable for everything run in the box; repeatable")
@click.option("--label", "labels", multiple=True, type=Pair("=", ":"), metavar="K=V",
              help="label to find the box by (box ls --label k:v); K:V works too; repeatable")
@click.option("--keep-alive", is_flag=True, help="never pause or freeze it for idleness")
@click.option("--network", type=click.Choice(["none", "egress"]), default="none",
              show_default=True, help="none: no network; egress: outbound internet only")
@click.option("--agent-model", metavar="PROVIDER/NAME",
              help="model for agent runs (box run), e.g. anthropic/claude-sonnet-4-5 or "
                   "local/gemma-3-270m")
@click.option("--harness", type=click.Choice(HARNESSES), default=None,
              help="agent harness for agent runs  [default: burrow, when --agent-model is given]")
@click.option("--from-snapshot", metavar="SNAPSHOT_ID",
              help="start from a named snapshot (box snapshot) instead of a fresh box")
@click.option("--tenant", help="operator key only: the tenant that owns the box")
@click.option("-q", "--quiet", is_flag=True, help="print only the new box's id")
@json_option
def box_create(env: tuple[tuple[str, str], ...], labels: tuple[tuple[str, str], ...],
               agent_model: str | None, harness: str | None, quiet: bool, as_json: bool,
               **fields: Any) -> None:
    """Create a box and start it. It is ready for exec when this returns."""
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    body.update(env=dict(env), labels=dict(labels))
    if agent_model or harness:
        body["agent"] = {"harness": harness or "burrow",
                         **({"model": agent_model} if agent_model else {})}
    with progress("creating box") as shown:
        created = call("POST", "/v1/boxes", body)
    if as_json:
        echo_json(created)
    elif quiet:
        click.echo(created["id"])
    else:
        click.echo(f"{_summary(created)} ({created['runtime']}, network {created['network']}) "
                   f"in {shown.elapsed_s:.1f}s")


@box.command("ls")
@click.option("--label", "labels", multiple=True, type=Pair(":", "="), metavar="K:V",
              help="only boxes with this label; repeatable (boxes having every one)")
@json_option
def box_ls(labels: tuple[tuple[str, str], ...], as_json: bool) -> None:
    """List boxes with their state, idle time, memory and disk."""
    boxes = call("GET", "/v1/boxes", params={"label": [f"{k}:{v}" for k, v in labels]})
    if as_json:
        echo_json(boxes)
        return
    if not boxes:
        click.echo("no boxes" + (" with those labels" if labels else
                                 "; create one with `burrow box create`"))
        return
    table(["ID", "NAME", "TENANT", "STATE", "RUNTIME", "IDLE", "MEMORY", "DISK", "LABELS"],
          [(b["id"], b["name"] or "-", b["tenant"] or "-", b["state"], b["runtime"],
            human_age(b["idle_s"]), human_bytes(b["memory_bytes"]), human_bytes(b["disk_bytes"]),
            ",".join(f"{k}:{v}" for k, v in sorted(b["labels"].items())) or "-")
           for b in boxes], right=("IDLE", "MEMORY", "DISK"))


@box.command("get")
@click.argument("box_id", metavar="ID")
@json_option
def box_get(box_id: str, as_json: bool) -> None:
    """Show one box in detail."""
    b = call("GET", f"/v1/boxes/{seg(box_id)}")
    if as_json:
        echo_json(b)
        return
    agent = b.get("agent")
    kv([("id", b["id"]), ("name", b["name"] or "-"), ("tenant", b["tenant"] or "-"),
        ("state", b["state"] + (f" ({b['reason']})" if b.get("reason") else "")),
        ("runtime", b["runtime"]), ("network", b["network"]),
        ("labels", ", ".join(f"{k}:{v}" for k, v in sorted(b["labels"].items())) or "-"),
        ("agent", f"{agent['harness']} {agent.get('model') or ''}".strip() if agent else "-"),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["created_at"]))),
        ("idle", human_age(b["idle_s"])), ("memory", human_bytes(b["memory_bytes"])),
        ("disk", human_bytes(b["disk_bytes"]))])


@box.command("rm")
@click.argument("box_ids", metavar="ID...", nargs=-1, required=True)
@json_option
def box_rm(box_ids: tuple[str, ...], as_json: bool) -> None:
    """Delete boxes and their files. Their named snapshots stay."""
    for box_id in box_ids:
        with progress(f"deleting {box_id}"):
            call("DELETE", f"/v1/boxes/{seg(box_id)}")
        if not as_json:
            click.echo(f"deleted {box_id}")
    if as_json:
        echo_json({"deleted": list(box_ids)})


_LIFECYCLE = {
    "pause": ("pausing", "Hold a box's processes in RAM, using no CPU. Resume is instant."),
    "resume": ("resuming", "Let a paused box run again."),
    "freeze": ("freezing", "Stop a box and pack its files to storage. Wake brings it back."),
    "wake": ("waking", "Start a frozen or archived box again. Its files are as they were."),
}


def _lifecycle_command(action: str, doing: str, summary: str) -> click.Command:
    @json_option
    @click.argument("box_id", metavar="ID")
    def command(box_id: str, as_json: bool) -> None:
        with progress(f"{doing} {box_id}") as shown:
            b = call("POST", f"/v1/boxes/{seg(box_id)}/{action}")
        if as_json:
            echo_json(b)
        else:
            click.echo(f"{_summary(b)} in {shown.elapsed_s:.1f}s")

    command.__doc__ = summary + " Idempotent."
    return click.command(action)(command)


for _action, (_doing, _summary_text) in _LIFECYCLE.items():
    box.add_command(_lifecycle_command(_action, _doing, _summary_text))


@box.command("snapshot")
@click.argument("box_id", metavar="ID")
@click.argument("name")
@json_option
def box_snapshot(box_id: str, name: str, as_json: bool) -> None:
    """Take a named snapshot of a box. Start new boxes from it with --from-snapshot."""
    with progress(f"snapshotting {box_id}"):
        snap = call("POST", f"/v1/boxes/{seg(box_id)}/snapshots", {"name": name})
    if as_json:
        echo_json(snap)
        return
    click.echo(f"{snap['id']} ({snap['name']}) of {snap['box_id']}: {snap['files']} files, "
               f"{human_bytes(snap['logical_bytes'])}")


@box.command("snapshots")
@json_option
def box_snapshots(as_json: bool) -> None:
    """List named snapshots. Start new boxes from them with box create --from-snapshot."""
    snaps = call("GET", "/v1/snapshots")
    if as_json:
        echo_json(snaps)
        return
    if not snaps:
        click.echo("no snapshots; take one with `burrow box snapshot ID NAME`")
        return
    table(["ID", "NAME", "BOX", "TENANT", "CREATED", "FILES", "SIZE"],
          [(s["id"], s["name"] or "-", s["box_id"], s["tenant"] or "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(s["created_at"])), s["files"],
            human_bytes(s["logical_bytes"])) for s in snaps], right=("FILES", "SIZE"))


@box.command("exec")
@click.argument("box_id", metavar="ID")
@click.argument("command", metavar="-- CMD...", nargs=-1, required=True)
@click.option("--cwd", help="working directory in the box  [default: /workspace]")
@click.option("-e", "--env", "env", multiple=True, type=Pair("="), metavar="K=V",
              help="environment variable for this command; repeatable")
@click.option("--timeout", type=Duration(), help="kill the command after this long, e.g. 30s or "
                                                 "10m (exit code 124)")
@click.option("--stdin", "send_stdin", is_flag=True,
              help="send this command's standard input to the box command (read to the end "
                   "first)")
@click.option("--json", "as_json", is_flag=True,
              help="wait, then print the collected result {exit_code, stdout, stderr, "
                   "duration_ms, timed_out} as one JSON document")
def box_exec(box_id: str, command: tuple[str, ...], cwd: str | None,
             env: tuple[tuple[str, str], ...], timeout: float | None, send_stdin: bool,
             as_json: bool) -> None:
    """Run a command in a box, streaming output; exit with its code.

    One CMD argument runs with `sh -c` (pipes, &&, globs work); several run as they are,
    without a shell. Put -- before CMD when it has options of its own. A frozen box is
    woken first. Exit code 124: the command timed out.
    """
    body: dict[str, Any] = {"command": command[0] if len(command) == 1 else list(command)}
    if cwd:
        body["cwd"] = cwd
    if env:
        body["env"] = dict(env)
    if timeout is not None:
        body["timeout_s"] = timeout
    if send_stdin:
        body["stdin"] = sys.stdin.read()
    if as_json:
        with progress(f"running in {box_id}"):
            result = call("POST", f"/v1/boxes/{seg(box_id)}/exec", body)
        echo_json(result)
        sys.exit(_exit_code(result))
    sys.exit(_exit_code(_stream_exec(box_id, body)))


def _stream_exec(box_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Write the command's output to ours as it arrives; the exit chunk."""
    waiting = Progress(f"running in {box_id}").start()  # until the first output
    try:
        for chunk in stream(f"/v1/boxes/{seg(box_id)}/exec/stream", body):
            waiting.stop()
            kind = chunk.get("type")
            if kind == "exit":
                return chunk
            out = sys.stderr if kind == "stderr" else sys.stdout
            out.write(str(chunk.get("data", "")))
            out.flush()
    finally:
        waiting.stop()
    fail("the output stream ended before the command did (the server went away?)")


def _exit_code(result: dict[str, Any]) -> int:
    if result.get("truncated"):
        click.echo("note: the output was cut at the server's limit per stream; run without "
                   "--json to stream all of it", err=True)
    if result.get("timed_out"):
        click.echo("error: the command timed out and was killed", err=True)
        return 124
    return int(result["exit_code"]) & 0xFF


@box.command("run")
@click.argument("box_id", metavar="ID")
@click.argument("prompt")
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path),
              help="JSON Schema file: the run's result must be a JSON value matching it")
@click.option("--model", metavar="PROVIDER/NAME", help="model for this run (overrides the box's)")
@click.option("--harness", type=click.Choice(HARNESSES), help="harness for this run")
@click.option("--timeout", type=Duration(), help="stop the run after this long, e.g. 5m")
@click.option("--max-turns", type=click.IntRange(1), help="stop after this many model turns")
@click.option("--json", "as_json", is_flag=True,
              help="wait, then print the whole run {id, status, result, output, usage, …} "
                   "as one JSON document")
def box_run(box_id: str, prompt: str, schema_file: Path | None, model: str | None,
            harness: str | None, timeout: float | None, max_turns: int | None,
            as_json: bool) -> None:
    """Give a box's agent a task and stream its work.

    The agent's text goes to stdout as it comes, its tool calls to stderr.

    With --schema, the result is validated against it and is all that goes to stdout, as
    JSON (the agent's text goes to stderr then). Exit code 0: completed, 1: failed, 124:
    timed out.
    """
    body: dict[str, Any] = {"prompt": prompt, "model": model, "harness": harness,
                            "timeout_s": timeout, "max_turns": max_turns,
                            "response_schema": _schema(schema_file) if schema_file else None}
    body = {k: v for k, v in body.items() if v is not None}
    if as_json:
        with progress(f"agent working in {box_id}"):
            run = call("POST", f"/v1/boxes/{seg(box_id)}/agent/runs", body)
        echo_json(run)
    else:
        run = _stream_run(box_id, body, structured=schema_file is not None)
    sys.exit({"completed": 0, "timed_out": 124}.get(run.get("status", ""), 1))


def _schema(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise click.BadParameter(f"{path} is not a JSON file ({exc})",
                                 param_hint="'--schema'") from None


def _stream_run(box_id: str, body: dict[str, Any], structured: bool) -> dict[str, Any]:
    # With a schema, stdout carries only the result (for jq and friends); the agent's text
    # goes to stderr with its tool calls.
    narrate = sys.stderr if structured else sys.stdout
    waiting = Progress(f"agent working in {box_id}").start()
    open_line = False  # text printed without a final newline yet
    try:
        for chunk in stream(f"/v1/boxes/{seg(box_id)}/agent/runs/stream", body):
            waiting.stop()
            kind = chunk.get("type")
            if kind == "text":
                text = str(chunk.get("text", ""))
                narrate.write(text)
                narrate.flush()
                open_line = not text.endswith("\n") if text else open_line
            elif kind == "tool_call":
                args = json.dumps(chunk.get("input", {}))
                click.secho(f"{chr(10) if open_line else ''}→ {chunk.get('name')} {args[:200]}",
                            err=True, dim=True)
                open_line = False
            elif kind == "tool_result" and chunk.get("is_error"):
                click.secho(f"✗ {chunk.get('name')}: {str(chunk.get('output'))[:200]}",
                            err=True, dim=True)
            elif kind == "finish":
                if open_line:
                    narrate.write("\n")
                return _finished(chunk.get("run") or {}, structured)
    finally:
        waiting.stop()
    fail("the run's stream ended before the run did (the server went away?)")


def _finished(run: dict[str, Any], structured: bool) -> dict[str, Any]:
    if structured and run.get("status") == "completed":
        echo_json(run.get("result"))
    elif run.get("status") != "completed":
        click.echo(f"error: run {run.get('id')} {run.get('status')}: "
                   f"{run.get('error') or 'no detail'}", err=True)
    return run
