"""The Redis keys model budgets use, by family. Burrow spells every key in one module
(core/keys.py), above this package: the budgets name the families they need here and are
handed an object that answers them (`core.keys.Keys`), so no key is spelled in models/."""

from __future__ import annotations

from typing import Protocol


class BudgetKeys(Protocol):
    def model_usage(self, tenant: str) -> str: ...

    def model_usage_total(self) -> str: ...

    def model_budget(self, tenant: str, window: int) -> str: ...

    def model_rate(self, tenant: str, minute: int) -> str: ...

    def model_embeds(self, tenant: str, minute: int) -> str: ...

    def model_windows(self, tenant: str) -> str: ...
