"""The most tokens a model call can cost, known before it is made: what the budget reserves
(models/budgets.py), so that a call is admitted only if its worst case fits in what is left.

Input: the body as it goes to the provider, every field of it — messages of every role and
their tool calls' arguments, tools, system prompt, settings — at one token per UTF-8 byte of
its JSON. That is a bound, not an estimate: a byte-level tokenizer (every provider's is)
never makes more tokens than the text has bytes, and the JSON holds every text byte plus its
framing, which pays for the few tokens a provider adds per message. Two things cost more than
their bytes and are counted apart:

- an image costs what its size in pixels costs, whatever its bytes: `IMAGE_TOKENS` each
  (Anthropic's largest image is ~1,600 tokens, OpenAI's at high detail ~2,500), instead of
  its base64 bytes;
- tools make the provider add a tool-use system prompt (Anthropic's: 346 tokens):
  `TOOLS_TOKENS` when a request has any.

PDFs and files given inline cannot be bounded before the call (their pages become images
and text); the relay replaces them with a note (models/relay/allowlist.py), and Burrow's own
chat API carries none.

Output: the call's output bound (`max_tokens` and its spellings), one choice per call (the
relay refuses `n` > 1; the chat API has no `n`).
"""

from __future__ import annotations

import json
from typing import Any

IMAGE_TOKENS = 4096
TOOLS_TOKENS = 1024
_IMAGE_PARTS = frozenset({"image", "image_url", "input_image"})


def _without_images(value: Any, found: list[int]) -> Any:
    """`value` with each image's payload (base64 data or data: URL) emptied; one entry per
    image in `found`. Everything else of the part still counts."""
    if isinstance(value, list):
        return [_without_images(v, found) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _without_images(v, found) for k, v in value.items()}
    if isinstance(value.get("type"), str) and value["type"] in _IMAGE_PARTS:
        found.append(1)
        source = out.get("source")
        if isinstance(source, dict) and "data" in source:
            out["source"] = {**source, "data": ""}
        image = out.get("image_url")
        if isinstance(image, str):
            out["image_url"] = ""
        elif isinstance(image, dict):
            out["image_url"] = {**image, "url": ""}
    return out


def prompt_tokens(body: dict[str, Any]) -> int:
    """The most input tokens a provider can count for `body` (as sent to it)."""
    images: list[int] = []
    text = json.dumps(_without_images(body, images), ensure_ascii=False,
                      separators=(",", ":"))
    tools = TOOLS_TOKENS if body.get("tools") else 0
    return len(text.encode()) + len(images) * IMAGE_TOKENS + tools


def call_tokens(body: dict[str, Any], max_output: int) -> int:
    """The most a call of `body` can cost: its prompt and `max_output` tokens written."""
    return prompt_tokens(body) + max_output
