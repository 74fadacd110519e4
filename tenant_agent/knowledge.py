"""Shared knowledge, reached through the host services socket with this box's token (a box
without network has no other way out)."""

from __future__ import annotations

import _socket
import os

from tenant_agent.wire import dumps, loads

TIMEOUT_S = 5.0


def search(query: str, limit: int = 5) -> list[dict[str, object]]:
    """Insights that match `query` (only those enough tenants share); [] if unreachable."""
    path = os.environ.get("BURROW_HOST_SOCKET")
    token = os.environ.get("BURROW_BOX_TOKEN")
    if not path or not token:
        return []
    body = dumps({"query": query, "limit": limit})
    head = (f"POST /v1/knowledge/search HTTP/1.1\r\nHost: burrow\r\nConnection: close\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    try:
        sock.connect(path)
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        return []
    finally:
        sock.close()
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    if b" 200 " not in status_line + b" ":
        return []
    try:
        hits = loads(payload)
    except ValueError:
        return []
    return [h for h in hits if isinstance(h, dict)] if isinstance(hits, list) else []
