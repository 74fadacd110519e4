"""The Redis keys the box runtime uses, by family. Burrow spells every key in one module
(core/keys.py), above this package: the runtime names the families it needs here and is
handed an object that answers them (`core.keys.Keys`), so no key is spelled in boxes/."""

from __future__ import annotations

from typing import Protocol


class BoxKeys(Protocol):
    def box(self, box_id: str) -> str: ...

    def boxes(self) -> str: ...

    def owner_boxes(self, owner: str) -> str: ...

    def closed_owners(self) -> str: ...

    def uid_counter(self) -> str: ...

    def box_lock(self, box_id: str) -> str: ...
