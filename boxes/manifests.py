"""A snapshot's manifest: its bytes (zstd-compressed JSON, the same in every store engine) and
the check that refuses, before anything is written, one that could reach outside its layer.

An entry is `{"p": path, "t": kind, "m": mode, "mt": mtime_ns, ...}` with kind `d` (directory),
`f` (file: size `s`, sha256 `h`, data extents `e` of a sparse file), `h` (hard link to the
earlier file `l`), `l` (symlink to `l`), `w` (overlay whiteout) or `p` (fifo); `x` holds user.*
xattrs (base64). Entries come parents first.

Format 2 (the object store's, boxes/packfiles.py) adds `k` to a file whose content is a segment
of a pack object rather than a blob of its own: `[pack sha256, the logical bytes of the files
whose content it holds, how many file contents it holds]`. A manifest without any `k` is
written as format 1, which every engine and every earlier Burrow reads.

A manifest of a format this code does not know (written by a newer Burrow) is refused by
name (ManifestFormatError), never read as if it were one it knows: a restore from it writes
nothing, and a garbage collection that meets it deletes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

import zstandard

from boxes.errors import ManifestFormatError, SnapshotError

FORMAT = 1
PACKED_FORMAT = 2
FORMATS = (FORMAT, PACKED_FORMAT)
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
ID_RE = re.compile(r"^s_[0-9a-z]{16}$")

Entries = list[dict[str, Any]]


def encode(entries: Entries) -> bytes:
    packed = any("k" in entry for entry in entries)
    data = json.dumps({"format": PACKED_FORMAT if packed else FORMAT, "entries": entries},
                      separators=(",", ":")).encode()
    return zstandard.ZstdCompressor(level=3).compress(data)


def decode(raw: bytes, snapshot_id: str) -> Entries:
    """The entries of a stored manifest (not validated); ManifestFormatError if it is of a
    format this code does not read, SnapshotError if it cannot be read at all."""
    try:
        data = json.loads(zstandard.ZstdDecompressor().decompress(raw))
        fmt = data.get("format")
        entries: Entries = data["entries"]
    except (ValueError, KeyError, TypeError, AttributeError, zstandard.ZstdError) as exc:
        raise SnapshotError(f"snapshot {snapshot_id} is unreadable: {exc}") from exc
    if type(fmt) is not int or fmt not in FORMATS:
        raise ManifestFormatError(
            f"snapshot {snapshot_id} is in manifest format {fmt!r}, which this host's Burrow "
            f"does not read (it reads formats {', '.join(map(str, FORMATS))}): a newer Burrow "
            "wrote it. Upgrade Burrow on this host (docs/boxes.md, \"Upgrading hosts\"); the "
            "snapshot is kept as it is, and a host that reads it wakes the box")
    if not isinstance(entries, list):
        raise SnapshotError(f"snapshot {snapshot_id} is unreadable: its entries are no list")
    return entries


def digests(entries: Entries) -> set[str]:
    """The content (sha256) of every file a manifest names."""
    return {entry["h"] for entry in entries if entry.get("t") == "f"}


def references(entries: Entries) -> set[str]:
    """The objects a manifest needs, by name: a blob's is its digest, a pack object's
    `packs/<sha256>` (boxes/packfiles.py)."""
    names: set[str] = set()
    for entry in entries:
        if entry.get("t") == "f":
            ref = entry.get("k")
            names.add(f"packs/{ref[0]}" if ref is not None else entry["h"])
    return names


def validate(entries: Entries) -> None:
    """Refuse, before anything is written, a manifest that could reach outside its layer."""
    links: set[str] = set()
    seen: set[str] = set()
    files: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise SnapshotError("manifest entries must be objects")
        path = _check_path(entry.get("p"), links)
        if path in seen:
            raise SnapshotError(f"manifest entry {path!r} appears twice")
        seen.add(path)
        _check_entry(path, entry)
        if entry["t"] == "l":
            links.add(path)
        elif entry["t"] == "f":
            files.add(path)
        elif entry["t"] == "h" and entry.get("l") not in files:
            raise SnapshotError(f"manifest entry {path!r} links to {entry.get('l')!r}, "
                                "which is no earlier file of the snapshot")


def _check_path(path: object, links: set[str]) -> str:
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        raise SnapshotError(f"manifest entry {path!r}: paths must be relative")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SnapshotError(f"manifest entry {path!r}: '..', '.' and empty parts are not allowed")
    for depth in range(1, len(parts)):
        if "/".join(parts[:depth]) in links:
            raise SnapshotError(f"manifest entry {path!r} would be written through a symlink")
    return path


def _check_entry(path: str, entry: dict[str, Any]) -> None:
    kind = entry.get("t")
    if kind == "l":
        if not isinstance(entry.get("l"), str) or "\0" in entry["l"]:
            raise SnapshotError(f"manifest entry {path!r}: bad link target")
    elif kind == "f":
        if not isinstance(entry.get("h"), str) or not _HASH_RE.match(entry["h"]):
            raise SnapshotError(f"manifest entry {path!r}: bad content hash")
        _check_extents(path, entry)
        _check_pack(path, entry)
    elif kind == "h":
        if not isinstance(entry.get("l"), str):
            raise SnapshotError(f"manifest entry {path!r}: bad link target")
        return
    elif kind not in ("d", "w", "p"):
        raise SnapshotError(f"manifest entry {path!r}: unknown type {kind!r}")
    mode = entry.get("m", 0)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise SnapshotError(f"manifest entry {path!r}: bad mode")


def _check_extents(path: str, entry: dict[str, Any]) -> None:
    size, extents = entry.get("s", 0), entry.get("e")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise SnapshotError(f"manifest entry {path!r}: bad size")
    if extents is None:
        return
    end = 0
    if not isinstance(extents, list):
        raise SnapshotError(f"manifest entry {path!r}: bad extents")
    for extent in extents:
        if (not isinstance(extent, list) or len(extent) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in extent)
                or extent[0] < end or extent[1] <= 0 or extent[0] + extent[1] > size):
            raise SnapshotError(f"manifest entry {path!r}: bad extents")
        end = extent[0] + extent[1]


def _check_pack(path: str, entry: dict[str, Any]) -> None:
    ref = entry.get("k")
    if ref is None:
        return
    if (not isinstance(ref, list) or len(ref) != 3 or not isinstance(ref[0], str)
            or not _HASH_RE.match(ref[0])
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                       for n in ref[1:])):
        raise SnapshotError(f"manifest entry {path!r}: bad pack reference")
