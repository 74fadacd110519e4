"""`burrow kb`: the shared knowledge base the tenants' agents learn into."""

from __future__ import annotations

from urllib.parse import quote

import click

from burrow.cli.app import call, json_option, main
from burrow.cli.output import echo_json, table


@main.group()
def kb() -> None:
    """Search the shared knowledge base, and vote on what helped.

    A tenant key sees only insights enough tenants share; the operator sees all.
    """


@kb.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 100), default=5, show_default=True,
              help="most insights to show")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["fact", "preference", "tip"]),
              help="only insights of this kind (repeat for several)")
@click.option("--since", type=click.FloatRange(min=0), default=None,
              help="only insights updated at or after this time (unix seconds)")
@json_option
def kb_search(text: str, limit: int, kinds: tuple[str, ...], since: float | None,
              as_json: bool) -> None:
    """Find insights like TEXT, most relevant first."""
    body: dict[str, object] = {"query": text, "limit": limit, "kinds": list(kinds)}
    if since is not None:
        body["since"] = since
    found = call("POST", "/v1/knowledge/search", body)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no insights match (the knowledge base fills as agents learn)")
        return
    table(["ID", "SCORE", "SUPPORT", "KIND", "TEXT"],
          [(i["id"], f"{i['score']:.2f}", i["support"], i["kind"], " ".join(i["text"].split()))
           for i in found], right=("SCORE", "SUPPORT"))


@kb.command("vote")
@click.argument("insight_id")
@click.option("--helpful/--unhelpful", required=True,
              help="whether the insight helped (one vote per tenant; the latest counts)")
@json_option
def kb_vote(insight_id: str, helpful: bool, as_json: bool) -> None:
    """Tell whether insight INSIGHT_ID helped, as the key's tenant."""
    voted = call("POST", f"/v1/knowledge/insights/{quote(insight_id, safe='')}/vote",
                 {"helpful": helpful})
    if as_json:
        echo_json(voted)
        return
    click.echo(f"{voted['id']}: {voted['helpful']} helpful, {voted['unhelpful']} unhelpful")
