"""A small web app for preview tests, run inside a box (standard library only):
`python3 preview_app.py PORT`. GET /echo (or any method) answers what it was sent as JSON;
/sse streams three events 0.3 s apart; /ws is a WebSocket echo; /flood?mb=N sends N MiB over
a WebSocket as fast as the reader takes it; anything else is an HTML page with a script that
reports what it can see (document.cookie) and echoes over /ws."""

import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html><meta charset=utf-8><title>box page</title>
<h1 id=hello>hello from the box</h1><pre id=cookies></pre><pre id=ws>waiting</pre>
<script>
document.getElementById('cookies').textContent = 'cookies=' + document.cookie;
const url = location.href.replace(/^http/, 'ws').replace(/[?#].*$/, '').replace(/\\/?$/, '/ws');
const ws = new WebSocket(url);
ws.onopen = () => ws.send('ping from the page');
ws.onmessage = (m) => { document.getElementById('ws').textContent = 'ws:' + m.data; };
ws.onerror = () => { document.getElementById('ws').textContent = 'ws error'; };
</script>"""
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _read_frame(rfile) -> tuple[int, bytes] | None:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", rfile.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = bytearray(rfile.read(n))
    for i in range(len(data)):
        data[i] ^= mask[i % 4]
    return opcode, bytes(data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if not size:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "burrow_session=from-the-box; Path=/")
        self.send_header("Set-Cookie", "app=1; Path=/")
        self.end_headers()
        self.wfile.write(data)

    def _any(self) -> None:
        path = self.path.split("?")[0]
        if path == "/ws" or path == "/flood":
            return self._websocket()
        if path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for n in range(3):
                self.wfile.write(f"data: event {n} at {time.time():.3f}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.3)
            self.close_connection = True
            return
        if path == "/echo":
            body = self._body()
            return self._json({"method": self.command, "path": self.path,
                               "headers": [[k.lower(), v] for k, v in self.headers.items()],
                               "body": body.decode("latin-1"), "pid": os.getpid()})
        page = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        if self.path.startswith("/flood"):
            mb = int(self.path.partition("mb=")[2] or 1)
            piece = _frame(b"x" * (1 << 20), opcode=2)
            for _ in range(mb):
                self.wfile.write(piece)
            self.wfile.write(_frame(b"", opcode=8))
            return
        while True:
            frame = _read_frame(self.rfile)
            if frame is None or frame[0] == 8:
                return
            if frame[0] in (1, 2):
                self.wfile.write(_frame(b"echo: " + frame[1], frame[0]))
                self.wfile.flush()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.serve_forever()
