"""Triton's model configuration extension: each function as the JSON of Triton's ``ModelConfig``
(``GET /v2/models/{name}[/versions/{version}]/config``), the fields tritonclient's
``get_model_config`` and perf_analyzer read.

``max_batch_size`` is 0: no tensor has a batch dimension of Triton's kind (requests are batched
inside the service, each keeping its own shapes), so every dimension is the client's; every
``dims`` is ``[-1]`` (any shape), as in the model metadata. Inputs and outputs are those of the
metadata, with the same datatypes; optional inputs have ``optional: true``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.compute.catalogue import FunctionSpec
from app.protocols.oip.metadata import ANY_SHAPE, FLOAT, PLATFORM, model_inputs, output_names

CONFIGURATION_EXTENSION = "model_configuration"
BACKEND = "pytorch"


class ConfigInput(BaseModel):
    name: str
    data_type: str = Field(description="`TYPE_` and the metadata's datatype.")
    format: str = "FORMAT_NONE"
    dims: list[int]
    is_shape_tensor: bool = False
    allow_ragged_batch: bool = False
    optional: bool = Field(description="The input may be left out.")


class ConfigOutput(BaseModel):
    name: str
    data_type: str
    dims: list[int]
    label_filename: str = ""
    is_shape_tensor: bool = False


class VersionPolicy(BaseModel):
    latest: dict[str, int] = Field(description="`num_versions`: 1, the only version.")


class TransactionPolicy(BaseModel):
    decoupled: bool = Field(description="False: one response per request.")


class ModelConfig(BaseModel):
    name: str
    platform: str
    backend: str
    version_policy: VersionPolicy
    max_batch_size: int = Field(description="0: no batch dimension (see the description of the extension).")
    input: list[ConfigInput]
    output: list[ConfigOutput]
    model_transaction_policy: TransactionPolicy


def _type(datatype: str) -> str:
    return "TYPE_" + datatype


def model_config(spec: FunctionSpec) -> ModelConfig:
    return ModelConfig(
        name=spec.name,
        platform=PLATFORM,
        backend=BACKEND,
        version_policy=VersionPolicy(latest={"num_versions": 1}),
        max_batch_size=0,
        input=[
            ConfigInput(name=entry.name, data_type=_type(entry.datatype), dims=ANY_SHAPE, optional=entry.optional)
            for entry in model_inputs(spec)
        ],
        output=[ConfigOutput(name=name, data_type=_type(FLOAT), dims=ANY_SHAPE) for name in output_names(spec)],
        model_transaction_policy=TransactionPolicy(decoupled=False),
    )
