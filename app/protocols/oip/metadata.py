"""Each function of the catalogue as an Open Inference Protocol model: its inputs and outputs."""

from __future__ import annotations

from app.compute.catalogue import Catalogue, FunctionSpec, TensorArg
from app.core.errors import UnknownFunction
from app.protocols.oip.models import MetadataTensor, ModelMetadata

MODEL_VERSION = "1"
"""The one version of every model: a function of torch never changes under its name."""
PLATFORM = "pytorch"
ANY_SHAPE = [-1]
GRAD_PREFIX = "grad_"
OPTIONAL_INPUT_GRAD_OUTPUT = "grad_output"
"""Weights of the vector-Jacobian product: an optional input, of the value output's shape."""


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


def input_names(spec: FunctionSpec) -> tuple[str, ...]:
    """Every input the model accepts: tensor arguments, tensor parameters, ``grad_output``."""
    return (
        *(arg.name for arg in spec.tensors),
        *(param.name for param in spec.tensor_params),
        OPTIONAL_INPUT_GRAD_OUTPUT,
    )


def required_inputs(spec: FunctionSpec) -> tuple[str, ...]:
    return tuple(arg.name for arg in spec.tensors if not arg.optional)


def _datatype(arg: TensorArg) -> str:
    return "INT64" if arg.kind == "index" else "FP32"


def model_metadata(spec: FunctionSpec) -> ModelMetadata:
    """Required inputs only: optional ones (tensor parameters, ``grad_output``) are listed by
    ``GET /functions/{name}``. Float tensors may be FP16, FP32, FP64 or BF16: FP32 is listed."""
    return ModelMetadata(
        name=spec.name,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=[
            MetadataTensor(name=arg.name, datatype=_datatype(arg), shape=ANY_SHAPE)
            for arg in spec.tensors
            if not arg.optional
        ],
        outputs=[MetadataTensor(name=name, datatype="FP32", shape=ANY_SHAPE) for name in output_names(spec)],
    )
