"""The chat API that agents in boxes speak to the host (`POST /v1/model/chat` on the host
services socket): a subset of OpenAI's chat completions, whatever provider answers it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FunctionCall(BaseModel):
    name: str
    arguments: str = "{}"  # a JSON object, as a string (as in OpenAI's API)


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object",
                                                                "properties": {}})


class ToolDef(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["json_schema", "json_object", "text"]
    json_schema: JsonSchemaFormat | None = None


class ChatRequest(BaseModel):
    model: str = Field(description="provider/name, e.g. anthropic/claude-sonnet-4-5, "
                                   "openai/gpt-4o-mini, openrouter/…, local/smollm2-135m")
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)

    @property
    def provider(self) -> str:
        return self.model.partition("/")[0]

    @property
    def name(self) -> str:
        """The model's name at its provider (without the `provider/` prefix)."""
        return self.model.partition("/")[2]

    def schema_format(self) -> JsonSchemaFormat | None:
        if self.response_format is None or self.response_format.type != "json_schema":
            return None
        return self.response_format.json_schema


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ChatResponse(BaseModel):
    model: str
    message: AssistantMessage
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str = "stop"  # stop | tool_calls | length (OpenAI's names, for every provider)
