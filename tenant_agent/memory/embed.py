"""A query's embedding from the host, for /recall and /ask calls that bring none.

The host services socket embeds with the same model as the vectors the worker attaches to
delivered pairs: `POST /v1/embed {"texts": [...]}` -> `{"model", "vectors": [[...]]}`. Only
a vector of the model the stored vectors came from is used. A host without the route (404)
is not asked again for UNAVAILABLE_S; any other failure just means full text only this time:
recall never fails for want of a vector.
"""

from __future__ import annotations

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
        if exc.status in (0, 404, 405):  # no host socket here, or no such route on it
            _unavailable_until[0] = time.monotonic() + UNAVAILABLE_S
        return None
    if not isinstance(answer, dict) or answer.get("model") != model:
        return None
    vectors = answer.get("vectors")
    if not isinstance(vectors, list) or not vectors or not isinstance(vectors[0], list):
        return None
    return [float(x) for x in vectors[0] if isinstance(x, (int, float))] or None
