"""The host's side of the tenant agents' vectors: the worker attaches an embedding of the
tenant's words to each pair it delivers, and the host services socket embeds a query
(POST /v1/embed), both with the one embedding model of the knowledge base, so the agent
compares like with like (it uses a query vector only when its model names the stored ones').

The words embedded are those the agent will read in the pair (tenant_agent/memory/turns.py's
summary(), on the same excerpts); pairs it will not learn from get none. A wake's catch-up
delivers without embeddings: the first answer after a wake never waits for them (those turns
are found by full text).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from knowledge.child import off_loop
from knowledge.embedder import Embedder
from tenant_agent.memory.turns import summary

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MAX_TEXTS = 64  # per /v1/embed call
MAX_CHARS = 2000  # per text: the model reads 256 word pieces at most


def learned_from(pairs: list[dict[str, Any]], mark: str
                 ) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """The pairs without `mark` the agent will learn from, each with its turn as the agent reads
    it (tenant_agent/memory/turns.py's summary()) and the tenant's words in it: what the host
    prepares anything for (vectors, parses, judgements of episodes)."""
    found = []
    for pair in pairs:
        if mark in pair:
            continue
        given = pair.get("turn")
        try:
            turn: dict[str, Any] = given if isinstance(given, dict) else summary(pair)
        except (ValueError, TypeError, KeyError, RecursionError):
            continue  # the agent learns nothing from a pair it cannot read either
        user = turn.get("user")
        if turn.get("learn") and isinstance(user, str) and user.strip():
            found.append((pair, turn, user))
    return found


def packed(vector: list[float]) -> str:
    """Base64 of little-endian float32: a quarter of the JSON list's size."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


class PairVectors:
    def __init__(self, embedder: Embedder, model: str | None) -> None:
        self.embedder = embedder
        self.model = model or DEFAULT_MODEL

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await off_loop(self.embedder.embed, [t[:MAX_CHARS] for t in texts])

    async def attach(self, pairs: list[dict[str, Any]]) -> None:
        """Add {"embedding": {"model", "user"}} to each pair with words to learn from."""
        found = learned_from(pairs, "embedding")
        texts = [user for _, _, user in found]
        targets = [pair for pair, _, _ in found]
        if not texts:
            return
        for pair, vector in zip(targets, await self.embed(texts), strict=True):
            pair["embedding"] = {"model": self.model, "user": packed(vector)}
