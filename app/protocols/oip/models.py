"""The Open Inference Protocol's JSON objects (KServe V2 REST), as the specification names them.

Tensor ``data`` passes through unvalidated here (``Any``) and is decoded in bulk by
``app.protocols.oip.tensors``; the schema documents it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, WithJsonSchema

from app.core.limits import MAX_INFERENCE_ID, MAX_NAME, MAX_PARAM_STRING, MAX_TYPE_NAME
from app.protocols.decoding import strings_at_most
from app.protocols.oip.tensors import DATATYPES

Parameter = Annotated[StrictBool | StrictInt | StrictFloat | StrictStr, strings_at_most(MAX_PARAM_STRING)]
Parameters = dict[Annotated[str, Field(max_length=MAX_NAME)], Parameter]

_DATA_SCHEMA: dict[str, Any] = {
    "description": (
        "The tensor's elements in row-major order, flat or nested; non-finite values as the strings "
        '"NaN", "Infinity", "-Infinity". Left out when the binary tensor data extension carries the '
        "tensor (`parameters.binary_data_size`)."
    ),
    "type": "array",
    "items": {},
}
TensorData = Annotated[Any, WithJsonSchema(_DATA_SCHEMA)]


class _Object(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Object):
    name: str = Field(max_length=MAX_NAME, description="The function's tensor argument, e.g. `input` or `target`.")
    shape: list[Annotated[StrictInt, Field(ge=0)]] = Field(description="The tensor's shape.")
    datatype: str = Field(max_length=MAX_TYPE_NAME, description=f"One of {', '.join(DATATYPES)}.")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size`: the tensor's bytes follow the JSON header (binary extension)."
    )
    data: TensorData = None


class RequestOutput(_Object):
    name: str = Field(max_length=MAX_NAME, description="`output` or `loss`, or `grad_<argument>` when `grad` is true.")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data`: true to receive this output as raw bytes (binary extension)."
    )


class InferenceRequest(_Object):
    model_name: StrictStr | None = Field(
        default=None, max_length=MAX_NAME, description="When given, the path's model (its name or an alias)."
    )
    model_version: StrictStr | None = Field(default=None, max_length=MAX_NAME, description="When given, `1`.")
    id: StrictStr | None = Field(default=None, max_length=MAX_INFERENCE_ID, description="Echoed in the response.")
    parameters: Parameters | None = Field(
        default=None,
        description="The function's parameters (see `GET /functions/{name}`), `grad` (true for gradients), "
        "`binary_data_output` (true for every output as raw bytes) and, for a loss, `activation` (an activation "
        "applied to `input` first) with its parameters as `activation.<name>`.",
    )
    inputs: list[RequestInput] = Field(description="One tensor per tensor argument of the function.")
    outputs: list[RequestOutput] | None = Field(default=None, description="Default: every output produced.")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(default=None, description="`binary_data_size` when sent as raw bytes.")
    data: TensorData = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = Field(default=None, description="The request's `id`, when it had one.")
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="`warnings`: what torch warned while computing (its text), when it did; "
        "`ignored_parameters`: the request's parameters that were ignored (not the function's, nor "
        "close to one of its names), by location, when there were some.",
    )
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a variable dimension; `[-1]` for a tensor of any shape.")
    parameters: Parameters | None = Field(
        default=None,
        description="`optional`: true for an input that may be left out; `datatypes`: the kinds of element "
        'an input accepts when it accepts two (`"INT64,FP32"`), `datatype` being the first.',
    )


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class OipError(BaseModel):
    error: str = Field(description="What is wrong, naming the offending field.")
