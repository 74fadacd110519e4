"""Agent runs besides the HTTP calls: the request body and typed results."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from burrow._errors import BurrowError
from burrow._models import Agent, Run

Schema = type[BaseModel] | dict[str, Any] | None


def _is_model(schema: Schema) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def run_body(prompt: str, response_schema: Schema, timeout_s: float | None,
             max_turns: int | None, model: str | None, harness: Agent | str | None,
             mcp_servers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    if isinstance(response_schema, type):
        if not issubclass(response_schema, BaseModel):
            raise TypeError("response_schema must be a pydantic model class or a JSON schema "
                            f"dict, not {response_schema!r}")
        schema: dict[str, Any] | None = response_schema.model_json_schema()
    else:
        schema = response_schema
    body: dict[str, Any] = {"prompt": prompt, "response_schema": schema,
                            "timeout_s": timeout_s, "max_turns": max_turns, "model": model,
                            "harness": harness.value if isinstance(harness, Agent) else harness,
                            "mcp_servers": mcp_servers}
    return {k: v for k, v in body.items() if v is not None or k == "prompt"}


def parse_run(data: Any, response_schema: Schema) -> Run[Any]:
    """The Run; with a pydantic model as response_schema, `result` is an instance of it."""
    if not _is_model(response_schema):
        return Run[Any].model_validate(data)
    assert isinstance(response_schema, type)
    if isinstance(data, dict) and data.get("status") != "completed":
        data = {**data, "result": None}
    try:
        return Run[response_schema].model_validate(data)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise BurrowError(f"the run's result does not fit {response_schema.__name__}: {exc}",
                          code="invalid_result") from None
