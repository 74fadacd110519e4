"""The Redis keys the knowledge base uses, by family. Burrow spells every key in one module
(core/keys.py), above this package: the base names the families it needs here and is handed
an object that answers them (`core.keys.Keys`), so no key is spelled in knowledge/."""

from __future__ import annotations

from typing import Protocol


class KnowledgeKeys(Protocol):
    def kb_tenant(self, tenant: str) -> str: ...

    def kb_refused(self) -> str: ...

    def kb_lock(self) -> str: ...

    def kb_votes(self, insight_id: str) -> str: ...

    def kb_voted(self, tenant: str) -> str: ...
