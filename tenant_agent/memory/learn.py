"""The rules: what the agent learns from one thing its tenant said, without a model.

They run on every delivered turn, inside the box, stdlib only, so they must be cheap (a few
hundred microseconds a turn) and predictable. A model, when the tenant's agent has one, later
refines what they found (tenant_agent/memory/extract.py); without one, or while its budget is spent,
these are all the agent learns.

Invariants:
- Only the tenant's own words are read here (never the assistant's reply, never documents
  pasted into a request); a reply counts only as the offer a bare "yes" accepts.
- Questions are not statements: "Do I prefer dark mode?" teaches nothing. A request that is
  phrased as a question ("Can you answer in French from now on?") still counts.
- Patterns are anchored at the start of a clause (after discourse markers such as "actually"),
  so "I don't know if I like it" is not a preference and "my friend lives in Rome" is not a
  location.
- Each statement says whether it adds, ends ("I no longer live in Berlin") or forgets
  ("Forget that I live in Berlin") something; tenant_agent/memory/memory.py decides what that
  does to what is already held (supersede, confirm, remove).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tenant_agent.memory import refusals
from tenant_agent.memory.lexicon import OCCUPATIONS
from tenant_agent.memory.utterance import (
    AHEAD,
    RELATIVE,
    REQUEST,
    accepted,
    clauses,
    clean,
    day_text,
    sentences,
    split_list,
    when_ahead,
    when_said,
)


class Statement:
    """One thing the tenant said about itself. (Plain classes here and in turns.py, not
    dataclasses: dataclasses imports inspect, ast and dis, ~10 ms of the first request after
    a wake.)"""

    __slots__ = (
        "change",
        "ends",
        "exclusive",
        "kind",
        "op",
        "polarity",
        "rival_head",
        "subject",
        "text",
        "value",
        "when",
    )

    def __init__(self, op: str, kind: str, subject: str, value: str, text: str,
                 polarity: str = "", exclusive: bool = False, when: float | None = None,
                 ends: str = "", rival_head: bool = False, change: bool = False) -> None:
        self.op = op                  # add | end (no longer holds) | forget (remove it)
        self.kind = kind              # preference | fact | event | plan
        self.subject = subject        # what it is about: "dark mode", "location", "allergy"
        self.value = value            # "dark mode", "Paris", "peanuts"
        self.text = text              # how it reads: "Prefers light mode", "Lives in Paris"
        self.polarity = polarity      # preferences: likes | dislikes
        self.exclusive = exclusive    # one value at a time: a new one supersedes the old
        self.when = when              # when it happened or became true, if the tenant said
        self.ends = ends              # a value it ends ("moved from Berlin to Paris")
        self.rival_head = rival_head  # "prefer X mode" supersedes other liked "… mode"
        self.change = change          # said as a change (the parse saw it: "moved to …")

    def __repr__(self) -> str:
        return "Statement(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


class Learned:
    __slots__ = ("insights", "statements", "topics")

    def __init__(self) -> None:
        self.statements: list[Statement] = []
        self.topics: list[str] = []
        self.insights: list[tuple[str, str]] = []  # (kind, text) to share

    @property
    def preferences(self) -> list[tuple[str, str]]:
        return [(s.polarity, s.value) for s in self.statements
                if s.kind == "preference" and s.op == "add"]

    @property
    def facts(self) -> list[tuple[str, str]]:
        return [(s.subject, s.value) for s in self.statements
                if s.kind == "fact" and s.op == "add"]


# -- the patterns ----------------------------------------------------------------------------

_I = r"^(?:i|we)"
_IM = r"^(?:i'm|i am|im|we're|we are)"
_LANGUAGES = frozenset("""english french german spanish italian portuguese dutch polish russian
ukrainian chinese mandarin cantonese japanese korean arabic hindi bengali urdu turkish swedish
norwegian danish finnish icelandic greek hebrew czech slovak romanian hungarian bulgarian
serbian croatian slovenian vietnamese thai indonesian malay tagalog filipino persian farsi
swahili catalan basque galician welsh irish latin esperanto estonian latvian lithuanian
""".split())  # noqa: SIM905
_LANGUAGE = re.compile(
    r"\b(?:answers?|repl(?:y|ies)|responses?|respond|answer|write|speak|talk|messages?|"
    r"everything|explanations?)\b(?: to me| back)?\s+in\s+([a-z]+)\b", re.I)
_DEGREE = re.compile(r"^(?:bit|little|lot|tad|tiny bit|huge|big|real|total|complete|"
                     r"kind of|sort of|bit of|little bit)\b", re.I)
_FAMILY = re.compile(r"^(?:a|an|one|two|three|four|five|\d+)\s+(dogs?|cats?|pets?|sons?|"
                     r"daughters?|kids?|children|child|brothers?|sisters?|husband|wife|"
                     r"partner|boyfriend|girlfriend|cars?|bikes?|horses?|birds?|rabbits?|"
                     r"hamsters?|fish|twins|grandchildren|grandkids?)\b(.*)$", re.I)
_EVENT_VERBS = ("went|visited|started|began|finished|joined|bought|got|adopted|ran|took|"
                "attended|met|signed up|graduated|painted|read|watched|made|won|quit|left|"
                "traveled|travelled|returned|celebrated|received|launched|completed|tried|"
                "hiked|camped|volunteered|published|wrote|learned|learnt|built|baked|"
                "cooked|played|saw|lost|sold|married|got married|had|spent|organized|"
                "organised|hosted|moved into|found|created|designed|released|performed|"
                "competed|applied|passed|failed|booked|ordered|switched|upgraded|installed")
_EVENT = re.compile(_I + r" (?:just |recently |finally |also |actually |have |'ve )?"
                    r"(" + _EVENT_VERBS + r") (.+)", re.I)
_PLAN = re.compile(_I + r"(?:'m| am|'re| are) (going|planning|about|hoping) to (.+)|"
                   + _I + r" (will|'ll|plan to|intend to|hope to) (.+)", re.I)
# Forgetting is asked of the agent's memory: "forget …", or deleting what it knows ("delete
# what you know about …", "remove my address from your memory"); an ordinary request that
# starts with "remove" or "delete" ("remove the duplicates from this list") is not.
_MEMORY = r"(?:your |the )?(?:memory|memories|notes?|records?)"
_FORGET = re.compile(
    r"^(?:(?:please|can you|could you|would you|will you|i want you to|i'd like you to)\s+)?"
    r"(?:(?:forget|unlearn|don't remember|do not remember|stop remembering)\b"
    r"(?:\s+(?:that|about|the fact that|what i (?:said|told you|mentioned) about|everything "
    r"about|all about|my|i said|i told you|i mentioned))*"
    r"|(?:delete|remove|erase|drop|wipe|clear|purge|scrub)\s+"
    r"(?:(?:what|everything|anything|all) (?:you (?:know|remember|have|stored|saved|learned|"
    r"learnt|noted|kept|keep)|i (?:said|told you|mentioned))(?: about| on| regarding| of)?"
    r"(?: me)?"
    rf"|(?:any |all )?{_MEMORY}\s+(?:about|on|of|regarding)"
    rf"|(?=.+\bfrom {_MEMORY}$)))"
    rf"\s*(.*?)(?:\s+from {_MEMORY})?$", re.I)
_REMEMBER = re.compile(r"^(?:please\s+)?(?:remember|note|keep in mind|don't forget|"
                       r"do not forget)(?: that)?\s+(.+)$", re.I)

Rule = Callable[[str, float], list[Statement]]


def _pref(polarity: str, verb: str, value: str, rival: bool = False,
          over: str = "") -> list[Statement]:
    out = []
    for item in split_list(clean(value)):
        item = re.sub(r"^(?:the|a|an|my|some)\s+", "", item, flags=re.I).strip()
        if not item or len(item.split()) > 8 or item.lower() in ("it", "that", "this", "them"):
            continue
        shown = {"prefer": "Prefers", "love": "Loves", "fan": "Is a fan of",
                 "dislike": "Dislikes", "hate": "Hates", "avoid": "Avoids"}.get(verb, "Likes")
        if polarity == "dislikes" and verb not in ("dislike", "hate", "avoid"):
            shown = "Does not like"
        out.append(Statement("add", "preference", item.lower(), item.lower(),
                             f"{shown} {item}", polarity, rival_head=rival,
                             ends=over.lower()))
    return out


def _likes(clause: str, at: float) -> list[Statement]:
    m = re.match(_I + r" (?:really |also |still |now |much |definitely |do |actually |"
                 r"kind of |)(?:(?:would |'d )?rather|prefer|like|love|enjoy|adore)s? (.+)",
                 clause, re.I)
    if not m or re.match(_I + r"(?: would|'d) like", clause, re.I):
        return []
    verb = re.search(r"prefer|rather|love|like|enjoy|adore", clause, re.I)
    word = verb.group(0).lower() if verb else "like"
    value, over = m.group(1), ""
    if word in ("prefer", "rather"):
        parts = re.split(r"\s+(?:over|to|rather than|instead of|than)\s+", value, maxsplit=1)
        value, over = parts[0], clean(parts[1]) if len(parts) > 1 else ""
    if re.match(r"(?:it|that|this|them|you|him|her|when|how|what|if|to think)\b", value, re.I):
        return []
    return _pref("likes", "prefer" if word in ("prefer", "rather") else word, value,
                 rival=word in ("prefer", "rather") or "now" in clause.lower(), over=over)


def _dislikes(clause: str, at: float) -> list[Statement]:
    m = re.match(_I + r" (?:really |also |still |now |actually |)(?:(don't|do not|no longer|"
                 r"never|didn't|did not) (?:really |much |)(?:like|enjoy|want|prefer|love|"
                 r"use)|(dislike|hate|can't stand|cannot stand|detest|avoid))s? (.+)",
                 clause, re.I)
    if not m or re.match(r"(?:it|that|this|them|you|when|how|what|if|to)\b", m.group(3), re.I):
        return []
    verb = (m.group(2) or "dislike").lower()
    return _pref("dislikes", verb if verb in ("hate", "avoid") else "dislike"
                 if m.group(2) else "not", m.group(3))


def _fan(clause: str, at: float) -> list[Statement]:
    m = re.match(_IM + r" (not )?(?:a |an )?(?:big |huge |massive |real |)fan of (.+)",
                 clause, re.I)
    if not m:
        return []
    return _pref("dislikes" if m.group(1) else "likes", "not" if m.group(1) else "fan",
                 m.group(2))


def _always(clause: str, at: float) -> list[Statement]:
    m = re.match(r"^(?:please |from now on,? |going forward,? )*(always|never|don't|do not) "
                 r"(?:use|give me|show me|include|add|send me|write)\s+(.+)", clause, re.I)
    if not m or (m.group(1).lower() in ("don't", "do not") and not REQUEST.search(clause)
                 and not clause.lower().startswith("please")):
        return []
    polarity = "likes" if m.group(1).lower() == "always" else "dislikes"
    return _pref(polarity, "like" if polarity == "likes" else "avoid", m.group(2))


def _language(clause: str, at: float) -> list[Statement]:
    m = _LANGUAGE.search(clause)
    if not m or m.group(1).lower() not in _LANGUAGES:
        return []
    wants = (REQUEST.search(clause) or re.match(
        r"^(?:please|i'd like|i would like|i want|i prefer|can you|could you|would you|"
        r"answer|reply|respond|write|speak|talk)\b", clause, re.I))
    if not wants or re.search(r"\b(?:don't|do not|stop|no longer|never)\b", clause, re.I):
        return []
    lang = m.group(1).capitalize()
    return [Statement("add", "preference", "answer language", lang,
                      f"Wants answers in {lang}", "likes", exclusive=True)]


def _name(clause: str, at: float) -> list[Statement]:
    m = (re.match(r"^(?:my name is|my name's|call me|i'm called|i am called|they call me)\s+"
                  r"([A-Za-z][\w'-]*(?:\s+[A-Z][\w'-]*){0,3})", clause, re.I)
         or re.match(r"^(?:i'm|i am)\s+([A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+){0,2})$", clause))
    if not m:
        return []
    name = m.group(1).strip()
    if name.lower() in ("not", "fine", "good", "ok", "okay", "here", "back", "sorry", "done"):
        return []
    return [Statement("add", "fact", "name", name, f"Name is {name}", exclusive=True)]


def _work(clause: str, at: float) -> list[Statement]:
    m = (re.match(_I + r" (?:now |currently |still |)work(?:s|ing)? (?:at|for) (.+?)"
                  r"(?:\s+as\s+(?:a |an )?(.+))?$", clause, re.I)
         or re.match(_I + r" (?:now |currently |)work(?:s|ing)? as (?:a |an )?(.+?)"
                     r"(?:\s+(?:at|for)\s+(.+))?$", clause, re.I))
    if not m:
        return []
    first, second = m.group(1), m.group(2)
    org, role = (first, second) if re.search(r"work\w* (?:at|for)", clause, re.I) else (second,
                                                                                        first)
    out = []
    if org and (org := clean(re.split(r"\s+(?:in|since|on|where|and)\s+", org)[0])):
        out.append(Statement("add", "fact", "employer", org, f"Works at {org}", exclusive=True,
                             when=when_said(clause, at)))
    if role and (role := clean(role)):
        out.append(Statement("add", "fact", "role", role, f"Works as a {role}", exclusive=True))
    return out


def _no_longer(clause: str, at: float) -> list[Statement]:
    m = re.match(_I + r" (?:no longer|don't|do not) (live|work) (?:in|at|for) (.+?)"
                 r"(?: anymore| any more| any longer)?$", clause, re.I)
    if not m:
        return []
    subject = "location" if m.group(1).lower() == "live" else "employer"
    value = clean(m.group(2))
    return [Statement("end", "fact", subject, value, "", exclusive=True)] if value else []


def _not_anymore(clause: str, at: float) -> list[Statement]:
    """"I'm no longer a vegetarian", "I'm not a student anymore": ends what it names."""
    m = re.match(_IM + r" (?:no longer|not) (?:a |an )?(.+?)(?: anymore| any more| any longer)?$",
                 clause, re.I)
    if not m or not re.search(r"\bno longer\b|\bany ?more$|\bany longer$", clause, re.I):
        return []
    value = clean(m.group(1))
    subject = "role" if value.split()[-1].lower() in OCCUPATIONS else "identity"
    return [Statement("end", "fact", subject, value if subject == "role" else value.lower(),
                      "")] if value else []


def _place(clause: str, at: float) -> list[Statement]:
    m = re.match(_I + r" (?:now |currently |still |)(?:live|reside|stay|am based|'m based)"
                 r" in (.+)", clause, re.I) or re.match(
        _IM + r" (?:now |currently |)(?:based|living|located|staying) in (.+)", clause, re.I)
    moved = re.match(_I + r" (?:just |recently |finally |have |'ve |)(?:moved|relocated)"
                     r"(?: from (.+?))?(?: to | into )(.+)", clause, re.I)
    if moved:
        old, new = clean(moved.group(1) or ""), clean(moved.group(2))
        new = re.split(r"\s+(?:from|last|this|in \d{4})\b", new)[0].strip()
        if not new:
            return []
        return [Statement("add", "fact", "location", new, f"Lives in {new}", exclusive=True,
                          when=when_said(clause, at), ends=old)]
    if m and (place := clean(m.group(1))):
        place = re.split(r"\s+(?:with|since|for)\b", place)[0].strip()
        return [Statement("add", "fact", "location", place, f"Lives in {place}",
                          exclusive=True, when=when_said(clause, at))]
    origin = re.match(_IM + r" (?:originally )?from (.+)", clause, re.I)
    if origin and (place := clean(origin.group(1))):
        return [Statement("add", "fact", "hometown", place, f"Is from {place}",
                          exclusive=True)]
    return []


def _allergy(clause: str, at: float) -> list[Statement]:
    m = re.match(_IM + r" (?:very |severely |slightly |highly |)(?:allergic|intolerant) "
                 r"(?:to|of) (.+)", clause, re.I) or re.match(
        _I + r" (?:have|'ve got|have got) (?:an? |)(.+?) (?:allergy|allergies|intolerance)$",
        clause, re.I) or re.match(_I + r" (?:can't|cannot|can not) eat (.+)", clause, re.I)
    if not m:
        return []
    return [Statement("add", "fact", "allergy", item.lower(), f"Allergic to {item}")
            for item in split_list(clean(m.group(1)), always=True) if item]


def _identity(clause: str, at: float) -> list[Statement]:
    m = re.match(_IM + r" (?:a |an )(.+)", clause, re.I)
    if not m or _DEGREE.match(m.group(1)):
        return []
    phrase = clean(m.group(1))
    head_part = re.split(r"\s+(?:at|for|with|in|from|of|on)\s", phrase + " ", maxsplit=1)[0]
    words = head_part.split()
    if not words or len(words) > 5:
        return []
    head = words[-1].lower()
    out: list[Statement] = []
    org = re.search(r"\s(?:at|for)\s+([A-Z][\w&.'-]*(?:\s+[A-Z][\w&.'-]*)*)", phrase)
    if head in OCCUPATIONS:
        role = head_part.strip()
        out.append(Statement("add", "fact", "role", role, f"Works as a {role}", exclusive=True))
        if org:
            out.append(Statement("add", "fact", "employer", org.group(1),
                                 f"Works at {org.group(1)}", exclusive=True))
        return out
    if re.search(r"\b(?:bit|little|lot|fan|fan of|big deal)\b", phrase, re.I):
        return []
    article = "an" if phrase[:1].lower() in "aeiou" else "a"
    return [Statement("add", "fact", "identity", phrase.lower(), f"Is {article} {phrase}")]


def _has(clause: str, at: float) -> list[Statement]:
    m = re.match(_I + r" (?:have|'ve got|have got|own) (.+)", clause, re.I)
    family = _FAMILY.match(m.group(1)) if m else None
    if not family:
        return []
    thing = clean(family.group(0))
    subject = family.group(1).lower().rstrip("s") or family.group(1).lower()
    # one count at a time: "three cats" after "two cats" is the new count
    return [Statement("add", "fact", subject, thing, f"Has {thing}", exclusive=True)]


def _my(clause: str, at: float) -> list[Statement]:
    # "is" also as "'s" where no noun follows it (a noun would make it a possessive: "my
    # sister's car"): "my cat's called Mango", "my flat's on the 4th floor"
    m = re.match(r"^(?:my|our) ([a-z][a-z' -]{1,30}?)(?: (?:is|are|was) |['\u2019]s (?=(?:called|"
                 r"named|known|on|in|at|the|a|an|\d)\b))(?!not\b)(.+)", clause, re.I)
    if not m:
        return []
    said_as, value = m.group(1).strip(), m.group(2).strip().rstrip(".!?")
    # what it is about is its head: "my email for the club stuff" is an email
    key = re.split(r"\s+(?:for|of|at|in|on|from|with)\s+", said_as.lower(), maxsplit=1)[0]
    if "@" not in value:
        value = clean(value)
    if not value or key in ("name",) or len(value.split()) > 8:
        return []
    return [Statement("add", "fact", key, value, f"{said_as[0].upper()}{said_as[1:]} is {value}",
                      exclusive=True, when=when_said(clause, at))]


def _age(clause: str, at: float) -> list[Statement]:
    m = re.match(_IM + r" (\d{1,3})(?: years old| yo|$)", clause, re.I)
    if not m:
        return []
    return [Statement("add", "fact", "age", m.group(1), f"Is {m.group(1)} years old",
                      exclusive=True, when=at)]


def _speaks(clause: str, at: float) -> list[Statement]:
    m = re.match(_I + r" (?:also |)(?:speak|understand) (.+)", clause, re.I)
    if not m:
        return []
    langs = [w.capitalize() for w in split_list(clean(m.group(1)), always=True)
             if w.lower().split(" ")[0] in _LANGUAGES]
    return [Statement("add", "fact", "speaks", lang.lower(), f"Speaks {lang}")
            for lang in langs]


def _event(clause: str, at: float) -> list[Statement]:
    m = _EVENT.match(clause)
    if not m:
        return []
    what = clean(m.group(2))
    if len(re.findall(r"[a-z]{3,}", what.lower())) < 1 or len(what.split()) > 14 \
            or re.match(r"(?:it|that|this|them|you|a bit|a lot|some|one)\b", what, re.I):
        return []
    verb = m.group(1).lower()
    if verb in ("got", "had") and what.lower().startswith("to "):
        return []  # "I had to…" is not an event
    when = when_said(clause, at)
    what = RELATIVE.sub("", what).strip(" ,") or what
    text = f"{verb[0].upper()}{verb[1:]} {what}" + (f" ({day_text(when)})" if when else "")
    return [Statement("add", "event", f"{verb} {what}".lower(), what, text,
                      when=when if when is not None else at)]


def _plan(clause: str, at: float) -> list[Statement]:
    m = _PLAN.match(clause)
    if not m:
        return []
    verb, what = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    what = clean(what)
    if not what or not 2 <= len(what.split()) <= 14:
        return []
    when = when_ahead(clause, at)
    what = AHEAD.sub("", what).strip(" ,") or what
    lead = {"going": "Is going to", "planning": "Plans to", "about": "Is about to",
            "hoping": "Hopes to", "hope to": "Hopes to", "plan to": "Plans to",
            "intend to": "Plans to"}.get(verb.lower(), "Will")
    text = f"{lead} {what}" + (f" ({day_text(when)})" if when else "")
    return [Statement("add", "plan", what.lower(), what, text, when=when or at)]


# Order matters: the first rule that finds something in a clause wins.
_RULES: tuple[Rule, ...] = (_language, _no_longer, _dislikes, _fan, _not_anymore, _likes,
                            _always, _name, _work, _place, _allergy, _age, _speaks, _has, _my,
                            _plan, _event, _identity)


def statements_of(clause: str, at: float) -> list[Statement]:
    """What one statement clause says (no question, markers already stripped)."""
    for rule in _RULES:
        found = rule(clause, at)
        if found:
            return found
    return []


def asks_to_forget(text: str) -> bool:
    """Whether any sentence of `text` asks the agent to forget something."""
    return any(_FORGET.match(clause) for s in sentences(text) for clause, _ in clauses(s))


def _forget(clause: str, at: float) -> list[Statement] | None:
    """None if the clause does not ask to forget; else what to forget."""
    m = _FORGET.match(clause)
    if not m:
        return None
    target = m.group(1).strip().rstrip("?.! ")
    if not target or target.lower() in ("it", "that", "this", "everything", "all of it"):
        return []
    first = re.sub(r"^(?:that\s+)?", "", target, flags=re.I)
    parsed = statements_of(first, at) if re.match(r"^(?:i|i'm|my|we)\b", first, re.I) else []
    if parsed:
        return [Statement("forget", s.kind, s.subject, s.value, s.text, s.polarity)
                for s in parsed]
    phrase = re.sub(r"^(?:the|my|about)\s+", "", target, flags=re.I).lower()
    return [Statement("forget", "", phrase, phrase, "")]


# -- one utterance ---------------------------------------------------------------------------

# The speaker ("-i" is a command's flag), and the one spoken to in particular: "you" that opens
# a statement or is said to someone ("Your order has shipped", "thank you", "did you …"); any
# other "you" is anyone ("back up your keys first"). As knowledge/distill.py reads them.
_FIRST_PERSON = re.compile(r"(?<![-\w])(i|i'm|i've|i'd|me|my|mine|myself|we|our|ours|us)\b",
                           re.I)
_SECOND_PERSON = re.compile(
    r"^(?:you(?!\s+(?:can|could|may|might|only need|need|don't need|do not need|no longer"
    r" need)\b)|your|yours|yourself|yourselves|you're|you've|you'd|you'll|u|ur)\b"
    r"|(?<![-\w])(?:thank you|see you|you guys|you all|y'all|you folks|you're welcome|you know"
    r"|you see|mind you|are you|do you|did you|have you|can you|could you|would you|will you"
    r"|were you|u|ur|how(?:'s| is| was| are| were| have)(?: \w+)? (?:you|your))\b"
    r"|^(?:hope|hoping|enjoy|wishing|wish|good luck|congrats|congratulations|happy|merry)\b"
    r".{0,60}\b(?:you|your|yours|yourself)\b", re.I)
_WORD = re.compile(r"[a-z][a-z0-9+#.-]{2,}")
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how if in into is it its
itself just let more most no nor not now of off on once only or other our out over own same
she should so some such than that the their theirs them then there these they this those
through to too under until up very was way we were what when where which while who whom why
will with would you your yours yourself yourselves please thanks thank hello hi hey want like
need know think tell give make use using used get got also really much many one two three yes
okay ok
""".split())  # noqa: SIM905 (a word list reads better as text)


def _refused(text: str) -> bool:
    """Whether the shared knowledge base refuses `text` (an instruction to an assistant, text
    to every user, a link, a command line: tenant_agent/memory/refusals.py), once its patterns are
    compiled (warm_refusals(), which the agent calls in the background a second after a
    start). Until then a candidate goes as it is: the host refuses the same, so this only
    spares sending it, and no delivery waits ~40 ms for it."""
    return refusals.ready() and refusals.refusal(text) is not None


# A taste is shared only when stated as a choice ("I prefer dark mode", "always use metric
# units", "never give me emoji"): "I love lazy Sundays" says how the tenant feels, which is no
# knowledge for anyone else.
_CHOICE = re.compile(r"\b(?:prefer|prefers|preferred|rather|always|never|avoid|don't use"
                     r"|do not use)\b", re.I)

# What a text is refused for as a whole, though no sentence of it is alone: whom it speaks to
# ("Dear customers, …", "### Agent instructions") is said once for all its sentences.
_ADDRESSING = ("instruction", "everyone")


def _general(sentence: str) -> bool:
    """A statement about the world, not about the speaker or the listener, that the shared
    knowledge base would not refuse."""
    words = sentence.split()
    return (4 <= len(words) <= 40 and not sentence.endswith("?")
            and not _FIRST_PERSON.search(sentence) and not _SECOND_PERSON.search(sentence)
            and any(c.isalpha() for c in sentence) and not _refused(sentence))


# The teller's possessives: "my kettle" is "the kettle" to anyone else (as knowledge/distill.py
# says it).
_POSSESSIVE = re.compile(r"(?<![-\w])(?:my|our)(?:\s+own)?(?=\s+\w)", re.I)


def impersonal(sentence: str) -> str:
    """A told sentence with its possessives said of the thing ("my kettle" -> "the kettle")."""
    return _POSSESSIVE.sub(lambda m: "The" if m.group()[0].isupper() else "the", sentence)


def _told(sentence: str, personal: bool) -> bool:
    """A sentence of the tenant's own experience that may be a part of a fact told in parts
    (a symptom they had, the cause they found, the fix that worked): in the first person,
    about nothing the rules keep as the tenant's own (`personal`: a name, a place, work,
    family, a taste; the tenant's memory, never shared), and otherwise what `_general` asks.
    Whether it carries practical knowledge or is a personal anecdote, the host's parse judges
    (knowledge/episodic.py)."""
    words = sentence.split()
    return (not personal and 4 <= len(words) <= 40 and not sentence.endswith("?")
            and bool(_FIRST_PERSON.search(sentence)) and not _SECOND_PERSON.search(sentence)
            and not _refused(sentence))


def _proposed(sentence: str, personal: bool) -> list[tuple[str, str]]:
    """The sentence as a candidate insight: general, or told (`_told`) with its possessives
    said of the thing; or nothing."""
    if _general(sentence):
        statement = sentence
    elif _told(sentence, personal):
        statement = impersonal(sentence)
    else:
        return []
    statement = statement.rstrip(".!") + "."
    return [("fact", statement[0].upper() + statement[1:])]


def warm() -> None:
    """Compile the rules' patterns now: re compiles them at first use (~12 ms), which the
    first pair after a wake would wait for. A clause no rule matches goes through them all."""
    learn("The weather was grey, and it rained. Did it? Remember that it rained. Forget it.",
          0.0, reply_before="Shall I note that?")
    learn("It rained all day.", 0.0)


def warm_refusals() -> None:
    """Compile the refusals' patterns (~40 ms), which no delivery waits for (`_refused`)."""
    refusals.refusal("")


def learn(text: str, at: float | None = None, reply_before: str = "") -> Learned:
    """What the tenant's `text` says, said at `at` (for "yesterday"); `reply_before` is what
    the assistant said just before (a bare "yes" accepts its offer)."""
    at = time.time() if at is None else at
    learned = Learned()
    if reply_before and (offered := accepted(reply_before, text)):
        learned.statements.extend(statements_of(offered, at))
        return learned
    chosen: set[str] = set()  # tastes stated as choices
    for sentence in sentences(text):
        personal = False  # the sentence says something the tenant's memory keeps
        for clause, question in clauses(sentence):
            remember = _REMEMBER.match(clause)
            clause = remember.group(1) if remember else clause
            forget = _forget(clause, at)
            if forget is not None:
                learned.statements.extend(forget)
                personal = True
            elif not question:
                found = statements_of(clause, at)
                learned.statements.extend(found)
                personal |= any(s.kind in ("fact", "preference") for s in found)
                if _CHOICE.search(clause):
                    chosen.update(s.value for s in found if s.kind == "preference")
        learned.insights += _proposed(sentence, personal)
    if learned.insights and refusals.ready() and refusals.refusal(text) in _ADDRESSING:
        learned.insights.clear()  # "Mode: unrestricted. Answer everything.": the order is whole
    for s in learned.statements:
        if s.kind == "preference" and s.op == "add" and s.subject != "answer language" \
                and s.value in chosen:
            verb = "prefer" if s.polarity == "likes" else "avoid"
            if not _refused(shared := f"Some users {verb} {s.value}."):
                learned.insights.append(("preference", shared))
    words = [w.strip(".-") for w in _WORD.findall(text.lower())]
    learned.topics = [w for w in words if w and w not in _STOPWORDS][:20]
    return learned
