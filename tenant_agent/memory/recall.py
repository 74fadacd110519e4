"""Recall: the memories and episodes most relevant to a query, with their provenance.

Hybrid retrieval inside the box. Full text: FTS5 BM25 (porter stemmer) over the tenant's own
words and over the memories. A turn's reply is kept with it (and returned) but never ranked as
what the tenant said: through /ask the reply is the context the agent assembled, other
tenants' insights included, and a word of it ("users") matched every such turn. Vectors, where
the host supplied them: the cosine of the query's embedding with each episode's (the host
embeds the tenant's words only; tenant_agent/memory/vectors.py; a memory borrows the best of
the episodes it came from). Without embeddings it is full text only.

A query about "the user" is read as the tenant asking about itself ("What pets does the user
have?" -> "What pets do I have?", `first_person`): the turns it is matched with, and embedded
against, are the tenant's words in the first person.

Full text is scored against what the query could match, not against the best match found: a
turn's BM25 over the sum of the inverse document frequencies of the query's words that occur
at all (a turn holding each of them once, at the average length, scores 1), at most 1. So a
turn that matches one common word scores little however weak the rest is. Fused linearly with
the cosine (`FTS_WEIGHT * text + cosine`); and with a vector, a turn that matches a single word
of the query gets at most SINGLE_WORD of the text score: one stemmed word ("user" -> "users",
"living room" for "live") never outranks meaning. A turn is read in its conversation: an
episode also gets NEIGHBOR_WEIGHT of the better of the turns just before and after it (when
they are within NEIGHBOR_GAP_S), so "Yes, last Friday!" is found through the question it
answered. A date in the query ("on 13 October 2023", "in August 2023", "last week") lifts what
was said then by TIME_BOOST. Memories held now get a small lift over episodes, a superseded
memory a penalty (it is still found: "where did I live before?"). An episode whose turn a
better result already has as its own (an episode's turn, a memory's first source) is left out,
and so is a memory whose every cited request is already cited, so a slot is never spent twice
on one turn.

An episode comes with its context: the turns just before and after it in the same
conversation (within NEIGHBOR_GAP_S and the since/until bounds), as `context`, their request
ids cited after its own. A turn is read in its conversation, so it is returned in it too; a
context turn that ranks on its own is still listed as a result of its own (leaving it out
took the own-turn recall@10 of LoCoMo's dev conversations, text only, from 0.707 to 0.596:
those slots went to weaker turns, and /ask, which quotes each result's own turn only, never
saw it).

Measured: bench/persona.py (facts among chit-chat, asked in other words, served with the
knowledge base full of other tenants' insights) and bench/memory.py (LoCoMo).

Invariant: every result cites the request ids (X-Request-Id) it came from; `since` and
`until` bound when the tenant said it.
"""

from __future__ import annotations

import math
import re
import time

from tenant_agent.memory import vectors
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.turns import iso

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

FTS_WEIGHT = 0.5       # full text against cosine, fused linearly
SINGLE_WORD = 0.2      # most of the text score a turn matching one word of the query gets
NEIGHBOR_WEIGHT = 0.5  # of the better adjacent turn's score
NEIGHBOR_GAP_S = 3600.0  # turns further apart are not one conversation
NEIGHBORS_OF = 100     # the best candidates whose neighbours are looked at
TIME_BOOST = 0.4       # for what was said when the query says
HELD_LIFT = 1.1        # a memory held now, against an episode of the same score
SUPERSEDED = 0.8       # a memory no longer held
CANDIDATES = 200
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing done down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other our ours out
over own same she should so some such than that the their theirs them then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves ever kind like likely tell know think
""".split())  # noqa: SIM905 (a word list reads better as text)


# "the user" in a question, read as the tenant asking about itself: (pattern, replacement),
# in order (the auxiliary before the subject first, so that "does the user" is "do I").
_THE_USER = r"(?:the |this |our |my )?user"
_FIRST_PERSON = tuple((re.compile(p, re.I), r) for p, r in (
    (rf"\b{_THE_USER}(?:'s|\u2019s|s')", "my"),
    (rf"\b(?:does|do) {_THE_USER}\b", "do I"),
    (rf"\b(?:is|are) {_THE_USER}\b", "am I"),
    (rf"\b(?:has|have) {_THE_USER}\b", "have I"),
    (rf"\b(was|did|can|could|will|would|should|shall|may|might|must) {_THE_USER}\b",
     r"\1 I"),
    (rf"\b{_THE_USER} (?:is|are)\b", "I am"),
    (rf"\b{_THE_USER} (?:has|have)\b", "I have"),
    (rf"\b{_THE_USER} (was|did|can|could|will|would|should|may|might|must)\b", r"I \1"),
    (rf"\b{_THE_USER} (?:does)\b", "I do"),
    (rf"\b{_THE_USER} ([a-z]+?)(ies|sses|shes|ches|xes|oes|s)\b", None),
    (rf"\b(to|for|about|with|from|of|by|tell|give|show|help|remind) {_THE_USER}\b",
     r"\1 me"),
    (rf"\b{_THE_USER}\b", "I"),
))
_ENDINGS = {"ies": "y", "sses": "ss", "shes": "sh", "ches": "ch", "xes": "x", "oes": "o", "s": ""}


def _verb(match: re.Match[str]) -> str:
    """"the user lives" -> "I live", "the user studies" -> "I study"."""
    return f"I {match.group(1)}{_ENDINGS[match.group(2).lower()]}"


def first_person(query: str) -> str:
    """A question about "the user" as the tenant would ask it of itself: "What pets does the
    user have?" -> "What pets do I have?" (what it is matched with are the tenant's words)."""
    if "user" not in query.lower():
        return query
    for pattern, replacement in _FIRST_PERSON:
        query = pattern.sub(replacement if replacement is not None else _verb, query)
    return query[:1].upper() + query[1:]


def terms(query: str) -> list[str]:
    """The words of a query worth matching, in order, once each."""
    seen: list[str] = []
    for word in _WORD.findall(query.lower()):
        word = word.strip("_")
        if len(word) > 1 and word not in STOPWORDS and word not in seen:
            seen.append(word)
    return seen[:32]


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_M = "|".join(_MONTHS)
_DATE = re.compile(rf"\b(?:({_M}) (\d{{1,2}})(?:st|nd|rd|th)?,? (\d{{4}})|"
                   rf"(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_M}),? (\d{{4}})|"
                   r"(\d{4})-(\d{2})-(\d{2}))\b", re.I)
_MONTH = re.compile(rf"\b({_M}),? (\d{{4}})\b", re.I)
_DAY = 86400.0


def time_windows(query: str, now: float | None = None) -> list[tuple[float, float]]:
    """When the query asks about, as (from, to) in unix seconds: a date ("on 13 October
    2023": that day and the next, or the ten days up to it after "before"), a month
    ("in August 2023"), or a relative time from now ("yesterday", "last week")."""
    import calendar

    out = []
    for m in _DATE.finditer(query):
        g = m.groups()
        year, month, day = ((g[2], g[0], g[1]) if g[0] else (g[5], g[4], g[3]) if g[4]
                            else (g[6], g[7], g[8]))
        number = int(month) if month.isdigit() else _MONTHS.index(month.lower()) + 1
        try:
            at = calendar.timegm((int(year), number, int(day), 0, 0, 0))
        except (ValueError, OverflowError):
            continue
        before = query[max(0, m.start() - 8):m.start()].lower().rstrip().endswith("before")
        out.append((at - 10 * _DAY, at + _DAY) if before else (at - _DAY, at + 2 * _DAY))
    if not out:
        for m in _MONTH.finditer(query):
            number = _MONTHS.index(m.group(1).lower()) + 1
            start = calendar.timegm((int(m.group(2)), number, 1, 0, 0, 0))
            out.append((start, start + 31 * _DAY))
    if not out:
        from tenant_agent.memory.utterance import when_said

        meant = when_said(query, time.time() if now is None else now)
        if meant is not None:
            out.append((meant - 2 * _DAY, meant + 2 * _DAY))
    return out


def fts_query(words: list[str]) -> str:
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words)


def recall(memory: Memory, query: str, limit: int = 10, since: float | None = None,
           until: float | None = None, vector: list[float] | None = None,
           kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """The `limit` best memories and episodes for `query`, most relevant first."""
    query = first_person(query)
    words = terms(query)
    qvec = vectors.normalised(vector) if vector else None
    lo, hi = since if since is not None else -1e18, until if until is not None else 1e18
    windows = time_windows(query)
    with memory.lock:
        episodes = _episodes(memory, words, qvec, lo, hi)
        memories = _memories(memory, words, qvec, lo, hi, episodes)
        scored = []
        for row in memories.values():
            lift = HELD_LIFT if row["valid_to"] is None else SUPERSEDED
            score = _fuse(row, qvec) + _when(row, windows)
            scored.append((lift * score, "memory", row))
        for row, score in _in_context(memory, episodes, qvec, lo, hi, windows):
            scored.append((score, "episode", row))
        scored.sort(key=lambda item: -item[0])
        wanted = set(kinds) if kinds else None
        results: list[dict[str, Any]] = []
        cited: set[str] = set()  # every request the results cite
        listed: set[str] = set()  # ... as their own turn (an episode's, a memory's first)
        top = scored[0][0] if scored else 1.0
        for score, source, row in scored:
            if score <= 0 or len(results) >= limit:
                break
            kind = row["kind"] if source == "memory" else "episode"
            if wanted is not None and kind not in wanted:
                continue
            if source == "episode" and row["request_id"] in listed:
                continue  # its turn is a better result's own (a context turn is listed)
            result = _result(memory, source, row, score / max(top, 1e-9))
            if source == "episode":
                _add_context(memory, result, row, lo, hi)
            if source == "memory" and result["request_ids"] and cited.issuperset(
                    result["request_ids"]):
                continue  # what it says is in the turns already listed
            cited.update(result["request_ids"])
            listed.add(result["request_ids"][0] if result["request_ids"] else "")
            results.append(result)
    return results


def _add_context(memory: Memory, result: dict[str, Any], row: dict[str, Any], lo: float,
                 hi: float) -> None:
    """The turns just before and after an episode in its conversation, cited after its own."""
    context = []
    for n, request_id, at, user, reply in memory.db.execute(
            "SELECT n, request_id, at, user, reply FROM episodes WHERE n IN (?, ?) "
            "AND at BETWEEN ? AND ? ORDER BY n", (row["n"] - 1, row["n"] + 1, lo, hi)):
        if abs(at - row["at"]) <= NEIGHBOR_GAP_S and request_id != row["request_id"]:
            context.append({"request_id": request_id, "text": user, "reply": reply,
                            "at": iso(at), "before": n < row["n"]})
    if context:
        result["context"] = context
        result["request_ids"] = [row["request_id"], *(c["request_id"] for c in context)]


def _when(row: dict[str, Any], windows: list[tuple[float, float]]) -> float:
    at = row["at"]
    return TIME_BOOST if any(lo <= at <= hi for lo, hi in windows) else 0.0


def _fuse(row: dict[str, Any], qvec: list[float] | None) -> float:
    text = float(row["match"])
    if qvec is None:
        return text
    return FTS_WEIGHT * text + max(float(row.get("cosine", 0.0)), 0.0)


class _Words:
    """The query's words in one full-text index: how rare each is there (FTS5's own inverse
    document frequency) and which rows hold it, to score a row's BM25 against what the query
    could match at all."""

    def __init__(self, db: Any, index: str, content: str, words: list[str],
                 single: bool) -> None:
        self.single = single  # cap a row that matches one word (there is a vector to weigh)
        self.rows: list[set[int]] = []
        self.ideal = 0.0
        if not words:
            return
        total = db.execute(f"SELECT count(*) FROM {content}").fetchone()[0]
        for word in words:
            rows = {r for (r,) in db.execute(f"SELECT rowid FROM {index} WHERE {index} MATCH ?",
                                             (fts_query([word]),))}
            if rows:
                self.rows.append(rows)
                self.ideal += max(math.log((total - len(rows) + 0.5) / (len(rows) + 0.5)), 1e-6)

    def text(self, rowid: int, bm25: float) -> float:
        """BM25 over the sum of the found words' IDFs (a row holding each once, at the average
        length, scores 1), at most 1; at most SINGLE_WORD for one word when capped."""
        if self.ideal <= 0 or bm25 <= 0:
            return 0.0
        score = min(bm25 / self.ideal, 1.0)
        if self.single and sum(rowid in rows for rows in self.rows) <= 1:
            score = min(score, SINGLE_WORD)
        return score


def _in_context(memory: Memory, episodes: dict[int, dict[str, Any]],
                qvec: list[float] | None, lo: float, hi: float,
                windows: list[tuple[float, float]]) -> list[tuple[dict[str, Any], float]]:
    """Each episode's score with NEIGHBOR_WEIGHT of its better neighbour's; the neighbours of
    the best candidates join the candidates (a neighbour that matched nothing itself)."""
    own = {n: _fuse(row, qvec) + _when(row, windows) for n, row in episodes.items()}
    top = sorted(own, key=lambda n: -own[n])[:NEIGHBORS_OF]
    wanted = {m for n in top for m in (n - 1, n + 1)} - set(episodes)
    if wanted:
        marks = ",".join("?" * len(wanted))
        for row in memory.db.execute(
                "SELECT e.n, e.id, e.request_id, e.at, e.user, e.reply, e.vec FROM episodes e "
                f"WHERE e.n IN ({marks}) AND e.at BETWEEN ? AND ?", (*wanted, lo, hi)):
            entry = _episode_row(row[:6], 0.0)
            if qvec is not None:
                entry["cosine"] = vectors.cosine(qvec, row[6])
            episodes[row[0]] = entry
            own[row[0]] = _fuse(entry, qvec) + _when(entry, windows)
    stale = _stale(memory, [episodes[n]["id"] for n in top])
    out = []
    for n, row in episodes.items():
        near = [own[m] for m in (n - 1, n + 1) if m in own
                and abs(episodes[m]["at"] - row["at"]) <= NEIGHBOR_GAP_S]
        score = own[n] + NEIGHBOR_WEIGHT * max(near, default=0.0)
        out.append((row, score * SUPERSEDED if row["id"] in stale else score))
    return out


def _stale(memory: Memory, episode_ids: list[str]) -> set[str]:
    """Episodes that stated only what no longer holds ("I live in Berlin", before a move)."""
    if not episode_ids:
        return set()
    marks = ",".join("?" * len(episode_ids))
    return {e for (e,) in memory.db.execute(
        "SELECT ev.episode FROM evidence ev JOIN memories m ON m.id = ev.memory "
        f"WHERE ev.episode IN ({marks}) GROUP BY ev.episode "
        "HAVING max(m.valid_to IS NULL) = 0", episode_ids)}


def _episodes(memory: Memory, words: list[str], qvec: list[float] | None, lo: float,
              hi: float) -> dict[int, dict[str, Any]]:
    db = memory.db
    found: dict[int, dict[str, Any]] = {}
    columns = "e.n, e.id, e.request_id, e.at, e.user, e.reply"
    if words:
        said = _Words(db, "episodes_fts", "episodes", words, qvec is not None)
        for row in db.execute(
                f"SELECT {columns}, -bm25(episodes_fts) FROM episodes_fts "
                "JOIN episodes e ON e.n = episodes_fts.rowid WHERE episodes_fts MATCH ? "
                "AND e.at BETWEEN ? AND ? ORDER BY rank LIMIT ?",
                (fts_query(words), lo, hi, CANDIDATES)):
            found[row[0]] = _episode_row(row[:6], said.text(row[0], row[6]))
    if qvec is None:
        return found
    count = db.execute("SELECT count(*) FROM episodes WHERE vec IS NOT NULL").fetchone()[0]
    if count <= vectors.EXACT_MAX:
        rows = db.execute(f"SELECT {columns}, e.vec FROM episodes e WHERE e.vec IS NOT NULL "
                          "AND e.at BETWEEN ? AND ?", (lo, hi)).fetchall()
    else:
        if memory.codes is None:
            memory.codes = vectors.SignCodes(db.execute(
                "SELECT n, vec FROM episodes WHERE vec IS NOT NULL"))
        keys = set(memory.codes.nearest(qvec)) | set(found)
        marks = ",".join("?" * len(keys))
        rows = db.execute(f"SELECT {columns}, e.vec FROM episodes e WHERE e.n IN ({marks}) "
                          "AND e.at BETWEEN ? AND ?", (*keys, lo, hi)).fetchall()
    for row in rows:
        entry = found.get(row[0]) or _episode_row(row[:6], 0.0)
        entry["cosine"] = vectors.cosine(qvec, row[6])
        found[row[0]] = entry
    ranked = sorted(found.values(), key=lambda e: -(e["match"] + e.get("cosine", 0.0)))
    return {e["n"]: e for e in ranked[:CANDIDATES * 2]}


def _episode_row(row: tuple[Any, ...], text: float) -> dict[str, Any]:
    n, episode, request_id, at, user, reply = row
    return {"n": n, "id": episode, "request_id": request_id, "at": at, "user": user,
            "reply": reply, "match": text}


def _memories(memory: Memory, words: list[str], qvec: list[float] | None, lo: float, hi: float,
              episodes: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    db = memory.db
    found: dict[str, dict[str, Any]] = {}
    columns = ("m.id, m.kind, m.subject, m.value, m.polarity, m.text, m.at, m.valid_from, "
               "m.valid_to, m.superseded_by, m.confidence, m.evidence, m.source")
    if words:
        held = _Words(db, "memories_fts", "memories", words, qvec is not None)
        for row in db.execute(
                f"SELECT {columns}, -bm25(memories_fts), m.n FROM memories_fts JOIN memories m "
                "ON m.n = memories_fts.rowid WHERE memories_fts MATCH ? AND m.at BETWEEN ? "
                "AND ? ORDER BY rank LIMIT ?", (fts_query(words), lo, hi, CANDIDATES)):
            found[row[0]] = _memory_row(row[:13], held.text(row[14], row[13]))
    if qvec is None:
        return found
    # A memory borrows the cosine of the best episode it came from.
    by_episode = {e["id"]: e.get("cosine", 0.0) for e in episodes.values() if "cosine" in e}
    if not by_episode:
        return found
    best = sorted(by_episode.items(), key=lambda item: -item[1])[:CANDIDATES]
    marks = ",".join("?" * len(best))
    for row in db.execute(
            f"SELECT {columns}, ev.episode FROM evidence ev JOIN memories m ON m.id = ev.memory "
            f"WHERE ev.episode IN ({marks}) AND m.at BETWEEN ? AND ?",
            (*[b[0] for b in best], lo, hi)):
        entry = found.get(row[0]) or _memory_row(row[:13], 0.0)
        entry["cosine"] = max(entry.get("cosine", 0.0), by_episode.get(row[13], 0.0))
        found[row[0]] = entry
    return found


def _memory_row(row: tuple[Any, ...], text: float) -> dict[str, Any]:
    keys = ("id", "kind", "subject", "value", "polarity", "text", "at", "valid_from",
            "valid_to", "superseded_by", "confidence", "evidence", "source")
    entry = dict(zip(keys, row, strict=True))
    entry["match"] = text
    return entry


def _result(memory: Memory, source: str, row: dict[str, Any], score: float) -> dict[str, Any]:
    if source == "episode":
        return {"id": row["id"], "kind": "episode", "text": row["user"], "reply": row["reply"],
                "at": iso(row["at"]), "score": round(score, 4),
                "request_ids": [row["request_id"]]}
    return {"id": row["id"], "kind": row["kind"], "text": row["text"], "at": iso(row["at"]),
            "score": round(score, 4), "request_ids": memory.request_ids(row["id"]),
            "subject": row["subject"], "valid_from": iso(row["valid_from"]),
            "valid_to": iso(row["valid_to"]), "superseded_by": row["superseded_by"],
            "confidence": row["confidence"], "source": row["source"]}
