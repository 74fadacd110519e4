"""When two memories are the same thing: by the meaning of their texts (the host's vectors,
compared in the box) where no subject says it, and when a statement is said as a change. What
tenant_agent/memory/memory.py's `hold` and `forget` consult; the numbers were measured with
all-MiniLM-L6-v2 on the kind of statements bench/data/updates_dev.json holds.
"""

from __future__ import annotations

import re

from tenant_agent.memory.learn import Statement
from tenant_agent.memory.structure import CHANGE, SAID
from tenant_agent.memory.utterance import sentences

# Cosines of the host's vectors of two memory texts (all-MiniLM-L6-v2; measured on
# bench/data/updates_dev.json's kind of statements):
SAME_THING = 0.55    # one thing ("Is a meat eater" / "Is a vegetarian" 0.66; / "Works as a
                     # student" 0.10)
CHANGED_THING = 0.2  # said as a change, the most like it ("Loves burgers" / "Is vegetarian"
                     # 0.25, "Does not eat meat" / "Loves steak" 0.43; "Loves steak" / "Is a
                     # night owl" 0.06, "Is vegetarian" / "Prefers dark mode" 0.03)
CHANGED_TASTE = 0.5  # ... a taste for another ("Prefers coffee" / "Prefers tea" 0.70; "Loves
                     # hiking" / "Likes jazz" 0.28)
FORGET_FLOOR = 0.35  # the memory most like what a request to forget names, at least this like
FORGET_SURE = 0.7    # ... and any other this like ("peanut allergy" / "Allergic to peanuts" .85)
FORGET_TURN = 0.3    # a turn that no memory holds, the most like what is named, this like
CHANGED_SAID = 0.3   # said as a change in the tenant's own words, the most like it
SAME_SAID = 0.6      # ... not said as a change: another statement this like
# The attributes the rules and the parse name (what the tenant is, does, where it lives, its
# diet, status and name): compared with another by name, by meaning only with an unnamed one.
ATTRIBUTES = frozenset({"role", "employer", "location", "hometown", "birthplace", "identity",
                        "diet", "marital status", "employment status", "name", "age",
                        "answer language"})
# What a request to forget names, and the subjects that hold it ("forget my job").
FORGET_SUBJECTS = {"job": ("role", "employer"), "work": ("role", "employer"),
                   "career": ("role", "employer"), "occupation": ("role",),
                   "profession": ("role",), "employer": ("employer",), "company": ("employer",),
                   "address": ("location", "address"), "home": ("location", "address"),
                   "city": ("location",), "where i live": ("location",), "diet": ("diet",),
                   "origin": ("hometown", "birthplace"), "hometown": ("hometown",),
                   "marriage": ("marital status",), "relationship": ("marital status",),
                   "where i work": ("role", "employer"), "name": ("name",)}


def sort(kind: str, subject: str, text: str, source: str) -> str:
    """What a memory is, for comparing by meaning: "named" (an attribute the rules or the
    parse name: role, location, …), "identity" (what the tenant is or eats), "free" (a
    model's memory the rules name nothing in), "preference", or "thing" (a possession, kin,
    an allergy, an event: never the same as another by meaning)."""
    if kind == "preference":
        return "preference"
    if kind != "fact":
        return "thing"
    if subject in ("identity", "diet"):  # what one is, what one eats: unnamed kinds of it
        return "identity"
    if subject in ATTRIBUTES:
        return "named"
    if subject == SAID or (source.startswith("model")
                           and subject == " ".join(text.lower().split())[:120]):
        return "free"
    return "thing"


def comparable(new: str, old: str, change: bool) -> bool:
    """Whether two memories of these sorts may be the same thing by meaning."""
    if "thing" in (new, old):
        return False
    if "preference" in (new, old):  # only said as a change: tastes accumulate otherwise
        return change and (new == old or {new, old} & {"identity", "free"} != set())
    return not (new == "named" and old == "named")  # named ones are compared by name


def floor(new: str, old: str, change: bool, in_own_words: bool) -> float:
    """How alike two comparable memories must be to be one thing; `in_own_words`: one of
    them is the tenant's words themselves (longer than a named memory, so alike in more)."""
    if in_own_words:
        return CHANGED_SAID if change else SAME_SAID
    if not change:
        return SAME_THING
    return CHANGED_TASTE if new == old == "preference" else CHANGED_THING


def changed(text: str, s: Statement) -> bool:
    """Whether the sentence that says `s` says it as a change ("these days …", "… now"), or
    the parse saw it said as one ("moved to VS Code last month")."""
    if s.change:
        return True
    words = [w for w in re.findall(r"[a-z0-9]+", s.value.lower()) if len(w) > 2] or [
        s.value.lower()]
    return any(CHANGE.search(sentence) for sentence in sentences(text)
               if all(w in sentence.lower() for w in words if w))
