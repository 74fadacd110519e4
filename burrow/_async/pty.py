"""A terminal in a box: `box.pty.create(cols=, rows=, cwd=)`, the box user's shell on a pty
(E2B's `sandbox.pty`), over the WebSocket `/v1/boxes/{id}/pty` with the `websockets` package.

    async with await box.pty.create(cols=100, rows=30) as term:
        await term.send("echo hi; exit 3\\n")
        async for output in term:  # bytes, as the terminal shows them
            ...
        term.exit_code  # 3 (or: await term.wait())
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from burrow._async.http import AsyncHttp
from burrow._errors import BurrowError, ConnectionError, from_close

SEND_PIECE = 1 << 16  # keystrokes go in messages of at most this (the gateway takes 1 MiB)


class AsyncPty:
    def __init__(self, http: AsyncHttp, box_id: str) -> None:
        self._http = http
        self._box_id = box_id

    async def create(self, *, cols: int = 80, rows: int = 24,
                     cwd: str | None = None) -> AsyncTerminal:
        """Open the box user's shell (bash, else sh) on a terminal of `cols` x `rows` (1 to
        1000 each), in `cwd` (default /workspace). A frozen box wakes first. The box runs at
        most 4 terminals at once, a tenant 16 (RateLimitError beyond)."""
        config = self._http.config
        query: dict[str, str | int] = {"cols": int(cols), "rows": int(rows)}
        if cwd is not None:
            query["cwd"] = cwd
        url = (config.url.replace("http", "ws", 1) + f"/v1/boxes/{self._box_id}/pty?"
               + urlencode(query))
        headers = {"Authorization": f"Bearer {config.api_key}", "User-Agent": "burrow-python",
                   **dict(config.headers)}
        try:
            # entered as a context manager would be (the terminal closes it): websockets
            # 17.1 deprecates a sync connection used without one
            socket = await connect(url, additional_headers=headers, max_size=1 << 20,
                                   open_timeout=config.timeout + 60).__aenter__()
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise ConnectionError(f"cannot open a terminal at {config.url} ({exc}); start it "
                                  "with `burrow serve`, or set BURROW_URL to its address",
                                  code="unreachable") from None
        return AsyncTerminal(socket)


class AsyncTerminal:
    """An open terminal. Iterate for its output (bytes) until the shell ends; then
    `exit_code` is the shell's. Closing it (or leaving `async with`) hangs up the shell."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self.exit_code: int | None = None

    async def send(self, data: bytes | str) -> None:
        """Keystrokes (a str is sent as UTF-8)."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        try:
            for start in range(0, len(raw), SEND_PIECE):
                await self._socket.send(raw[start:start + SEND_PIECE])
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def resize(self, cols: int, rows: int) -> None:
        try:
            await self._socket.send(json.dumps({"type": "resize", "cols": int(cols),
                                                "rows": int(rows)}))
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    def __aiter__(self) -> AsyncTerminal:
        return self

    async def __anext__(self) -> bytes:
        while self.exit_code is None:
            try:
                message = await self._socket.recv()
            except ConnectionClosed as exc:
                raise self._closed(exc) from None
            if isinstance(message, bytes):
                return message
            control: Any = json.loads(message)
            if isinstance(control, dict) and control.get("type") == "exit":
                self.exit_code = int(control["code"])
        raise StopAsyncIteration

    async def wait(self) -> int:
        """The shell's exit code, once it ends (output until then is read and dropped)."""
        async for _ in self:
            pass
        assert self.exit_code is not None
        return self.exit_code

    def _closed(self, exc: ConnectionClosed) -> BurrowError:
        """The terminal ended without the shell's exit: why, as the server said it."""
        received = exc.rcvd
        if received is None:
            return ConnectionError("the connection to the terminal broke off",
                                   code="unreachable")
        return from_close(received.code, received.reason)

    async def close(self) -> None:
        """Hang up: the shell gets SIGHUP."""
        await self._socket.close()

    async def __aenter__(self) -> AsyncTerminal:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
