"""Commands that other distributions add to `burrow`, through the `burrow.commands`
entry-point group. The server distribution (burrow-server) adds serve, gateway, worker,
doctor and harness, so the client installs without any server code; on a client-only
install those names are still listed, and each says in one line what to install."""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points

import click

GROUP = "burrow.commands"
INSTALL_SERVER = "pip install 'burrow[server]'"
# The CONTRACT's server commands: named here only to say what to install when they are missing.
SERVER_COMMANDS = ("doctor", "gateway", "harness", "host", "serve", "worker")


@functools.cache
def added() -> dict[str, EntryPoint]:
    """The commands installed distributions add, by name (the first one wins)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        found.setdefault(point.name, point)
    return found


def names() -> set[str]:
    return set(added()) | set(SERVER_COMMANDS)


def load(name: str) -> click.Command | None:
    """The command `name` from the distribution that adds it; for a server command that no
    distribution adds, one that says what to install; otherwise None (no such command)."""
    point = added().get(name)
    if point is None:
        return _missing(name) if name in SERVER_COMMANDS else None
    try:
        command = point.load()
    except ImportError as exc:  # metadata left by an uninstall, or a broken install
        return _broken(name, point, f"{type(exc).__name__}: {exc}")
    if not isinstance(command, click.Command):
        return _broken(name, point, f"it is a {type(command).__name__}, not a click command")
    return command


def _failing(name: str, short_help: str, message: str) -> click.Command:
    """A command that accepts any arguments (even --help) and fails with `message`."""
    def fail() -> None:
        raise click.ClickException(message)

    return click.Command(name, callback=fail, short_help=short_help, help=message,
                         add_help_option=False,
                         context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})


def _missing(name: str) -> click.Command:
    return _failing(name, f"(needs the server: {INSTALL_SERVER})",
                    f"`burrow {name}` comes with the Burrow server (the burrow-server "
                    f"distribution), which this install lacks: {INSTALL_SERVER}")


def _broken(name: str, point: EntryPoint, why: str) -> click.Command:
    source = point.dist.name if point.dist else "its distribution"
    again = INSTALL_SERVER if name in SERVER_COMMANDS else f"pip install {source}"
    return _failing(name, f"(does not load: see `burrow {name}`)",
                    f"`burrow {name}` from {source} ({point.value}) does not load ({why}); "
                    f"reinstall it: {again}")
