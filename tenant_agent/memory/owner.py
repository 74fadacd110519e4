"""The tenant owns its memory: list (paged), get, add, correct, delete one, delete all, export.

Items are memories (ids `m_…`) and episodes (the tenant's turns, ids `e_…`), newest first.
A cursor is the opaque `next_cursor` of the previous page. A memory the tenant adds or
corrects itself has source `api`; a correction supersedes the memory (its history stays), as
a correction said in conversation does. Deleting a memory deletes the
versions it superseded and the turns it came from (else recall would still find it in them);
deleting an episode deletes that turn. After any delete the full-text indexes are optimised
(so the words are not left in old index segments) and the WAL checkpointed; `secure_delete`
overwrites the freed pages. "Delete all" is store.wipe(): nothing the tenant said or the agent
learned remains readable in the file, the pending model queue included; the caller learns it
should replace the box's snapshot (`replace_snapshot`).
"""

from __future__ import annotations

import time

from tenant_agent.memory import store
from tenant_agent.memory.memory import MEMORY_COLUMNS, Memory
from tenant_agent.memory.turns import iso

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

MAX_PAGE = 500
KINDS = ("preference", "fact", "event", "plan", "episode")
_EPISODE_COLUMNS = "id, pair_id, request_id, at, user, reply, n"


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def memory_item(memory: Memory, row: tuple[Any, ...]) -> dict[str, Any]:
    (mid, kind, subject, value, polarity, text, at, valid_from, valid_to, superseded_by,
     confidence, evidence, source, _exclusive, updated, _n) = row
    return {"id": mid, "kind": kind, "subject": subject, "value": value, "polarity": polarity,
            "text": text, "at": iso(at), "valid_from": iso(valid_from),
            "valid_to": iso(valid_to), "superseded_by": superseded_by,
            "current": valid_to is None, "confidence": confidence, "evidence": evidence,
            "source": source, "updated": iso(updated),
            "request_ids": memory.request_ids(mid)}


def episode_item(row: tuple[Any, ...]) -> dict[str, Any]:
    eid, pair_id, request_id, at, user, reply, _n = row
    return {"id": eid, "kind": "episode", "text": user, "reply": reply, "at": iso(at),
            "request_ids": [request_id], "pair_id": pair_id}


def list_items(memory: Memory, kind: str = "", status: str = "current", limit: int = 50,
               cursor: str = "") -> dict[str, Any]:
    if kind and kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
    if status not in ("current", "all"):
        raise BadRequest("status must be current or all")
    limit = max(1, min(limit, MAX_PAGE))
    try:
        before = int(cursor) if cursor else 1 << 62
    except ValueError:
        raise BadRequest("cursor must be a next_cursor from an earlier page") from None
    with memory.lock:
        if kind == "episode":
            rows = memory.db.execute(f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE n < ? "
                                     "ORDER BY n DESC LIMIT ?", (before, limit + 1)).fetchall()
            items = [episode_item(r) for r in rows[:limit]]
            total = memory.db.execute("SELECT count(*) FROM episodes").fetchone()[0]
        else:
            where = "n < ?" + (" AND valid_to IS NULL" if status == "current" else "") + (
                " AND kind = ?" if kind else "")
            args: tuple[Any, ...] = (before, kind) if kind else (before,)
            rows = memory.db.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {where} "
                                     "ORDER BY n DESC LIMIT ?", (*args, limit + 1)).fetchall()
            items = [memory_item(memory, r) for r in rows[:limit]]
            total = memory.db.execute(
                f"SELECT count(*) FROM memories WHERE {where.replace('n < ?', '1')}",
                args[1:]).fetchone()[0]
    more = len(rows) > limit
    return {"items": items, "next_cursor": str(rows[limit - 1][-1]) if more else None,
            "total": total}


def get_item(memory: Memory, item_id: str) -> dict[str, Any]:
    with memory.lock:
        if item_id.startswith("e_"):
            row = memory.db.execute(f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE id=?",
                                    (item_id,)).fetchone()
            if row:
                return episode_item(row)
        else:
            row = memory.db.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id=?",
                                    (item_id,)).fetchone()
            if row:
                item = memory_item(memory, row)
                item["history"] = _history(memory, item_id)
                return item
    raise NotFound(f"no memory {item_id!r}; list them with GET /memories")


def _history(memory: Memory, item_id: str) -> list[dict[str, Any]]:
    """The versions this memory superseded, newest first."""
    out, current = [], item_id
    for _ in range(100):
        row = memory.db.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE superseded_by=? "
                                "ORDER BY valid_to DESC LIMIT 1", (current,)).fetchone()
        if not row:
            break
        out.append(memory_item(memory, row))
        current = row[0]
    return out


def add_item(memory: Memory, data: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A memory the tenant states directly: {"text", "kind"?, "subject"?}."""
    text, kind = data.get("text"), data.get("kind", "fact")
    subject = data.get("subject") or (text.lower() if isinstance(text, str) else "")
    if not isinstance(text, str) or not text.strip() or len(text) > 1000:
        raise BadRequest("text must be a non-empty string of at most 1000 characters")
    if kind not in KINDS or kind == "episode":
        raise BadRequest(f"kind must be one of {', '.join(KINDS[:-1])}")
    if not isinstance(subject, str):
        raise BadRequest("subject must be a string")
    from tenant_agent.memory.learn import Statement
    from tenant_agent.memory.turns import Turn

    turn = Turn(store.new_id("api_"), request_id, time.time(), text)
    with memory.transaction():
        held = memory.hold(Statement("add", kind, subject.strip().lower()[:120], text.strip(),
                                     text.strip()), turn, None, "api")
    assert held is not None
    return get_item(memory, held)


def correct_item(memory: Memory, item_id: str, data: dict[str, Any],
                 request_id: str) -> dict[str, Any]:
    """A corrected text for a memory held now: the new version supersedes it."""
    text = data.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > 1000:
        raise BadRequest("text must be a non-empty string of at most 1000 characters")
    with memory.lock:
        row = memory.db.execute("SELECT kind, subject, valid_to FROM memories WHERE id=?",
                                (item_id,)).fetchone()
    if row is None:
        raise NotFound(f"no memory {item_id!r}; list them with GET /memories")
    if row[2] is not None:
        raise BadRequest(f"memory {item_id} no longer holds; correct the one that superseded "
                         "it")
    from tenant_agent.memory.learn import Statement
    from tenant_agent.memory.turns import Turn

    turn = Turn(store.new_id("api_"), request_id, time.time(), text)
    with memory.transaction() as db:
        new = memory.hold(Statement("add", row[0], row[1], text.strip(), text.strip()), turn,
                          None, "api")
        if new and new != item_id:
            db.execute("UPDATE memories SET valid_to=?, superseded_by=?, updated=? WHERE id=? "
                       "AND valid_to IS NULL", (turn.at, new, turn.at, item_id))
    assert new is not None
    return get_item(memory, new)


def delete_item(memory: Memory, item_id: str) -> dict[str, Any]:
    with memory.transaction():
        if item_id.startswith("e_"):
            deleted = [item_id] if memory.remove_episode(item_id) else []
        else:
            exists = memory.db.execute("SELECT 1 FROM memories WHERE id=?",
                                       (item_id,)).fetchone()
            deleted = memory.remove_memory(item_id) if exists else []
    if not deleted:
        raise NotFound(f"no memory {item_id!r}; list them with GET /memories")
    with memory.lock:
        for fts in ("episodes_fts", "memories_fts"):
            memory.db.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")
        memory.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"deleted": deleted}


def delete_all(memory: Memory) -> dict[str, Any]:
    with memory.lock:
        counts = store.wipe(memory.db)
        memory.codes = None
    return {"deleted": counts, "replace_snapshot": True}


def export(memory: Memory) -> dict[str, Any]:
    with memory.lock:
        memories = [memory_item(memory, r) for r in memory.db.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories ORDER BY n").fetchall()]
        episodes = [episode_item(r) for r in memory.db.execute(
            f"SELECT {_EPISODE_COLUMNS} FROM episodes ORDER BY n").fetchall()]
        pending = memory.db.execute("SELECT count(*) FROM pending").fetchone()[0]
        observed = memory.db.execute("SELECT count(*) FROM applied").fetchone()[0]
    return {"format": "burrow.memory/1", "exported_at": iso(time.time()),
            "memories": memories, "episodes": episodes, "pending": pending,
            "observed": observed}
