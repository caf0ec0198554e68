"""Pydantic models of OpenAI function tools and tool calls, as the 0.2 SDK defines them.

An agent may return these from ``get_tools`` instead of dicts; the server sends them as
``model_dump(exclude_none=True)`` (no ``"enum": null``). They keep 0.2's narrow shape: a
property holds only ``type``, ``description`` and ``enum``, so a schema that needs ``items``,
nested objects or numeric enums is written as a plain dict, which is passed through unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator


class OpenAIFunctionPropertySchema(BaseModel):
    """One parameter of a function: its JSON Schema ``type``, ``description`` and ``enum``."""

    type: str
    description: str | None = None
    enum: list[str] | None = None


class OpenAIFunctionParametersSchema(BaseModel):
    """A function's ``parameters``: an object schema with properties and required names."""

    type: str
    properties: dict[str, OpenAIFunctionPropertySchema]
    required: list[str]


def _no_parameters() -> OpenAIFunctionParametersSchema:
    return OpenAIFunctionParametersSchema(type="object", properties={}, required=[])


class OpenAIFunctionSchema(BaseModel):
    """A function the model may call: name, description, parameters, strict mode."""

    name: str
    description: str
    parameters: OpenAIFunctionParametersSchema = Field(default_factory=_no_parameters)
    strict: bool = False


class OpenAIFunctionToolSchema(BaseModel):
    """An OpenAI tool: ``{"type": "function", "function": {...}}``."""

    type: str
    function: OpenAIFunctionSchema


# ---- tool calls (the server never needs these; agents may) ----------------------------------


class OpenAIFunctionParsedSchema(BaseModel):
    """A called function as the model wrote it: ``arguments`` is raw JSON text."""

    name: str
    arguments: str


class OpenAIFunctionCallSchema(BaseModel):
    """A called function with its arguments decoded to a dict."""

    name: str
    arguments: dict[str, Any]

    @staticmethod
    def from_openai_function_parsed_schema(
        parsed: OpenAIFunctionParsedSchema,
    ) -> tuple[OpenAIFunctionCallSchema, bool]:
        """Decode ``parsed``; returns the call and whether its arguments failed to decode.

        Arguments that are not JSON, or JSON that is not an object, become ``{}``.
        """
        try:
            arguments = json.loads(parsed.arguments)
        except (TypeError, ValueError):
            return OpenAIFunctionCallSchema(name=parsed.name, arguments={}), True
        if not isinstance(arguments, dict):
            return OpenAIFunctionCallSchema(name=parsed.name, arguments={}), True
        return OpenAIFunctionCallSchema(name=parsed.name, arguments=arguments), False


class OpenAIFunctionToolCall(BaseModel):
    """One tool call of an assistant message."""

    id: str
    type: Literal["function"] = "function"
    function: OpenAIFunctionCallSchema


class ToolResponse(BaseModel):
    """What a tool returns: text, images or videos (any may be absent)."""

    text: str | None = None
    image: list[Any] | None = None
    video: list[Any] | None = None

    @field_validator("image", "video", mode="before")
    @classmethod
    def _media_is_a_list(cls, value: Any, info: Any) -> Any:
        if value is not None and not isinstance(value, list):
            raise ValueError(
                f"{info.field_name} must be a list, but got {type(value)}. "
                f"For a single {info.field_name}, wrap it in a list: [{info.field_name}]."
            )
        return value

    def is_empty(self) -> bool:
        """Whether the response carries nothing."""
        return not self.text and not self.image and not self.video

    def is_text_only(self) -> bool:
        """Whether the response is text and nothing else."""
        return bool(self.text) and not self.image and not self.video
