"""Words as the knowledge base counts them: lower-case runs of letters and digits, with the
placeholders of the scrubber taken out, and content words (everything but stop words), each
reduced to its stem so that inflections are one word ("restarts", "restarted", "restarting"
and "restart" are all "restart"; "virtualenvs" is "virtualenv").

One definition serves the canonical-text rule, its model check and the tests, so "a word that
fewer than k tenants used" means the same thing everywhere. Beyond inflection it is literal:
no synonyms ("fridge" and "refrigerator" are two words).
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\[[a-z_]+\]")
_WORD = re.compile(r"[^\W_]+")

STOP_WORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can cannot could did do does doing don't down during each few
for from further had has have having he her here hers herself him himself his how i if in into
is isn't it it's its itself just let me more most my myself no nor not of off on once only or
other ought our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself
yourselves s t can't won't doesn't didn't isn't wasn't aren't weren't shouldn't couldn't
wouldn't also may might must shall via per
""".split())  # noqa: SIM905 (a word list reads better as text)


# The teller, in the first person: stop words that a shown text never says (`knowledge.canonical`).
FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself", "we", "us", "our", "ours",
                          "ourselves"})


def words(text: str) -> list[str]:
    """The words of `text` in order, lower-cased, placeholders left out."""
    return _WORD.findall(_PLACEHOLDER.sub(" ", text).lower())


def stem(word: str) -> str:
    """A word without its inflection: plural -s/-es/-ies, -ed, -ing, and a final -e."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "zes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "stopped" -> "stopp" -> "stop"
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def content_words(text: str) -> set[str]:
    """The stems of the words of `text` that carry meaning: all but stop words."""
    return {stem(w) for w in words(text) if w not in STOP_WORDS}
