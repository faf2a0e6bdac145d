"""Each function of the catalogue as an Open Inference Protocol model: its inputs and outputs.

Every input the model accepts is listed, the optional ones with ``parameters.optional: true`` (as
Triton's model configuration marks them). A datatype stands for its kind: ``FP32`` for every
floating-point datatype (FP16, FP32, FP64, BF16: a request's floating-point inputs share one, and
its outputs have it), ``INT64`` for every integer one (INT8 to UINT64). A tensor whose elements may
be of either kind, with different meanings (cross_entropy's ``target``: class indices or class
probabilities), lists both in ``parameters.datatypes`` (``"INT64,FP32"``), ``datatype`` being the
first."""

from __future__ import annotations

from typing import NamedTuple

from app.compute.catalogue import Catalogue, FunctionSpec, TensorArg
from app.core.errors import UnknownFunction
from app.protocols.oip.models import MetadataTensor, ModelMetadata, Parameter

MODEL_VERSION = "1"
"""The one version of every model: a function of torch never changes under its name."""
PLATFORM = "pytorch"
ANY_SHAPE = [-1]
GRAD_PREFIX = "grad_"
OPTIONAL_INPUT_GRAD_OUTPUT = "grad_output"
"""Weights of the vector-Jacobian product: an optional input, of the value output's shape."""
FLOAT = "FP32"
INTEGER = "INT64"
OPTIONAL = "optional"
DATATYPES = "datatypes"


class ModelInput(NamedTuple):
    name: str
    datatypes: tuple[str, ...]
    """The kinds it accepts, as ``FLOAT`` and ``INTEGER``: its metadata datatype is the first."""
    optional: bool

    @property
    def datatype(self) -> str:
        return self.datatypes[0]


def find_model(catalogue: Catalogue, name: str, version: str | None = None) -> FunctionSpec:
    """The function a model name (and version) names; 404 with the closest names when none."""
    spec = catalogue.find(name)
    if spec is None:
        close = catalogue.suggest(name)
        hint = f"; closest: {', '.join(close)}" if close else "; see GET /functions"
        raise UnknownFunction.at(("model",), f"unknown model {name[:100]!r}{hint}", "unknown_model")
    if version is not None and version != MODEL_VERSION:
        raise UnknownFunction.at(
            ("model", "version"),
            f"{spec.name} has no version {version[:20]!r} (only {MODEL_VERSION!r})",
            "unknown_model",
        )
    return spec


def value_output(spec: FunctionSpec) -> str:
    """The name of the output that holds the function's value."""
    return "output" if spec.kind == "activation" else "loss"


def grad_output_name(argument: str) -> str:
    return GRAD_PREFIX + argument


def output_names(spec: FunctionSpec) -> tuple[str, ...]:
    """Every output the model can produce: the value, then one gradient per differentiable argument."""
    return (value_output(spec), *(grad_output_name(name) for name in spec.differentiable))


def _datatypes(arg: TensorArg) -> tuple[str, ...]:
    return {"float": (FLOAT,), "index": (INTEGER,), "float_or_index": (INTEGER, FLOAT)}[arg.kind]


def model_inputs(spec: FunctionSpec) -> tuple[ModelInput, ...]:
    """Every input the model accepts: tensor arguments, tensor parameters, ``grad_output``."""
    return (
        *(ModelInput(arg.name, _datatypes(arg), arg.optional) for arg in spec.tensors),
        *(ModelInput(param.name, (FLOAT,), not param.required) for param in spec.tensor_params),
        ModelInput(OPTIONAL_INPUT_GRAD_OUTPUT, (FLOAT,), True),
    )


def input_names(spec: FunctionSpec) -> tuple[str, ...]:
    return tuple(entry.name for entry in model_inputs(spec))


def required_inputs(spec: FunctionSpec) -> tuple[str, ...]:
    return tuple(entry.name for entry in model_inputs(spec) if not entry.optional)


def _input_parameters(entry: ModelInput) -> dict[str, Parameter] | None:
    parameters: dict[str, Parameter] = {}
    if entry.optional:
        parameters[OPTIONAL] = True
    if len(entry.datatypes) > 1:
        parameters[DATATYPES] = ",".join(entry.datatypes)
    return parameters or None


def model_metadata(spec: FunctionSpec) -> ModelMetadata:
    return ModelMetadata(
        name=spec.name,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=[
            MetadataTensor(
                name=entry.name, datatype=entry.datatype, shape=ANY_SHAPE, parameters=_input_parameters(entry)
            )
            for entry in model_inputs(spec)
        ],
        outputs=[MetadataTensor(name=name, datatype=FLOAT, shape=ANY_SHAPE) for name in output_names(spec)],
    )
