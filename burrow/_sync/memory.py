# Generated from burrow/_async/memory.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""Memories: what a tenant's agent holds of the tenant, as the tenant owns it (its own
key, or the operator's): list a page at a time, get, add, correct, delete one, delete all,
export; and observe(): pairs the product served itself (or a user's history it imports), which
the agent learns as if they had come through it. Items are dicts as the API gives them:
memories (`m_…`) and episodes (`e_…`, the tenant's own turns), each with `request_ids`, the
X-Request-Ids it came from."""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote

from burrow._sync.http import Http
from burrow._errors import InvalidRequestError

OBSERVE_CHUNK = 1000  # the most pairs the server takes in one call


class Memories:
    def __init__(self, http: Http, tenant_id: str) -> None:
        self._http = http
        self._path = f"/v1/tenants/{quote(tenant_id, safe='')}/memories"

    def _one(self, memory_id: str) -> str:
        # an empty id must never reach the collection's routes (DELETE there deletes all)
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise InvalidRequestError("a memory id is needed (an `id` from memories.list())")
        return f"{self._path}/{quote(memory_id, safe='')}"

    def list(self, *, kind: str | None = None, status: str = "current", limit: int = 50,
             cursor: str | None = None) -> dict[str, Any]:
        """One page, newest first: {"items", "next_cursor", "total"}. `kind`: preference,
        fact, event, plan, or episode (the tenant's turns); `status="all"` adds the versions
        later ones superseded; pass `next_cursor` as `cursor` for the next page."""
        params: dict[str, str] = {"status": status, "limit": str(limit)}
        if kind is not None:
            params["kind"] = kind
        if cursor is not None:
            params["cursor"] = cursor
        page: dict[str, Any] = self._http.json("GET", self._path, params=params)
        return page

    def get(self, memory_id: str) -> dict[str, Any]:
        """One memory, with `history` (the versions it superseded), or one episode."""
        item: dict[str, Any] = self._http.json("GET", self._one(memory_id))
        return item

    def add(self, text: str, *, kind: str = "fact",
            subject: str | None = None) -> dict[str, Any]:
        """Tell the agent something directly (source "api")."""
        body: dict[str, Any] = {"text": text, "kind": kind}
        if subject is not None:
            body["subject"] = subject
        item: dict[str, Any] = self._http.json("POST", self._path, json=body)
        return item

    def correct(self, memory_id: str, text: str) -> dict[str, Any]:
        """A corrected text: the new version supersedes the memory (its history is kept)."""
        item: dict[str, Any] = self._http.json("PATCH", self._one(memory_id),
                                               json={"text": text})
        return item

    def delete(self, memory_id: str) -> builtins.list[str]:
        """Delete a memory with the versions it superseded and the turns it came from (or
        one episode); the ids removed."""
        answer = self._http.json("DELETE", self._one(memory_id))
        return [str(i) for i in answer["deleted"]]

    def delete_all(self) -> dict[str, Any]:
        """Delete everything the agent holds of the tenant, with the requests not yet
        delivered to it; nothing readable stays, and the home box's snapshot is replaced at
        its next freeze. {"deleted": rows by table, "backlog_dropped", "replace_snapshot"}."""
        answer: dict[str, Any] = self._http.json("DELETE", self._path)
        return answer

    def export(self) -> dict[str, Any]:
        """Everything, as JSON: {"format": "burrow.memory/1", "memories" (every version),
        "episodes", ...}."""
        answer: dict[str, Any] = self._http.json("GET", f"{self._path}/export")
        return answer

    def observe(self, pairs: builtins.list[dict[str, Any]]) -> dict[str, int]:
        """Pairs the product served itself, for the agent to learn in order, as if they had
        come through it: each `{"request": {"method"?, "path"?, "body", "headers"?},
        "response"?: {"status", "body"}, "at"?, "request_id"?}` (bodies are strings or
        JSON values; headers only x-burrow-user-text and x-burrow-said-at). Sent 1,000 per
        call; each call is stored whole or not at all, so on an error the pairs of earlier
        calls are kept. {"accepted", "dropped" (the tenant's backlog was full)}."""
        tenant_path = self._path.removesuffix("/memories")
        totals = {"accepted": 0, "dropped": 0}
        for start in range(0, len(pairs), OBSERVE_CHUNK):
            answer = self._http.json("POST", f"{tenant_path}/observations", json={
                "pairs": pairs[start:start + OBSERVE_CHUNK]})
            for key in totals:
                totals[key] += int(answer[key])
        return totals
