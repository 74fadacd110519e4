"""How the tenant's words are read before any rule looks at them: cut into sentences and
clauses, each clause a question or not, values trimmed of what follows them, the times that
relative words name ("yesterday" said on 8 May 2023 is 7 May 2023), and the offer a bare "yes"
accepts.

Invariants: a sentence ends at . ! ? followed by a space or the end (so "a@b.com" and "3.5"
stay whole); a clause is a question when it starts like one or ends the sentence with "?",
unless it asks for something lasting ("Can you answer in French from now on?"); times are
UTC unix seconds.
"""

from __future__ import annotations

import re
import time

DAY = 86400.0


# -- sentences and clauses -------------------------------------------------------------------

# A sentence ends at . ! ? followed by space or the end: "a@b.com" and "3.5" stay whole.
# A sentence ends at a stop after a word, not at one standing alone ("e v i l . c o m")
_SENTENCE = re.compile(r"[^\n]+?(?:(?<=\S)[.!?]+(?=\s|$)|$)", re.M)
_MARKERS = (r"(?:(?:actually|well|so|oh|also|and|but|now|honestly|btw|by the way|ok|okay|yeah|"
            r"yes|no|hey|hi|hello|anyway|also|just so you know|fyi|for the record|"
            r"please note|by now)\b[,:]?\s+)*")
_QUESTION_START = re.compile(
    r"^(?:what|what's|whats|when|where|who|whom|whose|why|how|which|do|does|did|is|are|am|"
    r"was|were|can|could|would|will|shall|should|may|might|have|has|had|isn't|aren't|don't|"
    r"doesn't|didn't|won't|wouldn't|can't|couldn't|shouldn't)\b", re.I)
# A request phrased as a question still states what the tenant wants.
REQUEST = re.compile(r"\b(?:from now on|going forward|from here on|in (?:the )?future|always|"
                      r"never|forget|remember)\b", re.I)
_CLAUSE_SPLIT = re.compile(
    r"\s*(?:[,;]\s*(?:and |but |so |because |though )?|\s+(?:and|but|so|because|though)\s+)"
    r"(?=(?:i|i'm|i've|i'd|i'll|my|we|we're|our|can you|could you|would you|will you|"
    r"do you|what|how|please)\b)", re.I)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def clauses(sentence: str) -> list[tuple[str, bool]]:
    """The clauses of a sentence, each with whether it is a question."""
    parts = [p.strip() for p in _CLAUSE_SPLIT.split(sentence) if p and p.strip()]
    asked = sentence.rstrip().endswith("?")
    out = []
    for i, part in enumerate(parts):
        bare = re.sub("^" + _MARKERS, "", part, flags=re.I)
        question = bool(_QUESTION_START.match(bare)) or (asked and i == len(parts) - 1)
        if question and REQUEST.search(bare) and not bare.lower().startswith(
                ("do i ", "am i ", "did i ", "have i ", "what ", "when ", "where ", "who ")):
            question = False  # "Can you always answer in French?" asks for something
        out.append((bare.rstrip("?.! "), question))
    return out


def is_question(text: str) -> bool:
    """True when every clause of the text is a question (nothing in it is a statement)."""
    found = [q for s in sentences(text) for _, q in clauses(s)]
    return bool(found) and all(found)


# -- values ----------------------------------------------------------------------------------

_TAIL = re.compile(
    r"(?:\s+(?:from now on|going forward|from here on|in (?:the )?future|anymore|any more|"
    r"these days|nowadays|now|again|too|as well|instead|please|for now|for sure|a lot|"
    r"very much|so much|the most|more|at all|any longer|right now|by default|every time|"
    r"all the time|in general|generally|really|actually))+$", re.I)
_CUT = re.compile(r"\s*(?:[,;:(]|\s-\s|\s+(?:but|because|since|so that|so|though|although|"
                  r"which|when|while|whenever|if|unless|and then|except)\s+|"
                  r"\s+and\s+(?=(?:it|that|this|he|she|they|we|i|i'm|there|then)\b))", re.I)
_LEAD = re.compile(r"^(?:to be |being |using |to use |having |the use of |it when )", re.I)
_MAX_VALUE = 80


def clean(value: str) -> str:
    """The object of a statement without what follows it: 'dark mode, because…' -> 'dark mode'."""
    value = _CUT.split(value, maxsplit=1)[0]
    value = value.strip().strip("\"'`").rstrip(".!?").strip()
    value = _TAIL.sub("", value).strip()
    return value[:_MAX_VALUE].strip()


def split_list(value: str, always: bool = False) -> list[str]:
    """'dark mode and short answers' -> both; 'mac and cheese' stays one (one-word sides)."""
    parts = [p.strip() for p in re.split(r"\s*,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+", value)
             if p.strip()]
    if len(parts) > 1 and (always or all(len(p.split()) > 1 for p in parts)):
        return parts
    return [value]


# -- time ------------------------------------------------------------------------------------

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
            "seven": 7, "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "a few": 3}
_UNITS = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}
RELATIVE = re.compile(
    r"\b(?:(yesterday|last night|today|this morning|tonight|this afternoon|this evening|"
    r"the day before yesterday)|"
    r"(last|this past|past) (week|weekend|month|year|summer|winter|spring|fall|autumn)|"
    r"(last|this past|on) (monday|tuesday|wednesday|thursday|friday|saturday|sunday)|"
    r"(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|a few) "
    r"(day|week|month|year)s? ago)\b", re.I)


def when_said(text: str, at: float) -> float | None:
    """The absolute time a relative expression in `text` means, said at `at` (UTC)."""
    match = RELATIVE.search(text)
    if not match:
        return None
    day, _, unit, _, weekday, count, count_unit = match.groups()
    if day:
        back = {"yesterday": 1, "last night": 1, "the day before yesterday": 2}
        return at - back.get(day.lower(), 0) * DAY
    if unit:
        unit = unit.lower()
        if unit == "weekend":
            wd = time.gmtime(at).tm_wday  # Saturday is 5
            return at - ((wd - 5) % 7 or 7) * DAY
        return at - _UNITS.get(unit, 90 * DAY)
    if weekday:
        wd = time.gmtime(at).tm_wday
        target = _WEEKDAYS.index(weekday.lower())
        return at - ((wd - target) % 7 or 7) * DAY
    n = int(count) if count.isdigit() else _NUMBERS.get(count.lower(), 1)
    return at - n * _UNITS[count_unit.lower()]


AHEAD = re.compile(r"\b(?:(tomorrow|tonight|later today)|next (week|weekend|month|year)|"
                    r"in (\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|"
                    r"a couple of|a few) (day|week|month|year)s?)\b", re.I)


def when_ahead(text: str, at: float) -> float | None:
    """The absolute time a future expression in `text` means ("next week"), said at `at`."""
    match = AHEAD.search(text)
    if not match:
        return None
    day, unit, count, count_unit = match.groups()
    if day:
        return at + (DAY if day.lower() == "tomorrow" else 0)
    if unit:
        return at + (7 * DAY if unit.lower() == "weekend" else _UNITS[unit.lower()])
    n = int(count) if count.isdigit() else _NUMBERS.get(count.lower(), 1)
    return at + n * _UNITS[count_unit.lower()]


def day_text(at: float) -> str:
    """'7 May 2023'"""
    t = time.gmtime(at)
    return f"{t.tm_mday} {time.strftime('%B %Y', t)}"


# -- the reply a bare "yes" accepts ----------------------------------------------------------

_YES = re.compile(r"^(?:yes|yeah|yep|yup|sure|please do|ok|okay|correct|exactly|right|"
                  r"absolutely|definitely|of course|that's right|that is right)\b"
                  r"[\s,.!]*(?:please|thanks|thank you|do that|go ahead)?[\s.!]*$", re.I)
_OFFER = re.compile(r"(?:^|[.!?]\s+)((?:do|would|should|shall|are|is|can) [^?]*)\?\s*$", re.I)


def accepted(reply: str, answer: str) -> str:
    """The statement a bare "yes" makes of the assistant's closing question: after "Would you
    like answers in French from now on?", "yes" says "I'd like answers in French from now
    on"; "" if `answer` is not a bare yes or `reply` ends in no such question."""
    if not _YES.match(answer.strip()):
        return ""
    m = _OFFER.search(reply.strip())
    if not m:
        return ""
    q = m.group(1)
    q = re.sub(r"\byou're\b", "I'm", q, flags=re.I)
    q = re.sub(r"\byours\b", "mine", q, flags=re.I)
    q = re.sub(r"\byour\b", "my", q, flags=re.I)
    q = re.sub(r"\byou\b", "I", q, flags=re.I)
    swaps = ((r"^would I like\b", "I'd like"), (r"^do I\b\s*", "I "), (r"^are I\b", "I'm"),
             (r"^is my (\S+(?: \S+)?) (.+)$", r"My \1 is \2"), (r"^should I ", ""),
             (r"^shall I ", ""), (r"^can I ", ""))
    for pattern, replacement in swaps:
        new = re.sub(pattern, replacement, q, flags=re.I)
        if new != q:
            return new
    return ""
