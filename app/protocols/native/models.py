"""Request and reply envelopes of /activate and /loss. Tensors pass through unvalidated here
(``Any``) and are decoded in bulk by ``app.protocols.tensors``; the schema documents them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from app.core.config import FloatDType
from app.core.limits import MAX_NAME
from app.protocols.decoding import strings_at_most
from app.protocols.tensors import Encoding

_NUMBER_OR_TOKEN: dict[str, Any] = {
    "anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
}
TENSOR_SCHEMA: dict[str, Any] = {
    "title": "Tensor",
    "description": (
        "A number, a nested list of numbers of any rank, or the object form "
        '{"shape": [...], "dtype": "float32", "data": "<base64 little-endian C-order bytes>" or a flat list}. '
        'Non-finite values travel as the strings "NaN", "Infinity", "-Infinity".'
    ),
    "anyOf": [
        _NUMBER_OR_TOKEN,
        {"type": "array", "items": {}},
        {
            "type": "object",
            "properties": {
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "dtype": {
                    "type": "string",
                    "enum": ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8"],
                },
                "data": {"anyOf": [{"type": "string", "contentEncoding": "base64"}, {"type": "array", "items": {}}]},
            },
            "required": ["shape", "data"],
            "additionalProperties": False,
        },
    ],
}

Tensor = Annotated[Any, WithJsonSchema(TENSOR_SCHEMA)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
"""A function's, an argument's or a parameter's name (``app.core.limits``)."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str = Field(
        max_length=MAX_NAME,
        description="torch.nn.functional name (canonical) or torch.nn class name; case-insensitive.",
    )
    params: dict[Name, Any] = Field(
        default_factory=dict, description="Keyword arguments of the torch function; see GET /functions/{name}."
    )
    grad: StrictBool = Field(default=False, description="Also return gradients.")
    grad_output: Tensor | None = Field(
        default=None, description="Weights of the vector-Jacobian product; default ones of the output's shape."
    )
    dtype: FloatDType | None = Field(
        default=None, description="Dtype of every floating-point tensor; default from the server settings."
    )
    encoding: Encoding = Field(default="json", description="'base64' returns tensors in the base64 object form.")


class ActivateRequest(_Request):
    input: Tensor = Field(description="The input tensor.")


class ChainedActivation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str = Field(max_length=MAX_NAME, description="An activation (torch's or a plugin), by name or alias.")
    params: dict[Name, Any] = Field(default_factory=dict, description="Its parameters; see GET /functions/{name}.")


class LossRequest(_Request):
    input: Tensor | None = Field(default=None, description="The `input` argument, where the loss has one.")
    target: Tensor | None = Field(default=None, description="The `target` argument, where the loss has one.")
    inputs: dict[Name, Tensor] = Field(
        default_factory=dict,
        description="Every other tensor argument by its torch.nn.functional name (var, input1, anchor, log_probs...).",
    )
    activation: Annotated[ChainedActivation | str | None, strings_at_most(MAX_NAME)] = Field(
        default=None,
        description="An activation applied to `input` first (its name, or {function, params}): the loss is "
        "loss(activation(input), target), and grad['input'] the gradient with respect to the raw input, through both.",
    )


class _Reply(BaseModel):
    function: str
    shape: list[int] = Field(description="Shape of the output (or of the loss).")
    dtype: FloatDType
    warnings: list[str] | None = Field(
        default=None, description="What torch warned while computing (its text), when it did; absent otherwise."
    )


class ActivateResponse(_Reply):
    output: Tensor
    grad: Tensor | None = Field(description="Vector-Jacobian product with respect to `input`, when asked.")
    param_grads: dict[str, Tensor] | None = Field(
        default=None,
        description="Gradients of the differentiable tensor parameters (PReLU's `weight`), when asked; "
        "absent for functions without one.",
    )


class LossResponse(_Reply):
    loss: Tensor = Field(description="A number, or a tensor when reduction is 'none'.")
    grad: dict[str, Tensor] | None = Field(description="Gradient per differentiable tensor argument, when asked.")


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body, field, index...")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    error: str = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable summary.")
    details: list[ErrorDetail] = Field(description="The problems, capped; `truncated` says if more were found.")
    truncated: bool = False
