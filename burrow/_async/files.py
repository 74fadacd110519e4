"""Files in a box: raw bytes up and down, listing, deleting. Relative paths are under
/workspace."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator

from burrow._async.http import AsyncHttp
from burrow._local import AsyncLocal, StrPath
from burrow._models import FileEntry, FileEvent


class AsyncFiles:
    def __init__(self, http: AsyncHttp, box_id: str) -> None:
        self._http = http
        self._path = f"/v1/boxes/{box_id}/files"

    async def write(self, path: str, data: str | bytes, *, mode: int | None = None) -> None:
        """Write `data` (str is UTF-8 encoded) to `path`, creating parents, replacing a file."""
        params: dict[str, str] = {"path": path}
        if mode is not None:
            params["mode"] = str(mode)
        content = data.encode() if isinstance(data, str) else data
        await self._http.request("PUT", self._path, params=params, content=content)

    async def read_bytes(self, path: str) -> bytes:
        response = await self._http.request("GET", self._path, params={"path": path})
        return response.content

    async def read(self, path: str, *, encoding: str = "utf-8") -> str:
        return (await self.read_bytes(path)).decode(encoding)

    async def list(self, path: str = "/workspace") -> builtins.list[FileEntry]:
        data = await self._http.json("GET", f"{self._path}/list", params={"path": path})
        return [FileEntry.model_validate(item) for item in data]

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await self._http.request("DELETE", self._path,
                                 params={"path": path, "recursive": recursive})

    async def upload(self, local_path: StrPath, remote_path: str) -> None:
        """Copy a file from this machine into the box."""
        await self.write(remote_path, await AsyncLocal.read_bytes(local_path))

    async def download(self, remote_path: str, local_path: StrPath) -> None:
        """Copy a file from the box to this machine (parent directories are created)."""
        await AsyncLocal.write_bytes(local_path, await self.read_bytes(remote_path))

    async def watch(self, path: str = "/workspace", *,
                    recursive: bool = False) -> AsyncGenerator[FileEvent, None]:
        """Yield what happens under `path` as it happens (`event.type` created, modified,
        deleted or moved, `event.path`); `overflow` means some events were lost; the last is
        `end` (the path is gone, or the box froze). Stop iterating to end the watch."""
        lines = self._http.lines(f"{self._path}/watch", method="GET",
                                 params={"path": path, "recursive": recursive})
        try:
            async for line in lines:
                yield FileEvent.model_validate(line)
        finally:
            await lines.aclose()
