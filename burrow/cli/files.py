"""`burrow box cp`: files and directories into and out of a box, like cp with one side
written BOXID:/path."""

from __future__ import annotations

import posixpath
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from burrow.cli.app import client as http_client
from burrow.cli.app import failure, seg
from burrow.cli.boxes import box
from burrow.cli.output import echo_json, human_bytes, progress

if TYPE_CHECKING:
    from burrow._sync.http import Http as Api

# A box side is ID:path; a local path with a colon can be written ./name:with:colon.
_REMOTE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*):(.*)$", re.DOTALL)


@dataclass
class Copied:
    src: str
    dst: str
    bytes: int


def _remote(spec: str) -> tuple[str, str] | None:
    match = _REMOTE.match(spec)
    if match is None:
        return None
    return match.group(1), match.group(2) or "/workspace"


@box.command("cp")
@click.argument("src")
@click.argument("dst")
@click.option("--json", "as_json", is_flag=True,
              help="print what was copied {direction, box_id, files: [{src, dst, bytes}], "
                   "bytes} as one JSON document")
def box_cp(src: str, dst: str, as_json: bool) -> None:
    """Copy files into or out of a box (one side is ID:/path).

    SRC may be a file or a directory (copied recursively); DST an existing directory
    to copy into, or the new name.

    \b
      burrow box cp ./app.py b_123:/workspace/        # into a directory of the box
      burrow box cp ./src b_123:/workspace/src        # a directory, recursively
      burrow box cp b_123:/workspace/out.csv .        # download
      burrow box cp b_123:log.txt -                   # to stdout (relative: /workspace)
      echo hi | burrow box cp - b_123:/workspace/hi.txt
    """
    src_box, dst_box = _remote(src), _remote(dst)
    if (src_box is None) == (dst_box is None):
        raise click.UsageError(f"exactly one of SRC and DST must be ID:/path in a box (got "
                               f"{src!r} and {dst!r}); write a local path with a colon as "
                               "./name:x")
    if as_json and dst == "-":
        raise click.UsageError("--json and DST - would both write to stdout; pick one")
    client = http_client()
    from burrow._errors import BurrowError

    try:
        if dst_box is not None:
            direction, box_id = "upload", dst_box[0]
            with progress(f"uploading to {box_id}"):
                copied = _upload(client, src, *dst_box)
        else:
            assert src_box is not None
            direction, box_id = "download", src_box[0]
            with progress(f"downloading from {box_id}"):
                copied = _download(client, *src_box, dst)
    except BurrowError as exc:
        raise failure(exc) from None
    total = sum(c.bytes for c in copied)
    if as_json:
        echo_json({"direction": direction, "box_id": box_id, "bytes": total,
                   "files": [asdict(c) for c in copied]})
    elif dst != "-":
        what = f"{len(copied)} files" if len(copied) != 1 else (
            "stdin" if src == "-" else copied[0].src)
        where = copied[0].dst if len(copied) == 1 else dst
        click.echo(f"copied {what} ({human_bytes(total)}) to {where}")


def _files(box_id: str) -> str:
    return f"/v1/boxes/{seg(box_id)}/files"


def _is_remote_dir(client: Api, box_id: str, path: str) -> bool:
    from burrow._errors import BurrowError

    try:
        client.request("GET", _files(box_id) + "/list", params={"path": path})
        return True
    except BurrowError as exc:
        if exc.code in {"not_found", "not_a_directory"}:
            return False
        raise


def _upload(client: Api, src: str, box_id: str, dst: str) -> list[Copied]:
    if src == "-":
        if dst.endswith("/"):
            raise click.UsageError("from stdin, DST must name a file, not a directory")
        data = sys.stdin.buffer.read()
        client.request("PUT", _files(box_id), params={"path": dst}, content=data)
        return [Copied("-", f"{box_id}:{dst}", len(data))]
    local = Path(src)
    if not local.exists():
        raise click.ClickException(f"{src}: no such file or directory")
    if dst.endswith("/") or _is_remote_dir(client, box_id, dst):
        dst = posixpath.join(dst, local.resolve().name)
    if local.is_dir():
        pairs = [(f, posixpath.join(dst, f.relative_to(local).as_posix()))
                 for f in sorted(local.rglob("*")) if f.is_file()]
    else:
        pairs = [(local, dst)]
    copied = []
    for path, target in pairs:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
        client.request("PUT", _files(box_id), content=data,
                       params={"path": target, "mode": str(path.stat().st_mode & 0o7777)})
        copied.append(Copied(str(path), f"{box_id}:{target}", len(data)))
    return copied


def _download(client: Api, box_id: str, src: str, dst: str) -> list[Copied]:
    from burrow._errors import BurrowError

    try:
        data = client.request("GET", _files(box_id), params={"path": src}).content
    except BurrowError as exc:
        if exc.code != "is_a_directory":
            raise
        if dst == "-":
            raise click.ClickException(f"{box_id}:{src} is a directory; it cannot go to "
                                       "stdout") from None
        local = Path(dst)
        if local.is_dir():
            local = local / posixpath.basename(src.rstrip("/"))
        return _download_dir(client, box_id, src, local)
    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return [Copied(f"{box_id}:{src}", "-", len(data))]
    local = Path(dst)
    if local.is_dir() or dst.endswith("/"):
        local = local / posixpath.basename(src)
    _write(local, data)
    return [Copied(f"{box_id}:{src}", str(local), len(data))]


def _download_dir(client: Api, box_id: str, src: str, local: Path) -> list[Copied]:
    local.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = client.json("GET", _files(box_id) + "/list",
                                                params={"path": src})
    copied = []
    for entry in entries:
        target = local / _safe_name(str(entry["name"]), box_id)
        if entry["type"] == "dir":
            copied += _download_dir(client, box_id, entry["path"], target)
        elif entry["type"] == "file":
            data = client.request("GET", _files(box_id),
                                  params={"path": entry["path"]}).content
            _write(target, data)
            copied.append(Copied(f"{box_id}:{entry['path']}", str(target), len(data)))
    return copied


def _safe_name(name: str, box_id: str) -> str:
    """A name from the server's listing, used as one local path component only: a server
    (or a box) that answers '../x' or '/etc/x' must not make us write outside DST."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise click.ClickException(f"the listing of {box_id} has an entry named {name!r}, "
                                   "which cannot be a file name here; nothing was written "
                                   "for it")
    return name


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
