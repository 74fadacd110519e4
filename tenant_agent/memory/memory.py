"""The tenant's private memory: the write path (delivered pairs become episodes and, through
the rules, memories), and what a statement does to what is already held.

Delivery (`observe`) stays fast and never waits for a model: per pair it records the id
(exactly once), stores the tenant's turn as an episode (with the host's embeddings), applies
the rules, and queues the episode for the model's extraction pass (tenant_agent/memory/extract.py)
when the agent has a model. Measured: well under 1 ms of CPU per pair (bench/memory.py).

What a statement does (`hold`), the same whether the rules, the parse or a model found it:
- the same thing said again (same subject, value and polarity) is evidence for the memory
  held: its evidence count and confidence grow, its request ids gain the new one;
- a contradiction supersedes: "I don't like dark mode" after "I like dark mode", a second
  location or employer, a changed count ("three cats" after "two cats"), a "prefer X mode"
  after another liked "… mode", a new answer language. The old memory keeps its history:
  `valid_to` is when the new one was said and `superseded_by` names it;
- the same thing by meaning supersedes too, where no subject says it (the host's vectors of
  memory texts, compared in the box: tenant_agent/memory/meaning.py): what the tenant is or
  eats, or a model's memory the rules name nothing in, supersedes a held one of those or a
  named attribute whose text is within SAME_THING of it ("Is a meat eater" and "Is a
  vegetarian"); a statement said as a change ("these days …", "… now", "instead")
  supersedes the one held memory most like it, a taste another within CHANGED_TASTE
  ("Prefers coffee" / "Prefers tea"), what one is or eats a taste within CHANGED_THING
  ("these days I don't eat meat" ends "Loves steak"). Two named attributes are compared by
  name only ("Works at St Mary's" and "Works as a nurse" are 0.63 alike and both hold);
  possessions, kin, allergies and events never by meaning ("Has a sister" and "Has two
  brothers", 0.66, both hold), nor tastes unless said as a change ("Likes jazz", "Likes rock
  music");
- "end" (I no longer live in Berlin) closes what it names without a successor;
- "forget" removes what it names with its history and the episodes it came from, and the
  turn that asked is not kept either.
Times are the tenant's: a memory's `at` is when the pair says it was said, not when it was
delivered (a backlog delivered after a freeze keeps its own time).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time

from tenant_agent.memory import meaning, store, turns, vectors
from tenant_agent.memory.learn import Statement, learn
from tenant_agent.memory.structure import SAID, said
from tenant_agent.memory.utterance import is_question

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

_MAX_INSIGHTS_PER_BATCH = 50
MAX_PENDING = 5000  # turns waiting for the model; beyond, the oldest wait no more (the rules
                    # learned from them already): a model refused for days cannot grow the file
_REPLY_BEFORE_S = 1800.0  # a bare "yes" answers the previous reply if it came this recently
MEMORY_COLUMNS = ("id, kind, subject, value, polarity, text, at, valid_from, valid_to, "
                  "superseded_by, confidence, evidence, source, exclusive, updated, n")
_WORDS = re.compile(r"[a-z0-9]+")
_COUNTED = re.compile(r"^Has (\d+|two|three|four|five|six|seven|eight|nine|ten|eleven|"
                      r"twelve) (.+)$", re.I)
_FORGET_STOP = frozenset(["the", "my", "our", "about", "that", "what", "and", "from", "with",
                          "your", "you", "said", "told", "mentioned", "know", "remember"])


def _readable(pair: dict[str, Any]) -> turns.Turn:
    """The pair read; one the agent cannot read is applied (its id recorded) and learned from
    as nothing, so it can never hold up the tenant's backlog."""
    try:
        return turns.read(pair)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, RecursionError,
            UnicodeError):
        turn = turns.Turn(str(pair.get("id")), str(pair.get("id")), time.time(), "")
        turn.learn = False
        return turn


def confidence(evidence: int, source: str = "rules") -> float:
    """Grows with evidence, never reaching certainty: 1 -> 0.5, 3 -> 0.75, 9 -> 0.9; a
    model's reading starts a step higher (1 -> 0.667)."""
    if source != "rules":
        evidence += 1
    return round(evidence / (evidence + 1), 3)


class Memory:
    """`rules=False` leaves learning to the model alone (BURROW_AGENT_RULES=off: to measure a
    model against the rules, or where a strong model should not share the work)."""

    def __init__(self, path: str, rules: bool = True) -> None:
        self.path = path
        self.rules = rules
        self.lock = threading.RLock()
        self.db = store.open_db(path)
        self.model = os.environ.get("BURROW_AGENT_MODEL") or self.meta("model") or None
        self.codes: vectors.SignCodes | None = None  # built on the first large vector search
        self.changed = threading.Condition(self.lock)  # notified when work is queued
        self.extracting = threading.Lock()  # one model pass at a time (background or asked)

    def close(self) -> None:
        with self.lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                        "value=excluded.value", (key, value))

    def use_model(self, model: str | None) -> None:
        """The model the host names for this tenant's agent (x-burrow-model; "" for none any
        more, None when it did not say); remembered, so the extraction pass after a wake
        knows it before any request arrives. BURROW_AGENT_MODEL, when set, wins."""
        if model is None or model == (self.model or "") or os.environ.get("BURROW_AGENT_MODEL"):
            return
        with self.lock:
            if model:
                self.set_meta("model", model)
            else:
                self.db.execute("DELETE FROM meta WHERE key='model'")
            self.model = model or None

    def last_seq(self) -> int:
        return int(self.meta("last_seq") or 0)

    # -- the write path ---------------------------------------------------------------------

    def observe(self, pairs: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply request/response pairs in sequence order, each at most once (by id); return
        what was applied and the candidate insights the new text suggests."""
        applied, skipped = [], []
        insights: dict[str, str] = {}
        queued = 0
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for pair in sorted(pairs, key=lambda p: int(p["seq"])):
                    pair_id, seq = str(pair["id"]), int(pair["seq"])
                    if self.db.execute("SELECT 1 FROM applied WHERE id=?",
                                       (pair_id,)).fetchone():
                        skipped.append(pair_id)
                        continue
                    self.db.execute("INSERT INTO applied (id, seq, at) VALUES (?, ?, ?)",
                                    (pair_id, seq, time.time()))
                    found, was_queued = self._apply(_readable(pair))
                    queued += was_queued
                    for kind, text in found:
                        insights.setdefault(text, kind)
                    applied.append(pair_id)
                    self.db.execute("INSERT INTO meta VALUES ('last_seq', ?) ON CONFLICT(key) "
                                    "DO UPDATE SET value=max(CAST(value AS INTEGER), "
                                    "excluded.value)", (seq,))
                if queued:
                    self.db.execute("DELETE FROM pending WHERE episode IN (SELECT episode FROM "
                                    "pending ORDER BY episode DESC LIMIT -1 OFFSET ?)",
                                    (MAX_PENDING,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            last = self.last_seq()
            identifiers = [v for (v,) in self.db.execute(
                "SELECT value FROM memories WHERE kind='fact' AND subject IN ('name', 'email', "
                "'employer', 'location', 'phone', 'phone number', 'address', 'hometown', "
                "'birthplace')")]
            if queued:
                self.changed.notify_all()
        candidates = [{"kind": k, "text": t} for t, k in insights.items()]
        # what identifies this tenant, for the worker to scrub from anything it shares
        return {"applied": applied, "skipped": skipped, "last_seq": last,
                "insights": candidates[:_MAX_INSIGHTS_PER_BATCH], "identifiers": identifiers,
                "queued": queued}

    def _apply(self, turn: turns.Turn) -> tuple[list[tuple[str, str]], bool]:
        if not turn.learn or not turn.user.strip():
            return [], False
        if turn.fingerprint:
            if self.db.execute("SELECT 1 FROM turns WHERE fingerprint=?",
                               (turn.fingerprint,)).fetchone():
                return [], False  # this chat turn came before, with the same history
            self.db.execute("INSERT INTO turns VALUES (?)", (turn.fingerprint,))
        before = turn.reply_before or self._last_reply(turn.at)
        try:  # the rules, and the statements the host's parse shows in place of theirs
            learned = said(turn.user, turn.at, before, turn.parse)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError):
            learned = learn("", turn.at)  # kept as an episode; the rules found nothing
        if not self.rules:
            learned.statements = []
        forgets = [s for s in learned.statements if s.op == "forget"]
        for statement in forgets:
            self.forget(statement, turn.memory_vectors.get(statement.value))
        # A question asked of the agent itself ("What is my name?" to /ask) is no turn of the
        # tenant's history: recall would hand it back for the next question like it.
        asked = turn.asked and not learned.statements and is_question(turn.user)
        episode = None if forgets or asked else self._episode(turn)
        for statement in learned.statements:
            if statement.op != "forget":
                self.hold(statement, turn, episode, "rules",
                          turn.memory_vectors.get(statement.text),
                          meaning.changed(turn.user, statement))
        for topic in set(learned.topics):
            self.db.execute("INSERT INTO topics VALUES (?, 1) ON CONFLICT(topic) DO UPDATE SET "
                            "count=count+1", (topic,))
        queued = bool(self.model and episode)
        if queued:
            self.db.execute("INSERT OR IGNORE INTO pending (episode, queued) SELECT n, ? "
                            "FROM episodes WHERE id=?", (time.time(), episode))
        return learned.insights, queued

    def _last_reply(self, at: float) -> str:
        row = self.db.execute("SELECT reply, at FROM episodes ORDER BY n DESC LIMIT 1").fetchone()
        return str(row[0]) if row and 0 <= at - row[1] <= _REPLY_BEFORE_S else ""

    def _episode(self, turn: turns.Turn) -> str:
        episode = store.new_id("e_")
        vec = turn.vectors.get("user")
        if turn.vector_model and vec:
            known = self.meta("vector_model")
            if known is None:
                self.set_meta("vector_model", turn.vector_model)
            elif known != turn.vector_model:
                vec = None  # never compare vectors of two models
        self.db.execute(
            "INSERT INTO episodes (id, pair_id, request_id, at, user, reply, question, vec) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (episode, turn.pair_id, turn.request_id, turn.at, turn.user, turn.reply,
             int(is_question(turn.user)), vectors.pack(vec) if vec else None))
        if vec and self.codes is not None:
            n = self.db.execute("SELECT n FROM episodes WHERE id=?", (episode,)).fetchone()[0]
            self.codes.add(n, vectors.pack(vec))
        return episode

    # -- what a statement does ---------------------------------------------------------------

    def hold(self, s: Statement, turn: turns.Turn, episode: str | None, source: str,
             vector: list[float] | None = None, change: bool = False) -> str | None:
        """Apply one add or end statement; the id of the memory that now holds it. `vector`:
        the host's embedding of its text; `change`: it was said as a change."""
        if s.op in ("end", "recount", "rename"):
            return {"end": self._end, "recount": self._recount, "rename": self._rename}[s.op](
                s, turn, episode)
        held = self._active(s.subject, s.kind)
        same = [r for r in held if r[3].lower() == s.value.lower() and r[4] == s.polarity]
        if same:
            self._evidence(same[0][0], turn, episode, source)
            return str(same[0][0])
        memory = store.new_id("m_")
        valid_from = s.when if s.when is not None and s.kind in ("fact", "event") else turn.at
        self.db.execute(
            "INSERT INTO memories (id, kind, subject, value, polarity, text, at, valid_from, "
            "confidence, evidence, source, exclusive, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (memory, s.kind, s.subject, s.value, s.polarity, s.text, turn.at, valid_from,
             confidence(1, source), source, int(s.exclusive), time.time()))
        self._evidence(memory, turn, episode, source)
        rivals = self._rivals(s, held)
        for old in rivals:
            self._close(old, turn.at, memory)
        packed = self._packed(vector, turn)
        if packed is not None:
            self.db.execute("UPDATE memories SET vec=? WHERE id=?", (packed, memory))
            if not rivals:
                for old in self._same_by_meaning(s, memory, packed, change, turn, source):
                    self._close(old, turn.at, memory)
        if s.ends and not any(r[3].lower() == s.ends.lower() for r in held):
            self._history(s, turn, memory)  # "moved from Berlin": Berlin held until now
        return memory

    def _end(self, s: Statement, turn: turns.Turn, episode: str | None) -> None:
        """"I no longer live in Berlin" closes what it names, without a successor."""
        if not s.subject:  # "sold the hatchback": what names it, by its words
            for memory in self._naming(s.value):
                self._close(memory, turn.at, None)
            return
        for row in self._active(s.subject, s.kind):
            if row[3].lower() == s.value.lower() or s.value == "*":
                self._close(row[0], turn.at, None)

    def _recount(self, s: Statement, turn: turns.Turn, episode: str | None) -> str | None:
        """"We're down to two": the possession counted last, with the new count."""
        for kind, subject, text in self.db.execute(
                "SELECT kind, subject, text FROM memories WHERE kind='fact' AND "
                "valid_to IS NULL AND exclusive=1 ORDER BY at DESC, n DESC"):
            m = _COUNTED.match(text)
            if not m or m.group(1).lower() == s.value:
                continue
            new = Statement("add", kind, subject, f"{s.value} {m.group(2)}",
                            f"Has {s.value} {m.group(2)}", exclusive=True)
            return self.hold(new, turn, episode, "rules")
        return None

    def _rename(self, s: Statement, turn: turns.Turn, episode: str | None) -> str | None:
        """"Smudge is now Captain Whiskers": what is held under the old name, renamed."""
        name = re.compile(rf"\b{re.escape(s.ends)}\b", re.I)
        last = None
        for kind, subject, value, text, exclusive in self.db.execute(
                "SELECT kind, subject, value, text, exclusive FROM memories WHERE valid_to IS "
                "NULL AND kind IN ('fact', 'preference') ORDER BY n").fetchall():
            if not name.search(text):
                continue
            new = Statement("add", kind, subject, name.sub(s.value, value), name.sub(
                s.value, text), exclusive=True)
            last = self.hold(new, turn, episode, "rules")
            if not exclusive:
                self._close_named(text, turn.at, last)
        return last

    def _close_named(self, text: str, at: float, successor: str | None) -> None:
        for (memory,) in self.db.execute("SELECT id FROM memories WHERE text=? AND valid_to IS "
                                         "NULL AND id<>?", (text, successor or "")).fetchall():
            self._close(memory, at, successor)

    def _packed(self, vector: list[float] | None, turn: turns.Turn) -> bytes | None:
        """A memory's vector, stored only beside those of the same model."""
        if not vector:
            return None
        known = self.meta("vector_model")
        if turn.vector_model and known is None:
            self.set_meta("vector_model", turn.vector_model)
        elif not turn.vector_model or known != turn.vector_model:
            return None
        return vectors.pack(vector)

    def _same_by_meaning(self, s: Statement, memory: str, packed: bytes, change: bool,
                         turn: turns.Turn, source: str) -> list[str]:
        """Held memories the new one is the same thing as, by the meaning of their texts.
        Named attributes are compared by name ("Works at St Mary's" and "Works as a nurse"
        are 0.63 alike and both hold); meaning decides where a name is missing: an identity
        ("Is a vegetarian"), a model's memory the rules name nothing in, and, said as a
        change, a preference against a preference, a diet or an identity."""
        new = meaning.sort(s.kind, s.subject, s.text, source)
        if s.op != "add" or new in ("thing", "") or not (change or new != "preference"):
            return []
        query = list(vectors.unpack(packed))
        found = []
        for held, kind, subject, text, blob, held_source in self.db.execute(
                "SELECT id, kind, subject, text, vec, source FROM memories WHERE valid_to IS "
                "NULL AND vec IS NOT NULL AND id<>? AND kind IN ('fact', 'preference') AND id "
                "NOT IN (SELECT memory FROM evidence WHERE pair_id=?)", (memory, turn.pair_id)):
            old = meaning.sort(kind, subject, text, held_source)
            if not meaning.comparable(new, old, change):
                continue
            floor = meaning.floor(new, old, change, SAID in (s.subject, subject))
            cosine = vectors.cosine(query, blob)
            if cosine >= floor:
                found.append((cosine, str(held)))
        if change:  # the one thing it changes
            return [max(found)[1]] if found else []
        return [held for _, held in found]

    def _active(self, subject: str, kind: str) -> list[tuple[Any, ...]]:
        return self.db.execute(
            "SELECT id, kind, subject, value, polarity, exclusive FROM memories WHERE "
            "subject=? AND (kind=? OR ?='') AND valid_to IS NULL", (subject, kind, kind)
        ).fetchall()

    def _rivals(self, s: Statement, held: list[tuple[Any, ...]]) -> list[str]:
        """What the new statement supersedes among the memories on its subject, and among
        liked alternatives ("prefer light mode" vs "dark mode")."""
        out = [r[0] for r in held if s.exclusive or r[4] != s.polarity
               or r[3].lower() == s.ends.lower()]
        if s.kind == "preference" and s.polarity == "likes" and (s.rival_head or s.ends):
            head = s.value.split()[-1]
            for memory, value in self.db.execute(
                    "SELECT id, value FROM memories WHERE kind='preference' AND "
                    "polarity='likes' AND valid_to IS NULL AND subject<>?", (s.subject,)):
                rival = (s.rival_head and len(value.split()) > 1 and value.split()[-1] == head
                         and len(s.value.split()) > 1)
                if rival or value.lower() == s.ends.lower():
                    out.append(memory)
        return out

    def _naming(self, phrase: str) -> list[str]:
        """The memories held now that name what a phrase names: its subjects ("that company":
        the employer) or every word of it (by stem: "the hatchback", "black coffee")."""
        head = re.sub(r"^(?:my|the|our|that|this)\s+", "", phrase.lower())
        named = meaning.FORGET_SUBJECTS.get(head, ())
        stems = [w[:5] for w in _WORDS.findall(head) if len(w) > 2 and w not in _FORGET_STOP]
        out = []
        for memory, subject, text in self.db.execute(
                "SELECT id, subject, text FROM memories WHERE valid_to IS NULL AND kind IN "
                "('fact', 'preference', 'plan')"):
            words = " ".join(w[:5] for w in _WORDS.findall(text.lower()))
            if subject in named or (stems and all(re.search(rf"\b{re.escape(stem)}", words)
                                                  for stem in stems)):
                out.append(str(memory))
        return out

    def _close(self, memory: str, at: float, successor: str | None) -> None:
        self.db.execute("UPDATE memories SET valid_to=?, superseded_by=?, updated=? "
                        "WHERE id=? AND valid_to IS NULL",
                        (at, successor, time.time(), memory))

    def _history(self, s: Statement, turn: turns.Turn, successor: str) -> None:
        old = store.new_id("m_")
        text = s.text.replace(s.value, s.ends) if s.value in s.text else s.text
        self.db.execute(
            "INSERT INTO memories (id, kind, subject, value, polarity, text, at, valid_from, "
            "valid_to, superseded_by, confidence, evidence, source, exclusive, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'rules', ?, ?)",
            (old, s.kind, s.subject, s.ends, s.polarity, text, turn.at, turn.at, turn.at,
             successor, confidence(1), int(s.exclusive), time.time()))
        self._evidence(old, turn, None, "rules")

    def _evidence(self, memory: str, turn: turns.Turn, episode: str | None,
                  source: str) -> None:
        added = self.db.execute(
            "INSERT OR IGNORE INTO evidence VALUES (?, ?, ?, ?, ?)",
            (memory, turn.pair_id, turn.request_id, episode, turn.at)).rowcount
        if added:
            self.db.execute("UPDATE memories SET evidence=evidence+1, updated=?, "
                            "confidence=round((evidence + 1.0 + (source<>'rules')) / "
                            "(evidence + 2.0 + (source<>'rules')), 3) WHERE id=?",
                            (time.time(), memory))

    def forget(self, s: Statement, vector: list[float] | None = None) -> list[str]:
        """Remove what the statement names (with its history), and the episodes it came from
        and that say it; the ids of the memories removed. A named thing ("my job", "my
        peanut allergy") is found by the subjects it names, by its words (their stems) in a
        memory, and by meaning (`vector`, the host's embedding of what it names)."""
        if s.value == "*" and not s.kind:  # "forget everything you know about me"
            removed = [m for (m,) in self.db.execute("SELECT id FROM memories").fetchall()]
            for memory in removed:
                self.remove_memory(memory)
            for (episode,) in self.db.execute("SELECT id FROM episodes").fetchall():
                self.remove_episode(episode)
            return removed
        if s.value == "^" and not s.kind:  # "erase that": what the tenant said just before
            return self._forget_last_turn()
        if s.kind:
            rows = self.db.execute(
                "SELECT id FROM memories WHERE kind=? AND subject=? AND lower(value)=lower(?)",
                (s.kind, s.subject, s.value)).fetchall()
        else:
            rows = self._named(s.value.lower(), vector)
        removed = []
        for (memory,) in rows:
            removed.extend(self.remove_memory(memory))
        words = [w for w in (_WORDS.findall(s.value.lower()) if not s.kind
                             else [s.value.lower()]) if len(w) > 2 and w not in _FORGET_STOP]
        if words:
            query = " AND ".join(f'"{w[:5]}"*' if len(w) > 4 else f'"{w}"' for w in words)
            for (episode,) in self.db.execute(
                    "SELECT e.id FROM episodes_fts f JOIN episodes e ON e.n=f.rowid "
                    "WHERE episodes_fts MATCH ?", ("user : (" + query + ")",)).fetchall():
                self.remove_episode(episode)
        if vector and not s.kind and not removed:
            self._forget_turns_like(vector)
        return removed

    def _forget_last_turn(self) -> list[str]:
        """The tenant's last turn before this one, and what was learned from it alone."""
        row = self.db.execute("SELECT id, pair_id FROM episodes ORDER BY n DESC LIMIT 1"
                              ).fetchone()
        if not row:
            return []
        removed: list[str] = []
        for (memory,) in self.db.execute(
                "SELECT DISTINCT memory FROM evidence WHERE episode=? OR pair_id=?",
                (row[0], row[1])).fetchall():
            if self.db.execute("SELECT 1 FROM memories WHERE id=?", (memory,)).fetchone():
                removed.extend(self.remove_memory(memory))
        self.remove_episode(row[0])
        return removed

    def _forget_turns_like(self, vector: list[float]) -> None:
        """Where no memory holds what a request to forget names ("the baby news"), the turn
        that said it, by meaning: the one most like it, if like enough."""
        query = vectors.normalised(vector)
        scored = sorted(((vectors.cosine(query, blob), episode) for episode, blob in
                         self.db.execute("SELECT id, vec FROM episodes WHERE vec IS NOT NULL")),
                        reverse=True)
        for n, (cosine, episode) in enumerate(scored):
            if cosine >= meaning.FORGET_SURE or (n == 0 and cosine >= meaning.FORGET_TURN):
                self.remove_episode(episode)

    def _named(self, phrase: str, vector: list[float] | None) -> list[tuple[str]]:
        """The memories a request to forget names by a phrase."""
        phrase = re.sub(r"^(?:my|the|our|that|this)\s+", "", phrase)
        named = meaning.FORGET_SUBJECTS.get(re.sub(r"^(?:my|the|our)\s+", "", phrase), ())
        marks = ",".join("?" * len(named)) or "NULL"
        rows = self.db.execute(
            "SELECT id FROM memories WHERE lower(subject)=? OR instr(lower(value), ?) > 0 "
            f"OR instr(lower(text), ?) > 0 OR subject IN ({marks})",
            (phrase, phrase, phrase, *named)).fetchall()
        stems = [w[:5] for w in _WORDS.findall(phrase) if len(w) > 3 and w not in _FORGET_STOP]
        found = {r[0] for r in rows}
        scored = []
        query = vectors.normalised(vector) if vector else None
        for memory, text, blob in self.db.execute("SELECT id, text, vec FROM memories"):
            lowered = text.lower()
            if stems and all(stem in lowered for stem in stems):
                found.add(memory)
            elif query is not None and blob is not None:
                scored.append((vectors.cosine(query, blob), memory))
        scored.sort(reverse=True)
        found.update(m for n, (cosine, m) in enumerate(scored) if cosine >= meaning.FORGET_SURE
                     or (n == 0 and cosine >= meaning.FORGET_FLOOR))
        return [(m,) for m in found]

    def remove_memory(self, memory: str) -> list[str]:
        """Delete a memory, the versions it superseded, and the episodes it came from."""
        chain, todo = [], [memory]
        while todo:
            current = todo.pop()
            if current in chain:
                continue
            chain.append(current)
            todo.extend(m for (m,) in self.db.execute(
                "SELECT id FROM memories WHERE superseded_by=?", (current,)))
        for current in chain:
            for (episode,) in self.db.execute(
                    "SELECT episode FROM evidence WHERE memory=? AND episode IS NOT NULL",
                    (current,)).fetchall():
                self.remove_episode(episode)
            self.db.execute("DELETE FROM evidence WHERE memory=?", (current,))
            self.db.execute("DELETE FROM memories WHERE id=?", (current,))
        return chain

    def remove_episode(self, episode: str) -> bool:
        row = self.db.execute("SELECT n FROM episodes WHERE id=?", (episode,)).fetchone()
        if not row:
            return False
        self.db.execute("DELETE FROM pending WHERE episode=?", (row[0],))
        self.db.execute("UPDATE evidence SET episode=NULL WHERE episode=?", (episode,))
        self.db.execute("DELETE FROM episodes WHERE n=?", (row[0],))
        if self.codes is not None:
            self.codes.discard(row[0])
        return True

    # -- reading -----------------------------------------------------------------------------

    def request_ids(self, memory: str) -> list[str]:
        return [r for (r,) in self.db.execute(
            "SELECT request_id FROM evidence WHERE memory=? ORDER BY at", (memory,))]

    def profile(self) -> dict[str, Any]:
        """What the agent holds now, by kind (the first agent's shape, kept for its callers)."""
        with self.lock:
            prefs = self.db.execute(
                "SELECT value, polarity, evidence, confidence, id FROM memories WHERE "
                "kind='preference' AND valid_to IS NULL ORDER BY evidence DESC, updated DESC "
                "LIMIT 50").fetchall()
            facts = self.db.execute(
                "SELECT subject, value, evidence, confidence, id, text FROM memories WHERE "
                "kind='fact' AND valid_to IS NULL ORDER BY updated DESC LIMIT 50").fetchall()
            topics = self.db.execute("SELECT topic, count FROM topics WHERE count > 1 "
                                     "ORDER BY count DESC LIMIT 20").fetchall()
            observed = self.db.execute("SELECT count(*) FROM applied").fetchone()[0]
            counts = self.db.execute(
                "SELECT (SELECT count(*) FROM memories WHERE valid_to IS NULL), "
                "(SELECT count(*) FROM episodes), (SELECT count(*) FROM pending)").fetchone()
            last = self.last_seq()
        return {
            "preferences": [{"polarity": p, "value": v, "evidence": e, "confidence": c,
                             "id": i} for v, p, e, c, i in prefs],
            "facts": [{"key": k, "value": v, "evidence": e, "confidence": c, "id": i,
                       "text": t} for k, v, e, c, i, t in facts],
            "topics": [{"topic": t, "count": c} for t, c in topics],
            "observed": observed, "last_seq": last, "memories": counts[0],
            "episodes": counts[1], "pending": counts[2], "model": self.model,
        }

    def log(self, after: int = 0, limit: int = 100_000) -> list[dict[str, Any]]:
        """The applied observations in the order they were applied."""
        with self.lock:
            rows = self.db.execute("SELECT n, id, seq FROM applied WHERE n > ? ORDER BY n "
                                   "LIMIT ?", (after, limit)).fetchall()
        return [{"n": n, "id": i, "seq": s} for n, i, s in rows]

    def transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """`with memory.transaction():` — one write transaction under the memory's lock."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def __enter__(self) -> sqlite3.Connection:
        self.memory.lock.acquire()
        self.memory.db.execute("BEGIN IMMEDIATE")
        return self.memory.db

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            self.memory.db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.memory.lock.release()
