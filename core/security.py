"""Keys and tokens: the operator key, tenant API keys (stored hashed), box tokens (derived)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

BOX_TOKEN_PREFIX = "brw_box_"


def new_key(kind: str) -> str:
    return f"brw_{kind}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    """Keys are long random strings, so a plain sha256 is a safe one-way index for them."""
    return hashlib.sha256(key.encode()).hexdigest()


def _read_or_create(path: Path, make: bytes) -> tuple[bytes, bool]:
    """The file's content, creating it (mode 0600) with `make` if it does not exist. Processes
    starting together (replicas sharing a data dir) all read the one that was linked first,
    never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(make)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
            return make, True
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip(), False


def operator_key(data_dir: Path, configured: str | None) -> tuple[str, bool]:
    """The operator key and whether it was generated just now (so it is shown once)."""
    if configured:
        return configured, False
    key, created = _read_or_create(data_dir / "operator.key", new_key("op").encode())
    return key.decode(), created


def server_secret(data_dir: Path, configured: str | None = None) -> bytes:
    """The secret box tokens are derived from: BURROW_SERVER_SECRET when it is set (every role
    of a cluster shares it, each with a data dir of its own), else generated once and kept 0600
    in the data dir (nothing is written there when it is set)."""
    if configured:
        return configured.encode()
    return _read_or_create(data_dir / "server.secret", secrets.token_hex(32).encode())[0]


def box_token(secret: bytes, box_id: str) -> str:
    """A box's token, derived rather than stored: restarting or waking a box re-injects it."""
    mac = hmac.new(secret, box_id.encode(), hashlib.sha256).hexdigest()[:40]
    return f"{BOX_TOKEN_PREFIX}{box_id}.{mac}"


def box_of_token(secret: bytes, token: str) -> str | None:
    """The box id a valid token names, or None."""
    if not token.startswith(BOX_TOKEN_PREFIX) or "." not in token:
        return None
    box_id = token[len(BOX_TOKEN_PREFIX):].rsplit(".", 1)[0]
    return box_id if hmac.compare_digest(box_token(secret, box_id), token) else None


SESSION_COOKIE = "burrow_session"
SESSION_TTL_S = 12 * 3600


def _session_mac(secret: bytes, operator_key: str, expires: int, nonce: str) -> str:
    # The operator key is part of the message: changing it ends every dashboard session.
    message = f"dashboard:{expires}:{nonce}:{hash_key(operator_key)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def dashboard_session(secret: bytes, operator_key: str, now: float) -> str:
    """A dashboard session token for the cookie: signed, expiring, not the key itself."""
    expires, nonce = int(now + SESSION_TTL_S), secrets.token_hex(8)
    return f"{expires}.{nonce}.{_session_mac(secret, operator_key, expires, nonce)}"


def valid_session(secret: bytes, operator_key: str, token: str, now: float) -> bool:
    expires, _, rest = token.partition(".")
    nonce, _, mac = rest.partition(".")
    if not expires.isdigit() or int(expires) < now or not nonce:
        return False
    return hmac.compare_digest(_session_mac(secret, operator_key, int(expires), nonce), mac)
