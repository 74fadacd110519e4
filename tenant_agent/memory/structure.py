"""What the tenant says about itself, found by the structure of what it said: the host's parse
of its words (spaCy's English pipeline, which the worker attaches to each pair it delivers:
core/parsing.py) read for a first-person subject, its predicate and what the predicate governs,
whatever the words around them ("Honestly, these days I mostly eat fish", "We've got three cats
now", "Born and raised in Leeds, me").

    possessions with counts   "I have two dogs", "we've got 3 kids", "my three cats are …"
                              (subject: the thing, so a changed count supersedes the old one)
    origin                    "I was born in X", "I grew up in X", "I'm from X", "I come from X"
    work, present and past    "I work as/at …", "I'm a nurse", "I used to be a lawyer",
                              "I worked at X", "I retired after thirty years as a driver"
    home                      "I live in X", "we've moved to X" (a language there is the
                              language to answer in), "I used to live in X" (history only)
    family and status         "I'm married/divorced/engaged", "I got married", "I'm retired",
                              "I'm pregnant", "I go by Sam"
    diet                      "I'm vegetarian", "I'm a meat eater", "I eat fish these days"

Words name classes (what an occupation, a marital status or a diet is: lists of nouns and
adjectives below), never phrasings: the parse says who did what, the classes what it is about.
A predicate counts only as a statement of the speaker (tenant_agent/memory/parse.py): its
subject is "I" or "we" (or the subject of the clause it is joined to), it is no question, not
negated unless the class reads negation ("I don't eat meat"), not under "would", "want",
"hope" (a wish is no fact), not a condition, and not inside a request to forget. Each such
clause the classes here do not read goes to the rules from its subject on ("These days, I
prefer coffee" is read as "I prefer coffee").

Without a parse (an old host, a direct call) the agent falls back to the rules alone
(tenant_agent/memory/learn.py); with one, `said` takes the statements found here and the
rules' for everything else, the rules' statements on a subject found here being dropped.
Invariant: reading never raises on a malformed parse (it is then ignored), and a parse of
other words than the turn's is ignored.
"""

from __future__ import annotations

import re

from tenant_agent.memory.learn import Learned, Statement, asks_to_forget, learn, statements_of
from tenant_agent.memory.lexicon import OCCUPATIONS
from tenant_agent.memory.parse import (
    NUMBERS,
    Clause,
    Parse,
    Token,
    count_of,
    from_subject,
    has_time,
    head_phrase,
    is_place,
    joined,
    phrase_of,
    predicates,
    prep_object,
    read,
    speaker_clause,
)
from tenant_agent.memory.utterance import is_question, when_said

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any


_NUMBER_WORDS = {v: k for k, v in NUMBERS.items() if k not in ("a", "an", "single", "couple",
                                                                 "pair", "both", "twin",
                                                                 "twins")}

# What a lasting status or a diet is (what an occupation is: lexicon.py). Classes of words,
# not phrasings.
MARITAL = frozenset(["married", "engaged", "divorced", "single", "widowed", "separated",
                     "remarried"])
MARITAL_NOUNS = {"widow": "widowed", "widower": "widowed", "bachelor": "single",
                 "divorcee": "divorced", "spinster": "single", "newlywed": "married"}
EMPLOYMENT = frozenset(["retired", "unemployed", "employed", "self-employed", "jobless"])
STATUS = {"pregnant": "pregnancy", "diabetic": "health", "deaf": "health", "blind": "health",
          "disabled": "health", "sober": "sobriety", "colorblind": "health",
          "colourblind": "health", "left-handed": "handedness", "right-handed": "handedness"}
DIET_WORDS = frozenset(["vegetarian", "vegan", "pescatarian", "pescetarian", "omnivore",
                        "carnivore", "flexitarian"])
_LANGUAGES = frozenset("""english french german spanish italian portuguese dutch polish russian
ukrainian chinese mandarin cantonese japanese korean arabic hindi bengali urdu turkish swedish
norwegian danish finnish icelandic greek hebrew czech slovak romanian hungarian bulgarian
serbian croatian slovenian vietnamese thai indonesian malay tagalog filipino persian farsi
swahili catalan basque galician welsh irish latin estonian latvian lithuanian""".split())  # noqa: SIM905
# The day, not a lasting fact: "I have two meetings today" is no possession.
_DAYS = re.compile(r"\b(?:today|tonight|tomorrow|yesterday|this (?:morning|afternoon|evening|"
                   r"week)|right now|at the moment)\b", re.I)
# Said as a change: the new statement supersedes what it is about, by meaning if not by subject.
CHANGE = re.compile(r"\b(?:now|nowadays|these days|anymore|any more|no longer|instead|"
                    r"actually|switched|changed|since then|not any longer|from now on)\b", re.I)


# -- the classes ----------------------------------------------------------------------------

def _fact(subject: str, value: str, text: str, exclusive: bool = True,
          ends: str = "") -> Statement:
    return Statement("add", "fact", subject, value, text, exclusive=exclusive, ends=ends)


def _copula(parse: Parse, clause: Clause) -> list[Statement]:
    """"I'm a nurse", "I'm married", "I'm from Leeds", "I was a lawyer", "I'm vegetarian"."""
    verb = clause.verb
    if verb.lemma != "be":
        return []
    attr = verb.kid("attr")
    acomp = verb.kid("acomp")
    if acomp is not None and not clause.negated:
        word = acomp.lower
        if word in MARITAL and not clause.past:
            return [_fact("marital status", word, f"Is {word}")]
        if word in EMPLOYMENT and not clause.past:
            return [_fact("employment status", word, f"Is {word}")]
        if word in DIET_WORDS and not clause.past:
            return [_fact("diet", word, f"Is {word}")]
        if word in STATUS and not clause.past:
            return [_fact(STATUS[word], word, f"Is {word}", exclusive=False)]
        if word in ("based", "located") and (place := prep_object(acomp, "in", "at")):
            where = phrase_of(parse, place)
            return [_fact("location", where, f"Lives in {where}")] if where else []
    origin = prep_object(verb, "from")
    if origin is not None and attr is None and not clause.negated and not clause.past:
        where = phrase_of(parse, origin)
        if where and is_place(parse, origin):
            return [_fact("hometown", where, f"Is from {where}")]
    if attr is None or attr.pos not in ("NOUN", "PROPN") or clause.negated:
        return []
    return _noun_attr(parse, clause, attr)


def _noun_attr(parse: Parse, clause: Clause, attr: Token) -> list[Statement]:
    head = attr.lemma
    phrase = head_phrase(parse, attr)
    before = {c.lower for c in attr.children if c.dep in ("amod", "compound")}
    if head in MARITAL_NOUNS and not clause.past:
        word = MARITAL_NOUNS[head]
        return [_fact("marital status", word, f"Is {word}")]
    if head in DIET_WORDS or (head == "eater" and before):
        if clause.past:
            return []
        diet = phrase.lower()
        return [_fact("diet", diet, f"Is a {diet}" if head == "eater" else f"Is {diet}")]
    at = prep_object(attr, "at", "for", "with")
    org = phrase_of(parse, at) if at is not None and (at.ent.endswith("ORG") or at.pos == "PROPN") \
        else ""
    former = bool(before & {"former", "ex", "retired"})
    if head in OCCUPATIONS or (at is not None and org):
        if clause.past or former:
            out = [_fact("past role", phrase.lower(), f"Used to work as a {phrase}", False)]
            if org:
                out.append(_fact("past employer", org, f"Used to work at {org}", False))
            return out
        out = [_fact("role", phrase.lower() if phrase[:1].islower() else phrase,
                     f"Works as a {phrase}")]
        if org:
            out.append(_fact("employer", org, f"Works at {org}"))
        return out
    return []  # anything else is the rules' "identity" (they read "I'm a …" already)


def _work(parse: Parse, clause: Clause) -> list[Statement]:
    """"I work as a nurse at X", "I worked for X", "I used to work at X"."""
    verb = clause.verb
    if verb.lemma != "work" or clause.negated:
        return []
    role = prep_object(verb, "as")
    org = prep_object(verb, "at", "for")
    out = []
    if role is not None and (phrase := head_phrase(parse, role)):
        out.append(_fact("past role", phrase.lower(), f"Used to work as a {phrase}", False)
                   if clause.past else _fact("role", phrase.lower(), f"Works as a {phrase}"))
    if org is not None and (org.ent.endswith("ORG") or org.pos == "PROPN"):
        name = phrase_of(parse, org, ("relcl", "punct", "prep"))
        if name:
            out.append(_fact("past employer", name, f"Used to work at {name}", False)
                       if clause.past else _fact("employer", name, f"Works at {name}"))
    return out


def _job_change(parse: Parse, clause: Clause) -> list[Statement]:
    """"I got/started a new job as X at Y", "I joined Y", "I retired after years as X"."""
    verb = clause.verb
    if clause.negated:
        return []
    out = []
    if verb.lemma in ("get", "start", "land", "take", "accept") and (job := verb.kid("dobj")) \
            is not None and job.lemma in ("job", "position", "role", "post"):
        role = prep_object(verb, "as") or prep_object(job, "as")
        org = prep_object(verb, "at", "with") or prep_object(job, "at", "with")
        if role is not None and (phrase := head_phrase(parse, role)):
            out.append(_fact("role", phrase.lower(), f"Works as a {phrase}"))
        if org is not None and (name := phrase_of(parse, org, ("relcl", "punct", "prep"))):
            out.append(_fact("employer", name, f"Works at {name}"))
    elif verb.lemma == "join" and (org := verb.kid("dobj")) is not None \
            and org.ent.endswith("ORG"):
        name = phrase_of(parse, org, ("relcl", "punct", "prep"))
        out.append(_fact("employer", name, f"Works at {name}"))
    elif verb.lemma == "retire":
        out.append(_fact("employment status", "retired", "Is retired"))
        role = prep_object(verb, "as") or next(
            (prep_object(p.kid("pobj") or p, "as") for p in verb.kids("prep")
             if p.kid("pobj") is not None), None)
        if role is not None and (phrase := head_phrase(parse, role)):
            out.append(_fact("past role", phrase.lower(), f"Used to work as a {phrase}", False))
    return out


def _home(parse: Parse, clause: Clause) -> list[Statement]:
    """"I live in X", "we've moved to X" (from Y), "I used to live in X", origins by verb."""
    verb = clause.verb
    if clause.negated:
        return []
    if verb.lemma in ("live", "reside", "settle", "stay", "base", "locate") and (
            place := prep_object(verb, "in", "on", "at")) is not None:
        where = phrase_of(parse, place, ("relcl", "punct", "prep") if place.ent else
                       ("relcl", "punct"))
        if not where or where.lower() in ("it", "there", "here"):
            return []
        if clause.past:
            return [_fact("past location", where, f"Used to live in {where}", False)]
        return [_fact("location", where, f"Lives in {where}")]
    if verb.lemma in ("move", "relocate", "emigrate") and (
            place := prep_object(verb, "to", "into")) is not None:
        where = phrase_of(parse, place, ("relcl", "punct", "prep"))
        if where.lower() in _LANGUAGES:  # "we've moved to Portuguese"
            lang = where.capitalize()
            return [Statement("add", "preference", "answer language", lang,
                              f"Wants answers in {lang}", "likes", exclusive=True)]
        old = prep_object(verb, "from")
        ends = phrase_of(parse, old, ("relcl", "punct", "prep")) if old is not None else ""
        if where and where.lower() not in ("it", "there", "here"):
            return [_fact("location", where, f"Lives in {where}", ends=ends)]
    if verb.lemma == "bear" and (place := prep_object(verb, "in")) is not None:
        where = phrase_of(parse, place, ("relcl", "punct"))
        return [_fact("birthplace", where, f"Was born in {where}")] if where else []
    if verb.lemma in ("grow", "raise", "bring") and (place := prep_object(verb, "in", "on")) \
            is not None:
        where = phrase_of(parse, place, ("relcl", "punct"))
        return [_fact("hometown", where, f"Grew up in {where}")] if where else []
    if verb.lemma == "come" and not clause.past and (place := prep_object(verb, "from")) \
            is not None and is_place(parse, place):
        where = phrase_of(parse, place, ("relcl", "punct"))
        return [_fact("hometown", where, f"Is from {where}")] if where else []
    return []


def _possession(parse: Parse, clause: Clause) -> list[Statement]:
    """"I have two dogs", "we've got 3 kids": the count supersedes an earlier one."""
    verb = clause.verb
    if verb.lemma not in ("have", "own", "get") or clause.negated or clause.past:
        return []
    if verb.lemma == "get" and not any(a.lemma == "have" for a in verb.kids("aux")):
        return []  # "I got a dog" is an event; "I've got a dog" a possession
    if _DAYS.search(clause.sentence) or has_time(parse, verb):
        return []
    out = []
    for thing in [o for o in verb.kids("dobj") for o in [o, *o.kids("conj")]]:
        count = count_of(thing)
        if count is None or thing.pos != "NOUN":
            continue
        if count == 1 and thing.lemma not in _KEPT:
            continue  # "I have a question", "I have a meeting": no possession
        out.append(_owned(parse, thing, count))
    return out


# What "a"/"an" makes a possession of (with a number anything counted is one): kin, animals,
# vehicles, homes.
_KEPT = frozenset("""son daughter child kid baby boy girl brother sister sibling twin wife
husband partner boyfriend girlfriend fiance fiancee spouse grandchild grandson granddaughter
niece nephew cousin stepson stepdaughter dog puppy cat kitten pet bird parrot rabbit hamster
horse fish goldfish turtle tortoise snake lizard hedgehog ferret guinea chicken goat pig cow
car bike bicycle motorbike motorcycle scooter van truck boat house flat apartment cottage
cabin garden allotment""".split())  # noqa: SIM905


def _owned(parse: Parse, thing: Token, count: int) -> Statement:
    noun = thing.text.lower() if count != 1 else thing.lemma
    phrase = head_phrase(parse, thing)
    words = phrase.split()
    described = " ".join([*words[:-1], noun]) if words else noun
    said = next((c.lower for c in thing.children if c.dep == "nummod"), "")
    amount = "a" if count == 1 else said if said else _NUMBER_WORDS.get(count, str(count))
    text = f"Has {amount} {described}"
    return Statement("add", "fact", thing.lemma, f"{amount} {described}", text, exclusive=True)


def _counted(parse: Parse, a: int, b: int) -> list[Statement]:
    """"my two kids are …", "our three cats": a count said in passing."""
    out = []
    for token in parse.tokens[a:b]:
        if token.pos != "NOUN" or not any(c.dep == "poss" and c.lower in ("my", "our")
                                          for c in token.children):
            continue
        count = count_of(token)
        if count is not None and count > 1:
            out.append(_owned(parse, token, count))
    return out


def _marriage(parse: Parse, clause: Clause) -> list[Statement]:
    """"I got married", "we got divorced", "we split up"."""
    verb = clause.verb
    if clause.negated:
        return []
    if verb.lemma in ("marry", "divorce") and verb.tag in ("VBN", "VBD") and (
            any(a.lemma in ("get", "be") for a in verb.kids("auxpass", "aux")) or
            verb.kid("nsubj") is not None) and not verb.kid("dobj"):
        word = "married" if verb.lemma == "marry" else "divorced"
        if verb.lemma == "marry" and any(a.tag == "VBG" for a in verb.kids("auxpass", "aux")):
            return [_fact("marital status", "engaged", "Is engaged")]  # "getting married"
        return [_fact("marital status", word, f"Is {word}")]
    if verb.lemma in ("split", "break", "separate") and verb.kid("prt") is not None \
            and verb.kid("prt").lower == "up":  # type: ignore[union-attr]
        return [_fact("marital status", "separated", "Is separated")]
    return []


def _name(parse: Parse, clause: Clause) -> list[Statement]:
    """"I go by Sam", "people call me Sam" (the rules read "my name is", "call me")."""
    verb = clause.verb
    if verb.lemma == "go" and (name := prep_object(verb, "by")) is not None \
            and name.pos == "PROPN" and not clause.negated:
        value = phrase_of(parse, name, ("relcl", "punct", "prep"))
        return [_fact("name", value, f"Name is {value}")] if value else []
    return []


def _diet(parse: Parse, clause: Clause) -> list[Statement]:
    """"These days I eat fish", "I don't eat meat", "I stopped eating meat"."""
    verb = clause.verb
    negated = clause.negated
    if verb.lemma in ("stop", "quit", "give") and (x := verb.kid("xcomp")) is not None \
            and x.lemma == "eat":
        verb, negated = x, True
    if verb.lemma != "eat" or (clause.past and not negated) or _DAYS.search(clause.sentence):
        return []
    food = verb.kid("dobj")
    if food is None or food.pos != "NOUN":
        return []
    what = phrase_of(parse, food, ("relcl", "punct", "prep"))
    if negated:
        return [_fact("diet", f"no {what}", f"Does not eat {what}")]
    if not CHANGE.search(clause.sentence):
        return []  # "I eat a lot of pasta" is no diet; "these days I eat fish" is
    return [_fact("diet", what, f"Eats {what}")]


_CLASSES = (_copula, _work, _job_change, _home, _possession, _marriage, _name, _diet)


def statements(parse: Parse, at: float = 0.0) -> list[Statement]:
    """What the parse says about the speaker, sentence by sentence: its classes, and the
    rules' reading of each clause of the speaker said from its subject on."""
    out: list[Statement] = []
    for a, b in parse.sents:
        sentence = joined(parse, parse.tokens[a:b])
        if not sentence or is_question(sentence) or asks_to_forget(sentence):
            continue
        found: list[Statement] = []
        for verb in predicates(parse, a, b):
            clause = speaker_clause(parse, verb, sentence)
            if clause is None:
                continue
            for reading in _CLASSES:
                got = reading(parse, clause)
                if got:
                    found.extend(got)
                    break
            else:
                core = from_subject(parse, clause)
                if core and not is_question(core):
                    found.extend(statements_of(core.rstrip(".!"), at))
        seen = {s.subject for s in found}
        found.extend(s for s in _counted(parse, a, b) if s.subject not in seen)
        out.extend(found)
    return out


# A memory's text read back as the tenant would say it: "Lives in Paris" -> "I live in Paris".
_SAID_AS = ((re.compile(r"^(?:is|'s)\s+", re.I), "I'm "), (re.compile(r"^has\s+", re.I), "I have "),
            (re.compile(r"^was\s+", re.I), "I was "), (re.compile(r"^does not\s+", re.I),
                                                       "I don't "),
            (re.compile(r"^name is\s+", re.I), "My name is "),
            (re.compile(r"^(?:allergic|intolerant)\b", re.I), "I'm \\g<0>"),
            (re.compile(r"^wants answers in\s+", re.I), "I want answers in "),
            (re.compile(r"^([a-z]+?)(ies)\s+", re.I), "I \\1y "),
            (re.compile(r"^([a-z]+?)(sses|shes|ches|xes|oes)\s+", re.I), None),
            (re.compile(r"^([a-z]+?[^s])s\s+", re.I), "I \\1 "),
            (re.compile(r"^(?:user|the user)\s+", re.I), ""))


def subject_of(text: str) -> tuple[str, bool]:
    """What a memory written in the third person ("Lives in Paris", "Has two dogs") is about,
    as the rules read the tenant saying it, and whether it holds one value at a time; ("",
    False) when the rules read nothing in it."""
    first = text.strip()
    words = first.lower().rstrip(".").split()
    if len(words) in (2, 3) and words[0] == "is":  # "Is married", "Is a vegetarian"
        word = words[-1]
        for subject, members in (("marital status", MARITAL), ("employment status", EMPLOYMENT),
                                 ("diet", DIET_WORDS)):
            if word in members:
                return subject, True
    for pattern, replacement in _SAID_AS:
        if pattern.match(first):
            first = pattern.sub(replacement if replacement is not None else
                                lambda m: f"I {m.group(1)}{m.group(2)[:-2]} ", first, count=1)
            break
    else:
        first = "I " + first[:1].lower() + first[1:]
    found = [s for s in learn(first, 0.0).statements if s.op == "add"]
    if len(found) != 1:
        return "", False
    return found[0].subject, found[0].exclusive


def said(text: str, at: float, reply_before: str = "", parse: Any = None) -> Learned:
    """What the tenant's words teach: the rules' reading (tenant_agent/memory/learn.py), with
    the statements the parse finds in place of the rules' on the same subjects."""
    learned = learn(text, at, reply_before)
    reading = read(parse, text) if parse is not None else None
    if reading is None or any(s.op == "forget" for s in learned.statements):
        return learned
    try:
        found = statements(reading, at)
    except (IndexError, KeyError, ValueError, TypeError, RecursionError):
        return learned
    if not found:
        return learned
    for s in found:
        if s.kind == "fact" and s.subject in ("location",):
            s.when = when_said(text, at)
    subjects = {s.subject for s in found}
    misread = set().union(*(_MISREAD.get(subject, frozenset()) for subject in subjects))
    values = {s.value.lower() for s in found}
    learned.statements = [*found, *(s for s in learned.statements if s.subject not in subjects
                                    and s.subject not in misread
                                    and s.value.lower() not in values)]
    return learned


# What the rules call a statement the parse read as another ("I'm a retired teacher" is no
# present role; "I'm a widow" no identity but a marital status).
_MISREAD: dict[str, frozenset[str]] = {
    "past role": frozenset({"role", "identity"}),
    "diet": frozenset({"identity", "role"}),
    "marital status": frozenset({"identity"}),
    "employment status": frozenset({"identity", "role"}),
}
