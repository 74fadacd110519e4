"""What the relay lets through, decided before anything is forwarded.

- **Paths**: a box calls `/v1/relay/{family}/{path}` on the host socket, `family` being the API
  family its CLI speaks (`anthropic` for Claude Code, `openai` for Codex and OpenCode) and
  `path` the CLI's own request path. Only inference is relayed: `POST /v1/messages`
  (anthropic), `POST /v1/responses` and `POST /v1/chat/completions` (openai), matched exactly
  (a query string is ignored). Everything else — model lists, token counting, files,
  batches, stored responses, embeddings, any `..` or encoded trick — is refused, 404.
- **Headers**: an allowlist. Only what changes the meaning of the body at the provider passes
  (`anthropic-version`; the beta flags of `anthropic-beta` and `openai-beta` that the
  operator's policy names, `allowlist.beta_headers`); the client's credentials
  (`authorization`, `x-api-key`), organisation and project (`openai-organization`,
  `openai-project`, `anthropic-organization`…), account, session and telemetry headers never do.
- **Fields, tools, content**: what of the body may reach the provider is `allowlist.screen`'s.
- **Model**: pinned — whatever model a request names (the CLIs' side calls name their own
  small models), it goes to the box's configured one.
- **Output**: bounded by a ceiling that clamps rather than refuses (the CLIs ask for 32k).
- **Body**: JSON, at most `max_bytes` once decoded; gzip, deflate and zstd encodings are read.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zstandard

from models.relay.allowlist import STRICT, RelayAllowance, beta_headers
from models.relay.wire import RelayError

FAMILIES: dict[str, dict[str, str]] = {
    "anthropic": {"/v1/messages": "messages"},
    "openai": {"/v1/responses": "responses", "/v1/chat/completions": "chat"},
}
FORWARDED_HEADERS: dict[str, tuple[str, ...]] = {
    "messages": ("anthropic-version",),
    "responses": (),
    "chat": (),
}
MAX_BODY_BYTES = 8 << 20
# The field each wire API bounds its output with.
OUTPUT_FIELDS = {"messages": ("max_tokens",), "responses": ("max_output_tokens",),
                 "chat": ("max_tokens", "max_completion_tokens")}
ANTHROPIC_MIN_THINKING = 1024


@dataclass(frozen=True)
class Route:
    family: str
    wire: str  # messages | responses | chat
    path: str  # the inference path, normalised


def route(family: str, method: str, path: str) -> Route:
    """The inference call `method path` is, for a CLI of `family`; RelayError if none."""
    paths = FAMILIES.get(family)
    if paths is None:
        raise RelayError(404, "not_relayed",
                         f"no relay for {family!r}: use /v1/relay/anthropic/… (Claude Code) or "
                         "/v1/relay/openai/… (Codex, OpenCode)")
    clean = "/" + path.split("?", 1)[0].lstrip("/")
    clean = clean.rstrip("/") or "/"
    wire = paths.get(clean)
    if wire is None:
        raise RelayError(404, "not_relayed",
                         f"only inference is relayed for {family}: POST "
                         f"{' or POST '.join(paths)}; {clean} is not")
    if method.upper() != "POST":
        raise RelayError(405, "method_not_allowed", f"{clean} takes POST only")
    return Route(family, wire, clean)


def client_headers(wire: str, headers: Mapping[str, str],
                   allow: RelayAllowance = STRICT) -> dict[str, str]:
    """The client's headers that may reach the provider (lower-cased names)."""
    allowed = FORWARDED_HEADERS.get(wire, ())
    return {**{k.lower(): v for k, v in headers.items() if k.lower() in allowed},
            **beta_headers(wire, headers, allow)}


def read_body(raw: bytes, encoding: str | None = None,
              max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object, decoded and bounded."""
    coding = (encoding or "identity").strip().lower()
    try:
        if coding in ("gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
            decoder = zlib.decompressobj(wbits)
            raw = decoder.decompress(raw, max_bytes + 1)
        elif coding == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
                raw = reader.read(max_bytes + 1)
        elif coding != "identity":
            raise RelayError(415, "unsupported_encoding",
                             f"content-encoding {coding!r}: send identity, gzip or zstd")
    except (zlib.error, zstandard.ZstdError) as exc:
        raise RelayError(400, "invalid_request", f"the body is not valid {coding}") from exc
    if len(raw) > max_bytes:
        raise RelayError(413, "too_large", f"the request body is over {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        raise RelayError(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise RelayError(400, "invalid_request", "the body is not a JSON object")
    return body


def pin_model(body: dict[str, Any], name: str) -> dict[str, Any]:
    """`body` naming the model `name` (the provider's own name, without `provider/`)."""
    return {**body, "model": name}


def requested_output(wire: str, body: dict[str, Any]) -> int | None:
    """The output bound the request asks for (to reserve against a budget), if any."""
    for field in OUTPUT_FIELDS.get(wire, ()):
        value = body.get(field)
        if isinstance(value, int) and value > 0:
            return value
    return None


def clamp_output(wire: str, body: dict[str, Any], ceiling: int) -> dict[str, Any]:
    """`body` with its output bounded by `ceiling` (set where the request left it open, since
    open means the model's maximum). A Messages `thinking` budget, which must stay below
    `max_tokens`, shrinks with it, or goes when no room for Anthropic's minimum is left."""
    fields = OUTPUT_FIELDS[wire]
    present = [f for f in fields if isinstance(body.get(f), int)]
    out = dict(body)
    for field in present or fields[:1]:
        value = body.get(field)
        out[field] = min(value, ceiling) if isinstance(value, int) and value > 0 else ceiling
    thinking = body.get("thinking")
    if wire == "messages" and isinstance(thinking, dict) and isinstance(
            thinking.get("budget_tokens"), int) and thinking["budget_tokens"] >= out[fields[0]]:
        room = out[fields[0]] - 1
        if room >= ANTHROPIC_MIN_THINKING:
            out["thinking"] = {**thinking, "budget_tokens": room}
        else:
            out.pop("thinking")
    return out
