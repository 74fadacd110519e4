"""Which of the agent's candidate insights are episodic, by the host's judgement: the agent
proposes none of them, as it proposes nothing its copy of the refusals refuses.

Whether a sentence is episodic (what happened around the time it was said, a mood: "the bus
was late again this morning") takes a parse the agent cannot make with the standard library,
so the host makes it (knowledge/episodic.py, spaCy) and the worker attaches it to each pair it
delivers, as it attaches vectors (core/episodes.py):

    {"episodic": [sentence, ...]}   the sentences of the tenant's words (as
                                    tenant_agent/memory/utterance.py cuts them) judged episodic

A pair without it (delivered at a wake's catch-up, or by an older host) filters nothing. A told
sentence is proposed with its possessives said of the thing ("my kettle" -> "the kettle"), and
matched so. The
host's own check on what the agent proposes is the one that counts; this only spares proposing
what it would refuse.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

_PREFERENCE = ("some users prefer ", "some users avoid ")


# The teller's possessives, as the agent proposes a told sentence (tenant_agent/memory/learn.py):
# "my kettle" and "the kettle" are one key.
_POSSESSIVE = re.compile(r"(?<![-\w])(?:my|our)(?:\s+own)?(?=\s+\w)")


def _key(text: str) -> str:
    return _POSSESSIVE.sub("the", " ".join(text.casefold().rstrip(".!? ").split()))


def judged(pairs: list[dict[str, Any]]) -> list[str]:
    """The sentences the host judged episodic in `pairs`, as keys."""
    out = []
    for pair in pairs:
        given = pair.get("episodic")
        if isinstance(given, list):
            out += [_key(s) for s in given if isinstance(s, str) and s.strip()]
    return out


def proposable(insights: list[dict[str, str]], pairs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The candidate insights none of which the host judged episodic: a statement that is an
    episodic sentence, or a taste ("Some users prefer X.") whose X an episodic sentence holds
    ("I prefer lazy weekends.")."""
    episodic = judged(pairs)
    if not episodic:
        return insights
    kept = []
    for insight in insights:
        key = _key(str(insight.get("text", "")))
        taste = next((key[len(p):] for p in _PREFERENCE if key.startswith(p)), None)
        if key in episodic or (taste and any(taste in sentence for sentence in episodic)):
            continue
        kept.append(insight)
    return kept
