"""What the agent learns from one piece of its tenant's text: stated preferences, stated facts
about the tenant, recurring topics, and general statements that could help other tenants.

Rule-based on purpose: it runs inside the box with the standard library only, on every
observed request, and must be cheap and predictable. (A model, when one is configured for the
agent, can refine answers; learning stays here.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|me|my|mine|myself|we|our|ours|us)\b", re.I)
_SECOND_PERSON = re.compile(r"\b(you|your|yours)\b", re.I)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_WORD = re.compile(r"[a-z][a-z0-9+#.-]{2,}")

_PREFERENCE = [
    (re.compile(r"\bi (?:really |much |strongly )?(?:prefer|like|love|enjoy|want)\s+(.+)", re.I),
     "likes"),
    (re.compile(r"\bi (?:really )?(?:dislike|hate|don't like|do not like|avoid)\s+(.+)", re.I),
     "dislikes"),
    (re.compile(r"\b(?:please )?always (?:use|give me|show me|answer in|reply in)\s+(.+)", re.I),
     "likes"),
    (re.compile(r"\b(?:please )?never (?:use|give me|show me)\s+(.+)", re.I), "dislikes"),
]
_FACT = [
    (re.compile(r"\bmy name is\s+(.+)", re.I), "name"),
    (re.compile(r"\bi(?: am|'m) an? (.+)", re.I), "role"),
    (re.compile(r"\bi work (?:at|for)\s+(.+)", re.I), "employer"),
    (re.compile(r"\bi work as an?\s+(.+)", re.I), "role"),
    (re.compile(r"\bi live in\s+(.+)", re.I), "location"),
    (re.compile(r"\bmy ([a-z][a-z ]{1,30}?) is\s+(.+)", re.I), "*"),
]
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
_MAX_VALUE = 80


@dataclass
class Learned:
    preferences: list[tuple[str, str]] = field(default_factory=list)  # (likes|dislikes, value)
    facts: list[tuple[str, str]] = field(default_factory=list)        # (key, value)
    topics: list[str] = field(default_factory=list)
    insights: list[tuple[str, str]] = field(default_factory=list)     # (kind, text)


def _clean(value: str) -> str:
    value = re.split(r"[,;:]|\s+(?:but|because|since|so|and then)\s+", value, maxsplit=1)[0]
    value = value.strip().strip("\"'`").rstrip(".!?").strip()
    return value[:_MAX_VALUE]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _general(sentence: str) -> bool:
    """A statement about the world, not about the speaker or the listener."""
    words = sentence.split()
    return (4 <= len(words) <= 40 and not sentence.endswith("?")
            and not _FIRST_PERSON.search(sentence) and not _SECOND_PERSON.search(sentence)
            and any(c.isalpha() for c in sentence))


def learn(text: str) -> Learned:
    learned = Learned()
    for sentence in _sentences(text):
        for pattern, polarity in _PREFERENCE:
            match = pattern.search(sentence)
            if match and (value := _clean(match.group(1))):
                learned.preferences.append((polarity, value.lower()))
                verb = "prefer" if polarity == "likes" else "avoid"
                learned.insights.append(("preference", f"Some users {verb} {value.lower()}."))
                break
        for pattern, key in _FACT:
            match = pattern.search(sentence)
            if not match:
                continue
            if key == "*":
                fact_key, value = match.group(1).strip().lower(), _clean(match.group(2))
            else:
                fact_key, value = key, _clean(match.group(1))
            if value:
                learned.facts.append((fact_key, value))
            break
        if _general(sentence):
            statement = sentence.rstrip(".!") + "."
            learned.insights.append(("fact", statement[0].upper() + statement[1:]))
    words = [w.strip(".-") for w in _WORD.findall(text.lower())]
    learned.topics = [w for w in words if w and w not in _STOPWORDS][:20]
    return learned


def text_of(body: str) -> str:
    """The human text in a request body: JSON string fields if it is JSON, else the body."""
    import json

    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return body
    parts: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return "\n".join(parts)
