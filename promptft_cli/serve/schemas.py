"""What a request may contain: start-up limits and the pydantic request models built from them.

Every model forbids unknown fields and takes strict types (no "1" for 1, no 1 for "1"), so a typo or a
wrong type is a 422 naming the field, never a silently ignored or coerced value. The input models are
built per run, because their keys are the run's text columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model


@dataclass(frozen=True)
class Limits:
    """Start-up limits on what one request may ask for (`promptft serve --help` lists the flags)."""

    max_input_tokens: int
    """Longest input in tokens (default: the run's model.max_length)."""
    on_long_input: Literal["reject", "truncate"] = "reject"
    """A longer input is a 422 (reject) or cut to max_input_tokens and marked `truncated` (truncate)."""
    max_inputs: int = 64
    """Inputs per request."""
    max_body_bytes: int = 1_000_000
    """Request body size; larger bodies get 413."""
    max_new_tokens: int = 256
    """Generation: the most tokens a request may ask for."""
    max_n: int = 4
    """/v1/completions: the most completions per prompt."""
    max_stop: int = 4
    """Generation: the most stop strings per request."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("empty text: give the text to score")
    return value


Text = Annotated[StrictStr, AfterValidator(_not_blank)]
Number = Union[StrictInt, StrictFloat]
_FORBID = ConfigDict(extra="forbid")


def input_model(columns: list[str]) -> type[BaseModel]:
    """One input row: exactly the run's text columns, each a non-empty string."""
    # Columns become aliases: a column may be any string, a field name must be an identifier.
    fields = {f"c{i}": (Text, Field(alias=c)) for i, c in enumerate(columns)}
    return create_model("InputRow", __config__=_FORBID, **fields)


def request_models(columns: list[str], limits: Limits) -> dict[str, type[BaseModel]]:
    """The body models of /v1/classify, /v1/generate and /v1/completions for a run with these columns."""
    row = input_model(columns)
    inputs = (Annotated[list[row], Field(min_length=1, max_length=limits.max_inputs)], ...)
    stop = Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=64)]], Field(max_length=limits.max_stop)]
    decoding = {
        "max_new_tokens": (Optional[Annotated[StrictInt, Field(ge=1, le=limits.max_new_tokens)]], None),
        "temperature": (Optional[Annotated[Number, Field(ge=0, le=2)]], None),
        "top_p": (Optional[Annotated[Number, Field(gt=0, le=1)]], None),
        "stop": (Optional[stop], None),
    }
    prompts = Annotated[list[Text], Field(min_length=1, max_length=limits.max_inputs)]
    completion = {
        "model": (Optional[StrictStr], None),
        "prompt": (Union[Text, prompts], ...),
        "max_tokens": (Optional[Annotated[StrictInt, Field(ge=1, le=limits.max_new_tokens)]], None),
        "temperature": (Optional[Annotated[Number, Field(ge=0, le=2)]], None),
        "top_p": (Optional[Annotated[Number, Field(gt=0, le=1)]], None),
        "n": (Annotated[StrictInt, Field(ge=1, le=limits.max_n)], 1),
        "stop": (Optional[Union[Annotated[StrictStr, Field(min_length=1, max_length=64)], stop]], None),
        "stream": (Optional[Literal[False]], None),  # accepted when false; streaming is not served
        "user": (Optional[StrictStr], None),
    }
    return {
        "classify": create_model("ClassifyRequest", __config__=_FORBID, inputs=inputs),
        "generate": create_model("GenerateRequest", __config__=_FORBID, inputs=inputs, **decoding),
        "completions": create_model("CompletionRequest", __config__=_FORBID, **completion),
    }


_BRANCH_TAGS = {"str", "int", "float", "bool", "none", "constrained-str", "constrained-int", "constrained-float"}


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a field path: ("body", "inputs", 2, "text") → "inputs[2].text"."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part in _BRANCH_TAGS:
            continue  # the union branch or validator pydantic names in the location, not a field
        else:
            path += f".{part}" if path else part
    return path or "body"


def error_body(kind: str, message: str, field: str | None = None, request_id: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """Every error the server sends: {"error": {"type", "message", "field", "request_id", ...}}."""
    return {"error": {"type": kind, "message": message, "field": field, "request_id": request_id, **extra}}

