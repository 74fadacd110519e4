"""The tenant's memory file: one SQLite database under /workspace/.burrow-agent/ (part of the
box's layer, so it survives freezes and archives), its schema, the migration from the first
agent's schema, and how it is wiped.

Tables (schema 3):
- `applied`: every pair id delivered, in order (exactly-once delivery; ids only, no text);
- `episodes` (+ `episodes_fts`, FTS5 with the porter stemmer, over the tenant's words only:
  the reply is kept with the turn but never ranked as what the tenant said): the tenant's own
  turns, each with the reply, when it was said, its request id, and the host's embedding of
  its words (float16);
- `memories` (+ `memories_fts`): what the agent learned, with kind, subject, value, text, when
  it was said, validity (`valid_from`, `valid_to`, `superseded_by`: a superseded memory keeps
  its history, as Zep does), confidence, evidence count, source (rules or model) and the
  host's embedding of its text when it has one (what a new memory is compared with);
- `evidence`: which pairs (and request ids) each memory came from;
- `pending`: episodes waiting for the model's extraction pass (persisted: a freeze loses none);
- `turns`: fingerprints of chat turns already seen (a resent history is learned once);
- `topics`, `meta`.

Schema 1 (the first agent: `preferences`, `facts`, `topics`) is migrated in place on open:
each preference and fact becomes a memory with its evidence count; there were no episodes.
Schema 2 indexed the replies beside the tenant's words: its full-text index is rebuilt over
the words alone, and memories gain their vector column.

Invariants: `secure_delete` is on, so deleted rows are overwritten, not left in free pages;
`wipe()` leaves no readable remains of the tenant's words in the file or its WAL.
"""

from __future__ import annotations

import os
import sqlite3
import time

SCHEMA_VERSION = 3
_TOKENIZE = "porter unicode61 remove_diacritics 2"

_TABLES = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, pair_id TEXT NOT NULL,
    request_id TEXT NOT NULL, at REAL NOT NULL, user TEXT NOT NULL, reply TEXT NOT NULL,
    question INTEGER NOT NULL DEFAULT 0, vec BLOB);
CREATE INDEX IF NOT EXISTS episodes_at ON episodes(at);
CREATE INDEX IF NOT EXISTS episodes_pair ON episodes(pair_id);
CREATE VIRTUAL TABLE IF NOT EXISTS episodes_fts USING fts5(
    user, content='episodes', content_rowid='n', tokenize='{_TOKENIZE}');
CREATE TRIGGER IF NOT EXISTS episodes_ai AFTER INSERT ON episodes BEGIN
    INSERT INTO episodes_fts(rowid, user) VALUES (new.n, new.user);
END;
CREATE TRIGGER IF NOT EXISTS episodes_ad AFTER DELETE ON episodes BEGIN
    INSERT INTO episodes_fts(episodes_fts, rowid, user) VALUES ('delete', old.n, old.user);
END;
CREATE TABLE IF NOT EXISTS memories (
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    subject TEXT NOT NULL, value TEXT NOT NULL, polarity TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL, at REAL NOT NULL, valid_from REAL NOT NULL, valid_to REAL,
    superseded_by TEXT, confidence REAL NOT NULL, evidence INTEGER NOT NULL,
    source TEXT NOT NULL, exclusive INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL,
    vec BLOB);
CREATE INDEX IF NOT EXISTS memories_subject ON memories(subject);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    text, subject, content='memories', content_rowid='n', tokenize='{_TOKENIZE}');
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text, subject) VALUES (new.n, new.text, new.subject);
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, subject)
    VALUES ('delete', old.n, old.text, old.subject);
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text, subject ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, subject)
    VALUES ('delete', old.n, old.text, old.subject);
    INSERT INTO memories_fts(rowid, text, subject) VALUES (new.n, new.text, new.subject);
END;
CREATE TABLE IF NOT EXISTS evidence (
    memory TEXT NOT NULL, pair_id TEXT NOT NULL, request_id TEXT NOT NULL, episode TEXT,
    at REAL NOT NULL, PRIMARY KEY (memory, pair_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evidence_pair ON evidence(pair_id);
CREATE INDEX IF NOT EXISTS evidence_episode ON evidence(episode);
CREATE TABLE IF NOT EXISTS pending (
    episode INTEGER PRIMARY KEY, queued REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS turns (fingerprint TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""

# What the tenant's words live in: emptied by wipe(). `applied` and `meta` hold ids and
# counters only, and stay, so a redelivered old pair is still recognised and skipped.
CONTENT_TABLES = ("evidence", "memories", "episodes", "pending", "turns", "topics")


def new_id(prefix: str) -> str:
    return prefix + os.urandom(8).hex()


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA secure_delete=ON")
    _migrate(db)
    return db


def version(db: sqlite3.Connection) -> int:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" in tables:
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row:
            return int(row[0])
    return 1 if "preferences" in tables else 0


def _migrate(db: sqlite3.Connection) -> None:
    found = version(db)
    if found == SCHEMA_VERSION:
        return
    # Idempotent (IF NOT EXISTS): a migration cut short by a kill is simply done again.
    if found == 2:  # its index of the replies goes; _TABLES makes the one of the words alone
        db.executescript("DROP TRIGGER IF EXISTS episodes_ai; DROP TRIGGER IF EXISTS "
                         "episodes_ad; DROP TABLE IF EXISTS episodes_fts;")
    db.executescript(_TABLES)
    db.execute("BEGIN IMMEDIATE")
    try:
        if found == 1:
            _from_v1(db)
        if found == 2:
            if "vec" not in {row[1] for row in db.execute("PRAGMA table_info(memories)")}:
                db.execute("ALTER TABLE memories ADD COLUMN vec BLOB")
            db.execute("INSERT INTO episodes_fts(episodes_fts) VALUES ('rebuild')")
        db.execute("INSERT INTO meta VALUES ('schema', ?) ON CONFLICT(key) DO UPDATE SET "
                   "value=excluded.value", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _from_v1(db: sqlite3.Connection) -> None:
    """The first agent's preferences and facts become memories (source 'rules')."""
    now = time.time()
    for polarity, value, evidence, updated in db.execute(
            "SELECT polarity, value, evidence, updated FROM preferences").fetchall():
        verb = "Prefers" if polarity == "likes" else "Avoids"
        _insert(db, "preference", value, value, polarity, f"{verb} {value}", evidence,
                updated or now, False)
    for key, value, evidence, updated in db.execute(
            "SELECT key, value, evidence, updated FROM facts").fetchall():
        text = f"{key[:1].upper()}{key[1:]} is {value}"
        _insert(db, "fact", key, value, "", text, evidence, updated or now, True)
    db.execute("DROP TABLE preferences")
    db.execute("DROP TABLE facts")


def _insert(db: sqlite3.Connection, kind: str, subject: str, value: str, polarity: str,
            text: str, evidence: int, at: float, exclusive: bool) -> None:
    db.execute("INSERT INTO memories (id, kind, subject, value, polarity, text, at, valid_from, "
               "confidence, evidence, source, exclusive, updated) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'rules', ?, ?)",
               (new_id("m_"), kind, subject, value, polarity, text, at, at,
                round(evidence / (evidence + 1), 3), evidence, int(exclusive), at))


def wipe(db: sqlite3.Connection) -> dict[str, int]:
    """Delete everything the tenant said and the agent learned, and leave no readable remains:
    rows are deleted with secure_delete on, the full-text indexes are rebuilt empty, the file
    is vacuumed and the WAL truncated. Returns how many rows each table lost."""
    counts = {}
    db.execute("BEGIN IMMEDIATE")
    try:
        for table in CONTENT_TABLES:
            counts[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            db.execute(f"DELETE FROM {table}")
        for fts in ("episodes_fts", "memories_fts"):
            db.execute(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')")
        db.execute("INSERT INTO meta VALUES ('epoch', '1') ON CONFLICT(key) DO UPDATE SET "
                   "value=CAST(value AS INTEGER) + 1")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts
