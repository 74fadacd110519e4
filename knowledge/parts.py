"""Facts told in parts: one tenant says the symptom ("Kafka consumers keep rebalancing"),
another the cause ("processing takes longer than max.poll.interval.ms"), a third the fix
("raise max.poll.interval.ms"). Each is a different statement, so none is a paraphrase of
another and none alone answers a newcomer who asks about the symptom; together they are one
fact. This module owns what joins them.

A statement's role, from spaCy's parse of it (`role`):

    fix       advice: an imperative ("raise max.poll.interval.ms"), or a modal of advice
              ("consumers should poll more often")
    cause     a reason: a causal clause or phrase ("… because …", "… due to …") or a verb of
              causing ("X causes / means / triggers / leads to / comes from Y")
    symptom   any other statement: what is seen, or what is so

A told statement (the teller's own experience: `knowledge.episodic.told`) is also a fix when it
says what the teller does now ("now I rinse it in a sieve"), or what an action did: a result
joined to it, in the present, about something else ("I scraped it out with a toothpick and the
cable clicks in properly again", "a ballpoint needle sorted it and the stitches come out
even"), or a result after "once I …"; and a cause when a clause opened by "so" follows what
explains it ("there was air trapped up there, so the hot water couldn't reach the top") or
when it reports a finding ("the vet told me cats scratch to stretch").

A cluster (`knowledge.clusters`) holds one part per role. A statement joins a cluster as a
paraphrase of the part of its own role (cosine at least the merge threshold, numbers and
negation agreeing: `knowledge.clusters.compatible`), or, when the cluster has no part of its
role (or a told statement, whose role is the parse's guess at a story's part), as a new part
(`joins_as_part`): its cosine with the closest of the cluster's parts (`knowledge.base`) at
least PART_THRESHOLD sharing a content word with the cluster's statements, or at least
WORDS_THRESHOLD sharing ANCHOR_WORDS (symptom, cause and fix of one fact are close in meaning,
not paraphrases: 0.41-0.79 on the first dev facts, but 0.24-0.65 for parts told in the first
person in conversational words, bench/data/heldout2/facts_in_parts.json; -0.06-0.22 between
facts; a fact's parts name the same things: "Kafka", "consumer", "max.poll.interval.ms"),
and, when both name things (proper nouns, acronyms, code names: `names`), a name. Negation
and numbers are not compared between parts: a cause's "not" does not contradict a symptom.

What others see of a cluster of several parts is composed by `knowledge.canonical` (symptom,
then cause, then fix), each part stated from the words k tenants of the cluster used: k-
anonymity of words holds for the composed text as for any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from knowledge.episodic import explains, once_did, result_of, speaker
from knowledge.words import STOP_WORDS, content_words, stem, words

ROLES = ("symptom", "cause", "fix")  # in the order a composed text states them
TOLD = "told:"  # before the role of a told statement (`knowledge.reading`)
PART_THRESHOLD = 0.40
WORDS_THRESHOLD = 0.35  # closeness enough for a part that shares ANCHOR_WORDS words
ANCHOR_WORDS = 2

# Subordinators and phrases that give a reason ("because", "due to"), and verbs of causing.
_REASONS = frozenset({"because", "since", "as"})
_REASON_PHRASES = (("due", "to"), ("because", "of"), ("caused", "by"), ("thanks", "to"))
_CAUSING = frozenset({"cause", "mean", "trigger", "lead", "result", "stem", "produce"})
_ADVISING = frozenset({"should", "must", "ought"})
# Verbs that report a finding, whose clause is the cause found ("the garage found …").
_FINDING = frozenset({"find", "discover", "notice", "spot", "realise", "realize", "tell", "show",
                      "reckon", "learn"})


# What a sentence that may be an order opens with; such a sentence is parsed again after
# "Please" (`imperative`), which the tagger reads as an order far more often: alone it took
# "Set PATH …", "Feed tomatoes …", "Descale a coffee machine …" for nouns and adjectives.
_NOT_ORDERS = frozenset({"DT", "PRP", "PRP$", "IN", "CD", "WDT", "WP", "WRB", "CC", "EX", "MD",
                         "PDT", "POS", "TO", "RB"})


def may_order(doc: Any) -> bool:
    """Whether the statement opens with a word that could be an order's verb."""
    return len(doc) > 1 and doc[0].tag_ not in _NOT_ORDERS and doc[0].text[:1].isupper()


def _subject(token: Any) -> list[Any]:
    return [c for c in token.children if c.dep_ in ("nsubj", "nsubjpass", "csubj", "expl")]


def _said_of_first_words(sent: Any) -> bool:
    """A finite verb whose subject is where the sentence starts ("Cast iron pans get rusty
    spots"): a statement, whatever its first word could be."""
    return any(t.tag_ in ("VBZ", "VBP", "VBD") and any(s.left_edge.i == sent.start
                                                       for s in _subject(t)) for t in sent)


# Adverbs that hedge what would be an order into the speaker's plan or guess ("maybe catch
# the second half"), as a modal does ("might watch it").
_HEDGES = frozenset({"maybe", "perhaps", "probably", "possibly"})


def _hedged(root: Any) -> bool:
    """An order's verb with a modal other than advice's or a hedging adverb: the speaker's
    plan, not advice."""
    return any((c.dep_ == "aux" and c.tag_ == "MD" and c.lower_ not in _ADVISING)
               or (c.dep_ == "advmod" and c.lower_ in _HEDGES) for c in root.children)


def _teller_aside(sent: Any) -> bool:
    """A verbless-subject sentence whose clause of the teller says it is their guess or
    thought ("Think I'm getting the cold", "Blame the storm I guess"): the teller speaking,
    not an order."""
    root = sent.root
    return not _subject(root) and any(
        c.dep_ in ("ccomp", "parataxis") and any(speaker(s) for s in _subject(c))
        for c in root.children)


def _fixed(sent: Any) -> bool:
    """A told fix: what the teller does now, or what an action did (see the module's
    docstring)."""
    root = sent.root
    subject = _subject(root)
    if subject and speaker(subject[0]) and root.tag_ in ("VBP", "VB") and any(
            t.lower_ == "now" and t.dep_ == "advmod" for t in sent):
        return True
    if subject and (subject[0].tag_ == "VBG" or subject[0].dep_ == "csubj"):
        return True  # an action did it: "running pip with the right python sorted it out"
    return once_did(sent) or any(result_of(t, root) for t in sent)


def _explained(sent: Any, prototypes: Any) -> bool:
    """A told cause: a clause opened by "so" after what explains it, about a thing ("…, so
    the hot water couldn't reach the top"; not "…, so I got a taxi"), or a finding."""
    root = sent.root
    if explains(sent, prototypes):
        return True
    return root.lemma_.lower() in _FINDING and any(c.dep_ == "ccomp" for c in root.children)


def role(doc: Any, pleased: Any = None, told_with: Any = None) -> str:
    """The role of the parsed statement `doc` in a fact told in parts (its first sentence's);
    `pleased` is the parse of it after "Please " when `may_order(doc)`; `told_with`, for a
    statement of the teller's own experience (`knowledge.episodic.told`): the pipeline's
    prototypes (`knowledge.episodic.Prototypes`)."""
    sent = next(iter(doc.sents), None)
    if sent is None:
        return "symptom"
    root = sent.root
    if not _teller_aside(sent) and ((root.tag_ == "VB" and not _subject(root)
                                     and not _hedged(root)) or (
            pleased is not None and not _said_of_first_words(sent)
            and pleased[1].tag_ == "VB" and pleased[1].dep_ == "ROOT"
            and not _subject(pleased[1]) and not _hedged(root))):
        return "fix"
    if any(c.dep_ == "aux" and c.lower_ in _ADVISING for c in root.children):
        return "fix"
    words = [t.lower_ for t in sent]
    if any(t.dep_ == "mark" and t.lower_ in _REASONS for t in sent) or any(
            tuple(words[i:i + 2]) in _REASON_PHRASES for i in range(len(words) - 1)):
        return "cause"
    if root.lemma_.lower() in _CAUSING or (
            root.lemma_.lower() == "come" and any(c.lower_ == "from" for c in root.children)):
        return "cause"
    if told_with is not None and _fixed(sent):
        return "fix"
    if told_with is not None and _explained(sent, told_with):
        return "cause"
    return "symptom"


def named_things(doc: Any) -> tuple[str, ...]:
    """The named things a parsed statement names, as words (`knowledge.words.stem`): proper
    nouns, acronyms, versions and code names ("Kafka", "S3", "max.poll.interval.ms")."""
    found = []
    for token in doc:
        text = token.text
        named = (token.pos_ == "PROPN" and token.ent_type_ not in ("DATE", "TIME")) or (
            len(text) > 1 and (text.isupper() or any(c.isdigit() for c in text)
                               or any(c in "._/" for c in text.strip("._/"))))
        if named:
            found += [stem(w) for w in words(text) if w not in STOP_WORDS]
    return tuple(dict.fromkeys(found))


def joins_as_part(text: str, named: Iterable[str], statements: Iterable[str],
                  cluster_names: set[str], score: float) -> bool:
    """Whether `text`, naming `named`, may join, as a part of its own, a cluster of
    `statements` naming `cluster_names` that it is `score` close to (the closest of the
    cluster's parts: `knowledge.base`): at PART_THRESHOLD sharing a content word with them, or
    at WORDS_THRESHOLD sharing ANCHOR_WORDS; and, when both name things (proper nouns,
    acronyms, code names), one of them ("S3 reads are consistent after a write" is no part of
    "SQLite in WAL mode reads while it writes")."""
    if score < WORDS_THRESHOLD:
        return False
    shared = content_words(text) & set().union(*(content_words(s) for s in statements))
    enough = len(shared) >= (1 if score >= PART_THRESHOLD else ANCHOR_WORDS)
    named = set(named)
    return enough and (not named or not cluster_names or bool(named & cluster_names))
