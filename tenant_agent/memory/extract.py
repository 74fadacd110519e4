"""The model's extraction pass: new turns, in batches, off the request path, become memories.

Delivery queued each new episode in `pending` (persisted: a freeze or a crash loses none).
A batch is up to BATCH_TURNS of them, oldest first. For a batch the agent first retrieves the
memories it already holds that are like the new turns (full text over each turn's words),
then makes ONE model call (POST /v1/model/chat on the host socket, JSON-schema output) that
both extracts and decides, Mem0's two steps in one: for each thing the user said, `add` a
memory, `update` a held one (a change or correction: the old one is kept as history,
superseded), `delete` a held one (asked to forget: removed; no longer true: ended), or `none`.
Each turn is shown with its date, so "yesterday" becomes a date and a later turn wins over an
earlier one in the same batch.

What the model says is checked before it is applied, because small models invent:
- an operation may only name memories and turns it was shown;
- an added or updated memory must be grounded: two thirds of its words appear in the turns
  it cites (dates and names of months aside), and not all of those turns may be questions; an
  update or delete must share a word with the turn that caused it; a delete removes only
  when that turn asks to forget, else it ends what it names (its history stays);
- an add that restates a held memory is evidence for it, not a duplicate.

The model's memories get subjects as the rules' do (its text read back as the tenant's words:
"Lives in Paris" is a location), so a new location supersedes the old one whatever the model
said; and vectors (one POST /v1/embed on the host socket per batch, for the texts it adds), so
a new memory supersedes a held one that is the same thing by meaning (memory.py `hold`). A host
that does not embed leaves the subjects alone to do it.

Failure never loses a turn and never blocks delivery: the rules already learned what they
could at delivery. A model that is refused (429: the tenant's model budget is spent; 503: no
model server) or unreachable is retried later with backoff; a batch whose answer cannot be
read twice is dropped from the queue (its rules' memories stay). A "delete all" while a call
is out (the `epoch` in meta changes) discards the answer.

Counters in meta (`model_calls`, `model_turns`, `model_failures`) let the bench check that it
is one call per batch, never one per pair.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from tenant_agent.common import host
from tenant_agent.memory import turns
from tenant_agent.memory.answer import SHARED_LEAD
from tenant_agent.memory.learn import Statement, asks_to_forget
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.recall import fts_query, terms
from tenant_agent.memory.structure import CHANGE, subject_of
from tenant_agent.memory.utterance import accepted, day_text, is_question

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

BATCH_TURNS = 8
BATCH_CHARS = 6000
HELD_PER_TURN = 4
MAX_HELD = 24
QUIET_S = 20.0           # a batch smaller than BATCH_TURNS waits this long for company
MAX_ATTEMPTS = 2         # unreadable answers before a batch is dropped
BACKOFF_S = (30.0, 60.0, 120.0, 300.0, 900.0)
TIMEOUT_S = 600.0          # a small local model on busy cores is slow; this is off the request path
MAX_TOKENS = 700
KINDS = ("preference", "fact", "event", "plan")
Caller = Callable[[str, object, float], object]

SYSTEM = """You keep the long-term memory of one user of an assistant. Read the new \
conversation turns and decide what to remember about the user.

A memory is one short statement about the user, in the third person, without their name: \
"Prefers light mode", "Lives in Paris", "Allergic to peanuts", "Went to a pottery class on \
2 July 2023", "Plans to visit Rome in May 2024". Kinds: preference (likes, dislikes, how they \
want answers), fact (lasting facts: name, work, home, family, pets, health, contact details), \
event (something that happened to them, with its date), plan (something they intend to do).

For what the user says in the new turns, compare with the memories already held and output \
operations:
- add: something new about the user.
- update: a held memory changed or was corrected; give its id and the new full text.
- delete: the user asked to forget a held memory, or says it no longer holds; give its id.
- none: already held, or nothing worth keeping.

Rules: only what the USER says about themself counts (the assistant's words only when the \
user confirms them). Questions are not statements. Turn relative dates ("yesterday", "last \
week") into absolute dates using the turn's date. Later turns win over earlier ones. Never \
invent anything. Cite the turns each operation comes from. Reply with JSON only."""



def schema(batch: Batch) -> dict[str, Any]:
    """The answer's JSON schema for one batch: ids and turns are enums of the aliases shown,
    so a schema-held small model cannot invent one (nor loop on digits inside one)."""
    return {
        "type": "object",
        "properties": {"operations": {"type": "array", "maxItems": 2 * BATCH_TURNS, "items": {
            "type": "object",
            "properties": {
                "op": {"type": "string", "enum": ["add", "update", "delete", "none"]},
                "id": {"type": "string", "enum": ["", *batch.held]},
                "kind": {"type": "string", "enum": list(KINDS)},
                "text": {"type": "string", "maxLength": 200},
                "turns": {"type": "array", "maxItems": BATCH_TURNS,
                          "items": {"type": "string", "enum": list(batch.episodes)}}},
            "required": ["op", "id", "kind", "text", "turns"]}}},
        "required": ["operations"]}

_CONTENT = re.compile(r"[a-z][a-z0-9'-]{2,}")
_IGNORED = frozenset("""the and for with that this from user their they them has have had was
were are is his her she him its into about after before since until will would been being
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday week weekend month year today
yesterday tomorrow last next ago recently now currently also very really just more most
prefers likes loves wants works lives went plans does not dislikes enjoys""".split())  # noqa: SIM905


def _words(text: str) -> set[str]:
    return {w[:5] for w in _CONTENT.findall(text.lower()) if w not in _IGNORED}


class Batch:
    """The turns of one model call and the memories shown with them, by their aliases."""

    def __init__(self, episodes: list[tuple[Any, ...]], held: list[tuple[Any, ...]]) -> None:
        # episodes: (n, id, pair_id, request_id, at, user, reply); held: (id, kind, text, at)
        self.episodes = {f"t{i + 1}": e for i, e in enumerate(episodes)}
        self.held = {f"m{i + 1}": h for i, h in enumerate(held)}

    def prompt(self) -> str:
        lines = ["Memories already held:"]
        for alias, (_, kind, text, at) in self.held.items():
            lines.append(f"[{alias}] {kind}: {text} (since {day_text(at)})")
        if not self.held:
            lines.append("(none)")
        lines.append("\nNew turns:")
        for alias, (_, _, _, _, at, user, reply) in self.episodes.items():
            lines.append(f"[{alias}] {time.strftime('%A', time.gmtime(at))} {day_text(at)}, "
                         f"user: {user.strip()[:1500]}")
            if reply.strip():
                lines.append(f"     assistant: {reply.strip()[:400]}")
        return "\n".join(lines)


def pending_batch(memory: Memory) -> Batch | None:
    """The oldest queued turns (up to a batch) and the held memories most like them."""
    with memory.lock:
        rows = memory.db.execute(
            "SELECT e.n, e.id, e.pair_id, e.request_id, e.at, e.user, e.reply FROM pending p "
            "JOIN episodes e ON e.n = p.episode ORDER BY e.at, e.n LIMIT ?",
            (BATCH_TURNS,)).fetchall()
        batch: list[tuple[Any, ...]] = []
        size = 0
        for row in rows:
            size += len(row[5]) + len(row[6])
            if batch and size > BATCH_CHARS:
                break
            batch.append(row)
        if not batch:
            return None
        held: dict[str, tuple[Any, ...]] = {}
        for row in batch:
            words = terms(row[5])
            if not words:
                continue
            for found in memory.db.execute(
                    "SELECT m.id, m.kind, m.text, m.at FROM memories_fts JOIN memories m ON "
                    "m.n = memories_fts.rowid WHERE memories_fts MATCH ? AND m.valid_to IS NULL "
                    "ORDER BY rank LIMIT ?", (fts_query(words), HELD_PER_TURN)):
                held.setdefault(found[0], found)
        return Batch(batch, list(held.values())[:MAX_HELD])


def ask_model(batch: Batch, model: str, call: Caller = host.call) -> list[dict[str, Any]]:
    """One model call for the batch; its operations, as the model wrote them."""
    # One user message, no system one: some chat templates (Gemma's in llama.cpp) drop a
    # system message, and every model reads instructions in the user's turn.
    answer = call("/v1/model/chat", {
        "model": model, "max_tokens": MAX_TOKENS, "temperature": 0,
        "messages": [{"role": "user", "content": SYSTEM + "\n\n" + batch.prompt()}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "memory_operations", "schema": schema(batch)}}},
        TIMEOUT_S)
    message = answer.get("message") if isinstance(answer, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise ValueError("the model gave no content")
    from tenant_agent.common.wire import loads

    text = content.strip()
    if text.startswith("```"):  # a fence some models add despite the schema
        text = text.strip("`").removeprefix("json").strip()
    data = loads(text[text.find("{"):text.rfind("}") + 1] if "{" in text else text)
    operations = data.get("operations") if isinstance(data, dict) else None
    if not isinstance(operations, list):
        raise ValueError("the model's answer has no operations list")
    return [op for op in operations if isinstance(op, dict)]


# -- applying what the model said ------------------------------------------------------------

def _cited(op: dict[str, Any], batch: Batch, text: str) -> list[str]:
    """The batch turns an operation cites; if it cites none, the one most like its text."""
    cited = [t for t in op.get("turns") or [] if isinstance(t, str) and t in batch.episodes]
    if cited or not batch.episodes:
        return cited
    words = _words(text)
    best = max(batch.episodes, key=lambda a: len(words & _words(batch.episodes[a][5])))
    return [best] if words & _words(batch.episodes[best][5]) else []


def grounded(text: str, sources: list[str]) -> bool:
    """Two thirds of the memory's words appear in what the user (or the reply) said (so a
    two-word memory needs both: "light mode" is not grounded in "I don't like dark mode")."""
    words = _words(text)
    if not words:
        return False
    said = set().union(*(_words(s) for s in sources)) if sources else set()
    return len(words & said) * 3 >= len(words) * 2


def _turn(batch: Batch, alias: str) -> turns.Turn:
    _, _, pair_id, request_id, at, user, reply = batch.episodes[alias]
    return turns.Turn(pair_id, request_id, at, user, reply)


def embed_texts(operations: list[dict[str, Any]], call: Caller = host.call
                ) -> tuple[str, dict[str, list[float]]]:
    """The host's vectors of what the operations add or update (its model, text -> vector);
    nothing when the host does not embed."""
    texts = list(dict.fromkeys(str(op.get("text") or "").strip()[:300] for op in operations
                               if op.get("op") in ("add", "update") and op.get("text")))
    if not texts:
        return "", {}
    try:
        answer = call("/v1/embed", {"texts": texts}, 10.0)
    except host.HostError:
        return "", {}
    if not isinstance(answer, dict):
        return "", {}
    vectors = answer.get("vectors")
    if not isinstance(vectors, list) or len(vectors) != len(texts):
        return "", {}
    found = {t: [float(x) for x in v] for t, v in zip(texts, vectors, strict=True)
             if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)}
    return str(answer.get("model") or ""), found


def apply(memory: Memory, batch: Batch, operations: list[dict[str, Any]],
          source: str, vectors: tuple[str, dict[str, list[float]]] = ("", {})
          ) -> dict[str, int]:
    """Check each operation and apply it (call inside memory.transaction()); `vectors`: the
    host's of the texts added (embed_texts)."""
    done = {"add": 0, "update": 0, "delete": 0, "none": 0, "rejected": 0}
    for op in operations:
        kind = op.get("op")
        applied = (_apply_one(memory, batch, op, source, vectors)
                   if kind in ("add", "update", "delete") else kind == "none")
        key = kind if applied and isinstance(kind, str) and kind in done else "rejected"
        done[key] += 1
    return {key: n for key, n in done.items() if n}


def _apply_one(memory: Memory, batch: Batch, op: dict[str, Any], source: str,
               vectors: tuple[str, dict[str, list[float]]]) -> bool:
    text = str(op.get("text") or "").strip()[:300]
    kind = op.get("kind") if op.get("kind") in KINDS else "fact"
    held = batch.held.get(str(op.get("id") or ""))
    cited = _cited(op, batch, text or (held[2] if held else ""))
    if not cited:
        return False
    if op["op"] != "delete" and all(is_question(batch.episodes[a][5]) for a in cited):
        return False  # questions are not statements
    # Grounded in the tenant's words: the reply only where the tenant answered it with a bare
    # "yes", and never what the reply quoted from other tenants (tenant_agent/memory/answer.py).
    turns_said = [batch.episodes[a][5] + " " + _offered(batch.episodes[a]) for a in cited]
    turn = _turn(batch, cited[-1])
    turn.vector_model = vectors[0]
    episode = batch.episodes[cited[-1]][1]
    change = any(CHANGE.search(batch.episodes[a][5]) for a in cited)
    if op["op"] == "add":
        if not text or not grounded(text, turns_said):
            return False
        statement = _statement(str(kind), text)
        return memory.hold(statement, turn, _alive(memory, episode), source,
                           vectors[1].get(text), bool(change)) is not None
    if held is None or not (_words(held[2]) | _words(text)) & set().union(
            *(_words(s) for s in turns_said)):
        return False
    if op["op"] == "delete":
        asking = [a for a in cited if asks_to_forget(batch.episodes[a][5])]
        if asking:  # asked to forget: the memory goes, and so do the turns that said it
            memory.remove_memory(held[0])
            for a in asking:
                memory.remove_episode(batch.episodes[a][1])
        else:
            memory.db.execute("UPDATE memories SET valid_to=?, updated=? WHERE id=? AND "
                              "valid_to IS NULL", (turn.at, time.time(), held[0]))
        return True
    if not text or not grounded(text, turns_said):
        return False
    new = memory.hold(_statement(str(kind), text), turn, _alive(memory, episode), source,
                      vectors[1].get(text), bool(change))
    if new and new != held[0]:
        memory.db.execute("UPDATE memories SET valid_to=?, superseded_by=?, updated=? WHERE "
                          "id=? AND valid_to IS NULL", (turn.at, new, time.time(), held[0]))
    return True


def _statement(kind: str, text: str) -> Statement:
    """The model's memory with the subject the rules give what it says ("Lives in Paris": a
    location, one at a time), else its own words."""
    subject, exclusive = subject_of(text)
    return Statement("add", kind, subject or " ".join(text.lower().split())[:120], text, text,
                     exclusive=exclusive)


def _offered(episode: tuple[Any, ...]) -> str:
    """The part of a turn's reply its words may ground a memory in: the reply when the
    tenant's words are a bare yes to it (what it accepted), else nothing."""
    user, reply = episode[5], episode[6]
    return reply.split(SHARED_LEAD, 1)[0] if accepted(reply, user) else ""


def _alive(memory: Memory, episode: str) -> str | None:
    found = memory.db.execute("SELECT 1 FROM episodes WHERE id=?", (episode,)).fetchone()
    return episode if found else None


# -- one pass, and the thread that runs passes ------------------------------------------------

def run_batch(memory: Memory, model: str, call: Caller = host.call) -> dict[str, Any]:
    """Take one batch through the model and apply what it said. Raises host.HostError when
    the model was refused or unreachable (the batch stays queued). One pass at a time: the
    background thread and an asked-for drain never send the same batch twice."""
    with memory.extracting:
        return _run_batch(memory, model, call)


def _run_batch(memory: Memory, model: str, call: Caller) -> dict[str, Any]:
    batch = pending_batch(memory)
    if batch is None:
        return {"turns": 0}
    with memory.lock:
        epoch = memory.meta("epoch")
    _count(memory, "model_calls", 1)
    try:
        operations = ask_model(batch, model, call)
    except (ValueError, UnicodeDecodeError) as exc:
        _count(memory, "model_failures", 1)
        _give_up_or_retry(memory, batch)
        return {"turns": 0, "error": f"unreadable answer: {exc}"}
    vectors = embed_texts(operations, call)  # outside the transaction: a host call
    with memory.transaction() as db:
        if memory.meta("epoch") != epoch:
            return {"turns": 0, "error": "the memory was deleted during the call"}
        done = apply(memory, batch, operations, "model:" + model, vectors)
        marks = ",".join("?" * len(batch.episodes))
        db.execute(f"DELETE FROM pending WHERE episode IN ({marks})",
                   [e[0] for e in batch.episodes.values()])
    _count(memory, "model_turns", len(batch.episodes))
    return {"turns": len(batch.episodes), "operations": done}


def _give_up_or_retry(memory: Memory, batch: Batch) -> None:
    ids = [e[0] for e in batch.episodes.values()]
    marks = ",".join("?" * len(ids))
    with memory.transaction() as db:
        db.execute(f"UPDATE pending SET attempts=attempts+1 WHERE episode IN ({marks})", ids)
        db.execute(f"DELETE FROM pending WHERE episode IN ({marks}) AND attempts >= ?",
                   (*ids, MAX_ATTEMPTS))


def _count(memory: Memory, key: str, n: int) -> None:
    with memory.lock:
        memory.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                          "value=CAST(value AS INTEGER) + excluded.value", (key, str(n)))


def drain(memory: Memory, model: str | None, max_batches: int = 1000,
          call: Caller = host.call) -> dict[str, Any]:
    """Run batches now until the queue is empty (or `max_batches`); what happened."""
    report: dict[str, Any] = {"batches": 0, "turns": 0, "operations": {}, "errors": []}
    if not model:
        report["errors"].append("the agent has no model (BURROW_AGENT_MODEL / x-burrow-model)")
        return report
    for _ in range(max_batches):
        try:
            result = run_batch(memory, model, call)
        except host.HostError as exc:
            report["errors"].append(f"{exc.status}: {exc}")
            break
        if "error" in result:
            report["errors"].append(result["error"])
        if not result["turns"] and "error" not in result:
            break
        report["batches"] += 1
        report["turns"] += result["turns"]
        for key, n in result.get("operations", {}).items():
            report["operations"][key] = report["operations"].get(key, 0) + n
    with memory.lock:
        report["pending"] = memory.db.execute("SELECT count(*) FROM pending").fetchone()[0]
    return report


class Extractor:
    """The background thread: a batch when BATCH_TURNS are queued or the oldest has waited
    QUIET_S; backs off while the model is refused or unreachable."""

    def __init__(self, memory: Memory, call: Caller = host.call) -> None:
        self.memory = memory
        self.call = call
        self.failures = 0
        self.thread = threading.Thread(target=self._loop, name="extract", daemon=True)
        self.thread.start()

    def _due(self) -> float:
        """Seconds until a batch is due (0: now)."""
        with self.memory.lock:
            count, oldest = self.memory.db.execute(
                "SELECT count(*), min(queued) FROM pending").fetchone()
        if not count or not self.memory.model:
            return QUIET_S
        if count >= BATCH_TURNS:
            return 0.0
        return max(0.0, float(oldest) + QUIET_S - time.time())

    def _loop(self) -> None:
        while True:
            wait = self._due()
            if wait > 0:
                with self.memory.changed:
                    self.memory.changed.wait(wait)
                continue
            model = self.memory.model
            try:
                if model:
                    run_batch(self.memory, model, self.call)
                self.failures = 0
            except host.HostError:
                time.sleep(BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)])
                self.failures += 1
            except Exception:  # a bug of ours must not end learning: the rules still run
                time.sleep(BACKOFF_S[-1])


def stats(memory: Memory) -> dict[str, int]:
    with memory.lock:
        return {key: int(memory.meta(key) or 0)
                for key in ("model_calls", "model_turns", "model_failures")}

