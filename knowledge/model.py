"""The host-side model the knowledge base may use (the `BURROW_KNOWLEDGE_MODEL` setting, on the
operator's budget): one small protocol, so this package never imports the gateway's providers.

    class ChatModel(Protocol):
        async def chat(self, messages, json_schema) -> str

`messages` are OpenAI-style `{"role", "content"}` dicts; `json_schema` is the JSON Schema the
answer must follow (providers that support structured output pass it on; the others are still
asked for JSON in the prompt). The answer is the model's text, expected to be that JSON.

Whatever a model answers is checked by rules before it is used (`knowledge.distill`,
`knowledge.canonical`): a model can make the knowledge base better, never less safe.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ChatModel(Protocol):
    async def chat(self, messages: list[dict[str, str]], json_schema: dict[str, Any]) -> str:
        """The model's answer to `messages`, as JSON following `json_schema`."""
        ...


def parse_json(answer: str) -> Any:
    """The JSON value in a model's answer: the whole text, or the first {...} in it (small
    models wrap JSON in prose or code fences). None when there is none."""
    try:
        return json.loads(answer)
    except (TypeError, ValueError):
        pass
    start, end = answer.find("{"), answer.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(answer[start:end + 1], strict=False)
        except ValueError:
            return None
    return None


async def ask_json(model: ChatModel, messages: list[dict[str, str]],
                   schema: dict[str, Any]) -> Any:
    """The model's JSON answer, or None when it fails or answers no JSON (the caller falls
    back to rules). Errors are logged, never raised: the contribute path must not fail because
    a model is down."""
    try:
        answer = await model.chat(messages, schema)
    except Exception as exc:  # any provider error: rules take over
        log.warning("knowledge model failed (%s: %s); using rules", type(exc).__name__, exc)
        return None
    return parse_json(answer)
