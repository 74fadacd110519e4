"""The model wing's one error root. Each carries the HTTP status, code and message a caller
should see; the gateway maps them to responses in one place (gateway/errors.py).

    StatusError          (the gateway's ApiError is one too)
    └── ModelError
        ├── ProviderError    a model call that failed, or no provider could serve it
        ├── BudgetError      the operator's allowlist, rate or token budget said no
        └── RelayError       a third-party agent's call the relay refuses
"""

from __future__ import annotations


class StatusError(Exception):
    """An error that knows what a caller should see: HTTP status, code, message, headers.
    The gateway's own ApiError shares it, so both map to responses in one place."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class ModelError(StatusError):
    """Root of the model wing's errors."""
