"""`burrow box port`: preview URLs of a box's ports — open one (with a token, a password, or
public), list them, close one."""

from __future__ import annotations

import time
from typing import Any

import click

from burrow.cli.app import call, json_option, seg
from burrow.cli.boxes import box
from burrow.cli.output import echo_json, kv, table


@box.group("port")
def port() -> None:
    """Preview URLs of a box's ports: a server in the box, opened to a browser.

    A request to the URL wakes a frozen box. The URL is on the server's preview origin,
    never its API's.

    \b
    Examples:
      burrow box port open b_123 8000                 # prints the URL and its token
      burrow box port open b_123 8000 --auth basic --username ann --password '…'
      burrow box port ls b_123
      burrow box port close b_123 8000                # its token stops working
    """


def _opened(p: dict[str, Any]) -> None:
    pairs: list[tuple[str, Any]] = [("url", p["url"]), ("auth", p["auth"])]
    if p.get("token"):
        pairs += [("token", p["token"]), ("browser", f"{p['url']}?token={p['token']}")]
    if p.get("username"):
        pairs.append(("username", p["username"]))
    if p.get("password"):
        pairs.append(("password", p["password"]))
    kv(pairs)
    if p.get("token") or p.get("password"):
        click.echo("(shown once: open the port again for a new one)", err=True)


@port.command("open")
@click.argument("box_id", metavar="ID")
@click.argument("number", metavar="PORT", type=click.IntRange(1, 65535))
@click.option("--auth", type=click.Choice(["bearer", "basic", "public"]), default="bearer",
              show_default=True, help="bearer: a token; basic: a user name and password; "
                                      "public: anyone with the URL (if the operator allows)")
@click.option("--username", help="basic: the user name  [default: burrow]")
@click.option("--password", help="basic: the password  [default: one is made and shown once]")
@json_option
def port_open(box_id: str, number: int, auth: str, username: str | None,
              password: str | None, as_json: bool) -> None:
    """Open a preview URL for PORT of a box (again: a new token replaces the old one)."""
    body: dict[str, Any] = {"port": number, "auth": auth}
    if username is not None:
        body["username"] = username
    if password is not None:
        body["password"] = password
    opened = call("POST", f"/v1/boxes/{seg(box_id)}/ports", body)
    if as_json:
        echo_json(opened)
    else:
        _opened(opened)


@port.command("ls")
@click.argument("box_id", metavar="ID")
@json_option
def port_ls(box_id: str, as_json: bool) -> None:
    """List a box's open ports."""
    ports = call("GET", f"/v1/boxes/{seg(box_id)}/ports")
    if as_json:
        echo_json(ports)
        return
    if not ports:
        click.echo(f"no open ports; open one with `burrow box port open {box_id} PORT`")
        return
    table(["PORT", "AUTH", "OPENED", "URL"],
          [(p["port"], p["auth"], time.strftime("%Y-%m-%d %H:%M", time.localtime(p["created_at"])),
            p["url"]) for p in ports], right=("PORT",))


@port.command("close")
@click.argument("box_id", metavar="ID")
@click.argument("number", metavar="PORT", type=click.IntRange(1, 65535))
@json_option
def port_close(box_id: str, number: int, as_json: bool) -> None:
    """Close a port's preview URL: its token and browsers' cookies stop working."""
    call("DELETE", f"/v1/boxes/{seg(box_id)}/ports/{number}")
    if as_json:
        echo_json({"box": box_id, "port": number, "closed": True})
    else:
        click.echo(f"closed port {number} of {box_id}")
