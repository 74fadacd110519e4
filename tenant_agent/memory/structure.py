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
    _CLAUSE_DEPS,
    CHANGE_VERBS,
    GROUPS,
    NUMBERS,
    ORDINALS,
    PLACE_ENTS,
    Clause,
    Parse,
    Token,
    count_of,
    entity_phrase,
    from_subject,
    has_time,
    head_phrase,
    is_place,
    joined,
    phrase_of,
    predicates,
    prep_object,
    read,
    speaker,
    speaker_clause,
    subject_of_verb,
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
                    r"actually|switched|changed|since then|not any longer|from now on|"
                    r"no more|again)\b", re.I)


# Verbs of a job said by what it does ("I teach chemistry at Holloway Secondary").
_TEACHING = frozenset(["teach", "lecture", "tutor", "coach", "nurse", "volunteer", "intern"])
# Verbs of becoming: what follows is what the speaker is from now on ("I went vegan").
_BECOMING = frozenset(["become", "go", "turn"])


# -- the classes ----------------------------------------------------------------------------

def _fact(subject: str, value: str, text: str, exclusive: bool = True,
          ends: str = "") -> Statement:
    return Statement("add", "fact", subject, value, text, exclusive=exclusive, ends=ends)


def _copula(parse: Parse, clause: Clause) -> list[Statement]:
    """"I'm a nurse", "I'm married", "I'm from Leeds", "I was a lawyer", "I'm vegetarian"."""
    verb = clause.verb
    if verb.lemma in _BECOMING and verb.kid("attr", "acomp") is not None:
        # "I became a senior designer", "I've gone vegan": what it is from now on
        clause = Clause(verb, False, clause.negated, clause.sentence, clause.implicit,
                        clause.group)
    return _state(parse, clause) if verb.lemma in _BECOMING | {"be"} else []


def _state(parse: Parse, clause: Clause) -> list[Statement]:
    verb = clause.verb
    attr = verb.kid("attr")
    acomp = verb.kid("acomp")
    if acomp is not None and clause.negated:
        return _not_allergic(parse, acomp)
    if acomp is not None:
        word = acomp.lower
        if word in MARITAL and not clause.past:
            to = prep_object(acomp, "to")
            whom = phrase_of(parse, to, ("relcl", "punct", "prep")) if to is not None \
                and to.pos == "PROPN" else ""
            return [_fact("marital status", word, f"Is {word} to {whom}" if whom
                          else f"Is {word}")]
        if word in EMPLOYMENT and not clause.past:
            return [_fact("employment status", word, f"Is {word}")]
        if word in DIET_WORDS and not clause.past:
            return [_fact("diet", word, f"Is {word}")]
        if word in STATUS and not clause.past:
            return [_fact(STATUS[word], word, f"Is {word}", exclusive=False)]
        if word in ("based", "located") and (place := prep_object(acomp, "in", "at")):
            where = phrase_of(parse, place)
            return [_fact("location", where, f"Lives in {where}")] if where else []
    org = prep_object(verb, "at", "with")
    if org is not None and attr is None and acomp is None and org.ent.endswith("ORG") \
            and not clause.negated and not clause.past:  # "I'm at Norvale Logistics"
        name = entity_phrase(parse, org)
        return [_fact("employer", name, f"Works at {name}")] if name else []
    origin = prep_object(verb, "from")
    if origin is not None and attr is None and not clause.negated and not clause.past:
        where = phrase_of(parse, origin)
        if where and is_place(parse, origin):
            return [_fact("hometown", where, f"Is from {where}")]
    if attr is None or attr.pos not in ("NOUN", "PROPN") or clause.negated:
        return []
    return _noun_attr(parse, clause, attr)


def _not_allergic(parse: Parse, acomp: Token) -> list[Statement]:
    """"I'm not allergic to latex after all": a correction of the allergy held."""
    to = prep_object(acomp, "to") if acomp.lower in ("allergic", "intolerant") else None
    what = phrase_of(parse, to, ("relcl", "punct", "prep", "cc", "conj")) if to else ""
    return [Statement("end", "fact", "allergy", what.lower(), ""),
            _fact("no allergy", what.lower(), f"Is not {acomp.lower} to {what}",
                  exclusive=False)] if what else []


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
    org = entity_phrase(parse, at) if at is not None and (
        at.ent.endswith("ORG") or at.pos == "PROPN") else ""
    former = bool(before & {"former", "ex", "retired"})
    if head in OCCUPATIONS or (at is not None and org):
        if clause.past or former:
            out = [_fact("past role", phrase.lower(), f"Used to work as a {phrase}", False)]
            if org:
                out.append(_fact("past employer", org, f"Used to work at {org}", False))
            return out
        out = [_fact("role", phrase.lower() if phrase[:1].islower() else phrase,
                     f"Works as a {phrase}" + (f" at {org}" if org else ""))]
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
    org = org or _deeper_at(verb)  # "I work in claims at Brightwell Insurance"
    named = org is not None and (org.ent.endswith("ORG") or org.pos == "PROPN")
    if role is not None and (phrase := head_phrase(parse, role)):
        at = f" at {entity_phrase(parse, org)}" if named and org is not None else ""
        out.append(_fact("past role", phrase.lower(), f"Used to work as a {phrase}{at}", False)
                   if clause.past else _fact("role", phrase.lower(),
                                             f"Works as a {phrase}{at}"))
    if org is not None and named:
        name = entity_phrase(parse, org)
        if name:
            out.append(_fact("past employer", name, f"Used to work at {name}", False)
                       if clause.past else _fact("employer", name, f"Works at {name}"))
    return out


def _started_as(parse: Parse, verb: Token) -> list[Statement]:
    """"starting Monday as a lab technician at Verant Pharma": the role and where."""
    role = prep_object(verb, "as")
    phrase = head_phrase(parse, role) if role is not None else ""
    if role is None or not phrase:
        return []
    org = prep_object(verb, "at", "with") or prep_object(role, "at", "with")
    name = entity_phrase(parse, org) if org is not None and org.pos in ("NOUN", "PROPN") else ""
    out = [_fact("role", phrase.lower(), f"Works as a {phrase}" + (f" at {name}" if name
                                                                    else ""))]
    if name:
        out.append(_fact("employer", name, f"Works at {name}"))
    return out


def _deeper_at(verb: Token) -> Token | None:
    """The place of work said one phrase down: "in claims at Brightwell Insurance"."""
    for prep in verb.kids("prep"):
        held = prep.kid("pobj")
        org = prep_object(held, "at", "for") if held is not None else None
        if org is not None:
            return org
    return None


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
    elif verb.lemma in ("start", "begin") and prep_object(verb, "as") is not None:
        out += _started_as(parse, verb)
    elif verb.lemma in ("start", "begin") and (org := prep_object(verb, "at", "with")) \
            is not None and org.pos in ("NOUN", "PROPN"):  # "started at the planning office"
        name = phrase_of(parse, org, ("relcl", "punct"))
        if name:  # a new place of work: the role held there ends with it
            out += [Statement("end", "fact", "role", "*", ""),
                    _fact("employer", name, f"Works at {name}")]
    elif verb.lemma in _TEACHING and not clause.past and (org := prep_object(
            verb, "at") or _deeper_at(verb)) is not None and (
            org.ent.endswith("ORG") or org.pos == "PROPN"):
        name = entity_phrase(parse, org)  # "I teach chemistry at Holloway Secondary"
        said_as = from_subject(parse, clause)
        out.append(_fact("employer", name, said_as[:1].upper() + said_as[1:] if said_as
                         else f"Works at {name}"))
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
    if verb.lemma in ("move", "relocate", "emigrate") and (place := prep_object(
            verb, "to", "into") or next((prep_object(h, "to") for h in verb.kids("advmod")
                                        for h in [h, *h.kids("advmod")]
                                        if h.lower in ("home", "back") and prep_object(h, "to")),
                                       None)) is not None:  # "moved back (home) to Inverness"
        where = phrase_of(parse, place, ("relcl", "punct", "prep"))
        if where.lower() in _LANGUAGES:  # "we've moved to Portuguese"
            lang = where.capitalize()
            return [Statement("add", "preference", "answer language", lang,
                              f"Wants answers in {lang}", "likes", exclusive=True)]
        old = prep_object(verb, "from")
        ends = phrase_of(parse, old, ("relcl", "punct", "prep")) if old is not None else ""
        back = any(c.lower == "back" for c in verb.kids("prt", "advmod")) and bool(
            {t.ent[2:] for t in parse.subtree(place) if t.ent} & set(PLACE_ENTS))
        if verb.kid("dobj") is not None or (verb.kid("prt") is not None and not back) \
                or clause.group or not _a_place(parse, place, named=clause.implicit,
                                                person=not clause.implicit):
            return []  # "moved the sofa to the wall", "moved (over) to VS Code": no new home
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


# What a home is: the object of a verb of acquiring or moving ("we got the keys to our new
# place in Dunmere") names the new home when it is one of these.
_HOMES = frozenset(["place", "house", "flat", "apartment", "home", "cottage", "bungalow",
                    "condo", "studio", "room", "digs"])
_NOT_PLACES = ("ORG", "PRODUCT", "WORK_OF_ART", "PERSON", "LANGUAGE", "EVENT", "LAW")


def _a_place(parse: Parse, token: Token, named: bool = False, person: bool = False) -> bool:
    """Where one can live: named as a place, a home, or a proper name nothing else calls
    (`named`: only what is named as a place or a home, said without a subject; `person`: a
    name the recogniser calls a person's may be a place: one moves to places, and it reads
    "Swansea" as a person)."""
    ents = {t.ent[2:] for t in parse.subtree(token) if t.ent}
    if ents & set(PLACE_ENTS):
        return True
    if person and ents == {"PERSON"} and token.pos == "PROPN":
        return True
    if ents & set(_NOT_PLACES):
        return False
    return (token.pos == "PROPN" and not named) or token.lemma in _HOMES


def _new_home(parse: Parse, clause: Clause) -> list[Statement]:
    """"We got the keys to our new place in Dunmere", "we bought a house in Leeds": a new home
    of the speaker's, where it is."""
    verb = clause.verb
    if verb.lemma not in ("get", "buy", "rent", "find", "move", "collect", "pick", "lease",
                          "share") or clause.negated:
        return []
    for token in parse.subtree(verb):
        if token.lemma not in _HOMES or token.pos != "NOUN":
            continue
        mine = any(c.dep == "poss" and c.lower in ("my", "our") for c in token.children)
        fresh = any(c.lower == "new" for c in token.children)
        if not (fresh and (mine or token.head == verb.i)) and not (
                token.head == verb.i and (verb.lemma in ("buy", "rent") or (
                    verb.lemma in ("lease", "share") and not clause.past))):
            continue
        place = prep_object(token, "in", "on", "at") or prep_object(verb, "in") or next(
            (t for t in parse.subtree(verb) if t.dep == "pobj" and t.i > token.i
             and parse.tokens[t.head].lower in ("in", "on", "at")
             and (t.ent[2:] in PLACE_ENTS or (t.pos == "PROPN" and not t.ent))),
            None)  # "a terraced house near the canal in Hebden", "a flat above a bakery on …"
        if place is not None and _a_place(parse, place):
            where = phrase_of(parse, place, ("relcl", "punct", "prep"))
            if where:
                return [_fact("location", where, f"Lives in {where}")]
    return []


# Verbs (with their particles) that end what their object names: "sold the hatchback", "gave up
# on German", "I've gone right off black coffee", "I've left that company".
_ENDING = {"sell": "", "quit": "", "leave": "", "ditch": "", "abandon": "", "drop": "",
           "give": "up", "go": "off", "pack": "in", "stop": "", "cancel": "", "lose": ""}


def _ending(parse: Parse, clause: Clause) -> list[Statement]:
    """What the speaker stopped having or doing: ends the held memory that names it."""
    verb = clause.verb
    if verb.lemma not in _ENDING or clause.negated:
        return []
    particle = _ENDING[verb.lemma]
    has_particle = any(c.lower == particle for c in verb.children) if particle else True
    objects = [*verb.kids("dobj"), *(p.kid("pobj") for p in verb.kids("prep")
                                     if particle and p.lower in ("on", particle))]
    if not has_particle and not (particle == "off" and objects):
        return []
    out = []
    for thing in objects:
        if thing is None or thing.pos not in ("NOUN", "PROPN"):
            continue
        what = phrase_of(parse, thing, ("relcl", "punct", "prep"))
        what = re.sub(r"^(?:that|this|those|these|my|our)\s+", "", what, flags=re.I)
        if what:
            out.append(Statement("end", "", "", what, ""))
    return out


def _possession(parse: Parse, clause: Clause) -> list[Statement]:
    """"I have two dogs", "we've got 3 kids": the count supersedes an earlier one."""
    verb = clause.verb
    if verb.lemma not in ("have", "own", "get", "keep") or clause.negated or clause.past:
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


def _owned(parse: Parse, thing: Token, count: int, said: str = "") -> Statement:
    noun = thing.text.lower() if count != 1 else thing.lemma
    if said and count > 1 and noun == thing.lemma:  # "a second cat": two cats
        noun = noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")
    phrase = head_phrase(parse, thing)
    words = [w for w in phrase.split() if w.lower() not in _ORDINALS]
    described = " ".join([*words[:-1], noun]) if words else noun
    said = said or next((c.lower for c in thing.children if c.dep == "nummod"), "")
    amount = "a" if count == 1 else said if said else _NUMBER_WORDS.get(count, str(count))
    names = [phrase_of(parse, c, ("relcl", "punct", "conj", "cc", "prep"))
             for c in thing.kids("appos") if c.pos == "PROPN"]
    called = next((f" {c.text} {phrase_of(parse, n, ('relcl', 'punct', 'prep'))}"
                   for c in thing.kids("acl") if c.lemma in ("call", "name")
                   for n in c.kids("oprd", "attr", "dobj") if n.pos == "PROPN"), "")
    text = f"Has {amount} {described}{called}" + "".join(f", {n}" for n in names if n)
    subject = "kid" if thing.lemma in ("child", "kid") else thing.lemma
    return Statement("add", "fact", subject, f"{amount} {described}", text, exclusive=True)


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


_ORDINALS = ORDINALS

# Kin one is married to, partnered with or engaged to: naming one says the speaker's status.
_SPOUSES = {"wife": "married", "husband": "married", "spouse": "married",
            "partner": "in a relationship", "girlfriend": "in a relationship",
            "boyfriend": "in a relationship", "fiance": "engaged", "fiancee": "engaged",
            "fiancé": "engaged", "fiancée": "engaged"}
_KIN = frozenset([*_SPOUSES, *"""son daughter child kid baby brother sister sibling twin
mother mum mom father dad stepdad stepmum stepmom stepson stepdaughter grandson granddaughter
grandchild grandmother grandfather grandma grandpa gran granny grandad nan niece nephew cousin
aunt uncle flatmate housemate roommate""".split()])  # noqa: SIM905


def _kin_named(parse: Parse, a: int, b: int) -> list[Statement]:
    """The speaker's kin by name: "my boyfriend Tariq", "Tomasz is officially my husband"
    (a spouse or partner named says the speaker's status), not an ex or the late."""
    out = []
    for kin in parse.tokens[a:b]:
        if kin.lemma not in _KIN or kin.pos != "NOUN" or not any(
                c.dep == "poss" and c.lower in ("my", "our") for c in kin.children) or any(
                c.lower in ("ex", "former", "late") for c in kin.children):
            continue
        name = next((c for c in kin.kids("appos") if c.pos == "PROPN"), None)
        head = parse.tokens[kin.head]
        if name is None and kin.dep == "attr" and head.lemma in ("be", "become") and (
                subject := head.kid("nsubj")) is not None and subject.pos == "PROPN":
            name = subject  # "Tomasz is officially my husband"
        said_as = phrase_of(parse, name, ("relcl", "punct", "prep", "conj", "cc", "appos")) \
            if name is not None else ""
        if not said_as:
            continue
        text = f"{kin.text[:1].upper()}{kin.text[1:].lower()} is {said_as}"
        if kin.lemma in _SPOUSES:
            out.append(_fact("marital status", _SPOUSES[kin.lemma], text))
        else:
            out.append(_fact(f"{kin.lemma} name", said_as, text, exclusive=False))
    return out


def _renamed(parse: Parse, a: int, b: int) -> list[Statement]:
    """A name that is now another ("Smudge is now officially Captain Whiskers", "Bolt is
    called Thunder now"): memory.py renames what the speaker holds under the old name, and
    nothing if it holds none (someone else's pet)."""
    out = []
    for verb in parse.tokens[a:b]:
        if verb.lemma not in ("be", "call", "name") or not any(
                c.lower == "now" for c in verb.children) or any(
                c.dep == "neg" for c in verb.children):
            continue
        old = verb.kid("nsubj", "nsubjpass")
        new = verb.kid("attr", "oprd")
        if old is None or new is None or old.pos != "PROPN" or not new.text[:1].isupper():
            continue
        before = phrase_of(parse, old, ("relcl", "punct", "prep", "conj", "cc", "appos"))
        first, last = new.i, new.i  # the run of names it is in ("Captain Whiskers")
        while first > verb.i + 1 and parse.tokens[first - 1].pos == "PROPN":
            first -= 1
        while last + 1 < b and parse.tokens[last + 1].pos == "PROPN":
            last += 1
        after = joined(parse, parse.tokens[first:last + 1])
        if before and after and before.lower() != after.lower():
            out.append(Statement("rename", "fact", "", after, "", ends=before))
    return out


_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$")


def _address_to_use(parse: Parse, a: int, b: int) -> list[Statement]:
    """An email address the speaker asks the agent to use from now on ("please use X from now
    on", "email me at X instead"): the speaker's address, in place of the one held."""
    sentence = joined(parse, parse.tokens[a:b])
    if not CHANGE.search(sentence):
        return []
    for token in parse.tokens[a:b]:
        if not _EMAIL.match(token.text):
            continue
        verb = parse.tokens[parse.tokens[token.head].head] if token.dep == "pobj" else \
            parse.tokens[token.head]
        if verb.tag in ("VB", "VBP") and verb.kid("nsubj") is None and verb.lemma in (
                "use", "email", "contact", "reach", "mail", "write"):
            return [_fact("email", token.text, f"Email is {token.text}")]
    return []


def _pronouns(parse: Parse, a: int, b: int) -> list[Statement]:
    """The pronouns the speaker goes by ("I use they/them now", "my pronouns are she/her")."""
    tokens = parse.tokens
    for i in range(a, b - 2):
        if not (tokens[i].lower in _PRONOUNS and tokens[i + 1].text == "/"
                and tokens[i + 2].lower in _PRONOUNS):
            continue
        verb = tokens[i]
        for _ in range(6):
            if verb.pos in ("VERB", "AUX") or verb.head == verb.i:
                break
            verb = tokens[verb.head]
        subject = subject_of_verb(parse, verb)
        if subject is None or any(c.dep == "neg" for c in verb.children) or not (
                speaker(subject) or (subject.lemma == "pronoun" and any(
                    c.dep == "poss" and c.lower in ("my", "our") for c in subject.children))):
            continue
        said_as = f"{tokens[i].lower}/{tokens[i + 2].lower}"
        return [_fact("pronouns", said_as, f"Pronouns are {said_as}")]
    return []


def _ordinal(parse: Parse, clause: Clause) -> list[Statement]:
    """A count said by its newest: "our third was born on Sunday" (three children), "we
    brought a second cat home" (two cats)."""
    verb = clause.verb
    if clause.negated:
        return []
    if verb.lemma in ("bear", "arrive", "come") and (subject := verb.kid(
            "nsubjpass", "nsubj")) is not None and subject.lower in _ORDINALS and any(
            c.dep == "poss" and c.lower in ("my", "our") for c in subject.children):
        n = _ORDINALS[subject.lower]
        return [Statement("add", "fact", "kid", f"{_NUMBER_WORDS[n]} kids",
                          f"Has {_NUMBER_WORDS[n]} kids", exclusive=True)]
    if verb.lemma in ("bring", "adopt", "get", "buy", "take", "have", "welcome"):
        for thing in verb.kids("dobj"):
            n = next((_ORDINALS[c.lower] for c in thing.children
                      if c.dep in ("amod", "nummod") and c.lower in _ORDINALS), 0)
            if n and thing.pos == "NOUN" and thing.lemma in _KEPT:
                return [_owned(parse, thing, n, said=_NUMBER_WORDS[n])]
    return []


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
        subject = verb.kid("nsubj")
        partner = None if subject is None else next(
            (c for c in subject.kids("conj") if c.lower not in ("i", "me")), None) \
            if subject.lower in ("i", "we") else subject  # "Noor and I broke up"
        if partner is None and (p := prep_object(verb, "with")) is not None:
            partner = p
        said_as = "Broke up" if verb.lemma == "break" else "Split up"
        name = phrase_of(parse, partner, ("relcl", "punct", "prep", "conj", "cc")) \
            if partner is not None else ""
        ended = [Statement("end", "", "", name, "")] if name and partner is not None \
            and partner.pos == "PROPN" else []  # what was said of the two of them
        return [*ended, _fact("marital status", "separated",
                              f"{said_as} with {name}" if name else said_as)]
    if verb.lemma == "see" and verb.tag == "VBG" and (who := verb.kid("dobj")) is not None \
            and who.lower in ("someone", "somebody") and not clause.past:
        return [_fact("marital status", "in a relationship", "Is seeing someone")]
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
    elif verb.lemma in ("start", "begin") and (x := verb.kid("xcomp")) is not None \
            and x.lemma == "eat" and not negated:  # "I've started eating fish again"
        food = x.kid("dobj")
        what = phrase_of(parse, food, ("relcl", "punct", "prep")) if food is not None else ""
        return [_fact("diet", what, f"Eats {what}")] if what else []
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


def _recount(parse: Parse, clause: Clause) -> list[Statement]:
    """"We're down to two", "we're up to five now": a new count of what the speaker has,
    no thing named (the one counted last, memory.py finds it)."""
    verb = clause.verb
    if verb.lemma != "be" or clause.negated:
        return []
    for way in verb.kids("advmod", "prt"):
        if way.lower in ("down", "up") and (n := prep_object(way, "to")) is not None \
                and n.pos == "NUM" and (n.lower in NUMBERS or n.lower.isdigit()):
            return [Statement("recount", "fact", "", n.lower, "")]
    return []


_CLASSES = (_recount, _copula, _work, _job_change, _home, _new_home, _ordinal, _possession,
            _marriage, _name, _diet, _ending)


def statements(parse: Parse, at: float = 0.0) -> list[Statement]:
    """What the parse says about the speaker, sentence by sentence: its classes, the rules'
    reading of each clause of the speaker said from its subject on, and, for a lasting
    statement of the speaker's that neither reads ("at work we write everything in Java", "I
    take my coffee black"), the speaker's words themselves (`_in_own_words`)."""
    out: list[Statement] = []
    for a, b in parse.sents:
        sentence = joined(parse, parse.tokens[a:b])
        if not sentence or is_question(sentence) or asks_to_forget(sentence) \
                or forgetting(parse, a, b) is not None:
            continue
        found: list[Statement] = []
        unread: list[Clause] = []
        ending: set[int] = set()
        for verb in predicates(parse, a, b):
            clause = speaker_clause(parse, verb, sentence)
            if clause is None:
                continue
            for reading in _CLASSES:
                got = reading(parse, clause)
                if got:
                    found.extend(got)
                    if any(s.op == "end" and not s.subject for s in got):
                        ending.add(clause.verb.i)
                    break
            else:
                core = from_subject(parse, clause)
                rules = statements_of(core.rstrip(".!"), at) if core and not is_question(
                    core) else []
                found.extend(rules)
                if not rules and _lasting(parse, clause):
                    unread.append(clause)
        seen = {s.subject for s in found}
        found.extend(s for s in [*_counted(parse, a, b), *_kin_named(parse, a, b),
                                 *_pronouns(parse, a, b), *_address_to_use(parse, a, b),
                                 *_renamed(parse, a, b)]
                     if s.subject not in seen)
        if unread or ending:
            found.extend(_in_own_words(parse, a, b, unread, ending))
        out.extend(found)
    return out


# Verbs that say nothing lasting of the speaker on their own ("I think …", "I need a hand").
_LIGHT = frozenset("""have get think know guess need want hope wonder forget remember mean feel
try ask say tell thank check look wait let see hear believe suppose bet find reckon agree
understand realise realize love like hate prefer enjoy wish would could should can will
please help show give send make put keep call cook eat""".split())  # noqa: SIM905
_DEGREE = frozenset(["so", "too", "very", "really", "pretty", "quite", "bit", "rather", "super"])
_CONTENT = ("NOUN", "PROPN", "ADJ", "NUM")


def _lasting(parse: Parse, clause: Clause) -> bool:
    """Whether an unread clause of the speaker states something that lasts: not negated, not
    of a light verb, not of the day, not a past event unless it is a change, and about some
    thing (a noun, a name, a quality, a number) it governs."""
    verb = clause.verb
    if clause.negated or _DAYS.search(clause.sentence) or (
            verb.lemma in _LIGHT and not _held_or_habit(clause)):
        return False
    if clause.past and verb.lemma not in CHANGE_VERBS:
        return False
    if verb.tag == "VB" and not verb.kids("aux"):
        return False  # an imperative
    governed = [t for t in parse.subtree(verb) if t.i > verb.i and t.head != t.i]
    if verb.lemma == "be":
        quality = verb.kid("acomp", "attr")
        if quality is None or any(c.lower in _DEGREE for c in quality.children):
            return False  # "I'm so jealous": a feeling of the moment
    return any((t.pos in _CONTENT and t.dep in ("dobj", "attr", "acomp", "pobj", "oprd",
                                                 "appos", "npadvmod", "compound", "amod"))
               or (t.dep == "dobj" and t.lower in _PRONOUNS) for t in governed)


# What makes "have" or "get" say something lasting: a habit ("I get the 7:40 into town every
# weekday"), a change that lasts ("since the move I get the train in").
_HABIT = re.compile(r"\b(?:every|each|usually|always|normally|most (?:days|mornings|weeks)|"
                    r"since (?:the|we|i|my|our))\b", re.I)
# What one has that is no condition or possession of the speaker's ("I have time").
_HAD = frozenset(["time", "fun", "work", "money", "question", "access", "trouble", "problem",
                  "idea", "chance", "fun", "luck", "way", "lunch", "dinner", "breakfast"])


def _held_or_habit(clause: Clause) -> bool:
    """"I have asthma", "I've got type 2 diabetes" (a bare noun one has: a condition), or a
    habit of getting something ("I get the train in"), in the present."""
    verb = clause.verb
    if verb.lemma not in ("have", "get") or clause.past or verb.tag == "VBD":
        return False
    thing = verb.kid("dobj")
    if thing is None or thing.pos not in ("NOUN", "PROPN", "NUM") or thing.lemma in _HAD:
        return False
    bare = thing.tag in ("NN", "NNP") and not any(c.dep in ("det", "poss") for c in
                                                   thing.children)
    owned = verb.lemma == "have" or any(a.lemma == "have" for a in verb.kids("aux"))
    return (bare and owned) or bool(_HABIT.search(clause.sentence))


# Pronouns one goes by ("I use they/them now").
_PRONOUNS = frozenset(["they", "them", "he", "him", "she", "her", "xe", "xem", "ze", "zir"])


# Subjects whose clause is still the speaker's ("it's an oat latte every time now").
_IMPERSONAL = frozenset(["it", "this", "that", "there", "which", "who", "what"])


def _in_own_words(parse: Parse, a: int, b: int, unread: list[Clause],
                  ending: set[int]) -> list[Statement]:
    """The sentence in the speaker's words, without the clauses of anyone else in it ("my
    friend moved to Lisbon, I'm so jealous" keeps "I'm so jealous") nor those that end
    something ("sold the hatchback, it's the bike from now on" keeps what is new), as a
    memory whose sameness to others is told by meaning alone."""
    heads = {t.i for t in parse.tokens[a:b] if t.dep in _CLAUSE_DEPS and t.pos in ("VERB", "AUX")}
    heads |= ending
    keep = []
    for token in parse.tokens[a:b]:
        head = token
        for _ in range(40):
            if head.i in heads or head.head == head.i:
                break
            head = parse.tokens[head.head]
        subject = head.kid("nsubj", "nsubjpass")
        if head.i in ending or (subject is not None and not speaker(subject)
                                and subject.lower not in _IMPERSONAL
                                and subject.lemma not in GROUPS):
            continue
        keep.append(token)
    while keep and (keep[0].pos in ("PUNCT", "CCONJ") or keep[0].lower in ("so", "and", "but")):
        keep = keep[1:]
    text = joined(parse, keep)
    words = text.split()
    if not 2 <= len(words) <= 40:
        return []
    change = bool(ending) or bool(CHANGE.search(text)) or any(
        c.verb.lemma in CHANGE_VERBS or any(t.lower == "new" for t in parse.subtree(c.verb))
        for c in unread)
    return [Statement("add", "fact", SAID, text, text[0].upper() + text[1:], change=change)]


SAID = "said"  # the subject of what the speaker said of itself that no class names


# -- forgetting, asked of the agent's memory --------------------------------------------------

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
    the statements the parse finds in place of the rules' on the same subjects, what it asks
    to forget read by structure, and nothing the parse shows is someone else's ("my
    neighbour's puppy is called Biscuit")."""
    learned = learn(text, at, reply_before)
    reading = read(parse, text) if parse is not None else None
    if reading is None:
        return learned
    try:
        requests = [forgetting(reading, a, b) for a, b in reading.sents]
        if any(r is not None for r in requests):  # the parse reads what is asked ("forget it")
            asked = [t for r in requests for t in (r or [])]
            if any(t != "^" for t in asked):  # "that" is what this turn named ("forget the
                asked = [t for t in asked if t != "^"]  # therapy thing? don't keep that")
            return _forgets(learned, asked)
        found = statements(reading, at)
        others = _someone_elses(reading)
    except (IndexError, KeyError, ValueError, TypeError, RecursionError, AttributeError):
        return learned
    moved = not any(s.subject == "location" for s in found) and _MOVED.search(text)
    rules = [s for s in learned.statements if not (
        s.op == "add" and s.kind == "fact" and others and s.value.lower() in others
        and s.value.lower() not in _mine(reading, others)) and not (
        moved and s.subject == "location")]  # the parse saw no new home in "moved to X"
    for s in found:
        if s.kind == "fact" and s.subject in ("location",):
            s.when = when_said(text, at)
    subjects = {s.subject for s in found if s.op == "add"}
    misread = set().union(*(_MISREAD.get(subject, frozenset()) for subject in subjects))
    values = {s.value.lower() for s in found}
    learned.statements = [*found, *(s for s in rules if s.subject not in subjects
                                    and s.subject not in misread
                                    and s.value.lower() not in values)]
    return learned


_MOVED = re.compile(r"\b(?:moved|relocated|moving)\b", re.I)


def _forgets(learned: Learned, asked: list[str]) -> Learned:
    """The rules' requests to forget that name a statement ("forget that I live in Berlin"),
    and the parse's for what is named by a phrase."""
    named = [s for s in learned.statements if s.op == "forget" and s.kind]
    phrases = [Statement("forget", "", phrase, phrase, "") for phrase in dict.fromkeys(asked)]
    learned.statements = [*named, *phrases]
    return learned


def _someone_elses(parse: Parse) -> str:
    """The sentences whose subject is what someone else has ("my neighbour's new puppy is
    called Biscuit", "my sister's car is red"; not "my dog's name is Nutmeg", a name, no
    possession), lower-cased: what the rules read in them is not the tenant's."""
    out = []
    for a, b in parse.sents:
        for token in parse.tokens[a:b]:
            if token.dep in ("nsubj", "nsubjpass") and token.head != token.i and parse.tokens[
                    token.head].dep == "ROOT" and token.lemma in _KEPT and any(
                    c.dep == "poss" and c.pos in ("NOUN", "PROPN") for c in token.children):
                out.append(joined(parse, parse.tokens[a:b]).lower())
                break
    return " | ".join(out)


def _mine(parse: Parse, others: str) -> str:
    """The sentences that are not someone else's, lower-cased."""
    return " | ".join(s for s in (joined(parse, parse.tokens[a:b]).lower()
                                  for a, b in parse.sents) if s not in others)


# What the rules call a statement the parse read as another ("I'm a retired teacher" is no
# present role; "I'm a widow" no identity but a marital status).
_MISREAD: dict[str, frozenset[str]] = {
    "past role": frozenset({"role", "identity"}),
    "diet": frozenset({"identity", "role"}),
    "marital status": frozenset({"identity"}),
    "employment status": frozenset({"identity", "role"}),
}
