"""The tenant's private memory, in SQLite under /workspace/.burrow-agent/ (so it is part of the
box's layer and survives freezes): which observations were applied, and the profile learned
from them (preferences with evidence, facts the tenant stated, recurring topics)."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from tenant_agent.learn import learn, text_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS preferences (
    polarity TEXT NOT NULL, value TEXT NOT NULL, evidence INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (polarity, value));
CREATE TABLE IF NOT EXISTS facts (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, evidence INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""
_MAX_INSIGHTS_PER_BATCH = 50


def confidence(evidence: int) -> float:
    """Grows with evidence, never reaching certainty: 1 -> 0.5, 3 -> 0.75, 9 -> 0.9."""
    return round(evidence / (evidence + 1), 3)


class Memory:
    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()

    def last_seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        return int(row[0]) if row else 0

    def observe(self, pairs: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply request/response pairs in sequence order, each at most once (by id); return
        what was applied and the candidate insights the new text suggests."""
        applied, skipped = [], []
        insights: dict[str, str] = {}
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
                    for kind, text in self._apply(pair):
                        insights.setdefault(text, kind)
                    applied.append(pair_id)
                    self.db.execute("INSERT INTO meta VALUES ('last_seq', ?) ON CONFLICT(key) "
                                    "DO UPDATE SET value=max(CAST(value AS INTEGER), "
                                    "excluded.value)", (seq,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            last = self.last_seq()
            identifiers = [v for (v,) in self.db.execute("SELECT value FROM facts")]
        candidates = [{"kind": k, "text": t} for t, k in insights.items()]
        # what identifies this tenant, for the worker to scrub from anything it shares
        return {"applied": applied, "skipped": skipped, "last_seq": last,
                "insights": candidates[:_MAX_INSIGHTS_PER_BATCH], "identifiers": identifiers}

    def _apply(self, pair: dict[str, Any]) -> list[tuple[str, str]]:
        request = pair.get("request") or {}
        if not isinstance(request, dict):
            return []
        learned = learn(text_of(str(request.get("body") or "")))
        now = time.time()
        for polarity, value in learned.preferences:
            self.db.execute(
                "INSERT INTO preferences VALUES (?, ?, 1, ?) ON CONFLICT(polarity, value) "
                "DO UPDATE SET evidence=evidence+1, updated=excluded.updated",
                (polarity, value, now))
        for key, value in learned.facts:
            self.db.execute(
                "INSERT INTO facts VALUES (?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
                "evidence=CASE WHEN value=excluded.value THEN evidence+1 ELSE 1 END, "
                "value=excluded.value, updated=excluded.updated", (key, value, now))
        for topic in set(learned.topics):
            self.db.execute("INSERT INTO topics VALUES (?, 1) ON CONFLICT(topic) DO UPDATE SET "
                            "count=count+1", (topic,))
        return learned.insights

    def profile(self) -> dict[str, Any]:
        with self.lock:
            prefs = self.db.execute("SELECT polarity, value, evidence, updated FROM preferences "
                                    "ORDER BY evidence DESC, updated DESC LIMIT 50").fetchall()
            facts = self.db.execute("SELECT key, value, evidence FROM facts "
                                    "ORDER BY updated DESC LIMIT 50").fetchall()
            topics = self.db.execute("SELECT topic, count FROM topics WHERE count > 1 "
                                     "ORDER BY count DESC LIMIT 20").fetchall()
            observed = self.db.execute("SELECT count(*) FROM applied").fetchone()[0]
        return {
            "preferences": [{"polarity": p, "value": v, "evidence": e,
                             "confidence": confidence(e)} for p, v, e, _ in prefs],
            "facts": [{"key": k, "value": v, "evidence": e} for k, v, e in facts],
            "topics": [{"topic": t, "count": c} for t, c in topics],
            "observed": observed,
            "last_seq": self.last_seq(),
        }

    def log(self, after: int = 0, limit: int = 100_000) -> list[dict[str, Any]]:
        """The applied observations in the order they were applied."""
        with self.lock:
            rows = self.db.execute("SELECT n, id, seq FROM applied WHERE n > ? ORDER BY n "
                                   "LIMIT ?", (after, limit)).fetchall()
        return [{"n": n, "id": i, "seq": s} for n, i, s in rows]
