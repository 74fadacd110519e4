"""What a deployment's description (deploy/k8s/, compose.yaml) is held to in the code: the
names of the settings the roles read, the AWS chain's variables the snapshot store's client
reads, and the `burrow` commands the roles run, parsed as `burrow` would parse them."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from importlib import import_module
from pathlib import Path

import click
import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> set[str]:
    """Every environment variable core/settings.py reads (its fields' validation aliases)."""
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias])
        names |= {c for c in choices if isinstance(c, str)}
    return names


def aws_chain_names() -> set[str]:
    """The AWS credential chain's variables that the snapshot store's client says it reads."""
    code = (ROOT / "boxes" / "objectclient.py").read_text() + (
        ROOT / "core" / "settings.py").read_text()
    return set(re.findall(r"\bAWS_[A-Z_]+[A-Z]\b", code))


def server_commands() -> dict[str, click.Command]:
    """The server's `burrow` commands (pyproject.toml's burrow.commands entry points)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        points = tomllib.load(f)["project"]["entry-points"]["burrow.commands"]
    found = {}
    for name, target in points.items():
        module, _, attr = target.partition(":")
        found[name] = getattr(import_module(module), attr)
    return found


def _inert(command: click.Command) -> click.Command:
    """The command, parsing its arguments as ever but running nothing."""
    clone = copy.copy(command)
    clone.callback = lambda *args, **kwargs: None
    if isinstance(clone, click.Group):
        clone.commands = {n: _inert(c) for n, c in clone.commands.items()}
    return clone


def parses(argv: list[str], expected_soon: tuple[str, ...] = ()) -> None:
    """argv runs as `burrow` would take it, or AssertionError (or a test failure) saying why
    not. A command named in `expected_soon` is accepted by name until it exists."""
    assert argv[0] == "burrow", f"{shlex.join(argv)}: a role runs `burrow`"
    commands = server_commands()
    name = argv[1]
    if name in expected_soon and name not in commands:
        return
    assert name in commands, f"{shlex.join(argv)}: `burrow {name}` is no server command"
    group = click.Group("burrow", commands={n: _inert(c) for n, c in commands.items()})
    try:
        group.main(argv[1:], prog_name="burrow", standalone_mode=False)
    except click.ClickException as exc:
        pytest.fail(f"{shlex.join(argv)}: {exc.format_message()}")
