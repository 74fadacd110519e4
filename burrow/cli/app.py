"""The `burrow` group itself: how any failure becomes one `error: …` line and an exit code,
which commands it has, and the HTTP call helpers every client command uses."""

from __future__ import annotations

import errno
import getpass
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import quote

import click

from burrow.cli import plugins

if TYPE_CHECKING:
    from burrow._errors import BurrowError
    from burrow._sync.http import Http

EXAMPLES = """
\b
Examples:
  burrow serve                                  # everything on this machine, port 8420
  export BURROW_API_KEY=...                     # the operator key serve printed
  burrow tenant create acme                     # a tenant, its home box and its key
  burrow box create --runtime python --label team:x
  burrow box exec b_123 -- python -c 'print(1+1)'
  burrow box cp ./data.csv b_123:/workspace/    # upload; swap the two to download
  burrow box freeze b_123 && burrow box wake b_123
  burrow kb search "retry flaky network calls" --json
\b
Client commands talk to BURROW_URL (default http://127.0.0.1:8420) with BURROW_API_KEY
(default: the operator.key in BURROW_DATA_DIR, ./.burrow). Every command that prints
something takes --json for one JSON document on stdout; failures print one `error:` line
on stderr and exit non-zero.
"""


class BurrowGroup(click.Group):
    """A group whose failures are one line on stderr, `error: <message>`, never a traceback
    (set BURROW_DEBUG=1 to see one for an unexpected error). Besides its own commands, it
    has those other distributions add (burrow/cli/plugins.py: the server's)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | plugins.names())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or plugins.load(cmd_name)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx else ""
            fail(exc.format_message().rstrip(".") + hint, exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("interrupted", 130)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `burrow box ls | head`: the reader left; fine
                os._exit(0)
            _unexpected(exc)
        except Exception as exc:  # a bug: still one line, unless asked for the traceback
            _unexpected(exc)
        sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = 1) -> NoReturn:
    one_line = " ".join(message.split())
    click.echo(f"error: {one_line}", err=True)
    sys.exit(code)


def _unexpected(exc: Exception) -> NoReturn:
    if os.environ.get("BURROW_DEBUG"):
        raise exc
    fail(f"unexpected {type(exc).__name__}: {exc} (BURROW_DEBUG=1 shows where)")


@click.group(cls=BurrowGroup, epilog=EXAMPLES,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="burrow", help="Show the version and exit.")
def main() -> None:
    """Burrow: a small persistent Linux computer per tenant, frozen when idle."""


# --- client side (over HTTP: BURROW_URL, BURROW_API_KEY) -----------------------------------
# The CLI speaks through the SDK's own client (burrow/_sync/http.py) and error tree.

CLI_TIMEOUT_S = 300.0  # box starts, freezes and snapshots of big boxes take a while


def _key() -> str:
    key = os.environ.get("BURROW_API_KEY", "").strip()
    if key:
        return key
    # `burrow serve` on this machine keeps its generated operator key in its data dir.
    stored = Path(os.environ.get("BURROW_DATA_DIR", ".burrow")) / "operator.key"
    try:
        return stored.read_text().strip()
    except OSError:
        raise click.ClickException("no key: set BURROW_API_KEY (the operator key `burrow "
                                   f"serve` printed, also in {stored})") from None


def client() -> Http:
    """The SDK's HTTP client, with the key, and the actor the policy history names."""
    from burrow._config import resolve
    from burrow._sync.http import Http

    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    return Http(resolve(_key(), None, CLI_TIMEOUT_S, headers={"X-Burrow-Actor": actor}))


def failure(exc: BurrowError) -> click.ClickException:
    """One line for a failed call: the server's message and, when it answered, its status."""
    status = f" (HTTP {exc.status})" if exc.status else ""
    return click.ClickException(f"{exc.message}{status}")


def call(method: str, path: str, json: object = None,
         params: dict[str, Any] | None = None) -> Any:
    """A JSON call to the server; any failure is a ClickException with the server's message."""
    from burrow._errors import BurrowError

    try:
        return client().json(method, path, json=json, params=params)
    except BurrowError as exc:
        raise failure(exc) from None


def stream(path: str, body: object) -> Iterator[dict[str, Any]]:
    """The NDJSON chunks of a streamed call, as they arrive (no read timeout: a command may
    stay quiet as long as it likes)."""
    from burrow._errors import BurrowError

    try:
        yield from client().lines(path, body)
    except BurrowError as exc:
        raise failure(exc) from None


JSON_HELP = "print one JSON document (machine output) instead of text"


F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(fn)


def seg(value: str) -> str:
    """`value` as one path segment: an id with a / or .. cannot reach another route."""
    if value in {"", ".", ".."}:
        raise click.BadParameter(f"{value!r} is not an id")
    return quote(value, safe="")
