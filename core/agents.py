"""The agent of a box and its runs, as data: the harness and model a box's agent runs with
(`AgentConfig`, stored with the box), a run asked for (`RunCreate`) and the run's record
(`RunPublic`, kept in Redis and shown as it is). The HTTP API shows these same models
(gateway/schemas.py names them with the rest); core/runs.py runs them."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models.providers import PROVIDERS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_MODEL = re.compile(rf"^({'|'.join(PROVIDERS)})/[A-Za-z0-9._:@/-]{{1,200}}$")
_MODEL_HELP = ("provider/name: anthropic/…, openai/…, openrouter/… or local/… (the server at "
               "BURROW_LOCAL_MODEL_URL)")


def _model_name(value: str) -> str:
    if not _MODEL.match(value):
        raise ValueError(f"{value!r} is not a model name; write it as {_MODEL_HELP}, for "
                         "example local/smollm2-135m or anthropic/claude-sonnet-4-5")
    return value


ModelName = Annotated[str, AfterValidator(_model_name), Field(description=_MODEL_HELP)]


class AgentConfig(Strict):
    """The agent that runs in a box: a harness and a model. Provider keys are never part of
    it: they stay in the server's environment, and model calls get them on the host."""

    harness: Literal["burrow", "claude-code", "codex", "opencode"] = "burrow"
    model: ModelName

    @model_validator(mode="before")
    @classmethod
    def _no_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and any("key" in str(k).lower() for k in data):
            raise ValueError("provider keys never go into a box: set ANTHROPIC_API_KEY, "
                             "OPENAI_API_KEY or OPENROUTER_API_KEY in the Burrow server's "
                             "environment and leave api_key out")
        return data

    @classmethod
    def stored(cls, value: Any) -> AgentConfig | None:
        """The agent a box was created with (None if it has none or it no longer parses)."""
        try:
            return cls.model_validate(value) if value else None
        except ValueError:
            return None


MAX_SCHEMA_BYTES = 65536  # a run's response_schema is kept with the run (in Redis) for a week


def _small_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    size = len(json.dumps(schema).encode()) if schema is not None else 0
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"the schema is {size} bytes as JSON; at most {MAX_SCHEMA_BYTES}")
    return schema


class RunCreate(Strict):
    prompt: str = Field(min_length=1, max_length=200_000)
    response_schema: Annotated[dict[str, Any] | None, AfterValidator(_small_schema)] = Field(
        None, description="a JSON schema the result must match (retried when it does not); "
                          f"at most {MAX_SCHEMA_BYTES} bytes as JSON")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="default 600")
    max_turns: int | None = Field(None, ge=1, le=200, description="model calls before the "
                                                                   "run gives up; default 10")
    model: ModelName | None = Field(None, description="instead of the box's model")
    harness: Literal["burrow", "claude-code", "codex", "opencode"] | None = None
    trim: bool | None = Field(
        None, description="agent CLIs only: a trimmed tool set and prompt for small-context "
                          "models (default: on for local/ models)")


class RunUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    tool_calls: int = 0
    duration_ms: float = 0.0


class RunPublic(BaseModel):
    id: str
    box_id: str
    status: Literal["running", "completed", "failed", "timed_out"]
    result: Any = Field(None, description="the validated object when a response_schema was "
                                          "given, else the final answer's text")
    output: str = Field("", description="everything the agent said during the run")
    error: str | None = None
    usage: RunUsage = Field(default_factory=RunUsage)
    model: str
    harness: str
    created_at: float
    finished_at: float | None = None
