"""`burrow kb`: the shared knowledge base the tenants' agents learn into."""

from __future__ import annotations

import click

from burrow.cli.app import call, json_option, main
from burrow.cli.output import echo_json, table


@main.group()
def kb() -> None:
    """Search the shared knowledge base.

    A tenant key sees only insights enough tenants share; the operator sees all.
    """


@kb.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 100), default=5, show_default=True,
              help="most insights to show")
@json_option
def kb_search(text: str, limit: int, as_json: bool) -> None:
    """Find insights like TEXT, most similar first."""
    found = call("POST", "/v1/knowledge/search", {"query": text, "limit": limit})
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no insights match (the knowledge base fills as agents learn)")
        return
    table(["SCORE", "SUPPORT", "KIND", "TEXT"],
          [(f"{i['score']:.2f}", i["support"], i["kind"], " ".join(i["text"].split()))
           for i in found], right=("SCORE", "SUPPORT"))
