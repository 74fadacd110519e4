"""The domain's error: what a caller sees when Burrow refuses or cannot do something — an
HTTP status, a snake_case code and a message that says what to do. The gateway turns it
(and every other StatusError) into a response in one place (gateway/errors.py)."""

from __future__ import annotations

from models.errors import StatusError


class ApiError(StatusError):
    """An error of Burrow's own, with the status, code and message the caller sees."""
