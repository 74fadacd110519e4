"""A query's embedding from the host, for /recall and /ask calls that bring none.

The host services socket embeds with the same model as the vectors the worker attaches to
delivered pairs: `POST /v1/embed {"texts": [...]}` -> `{"model", "vectors": [[...]]}`. Only
a vector of the model the stored vectors came from is used. A host without the route (404)
is not asked again for UNAVAILABLE_S, nor is a host that is not there; any other failure (a
host too busy to answer within TIMEOUT_S) just means full text only this time: recall never
fails for want of a vector, and a busy moment does not turn the vectors off for minutes.
"""

from __future__ import annotations

import os
import time

from tenant_agent.common import host

TIMEOUT_S = 3.0
UNAVAILABLE_S = 600.0
_unavailable_until = [0.0]


def query_vector(text: str, model: str | None) -> list[float] | None:
    """The host's embedding of `text` if it is of `model` (the stored vectors' model)."""
    if not model or not text.strip() or time.monotonic() < _unavailable_until[0]:
        return None
    try:
        answer = host.call("/v1/embed", {"texts": [text]}, TIMEOUT_S)
    except host.HostError as exc:
        socket_path = os.environ.get("BURROW_HOST_SOCKET") or ""
        if exc.status in (404, 405) or not socket_path or not os.path.exists(socket_path):
            _unavailable_until[0] = time.monotonic() + UNAVAILABLE_S  # no route, no host
        return None
    if not isinstance(answer, dict) or answer.get("model") != model:
        return None
    vectors = answer.get("vectors")
    if not isinstance(vectors, list) or not vectors or not isinstance(vectors[0], list):
        return None
    return [float(x) for x in vectors[0] if isinstance(x, (int, float))] or None
