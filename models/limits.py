"""What the operator's policy sets for model calls, as models/ reads it. The policy lives
above this package (core/policy.py, whose `Policy` answers `ModelLimits`, and whose
`Policies` answers `LimitsSource`): models/ names the fields it reads and imports nothing of
it."""

from __future__ import annotations

from typing import Protocol


class ModelLimits(Protocol):
    @property
    def model_allowlist(self) -> tuple[str, ...] | None: ...

    @property
    def model_max_tokens(self) -> int | None: ...

    @property
    def tenant_token_budget(self) -> int | None: ...

    @property
    def token_budget_period_s(self) -> float: ...

    @property
    def model_calls_per_minute(self) -> int | None: ...

    @property
    def embed_texts_per_minute(self) -> int | None: ...

    @property
    def relay_allow_fields(self) -> tuple[str, ...]: ...

    @property
    def relay_allow_tools(self) -> tuple[str, ...]: ...

    @property
    def relay_allow_betas(self) -> tuple[str, ...]: ...

    def allows(self, model: str) -> bool:
        """Whether the allowlist lets boxes call `model`."""


class LimitsSource(Protocol):
    async def for_tenant(self, tenant: str | None) -> ModelLimits:
        """The limits that apply to `tenant` (None: calls no tenant makes)."""
