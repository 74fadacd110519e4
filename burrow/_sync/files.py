# Generated from burrow/_async/files.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""Files in a box: raw bytes up and down, listing, deleting. Relative paths are under
/workspace."""

from __future__ import annotations

import builtins
from collections.abc import Generator

from burrow._sync.http import Http
from burrow._local import Local, StrPath
from burrow._models import FileEntry, FileEvent


class Files:
    def __init__(self, http: Http, box_id: str) -> None:
        self._http = http
        self._path = f"/v1/boxes/{box_id}/files"

    def write(self, path: str, data: str | bytes, *, mode: int | None = None) -> None:
        """Write `data` (str is UTF-8 encoded) to `path`, creating parents, replacing a file."""
        params: dict[str, str] = {"path": path}
        if mode is not None:
            params["mode"] = str(mode)
        content = data.encode() if isinstance(data, str) else data
        self._http.request("PUT", self._path, params=params, content=content)

    def read_bytes(self, path: str) -> bytes:
        response = self._http.request("GET", self._path, params={"path": path})
        return response.content

    def read(self, path: str, *, encoding: str = "utf-8") -> str:
        return (self.read_bytes(path)).decode(encoding)

    def list(self, path: str = "/workspace") -> builtins.list[FileEntry]:
        data = self._http.json("GET", f"{self._path}/list", params={"path": path})
        return [FileEntry.model_validate(item) for item in data]

    def delete(self, path: str, *, recursive: bool = False) -> None:
        self._http.request("DELETE", self._path,
                           params={"path": path, "recursive": recursive})

    def upload(self, local_path: StrPath, remote_path: str) -> None:
        """Copy a file from this machine into the box."""
        self.write(remote_path, Local.read_bytes(local_path))

    def download(self, remote_path: str, local_path: StrPath) -> None:
        """Copy a file from the box to this machine (parent directories are created)."""
        Local.write_bytes(local_path, self.read_bytes(remote_path))

    def watch(self, path: str = "/workspace", *,
              recursive: bool = False) -> Generator[FileEvent, None, None]:
        """Yield what happens under `path` as it happens (`event.type` created, modified,
        deleted or moved, `event.path`); `overflow` means some events were lost; the last is
        `end` (the path is gone, or the box froze). Stop iterating to end the watch."""
        lines = self._http.lines(f"{self._path}/watch", method="GET",
                                 params={"path": path, "recursive": recursive})
        try:
            for line in lines:
                yield FileEvent.model_validate(line)
        finally:
            lines.close()
