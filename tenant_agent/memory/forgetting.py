"""Forgetting, asked of the agent's memory and read by structure: whether what the tenant says
is a request to the agent to forget ("forget my postcode", "delete what you know about my
job", "don't keep my partner's name on file", "erase that") and what it names. Only a request
addressed to the agent and to what it holds counts: "remove the duplicates from this list",
"delete the email I drafted", "forget it, the place is full" ask nothing of the memory.
What is named is found among the held memories by memory.py (subject, stems, meaning).
Invariant: reading never raises on a well-formed parse (tenant_agent/memory/parse.py).
"""

from __future__ import annotations

import re

from tenant_agent.memory.learn import Learned, Statement
from tenant_agent.memory.parse import Parse, Token, joined, phrase_of, speaker

# Verbs that forget by themselves, that remove (forgetting only when what they remove is what
# the agent holds), and that keep (forgetting when negated or stopped: "don't keep my
# partner's name on file", "can you not remember the therapy thing?").
_FORGETTING = frozenset(["forget", "unlearn"])
_REMOVING = frozenset(["delete", "remove", "erase", "drop", "wipe", "clear", "scrap", "scrub",
                       "purge", "ditch", "bin", "discard", "trash", "lose", "strike", "rid",
                       "take"])
_KEEPING = frozenset(["remember", "keep", "hold", "store", "save", "retain", "record", "note",
                      "track", "log", "memorise", "memorize"])
# Where the agent keeps what it knows ("from your memory", "from your notes", "on file").
_MEMORY_PLACES = frozenset(["memory", "memories", "note", "notes", "record", "records", "file",
                            "files", "mind", "head", "brain", "profile", "database", "system"])
_TOLD = frozenset(["say", "tell", "mention", "share"])            # what I said about …
_KNOWN = frozenset(["know", "remember", "have", "keep", "store", "hold", "save", "learn",
                    "note", "record"])                                # what you know about …
_ALL = frozenset(["everything", "anything", "all", "whatever"])
_SELF = frozenset(["me", "myself", "us", "i"])
# Words that say "the matter of" ("the therapy thing", "the baby news"): not what is named.
_MATTER = re.compile(r"\s+(?:thing|things|stuff|news|business|bit|part|info|information|"
                     r"details?|matter|situation|story)$", re.I)


def forgetting(parse: Parse, a: int, b: int) -> list[str] | None:
    """What a sentence asks the agent to forget, by structure: a request to the agent (an
    imperative, or "you" as the subject: "can you …", "I'd rather you didn't …") to forget, to
    remove what it holds ("… from your notes", "what you know about …", "what I said about …",
    "the diagnosis I mentioned") or not to keep something. None when it asks nothing of the
    sort ("remove the duplicates from this list", "delete the email I drafted"); else the
    phrases named ("*": everything it knows about the tenant), empty when they name nothing
    ("forget it")."""
    found: list[str] | None = None
    for verb in parse.tokens[a:b]:
        stopped = verb.dep == "xcomp" and parse.tokens[verb.head].lemma in ("stop", "quit")
        if verb.pos not in ("VERB", "AUX", "ADJ") or not _addressed(
                parse, parse.tokens[verb.head] if stopped else verb):
            continue
        if stopped and verb.lemma in _KEEPING:  # "stop remembering my daughter's school"
            found = [*(found or []), *_target(parse, verb)]
            continue
        negated = any(c.dep == "neg" for c in verb.children)
        lemma = "rid" if verb.lemma == "get" and any(c.lower == "rid" for c in verb.children) \
            else verb.lemma
        asks = (lemma in _FORGETTING and not negated) or (lemma in _KEEPING and negated) or (
            lemma in _REMOVING | _KEEPING and not negated and _of_memory(parse, verb, lemma))
        if not asks:
            continue
        found = [*(found or []), *_target(parse, verb)]
    return found


def _addressed(parse: Parse, verb: Token) -> bool:
    """Said to the agent: "you" is its subject, or it is an imperative not under a clause of
    the speaker's own ("I want to forget it" is about the speaker)."""
    subject = verb.kid("nsubj")
    if subject is not None:
        return subject.lower in ("you", "u")
    if verb.tag != "VB":
        return False
    current = verb
    for _ in range(6):
        if current.dep not in ("xcomp", "ccomp", "conj", "advcl") or current.head == current.i:
            return True
        current = parse.tokens[current.head]
        if any(c.lower in ("you", "u") for c in current.children):
            return True
        if any(c.dep == "nsubj" and speaker(c) for c in current.children) and current.lemma \
                not in ("rather", "like", "want", "need", "prefer"):
            return False
    return True


def _objects(parse: Parse, verb: Token) -> list[Token]:
    out = [*verb.kids("dobj", "ccomp", "xcomp", "oprd", "acomp"),
           *(c for c in verb.kids("advcl") if c.kid("nsubj") is not None and any(
               w.tag in ("WRB", "WP") for w in c.children))]  # "remove where I live from …"
    for holder in [verb, *verb.kids("acomp", "oprd", "prt")]:
        for prep in holder.kids("prep"):
            if prep.lower in ("about", "of", "to", "on", "regarding"):
                out.extend(prep.kids("pobj", "pcomp"))
    return [t for t in out if t.lower != "rid" and not (  # "forget it, the place is full"
        t.dep in ("ccomp", "xcomp") and min(x.i for x in parse.subtree(t)) > 0
        and parse.tokens[min(x.i for x in parse.subtree(t)) - 1].pos == "PUNCT")]


def _of_memory(parse: Parse, verb: Token, lemma: str = "") -> bool:
    """Whether what a verb of removing removes is what the agent holds (a verb of keeping:
    keeps it out of what the agent holds, "keep my politics out of your notes")."""
    for token in parse.subtree(verb):
        if token.dep == "pobj" and token.lemma in _MEMORY_PLACES:
            prep = parse.tokens[token.head]
            if prep.lower == "of" and parse.tokens[prep.head].lower == "out":
                prep = parse.tokens[prep.head]  # "out of your notes"
            yours = any(c.lower in ("your", "ur") for c in token.children)
            if (prep.lower in ("from", "off", "out") and (yours or token.lemma in (
                    "memory", "mind", "head", "record", "records"))) or (
                    prep.lower == "on" and token.lemma in ("file", "record")
                    and not token.children and lemma not in _KEEPING):
                return True
    if lemma in _KEEPING:
        return False
    for thing in _objects(parse, verb):
        about = any(p.lower in ("about", "regarding") for p in [*verb.kids("prep"),
                                                                 *thing.kids("prep")])
        if about and (thing.lower in _ALL or _MATTER.search(" " + thing.lower)):
            return True  # "delete everything about Clive", "erase that bit about my meds"
        if _told_or_known(thing) or (thing.lemma in _MEMORY_PLACES and thing.kids("prep")):
            return True
        if thing.lower in ("that", "it", "this") and _antecedent(parse) is not None:
            return True
    return False


def _told_or_known(token: Token) -> bool:
    """"what I said", "everything you know", "the diagnosis I mentioned"."""
    for clause in [token, *token.kids("relcl", "ccomp")]:
        subject = clause.kid("nsubj")
        if subject is None:
            continue
        if (clause.lemma in _TOLD and speaker(subject)) or (
                clause.lemma in _KNOWN and subject.lower in ("you", "u")):
            return True
    return False


def _antecedent(parse: Parse) -> Token | None:
    """What "that" in "erase that" stands for: a thing the tenant says it told ("you know
    the diagnosis I mentioned?")."""
    return next((t for t in parse.tokens if t.pos == "NOUN" and any(
        c.lemma in _TOLD and speaker(c.kid("nsubj")) for c in t.kids("relcl"))), None)


def _target(parse: Parse, verb: Token) -> list[str]:
    """What a request to forget names: "my salary" in "scrap what I said about my salary",
    each of "forget my postcode and my age", "*" in "forget everything you know about me",
    "^" (what the tenant said just before) in "erase that", nothing for a bare "forget it"."""
    one = _one_target(parse, verb)
    if not one:
        return []
    thing = next((t for t in _objects(parse, verb) if t.pos in ("NOUN", "PROPN")), None)
    return [one, *(_named(parse, c) for c in (thing.kids("conj") if thing is not None and one
                                              == _named(parse, thing) else []))]


def _one_target(parse: Parse, verb: Token) -> str:
    head = parse.tokens[verb.head]
    if verb.dep == "intj" and head.lemma in _TOLD and speaker(head.kid("nsubj")) and (
            told := head.kid("dobj")) is not None:  # "Forget I mentioned my ex", misparsed
        return _named(parse, told)
    for thing in _objects(parse, verb):
        if thing.lower in ("that", "it", "this", "them"):
            pointed = _pointed(parse, thing)
            if pointed is None:
                continue
            if isinstance(pointed, str):
                return pointed  # "^"
            thing = pointed
        if thing.lemma in _TOLD | _KNOWN or _told_or_known(thing) or thing.lemma in _MEMORY_PLACES:
            said_of = _told_target(parse, thing)
            if said_of is None:
                continue
            return said_of
        if (about := _all_about(verb, thing)) is not None:  # "everything about Clive"
            return "*" if about.lower in _SELF else _named(parse, about)
        if thing.lower in _ALL:
            return "*"
        return _named(parse, thing)
    return ""


def _told_target(parse: Parse, thing: Token) -> str | None:
    """What "what I said about my salary", "everything you know", "the diagnosis I
    mentioned" name (None: nothing here)."""
    clause = next((c for c in [thing, *thing.kids("relcl", "ccomp")]
                   if c.lemma in _TOLD | _KNOWN), thing)
    about = next((p.kid("pobj", "pcomp") for t in parse.subtree(clause)
                  for p in t.kids("prep") if p.lower in ("about", "on", "regarding", "of")
                  and p.kid("pobj", "pcomp") is not None), None)
    if about is not None:
        return "*" if about.lower in _SELF else _named(parse, about)
    told = clause.kid("dobj") if clause.lemma in _TOLD else None
    if told is not None and told.lower not in ("what", "that", "it"):
        return _named(parse, told)
    if thing.lower in _ALL or thing.lemma in _KNOWN or thing.lower == "what":
        return "*"
    if thing.pos == "NOUN" and thing.lemma not in _MEMORY_PLACES:
        return _named(parse, thing)
    return None


def _all_about(verb: Token, thing: Token) -> Token | None:
    """What "everything about X" and "the bit about X" name: X."""
    if thing.lower not in _ALL and not _MATTER.search(" " + thing.lower):
        return None
    return next((p.kid("pobj", "pcomp") for p in [*verb.kids("prep"), *thing.kids("prep")]
                 if p.lower in ("about", "regarding") and p.kid("pobj", "pcomp") is not None),
                None)


def _pointed(parse: Parse, pronoun: Token) -> Token | str | None:
    """What "that" in "erase that" stands for: a thing the tenant says it told, else "^"
    (what it said just before) unless a clause follows ("forget that, I found it"); None for
    "it" ("forget it": never mind)."""
    thing = _antecedent(parse)
    if thing is not None:
        return thing
    if pronoun.lower in ("that", "this") and not _followed(parse, pronoun):
        return "^"
    return None


def _followed(parse: Parse, pointer: Token) -> bool:
    """Whether a clause of its own follows "that" in its sentence ("forget that, I found it":
    never mind, not a request about what was said)."""
    end = next((b for a, b in parse.sents if a <= pointer.i < b), len(parse.tokens))
    return any(t.pos in ("VERB", "AUX") and t.kid("nsubj", "nsubjpass") is not None
               for t in parse.tokens[pointer.i + 1:end])


def _named(parse: Parse, token: Token) -> str:
    if token.pos not in ("NOUN", "PROPN"):  # "where I work (out of your memory)"
        place = next((p for p in token.kids("prep") if any(
            t.lemma in _MEMORY_PLACES for t in parse.subtree(p))), None)
        if place is not None:
            words = [t for t in parse.subtree(token) if t.i < place.i and t.pos != "PUNCT"]
            return joined(parse, words)
    phrase = phrase_of(parse, token, ("relcl", "punct", "prep") if token.pos in (
        "NOUN", "PROPN") else ("punct",))
    phrase = re.sub(r"^(?:that|this|those|these|the)\s+", "", phrase, flags=re.I)
    phrase = re.sub(r"\s+(?:please|thanks|thank you|ok|okay)$", "", phrase, flags=re.I)
    return _MATTER.sub("", phrase).strip()


def asked_to_forget(parse: Parse) -> list[str] | None:
    """What the tenant's words ask the agent to forget, sentence by sentence (None: nothing is
    asked; empty: asked, naming nothing, "forget it"). "that" stands for what the tenant said
    just before only when the turn names nothing else ("forget the therapy thing? don't keep
    that")."""
    requests = [forgetting(parse, a, b) for a, b in parse.sents]
    if all(r is None for r in requests):
        return None
    asked = [t for r in requests for t in (r or [])]
    if any(t != "^" for t in asked):
        asked = [t for t in asked if t != "^"]
    return asked


def forgets(learned: Learned, asked: list[str]) -> Learned:
    """The rules' requests to forget that name a statement ("forget that I live in Berlin"),
    and the parse's for what is named by a phrase."""
    named = [s for s in learned.statements if s.op == "forget" and s.kind]
    phrases = [Statement("forget", "", phrase, phrase, "") for phrase in dict.fromkeys(asked)]
    learned.statements = [*named, *phrases]
    return learned
