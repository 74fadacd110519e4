"""A cluster of statements that say the same thing, or the parts of one fact (a symptom, its
cause, its fix: `knowledge.parts`), from one or more tenants: its members, its support
(distinct tenants), its canonical text, its votes, and the rule that decides whether other
tenants see it.

One cluster is one point in the vector store; this module owns its payload:

    text           the canonical text ("" when no text is stated from k contributions)
    kind           fact | preference | tip (the first member's)
    support        distinct contributors (tenants, as opaque ids)
    contributors   those ids
    members        [{"c": contributor, "t": statement, "at": time, "r": role, "n": names}],
                   at most MAX_TEXTS_PER_CONTRIBUTOR statements per contributor; the role
                   (symptom, cause, fix) and the named things the statement names
                   (`knowledge.parts`) say which statements are parts of one fact; members
                   stored before parts have neither
    parts          for a cluster of several parts: {role: the centroid of its statements},
                   so a question about the symptom finds the fact (`knowledge.base`)
    canonical_by   "rule" or "model"; model_support: support when the model was last asked
    helpful, unhelpful   vote counts (one vote per tenant: `knowledge.votes`)
    visible        1 when other tenants may see it: support >= k, a canonical text, not faded,
                   and knowledge: general statements of k tenants among its members, or
                   parts of at least two roles (a told statement alone is a complaint or a story:
                   `knowledge.reading`)
    created_at, updated_at

Invariant: `text` never carries a content word that some but fewer than k of the members'
contributors used (`knowledge.canonical.leaks`); `recompute` restores it after every change.
A statement joins a cluster's part of its own role only if close in meaning (the caller's
threshold) and `compatible`: the same numbers and the same polarity, since "port 5432" and
"port 6432", "works" and "does not work", embed almost alike; it joins as a new part by the
rule of `knowledge.parts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from knowledge.canonical import Member, by_rule, leaks, role_of
from knowledge.parts import TOLD
from knowledge.votes import FADE_VOTES, faded

MAX_TEXTS_PER_CONTRIBUTOR = 3

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
# a negated verb flips a statement; "without" or "no" in a noun phrase usually does not
_NEGATION = re.compile(r"\b(?:not|never|cannot|no longer|nothing|[a-z]+n't)\b", re.IGNORECASE)


def compatible(a: str, b: str) -> bool:
    """Whether two close statements may be the same statement: equal numbers (when both have
    any) and both or neither negated."""
    numbers_a, numbers_b = set(_NUMBER.findall(a)), set(_NUMBER.findall(b))
    if numbers_a and numbers_b and numbers_a != numbers_b:
        return False
    return bool(_NEGATION.search(a)) == bool(_NEGATION.search(b))


@dataclass(frozen=True)
class Told:
    """One contributor's statement in a cluster."""

    contributor: str
    text: str
    at: float
    role: str = ""
    names: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: dict[str, Any]) -> Told:
        names = data.get("n")
        return cls(str(data["c"]), str(data["t"]), float(data.get("at", 0.0)),
                   str(data.get("r", "")),
                   tuple(str(n) for n in names) if isinstance(names, list) else ())

    def payload(self) -> dict[str, Any]:
        return {"c": self.contributor, "t": self.text, "at": self.at, "r": self.role,
                "n": list(self.names)}


@dataclass
class Cluster:
    id: str
    kind: str
    members: list[Told]
    text: str = ""
    canonical_by: str = ""
    model_support: int = 0
    helpful: int = 0
    unhelpful: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, id: str, kind: str, told: Told) -> Cluster:
        return cls(id, kind, [told], created_at=told.at, updated_at=told.at)

    @classmethod
    def of(cls, id: str, payload: dict[str, Any]) -> Cluster:
        members = [Told.of(m) for m in payload.get("members", []) if isinstance(m, dict)]
        known = {"text", "kind", "support", "contributors", "members", "canonical_by",
                 "model_support", "helpful", "unhelpful", "visible", "created_at", "updated_at"}
        return cls(id, str(payload.get("kind", "fact")), members,
                   text=str(payload.get("text", "")),
                   canonical_by=str(payload.get("canonical_by", "")),
                   model_support=int(payload.get("model_support", 0)),
                   helpful=int(payload.get("helpful", 0)),
                   unhelpful=int(payload.get("unhelpful", 0)),
                   created_at=float(payload.get("created_at", 0.0)),
                   updated_at=float(payload.get("updated_at", 0.0)),
                   extra={k: v for k, v in payload.items() if k not in known})

    @property
    def contributors(self) -> list[str]:
        return list(dict.fromkeys(m.contributor for m in self.members))

    @property
    def support(self) -> int:
        return len(self.contributors)

    @property
    def statements(self) -> list[Member]:
        return [Member(m.contributor, m.text, m.role) for m in self.members]

    @property
    def roles(self) -> set[str]:
        """The parts the cluster holds (`knowledge.parts.ROLES`)."""
        return {role_of(m.role) for m in self.members}

    def knowledge(self, k: int) -> bool:
        """Whether the cluster states knowledge: general statements of k tenants, or a fact in
        parts of two roles or more (told statements, of the teller or particular things, are
        a complaint or a story, and one tenant's general words among them do not make them
        knowledge: `knowledge.reading`)."""
        general = {m.contributor for m in self.members if not m.role.startswith(TOLD)}
        return len(general) >= k or len(self.roles) > 1

    @property
    def names(self) -> set[str]:
        """The named things its statements name (`knowledge.parts`)."""
        return {n for m in self.members for n in m.names}

    @property
    def representative(self) -> str:
        """What new statements are compared with: the canonical text, else the first one."""
        return self.text or (self.members[0].text if self.members else "")

    def digest(self) -> tuple[tuple[str, str], ...]:
        """What the canonical text depends on: changes whenever a member comes or goes."""
        return tuple(sorted((m.contributor, m.text) for m in self.members))

    def visible(self, k: int, fade_votes: int = FADE_VOTES) -> bool:
        return (self.support >= k and bool(self.text) and self.knowledge(k)
                and not faded(self.helpful, self.unhelpful, fade_votes))

    def add(self, told: Told) -> bool:
        """Add a contributor's statement; False when it adds nothing (already there, or the
        contributor has given this cluster enough statements)."""
        mine = [m.text for m in self.members if m.contributor == told.contributor]
        if told.text in mine or len(mine) >= MAX_TEXTS_PER_CONTRIBUTOR:
            return False
        self.members.append(told)
        self.updated_at = told.at
        return True

    def remove(self, contributor: str) -> bool:
        before = len(self.members)
        self.members = [m for m in self.members if m.contributor != contributor]
        return len(self.members) != before

    def recompute(self, k: int) -> bool:
        """Restore the invariant after members changed: keep a model's text while it still
        holds (and the cluster is still one part: a model states what all members say), else
        the rule's text (or none). Whether the text changed."""
        before = self.text
        if self.canonical_by == "model" and self.text and self.support >= k \
                and len(self.roles) == 1 and not leaks(self.text, self.statements, k):
            return False
        rule = by_rule(self.statements, k)
        self.text, self.canonical_by = (rule, "rule") if rule else ("", "")
        return self.text != before

    def payload(self, k: int, fade_votes: int = FADE_VOTES) -> dict[str, Any]:
        return {**self.extra,
                "text": self.text, "kind": self.kind, "support": self.support,
                "contributors": self.contributors,
                "members": [m.payload() for m in self.members],
                "canonical_by": self.canonical_by, "model_support": self.model_support,
                "helpful": self.helpful, "unhelpful": self.unhelpful,
                "visible": int(self.visible(k, fade_votes)),
                "created_at": self.created_at, "updated_at": self.updated_at}
