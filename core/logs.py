"""Logs as one JSON object per line, each with the id of the request it belongs to: the
gateway takes X-Request-Id from the client (or makes one), hands it to the box (the agent's
request header, an exec's BURROW_REQUEST_ID) and to the worker (inside each observed pair)."""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                        default=None)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {"time": f"{stamp}.{int(record.msecs):03d}Z",
                                    "level": record.levelname.lower(), "logger": record.name,
                                    "message": record.getMessage()}
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():  # whatever was passed with extra=
            if key not in _STANDARD and key != "request_id":
                entry[key] = value if isinstance(value, int | float | bool | str) else str(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}{os.urandom(3).hex()}"
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id(given: str | None) -> str:
    """The client's X-Request-Id if it is a sane one, else a new id unique to this process."""
    if given and _SAFE.match(given):
        return given
    return f"{_PREFIX}-{next(_ids)}"


def configure(fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request
    logging.getLogger("arq").setLevel(logging.WARNING)  # one line per job, cron ones included
