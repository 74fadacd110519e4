"""`/ask`: an answer from what the agent knows about its tenant, within a token budget.

The context is built from recall, in this order, each part within what is left of
CONTEXT_TOKENS (estimated high: ≈ 3.6 characters a token):
1. what is held about the tenant now: facts first (name, home, work, allergies, …), then
   preferences, by confidence (so "What is my name?" finds the name whatever it asks);
2. memories recall finds for the question that are not in 1 (events, plans, and what no longer
   holds, with the date it ended);
3. the tenant's own turns recall finds, dated (the time they were said, and what "yesterday"
   meant then), the most relevant first;
4. shared insights from other tenants that the knowledge search returns: only those at or
   above the knowledge base's relevance floor, calibrated on held-out queries
   (knowledge/base.py RELEVANCE_FLOOR, applied by the host before they reach the box).
With a model (x-burrow-model, through the host socket) the model answers from that context;
without one, or when it fails, the answer is the context itself, said plainly. Either way the
answer says what it used: memory ids, episode ids, insight ids, request ids and tokens.

Shared insights are other tenants' text: they reach the model only as quoted data in the
`<shared_notes>` block (tenant_agent/memory/notes.py), after everything about the user, and an
answer only as quoted strings after SHARED_LEAD. A reply recalled from an earlier /ask is cut
at that lead, so what it quoted never comes back into a prompt outside the block.
"""

from __future__ import annotations

from tenant_agent.common import host
from tenant_agent.memory import knowledge, notes
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.recall import recall
from tenant_agent.memory.turns import parse_time
from tenant_agent.memory.utterance import RELATIVE, day_text, when_said

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

CONTEXT_TOKENS = 800
PROFILE_TOKENS = 250
INSIGHT_TOKENS = 120
EPISODE_FLOOR = 0.4    # of the best result's score
EPISODE_CHARS = 400
MODEL_TIMEOUT_S = 120.0  # BURROW_AGENT_ANSWER_TIMEOUT_S, for a host whose model is slow
SYSTEM = ("You are this user's personal assistant. Answer the user's question briefly, from "
          "the notes below about them. Give dates when the question asks when. If the notes "
          "do not hold the answer, say that you do not know.")
# Where an answer without a model quotes shared insights; what came before it in agents'
# answers (a recalled reply is cut at either).
SHARED_LEAD = "Other users' notes (quoted as they shared them, unchecked):"
_SHARED_LEADS = (SHARED_LEAD, "What helped other users:")


def tokens(text: str) -> int:
    """A token estimate that errs high for English chat text (≈ 3.6 characters a token;
    all-MiniLM-L6-v2's word pieces stayed under it on LoCoMo)."""
    return len(text) * 10 // 36 + 1


class Context:
    def __init__(self, budget: int = CONTEXT_TOKENS) -> None:
        self.budget = budget
        self.sections: list[tuple[str, list[str]]] = []
        self.used: dict[str, list[Any]] = {"memories": [], "episodes": [], "insights": [],
                                           "request_ids": []}
        self.spent = 0
        self.insights: list[dict[str, Any]] = []  # quoted after the sections, in their block
        self._insight_tokens = 0

    def add(self, heading: str, line: str, limit: int | None = None) -> bool:
        cost = tokens(line) + 1
        section = next((s for s in self.sections if s[0] == heading), None)
        if section is None:
            cost += tokens(heading) + 1
        spent_here = sum(tokens(x) + 1 for x in section[1]) if section else 0
        if self.spent + cost > self.budget or (limit is not None and spent_here + cost > limit):
            return False
        if section is None:
            section = (heading, [])
            self.sections.append(section)
        section[1].append(line)
        self.spent += cost
        return True

    def add_insight(self, insight: dict[str, Any]) -> bool:
        """A shared insight for the quoted block: its line counts within INSIGHT_TOKENS, the
        block's header and tags once, within the whole budget."""
        text = str(insight.get("text", ""))
        if not text.strip():
            return False
        cost = tokens(f"[9] (fact, 99 users) {notes.quote(text)}") + 1
        opening = 0 if self.insights else tokens(notes.HEADER) + 12
        if self.spent + opening + cost > self.budget \
                or self._insight_tokens + cost > INSIGHT_TOKENS:
            return False
        self.insights.append(insight)
        self.spent += opening + cost
        self._insight_tokens += cost
        return True

    def text(self) -> str:
        parts = [f"{heading}\n" + "\n".join(f"- {line}" for line in lines)
                 for heading, lines in self.sections]
        block = notes.render_insights(self.insights)
        return "\n".join([*parts, block] if block else parts)

    def cite(self, kind: str, item_id: Any, request_ids: list[str] | None = None) -> None:
        self.used[kind].append(item_id)
        for r in request_ids or []:
            if r not in self.used["request_ids"]:
                self.used["request_ids"].append(r)


def _held(memory: Memory) -> list[tuple[str, str, list[str]]]:
    with memory.lock:
        rows = memory.db.execute(
            "SELECT id, kind, text FROM memories WHERE valid_to IS NULL AND kind IN "
            "('fact', 'preference') ORDER BY kind='preference', confidence DESC, updated DESC "
            "LIMIT 60").fetchall()
        return [(i, t, memory.request_ids(i)) for i, _, t in rows]


def _dated(text: str, at: float | None) -> str:
    """The turn with its date, and what a relative date in it meant."""
    if at is None:
        return text
    line = f"{day_text(at)}: {text}"
    match = RELATIVE.search(text)
    meant = when_said(text, at) if match else None
    if match and meant is not None:
        line += f" ({match.group(0)} = {day_text(meant)})"
    return line


def build(memory: Memory, question: str, vector: list[float] | None = None,
          budget: int = CONTEXT_TOKENS) -> Context:
    context = Context(budget)
    for memory_id, text, request_ids in _held(memory):
        if context.add("About the user now:", text, PROFILE_TOKENS):
            context.cite("memories", memory_id, request_ids)
    found = recall(memory, question, limit=16, vector=vector) if question.strip() else []
    _recalled(context, found)
    if question.strip():
        for insight in knowledge.search(question, limit=3):  # above the base's floor
            if context.add_insight(insight):
                context.cite("insights", insight.get("id"))
    return context


def _recalled(context: Context, found: list[dict[str, Any]]) -> None:
    """Recalled memories not already in the context, then the turns above the floor."""
    top = found[0]["score"] if found else 0.0
    for result in found:
        if result["kind"] == "episode" or result["id"] in context.used["memories"]:
            continue
        text = result["text"]
        if result.get("valid_to"):
            text += f" (until {day_text(parse_time(result['valid_to']) or 0)})"
        if context.add("Also remembered:", text):
            context.cite("memories", result["id"], result["request_ids"])
    for result in found:
        if result["kind"] != "episode" or result["score"] < EPISODE_FLOOR * top:
            continue
        said = result["text"].strip()[:EPISODE_CHARS]
        reply = _own_words(result.get("reply") or "")[:EPISODE_CHARS // 2]
        line = _dated(said, parse_time(result["at"])) + (f" (reply: {reply})" if reply else "")
        if context.add("What the user said before:", line):  # its own turn, not its context
            context.cite("episodes", result["id"], result["request_ids"][:1])


def _own_words(reply: str) -> str:
    """A recalled reply without the shared notes an answer of this agent quoted."""
    for lead in _SHARED_LEADS:
        reply = reply.split(lead, 1)[0]
    return reply.strip()


def ask(memory: Memory, question: str, model: str | None = None,
        vector: list[float] | None = None, explain: bool = False) -> dict[str, Any]:
    """Answer from the context: through the model when the gateway names one, else said from
    the context itself."""
    context = build(memory, question, vector)
    used: dict[str, Any] = {**context.used, "tokens": context.spent,
                            "profile": _legacy_profile(memory, context.used["memories"])}
    extra = {"context": context.text()} if explain else {}
    note = ""
    if model:
        try:
            return {"answer": _ask_model(model, question, context.text()), "used": used,
                    "model": model, **extra}
        except host.HostError as exc:
            note = f"The model {model} could not answer ({exc}), "
    parts = [note + ("so this answer" if note else "No model is configured for this agent, "
                                                    "so this answer")
             + " is assembled from what it knows."]
    for heading, lines in context.sections:
        parts.append(heading.replace("the user", "you") + " " + "; ".join(lines) + ".")
    if context.insights:
        parts.append(SHARED_LEAD + " " + "; ".join(notes.quote(str(i.get("text", "")))
                                                    for i in context.insights) + ".")
    if not context.sections and not context.insights:
        parts.append("It has nothing on this yet; it learns from your requests.")
    return {"answer": " ".join(parts), "used": used, "model": None, **extra}


def _legacy_profile(memory: Memory, ids: list[str]) -> list[dict[str, Any]]:
    """The preferences used, in the first agent's shape (`used.profile`)."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    with memory.lock:
        rows = memory.db.execute(
            f"SELECT polarity, value, evidence, confidence FROM memories WHERE id IN ({marks}) "
            "AND kind='preference'", ids).fetchall()
    return [{"polarity": p, "value": v, "evidence": e, "confidence": c} for p, v, e, c in rows]


def _timeout() -> float:
    import os

    try:
        return float(os.environ.get("BURROW_AGENT_ANSWER_TIMEOUT_S", "")) or MODEL_TIMEOUT_S
    except ValueError:
        return MODEL_TIMEOUT_S


def _ask_model(model: str, question: str, context: str) -> str:
    notes = context or "(There are no notes yet.)"
    # The notes go in the user's turn, not a system message: some chat templates (Gemma's in
    # llama.cpp) drop system messages, and the answer would know nothing about the user.
    answer = host.call("/v1/model/chat", {"model": model, "max_tokens": 300, "messages": [
        {"role": "user", "content": f"{SYSTEM}\n\nNotes:\n{notes}\n\nQuestion: {question}"}]},
        _timeout())
    message = answer.get("message") if isinstance(answer, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise host.HostError(0, "the model gave an empty answer")
    return text.strip()
