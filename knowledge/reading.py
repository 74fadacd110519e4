"""What the host reads in a statement by parsing it with spaCy's English pipeline (the name
detector's model): whether it is episodic (`knowledge.episodic`) and its role in a fact told
in parts (`knowledge.parts`). One parse serves both.

    Reader.read(texts) -> [Reading(episode, role, names), ...]

A statement told of the teller's own experience or of particular things
(`knowledge.episodic.told`) has its role marked "told:" ("told:fix"): it may be a part of a fact,
never knowledge alone (`knowledge.clusters`). Told and saying only what the teller or people
are, do or feel, with no cause or fix in it, it is a personal anecdote: episode "personal".

`SpacyReader` parses in this process, with the name detector's pipeline when it runs here too;
`ProcessReader` asks the name detector's child process (`knowledge.ner_child`), which has the
pipeline loaded already, so the worker holds one copy of the model (`beside` picks).
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from knowledge.child import Child
from knowledge.episodic import Prototypes, acted, news, personal, told, why
from knowledge.ner import NameFinder, PresidioNames, ProcessNames, default_model
from knowledge.parts import TOLD, may_order, named_things, role


@dataclass(frozen=True)
class Reading:
    episode: str | None  # the kind of episode (`knowledge.episodic.KINDS`), None: it may be
                         # knowledge
    role: str  # symptom | cause | fix (`knowledge.parts.ROLES`), after TOLD when told
    names: tuple[str, ...] = ()  # the named things it names (`knowledge.parts.named_things`)

    @property
    def part(self) -> str:
        """The role without the mark of a told statement."""
        return self.role.removeprefix(TOLD)

    @property
    def told(self) -> bool:
        return self.role.startswith(TOLD)


class Reader(Protocol):
    """Reads statements: one `Reading` for each."""

    def read(self, texts: Sequence[str]) -> list[Reading]: ...


class SpacyReader:
    """The reader in this process: spaCy's English pipeline loaded on first use, or the
    pipeline of `names` (a `PresidioNames`) when given, so one model serves both. Thread-safe:
    parses are serialised (a pipeline is not meant for concurrent calls)."""

    def __init__(self, model: str | None = None, names: PresidioNames | None = None) -> None:
        self._model = model or default_model()
        self._names = names
        self._nlp: Any = None
        self._prototypes: Prototypes | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        self.read(["Warm up."])

    def _parse(self, texts: list[str]) -> list[Any]:
        if self._names is not None:
            return self._names.parse(texts)
        with self._lock:
            if self._nlp is None:
                import spacy

                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"\[W095\]")  # see knowledge.ner
                    self._nlp = spacy.load(self._model)
            return list(self._nlp.pipe(texts))

    def read(self, texts: Sequence[str]) -> list[Reading]:
        docs = self._parse(list(texts))
        if not docs:
            return []
        if self._prototypes is None:
            self._prototypes = Prototypes(docs[0].vocab)
        orders = [i for i, doc in enumerate(docs) if may_order(doc)]
        pleased = dict(zip(orders, self._parse(
            [f"Please {texts[i][:1].lower()}{texts[i][1:]}" for i in orders]), strict=True))
        prototypes = self._prototypes
        return [_reading(doc, pleased.get(i), prototypes) for i, doc in enumerate(docs)]


def _reading(doc: Any, pleased: Any, prototypes: Prototypes) -> Reading:
    """What the parsed statement `doc` is (`pleased`: its parse after "Please ", if any)."""
    episode = why(doc, prototypes)
    if not told(doc):
        return Reading(episode, role(doc, pleased), named_things(doc))
    if episode is None and news(doc):
        return Reading("news", TOLD + role(doc, pleased), named_things(doc))
    part = role(doc, pleased, told_with=prototypes)
    if episode in (None, "event") and part == "symptom" and acted(doc, prototypes):
        return Reading(None, TOLD + "fix", named_things(doc))  # what the teller did to it
    if episode is None and part == "symptom" and personal(doc, prototypes):
        episode = "personal"
    return Reading(episode, TOLD + part, named_things(doc))


class ProcessReader:
    """`SpacyReader` in the name detector's child process (`knowledge.ner_child`)."""

    def __init__(self, model: str | None = None) -> None:
        self.child = Child.shared([sys.executable, "-m", "knowledge.ner_child",
                                    model or default_model()],
                                   "the name detector's process")

    def read(self, texts: Sequence[str]) -> list[Reading]:
        if not texts:
            return []
        answer = self.child.ask(("read", list(texts)))
        return [Reading(None if episode is None else str(episode), str(part),
                        tuple(str(n) for n in named)) for episode, part, named in answer]


def beside(names: NameFinder) -> Reader:
    """The reader that parses with the name detector's pipeline: in this process when the
    detector runs here, else in the detector's child process."""
    if isinstance(names, PresidioNames):
        return SpacyReader(names=names)
    return ProcessReader(names.model if isinstance(names, ProcessNames) else None)
