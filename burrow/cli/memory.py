"""`burrow memory`: what a tenant's agent holds of the tenant (tenant key or operator key)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from burrow.cli.app import call, json_option, main, seg
from burrow.cli.output import echo_json, table

KINDS = ["preference", "fact", "event", "plan", "episode"]


def _path(tenant_id: str, rest: str = "") -> str:
    return f"/v1/tenants/{seg(tenant_id)}/memories{rest}"


def _line(text: str, width: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(i["id"], i["kind"], (i.get("at") or "-")[:10],
             "yes" if i.get("current", True) else "no", _line(i["text"])) for i in items]


@main.group()
def memory() -> None:
    """List, read, export and delete what a tenant's agent learned of the tenant.

    Needs the tenant's own key or the operator's.
    """


@memory.command("ls")
@click.argument("tenant_id", metavar="TENANT")
@click.option("--kind", type=click.Choice(KINDS), help="only this kind (episode: the "
                                                       "tenant's own turns)")
@click.option("--all", "everything", is_flag=True,
              help="also the versions later ones superseded")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="most items to show")
@click.option("--cursor", help="where the previous page ended (its next_cursor)")
@json_option
def memory_ls(tenant_id: str, kind: str | None, everything: bool, limit: int,
              cursor: str | None, as_json: bool) -> None:
    """List TENANT's memories, newest first."""
    params: dict[str, Any] = {"status": "all" if everything else "current", "limit": limit}
    if kind:
        params["kind"] = kind
    if cursor:
        params["cursor"] = cursor
    page = call("GET", _path(tenant_id), params=params)
    if as_json:
        echo_json(page)
        return
    if not page["items"]:
        click.echo("no memories (the agent learns from the tenant's requests)")
        return
    table(["ID", "KIND", "SAID", "CURRENT", "TEXT"], _rows(page["items"]))
    if page.get("next_cursor"):
        click.echo(f"{page['total']} in all; next page: --cursor {page['next_cursor']}")


@memory.command("get")
@click.argument("tenant_id", metavar="TENANT")
@click.argument("memory_id", metavar="ID")
@json_option
def memory_get(tenant_id: str, memory_id: str, as_json: bool) -> None:
    """Show one memory with its provenance and history (or one episode)."""
    item = call("GET", _path(tenant_id, f"/{seg(memory_id)}"))
    if as_json:
        echo_json(item)
        return
    for key in ("id", "kind", "text", "at", "valid_from", "valid_to", "superseded_by",
                "confidence", "source", "reply"):
        if item.get(key) is not None:
            click.echo(f"{key + ':':<15}{item[key]}")
    click.echo(f"{'requests:':<15}{', '.join(item.get('request_ids') or []) or '-'}")
    for old in item.get("history") or []:
        click.echo(f"{'superseded:':<15}{old['id']} ({(old.get('at') or '-')[:10]}) "
                   f"{_line(old['text'], 70)}")


@memory.command("recall")
@click.argument("tenant_id", metavar="TENANT")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True,
              help="most results to show")
@click.option("--since", help="only what was said from then on (ISO 8601 or unix seconds)")
@click.option("--until", help="only what was said until then (ISO 8601 or unix seconds)")
@json_option
def memory_recall(tenant_id: str, query: str, limit: int, since: str | None,
                  until: str | None, as_json: bool) -> None:
    """What TENANT's agent recalls for QUERY, most relevant first."""
    body: dict[str, Any] = {"query": query, "limit": limit}
    for name, value in (("since", since), ("until", until)):
        if value:
            body[name] = float(value) if value.replace(".", "", 1).isdigit() else value
    found = call("POST", f"/v1/tenants/{seg(tenant_id)}/agent/recall", body)
    results = found.get("results") if isinstance(found, dict) else None
    if not isinstance(results, list):
        raise click.ClickException("the tenant's agent did not answer /recall with results")
    if as_json:
        echo_json(results)
        return
    if not results:
        click.echo("nothing recalled")
        return
    table(["ID", "SCORE", "KIND", "SAID", "TEXT"],
          [(r["id"], f"{r['score']:.2f}", r["kind"], (r.get("at") or "-")[:10],
            _line(r["text"], 80)) for r in results], right=("SCORE",))


@memory.command("add")
@click.argument("tenant_id", metavar="TENANT")
@click.argument("text")
@click.option("--kind", type=click.Choice(KINDS[:-1]), default="fact", show_default=True,
              help="what kind of memory it is")
@json_option
def memory_add(tenant_id: str, text: str, kind: str, as_json: bool) -> None:
    """Tell TENANT's agent something directly."""
    item = call("POST", _path(tenant_id), {"text": text, "kind": kind})
    if as_json:
        echo_json(item)
        return
    click.echo(f"{item['id']}: {item['text']}")


@memory.command("rm")
@click.argument("tenant_id", metavar="TENANT")
@click.argument("memory_ids", metavar="ID...", nargs=-1, required=True)
@json_option
def memory_rm(tenant_id: str, memory_ids: tuple[str, ...], as_json: bool) -> None:
    """Delete memories (with the versions they superseded and the turns they came from)."""
    deleted: list[str] = []
    for memory_id in memory_ids:
        deleted += call("DELETE", _path(tenant_id, f"/{seg(memory_id)}"))["deleted"]
    if as_json:
        echo_json({"deleted": deleted})
        return
    click.echo(f"deleted {len(deleted)}: {', '.join(deleted)}")


@memory.command("clear")
@click.argument("tenant_id", metavar="TENANT")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@json_option
def memory_clear(tenant_id: str, yes: bool, as_json: bool) -> None:
    """Delete everything TENANT's agent holds of the tenant, for good."""
    if not yes:
        click.confirm(f"delete every memory and turn of tenant {tenant_id}?", abort=True)
    wiped = call("DELETE", _path(tenant_id))
    if as_json:
        echo_json(wiped)
        return
    rows = sum(wiped["deleted"].values())
    click.echo(f"deleted {rows} rows and {wiped['backlog_dropped']} undelivered requests; the "
               "home box's snapshot is replaced at its next freeze")


@memory.command("export")
@click.argument("tenant_id", metavar="TENANT")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="write to this file instead of standard output")
def memory_export(tenant_id: str, output: Path | None) -> None:
    """Export everything TENANT's agent holds of the tenant as JSON."""
    exported = call("GET", _path(tenant_id, "/export"))
    if output is None:
        echo_json(exported)
        return
    import json

    output.write_text(json.dumps(exported, indent=2) + "\n")
    click.echo(f"wrote {len(exported['memories'])} memories and {len(exported['episodes'])} "
               f"episodes to {output}")


IMPORT_CHUNK = 1000  # the most pairs the server takes in one call


def _pairs(source: Iterable[str], name: str) -> list[dict[str, Any]]:
    import json

    pairs = []
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except ValueError:
            raise click.ClickException(f"{name}:{number} is not a JSON object (one pair per "
                                       "line)") from None
        if not isinstance(pair, dict):
            raise click.ClickException(f"{name}:{number} is not a JSON object (one pair per "
                                       "line)")
        pairs.append(pair)
    return pairs


@memory.command("import")
@click.argument("tenant_id", metavar="TENANT")
@click.argument("source", metavar="FILE.jsonl", type=click.File("r", encoding="utf-8"))
@json_option
def memory_import(tenant_id: str, source: Any, as_json: bool) -> None:
    """Teach TENANT's agent pairs the product served itself (or a user's history).

    FILE.jsonl (- for standard input) holds one pair a line, oldest first:
    {"request": {"path": "/chat", "body": {"message": "..."},
    "headers": {"x-burrow-user-text": "message"}}, "response": {"status": 200,
    "body": "..."}, "at": "2023-05-08T13:56:00Z", "request_id": "chat-1/3"}.
    Sent 1,000 pairs a call; a refused call names its pair, counted from the call's first
    line, and the calls before it stay stored.
    """
    pairs = _pairs(source, source.name)
    totals = {"accepted": 0, "dropped": 0}
    path = f"/v1/tenants/{seg(tenant_id)}/observations"
    for start in range(0, len(pairs), IMPORT_CHUNK):
        try:
            answer = call("POST", path, {"pairs": pairs[start:start + IMPORT_CHUNK]})
        except click.ClickException as exc:
            raise click.ClickException(f"pairs from line {start + 1} on: {exc.message}; "
                                       f"{totals['accepted']} pairs before them were "
                                       "stored") from None
        for key in totals:
            totals[key] += int(answer[key])
    if as_json:
        echo_json(totals)
        return
    dropped = (f"; {totals['dropped']} dropped: the tenant's backlog is full"
               if totals["dropped"] else "")
    click.echo(f"sent {totals['accepted']} pairs to {tenant_id}'s agent{dropped}")
