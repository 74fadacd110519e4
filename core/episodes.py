"""The host's side of the agents' judgement of episodes: the worker attaches to each pair it
delivers the sentences of the tenant's words that are episodic (what happened around the time
it was said, a mood: knowledge/episodic.py), so the agent in the box, which cannot parse
English with the standard library, proposes none of them as shared knowledge
(tenant_agent/memory/episodes.py). The knowledge base refuses them either way: this spares the
proposing, it is no defence.

The sentences are those the agent reads in the pair (tenant_agent/memory/turns.py's summary(),
cut as tenant_agent/memory/utterance.py cuts them); pairs it will not learn from get none, and
a pair with no episodic sentence gets no field. Like the vectors, a wake's catch-up delivers
without them; so does a delivery while the parser's process fails (it never holds one up).
"""

from __future__ import annotations

import logging
from typing import Any

from core.vectors import learned_from
from knowledge.child import off_loop
from knowledge.reading import Reader
from tenant_agent.memory.utterance import sentences

log = logging.getLogger("burrow.observe")

MAX_SENTENCES = 64  # judged per pair: a pasted document teaches the agent nothing to share
MAX_CHARS = 1000  # per sentence: longer is no statement to share


class PairEpisodes:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    async def attach(self, pairs: list[dict[str, Any]]) -> None:
        """Add {"episodic": [sentence, ...]} to each pair with episodic sentences."""
        texts: list[str] = []
        owners: list[dict[str, Any]] = []
        for pair, _, user in learned_from(pairs, "episodic"):
            said = [s for s in sentences(user) if len(s) <= MAX_CHARS][:MAX_SENTENCES]
            texts += said
            owners += [pair] * len(said)
        if not texts:
            return
        try:
            readings = await off_loop(self.reader.read, texts)
        except (ValueError, RuntimeError, OSError) as exc:  # the parser's process failed
            log.warning("judging episodes of %d sentences: %s", len(texts), exc)
            return  # delivered without: the agent proposes them, the host refuses them
        for pair, text, reading in zip(owners, texts, readings, strict=True):
            if reading.episode is not None:
                pair.setdefault("episodic", []).append(text)
