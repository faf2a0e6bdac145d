"""An inference request of the Open Inference Protocol as plain values, whatever its wire form, to
the ``Job`` every protocol meets at; a ``Result`` to the reply's outputs.

Each face decodes its own wire form into one ``InferRequest`` (REST's JSON and binary tensors in
``app.protocols.oip.codec``, gRPC's protobuf in ``app.protocols.oip.grpc``): its input tensors as
arrays (their datatypes, shapes and sizes checked within the limits), its parameters as plain
values, the outputs it asks for, its id. Everything after that is here, once: the model's name and
version against the model served, the rule for parameters that are not the function's
(``parameters.py``), the function's parameters, ``grad``, ``grad_output``, a chained activation
(``activation`` and ``activation.<name>``), Triton's ``timeout`` and ``priority``, the inputs the
model accepts and requires, the outputs requested and their form. And, on the way back, the one
list of outputs each face encodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from app.compute.catalogue import Catalogue, FunctionSpec
from app.compute.catalogue.params import validate_params
from app.compute.chaining import Chained, chain_activation
from app.compute.jobs import Job, Result, build_job
from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc, ProblemList
from app.protocols.oip.metadata import (
    MODEL_VERSION,
    OPTIONAL_INPUT_GRAD_OUTPUT,
    grad_output_name,
    input_names,
    output_names,
    value_output,
)
from app.protocols.oip.parameters import (
    IGNORED,
    PRIORITY,
    TIMEOUT,
    check_priority,
    listed,
    microseconds_timeout,
    sort_parameters,
)
from app.protocols.oip.tensors import DATATYPE_OF, FLOAT_DATATYPES
from app.protocols.tensors import decode_tensor
from app.serving.codec import DecodeOptions

ACTIVATION = "activation"
"""The request parameter naming an activation to apply to a loss's ``input`` first."""
GRAD = "grad"
BINARY_DATA_OUTPUT = "binary_data_output"
RESERVED_PARAMETERS = (GRAD, BINARY_DATA_OUTPUT, ACTIVATION, PRIORITY, TIMEOUT)
"""The request's own parameters besides the function's."""
BINARY_DATA_SIZE = "binary_data_size"
"""An input's parameter: the size of its raw bytes (read by each face as it decodes the tensor)."""
BINARY_DATA = "binary_data"
"""An output's parameter: true to receive it as raw bytes."""
WARNINGS = "warnings"
"""The reply's parameter holding what torch warned while computing."""
_INPUT_PARAMETERS = frozenset((BINARY_DATA_SIZE,))
_OUTPUT_PARAMETERS = frozenset((BINARY_DATA,))
_NONE: Mapping[str, Any] = MappingProxyType({})


class InputTensor(NamedTuple):
    """One input, decoded: its array is what the binary extension's bytes give for the same tensor."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray
    parameters: Mapping[str, Any] = _NONE
    """Its parameters as plain values, but the ``binary_data_size`` its face has read."""


class RequestedOutput(NamedTuple):
    name: str
    parameters: Mapping[str, Any]


class InferRequest(NamedTuple):
    """An inference request as plain values, whatever its wire form."""

    model_name: str | None
    """None when the request names none (REST: the path names it)."""
    model_version: str | None
    id: str | None
    parameters: Mapping[str, Any]
    inputs: tuple[InputTensor, ...]
    outputs: tuple[RequestedOutput, ...] | None
    """None when the request names no output: every output the model produces."""
    raw: bool
    """The outputs' form when the request does not say (``binary_data_output``, ``binary_data``):
    raw bytes for gRPC's ``raw_input_contents`` (as Triton answers its clients), else JSON data or
    typed contents."""


class Requested(NamedTuple):
    """One output the reply carries, and whether as raw bytes."""

    name: str
    binary: bool


class InferDecoded(NamedTuple):
    job: Job
    request_id: str | None
    outputs: tuple[Requested, ...]
    json_outputs: int
    """How many of the outputs travel as JSON ``data`` or typed contents (not raw bytes)."""
    ignored: list[str]
    """Where the request's ignored parameters were (``parameters.sort_parameters``)."""


class OutputTensor(NamedTuple):
    """One output of the reply: float values of ``datatype`` (float32 holding exact bfloat16
    numbers for BF16), as raw bytes when ``binary``."""

    name: str
    datatype: str
    array: np.ndarray
    binary: bool = False


def _flag(parameters: dict[str, Any], name: str, loc: Loc, default: bool = False) -> bool:
    value = parameters.pop(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest.at((*loc, name), "must be true or false", "invalid_param")
    return value


def _accepts(spec: FunctionSpec, name: str) -> bool:
    """``name in input_names(spec)``, without building the tuple on every input."""
    if name in spec.tensor_names or name == OPTIONAL_INPUT_GRAD_OUTPUT:
        return True
    return any(param.name == name for param in spec.tensor_params)


class _Inputs:
    """The request's inputs by name: each one the model accepts, once, with its parameters sorted."""

    def __init__(self, spec: FunctionSpec, options: DecodeOptions) -> None:
        self.spec = spec
        self.options = options
        self.arrays: dict[str, np.ndarray] = {}
        self.locs: dict[str, Loc] = {}
        self.datatypes: dict[str, str] = {}

    def add(self, tensor: InputTensor, ignored: list[str]) -> None:
        loc: Loc = ("inputs", tensor.name)
        if not _accepts(self.spec, tensor.name):
            accepted = input_names(self.spec)
            raise InvalidRequest.at(
                loc,
                f"{self.spec.name} has no input {tensor.name!r} (accepted: {', '.join(accepted)})",
                "unknown_tensor",
            )
        if tensor.name in self.arrays:
            raise InvalidRequest.at(loc, f"input {tensor.name!r} is given twice", "duplicate_tensor")
        if tensor.parameters:
            sort_parameters(tensor.parameters, _INPUT_PARAMETERS, (*loc, "parameters"), ignored)
        self.arrays[tensor.name] = tensor.array
        self.locs[tensor.name] = loc
        self.datatypes[tensor.name] = tensor.datatype

    def finish(self, tensor_defaults: dict[str, Any]) -> None:
        missing = [arg.name for arg in self.spec.tensors if arg.name not in self.arrays and not arg.optional]
        if missing:
            problems = ProblemList()
            for name in missing:
                problems.add(("inputs", name), f"required by {self.spec.name}", "missing")
            problems.raise_if_any()
        for name, default in tensor_defaults.items():
            if name not in self.arrays:
                loc: Loc = ("inputs", name)
                self.arrays[name] = decode_tensor(default, loc, self.options.limits)
                self.locs[name] = loc

    def compute_dtype(self) -> FloatDType:
        """The one floating-point datatype of the inputs; the default when every input is integer."""
        kinds = {FLOAT_DATATYPES[d] for d in self.datatypes.values() if d in FLOAT_DATATYPES}
        if len(kinds) > 1:
            floats = {name: FLOAT_DATATYPES[d] for name, d in self.datatypes.items() if d in FLOAT_DATATYPES}
            named = ", ".join(f"{name} {DATATYPE_OF[dtype]}" for name, dtype in floats.items())
            raise InvalidRequest.at(
                ("inputs",), f"floating-point inputs must share one datatype, got {named}", "mixed_datatypes"
            )
        return kinds.pop() if kinds else self.options.default_dtype


def _gradients_produced(spec: FunctionSpec, arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Arguments the engine differentiates: integer class indices have no gradient."""
    produced = []
    for name in spec.differentiable:
        arg = spec.tensor(name)
        arr = arrays.get(name)
        if arr is None or (arg is not None and arg.kind != "float" and arr.dtype.kind in "iu"):
            continue
        produced.append(name)
    return tuple(produced)


def _requested(
    request: InferRequest,
    spec: FunctionSpec,
    grad: bool,
    grads: tuple[str, ...],
    binary_default: bool,
    ignored: list[str],
) -> tuple[Requested, ...]:
    produced = [value_output(spec), *(grad_output_name(name) for name in grads)]  # no grads without grad
    if request.outputs is None:
        return tuple(Requested(name, binary_default) for name in produced)
    if not request.outputs:
        raise InvalidRequest.at(("outputs",), "name at least one output, or leave outputs out for all", "no_outputs")
    known = output_names(spec)
    chosen: list[Requested] = []
    for entry in request.outputs:
        loc: Loc = ("outputs", entry.name)
        if entry.name not in known:
            raise InvalidRequest.at(
                loc, f"{spec.name} has no output {entry.name!r} (outputs: {', '.join(known)})", "unknown_output"
            )
        if entry.name not in produced:
            why = "set the parameter grad to true" if not grad else "its argument holds integers: it has no gradient"
            raise InvalidRequest.at(loc, f"not produced by this request: {why}", "output_not_produced")
        if any(c.name == entry.name for c in chosen):
            raise InvalidRequest.at(loc, f"output {entry.name!r} is requested twice", "duplicate_output")
        binary = binary_default
        if entry.parameters:
            own = sort_parameters(entry.parameters, _OUTPUT_PARAMETERS, (*loc, "parameters"), ignored)
            binary = _flag(own, BINARY_DATA, (*loc, "parameters"), binary_default)
        chosen.append(Requested(entry.name, binary))
    return tuple(chosen)


class _RequestParameters:
    """The names a request's ``parameters`` may hold for ``spec``: the function's (a torch keyword
    argument it refuses included, so that its refusal says why), the protocol's, and a chained
    activation's ``activation.<name>``. Iterated: the names a misspelling is looked for among."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        spec = self.spec
        return (
            name in RESERVED_PARAMETERS
            or spec.param(name) is not None
            or name.startswith(ACTIVATION + ".")
            or Catalogue.refusal(spec, name) is not None
        )

    def __iter__(self) -> Iterator[str]:
        yield from RESERVED_PARAMETERS
        yield from (param.name for param in self.spec.params)

    def __len__(self) -> int:
        return len(RESERVED_PARAMETERS) + len(self.spec.params)


def _check_model(request: InferRequest, spec: FunctionSpec, catalogue: Catalogue) -> None:
    """A request's ``model_name`` and ``model_version``, when it names them, must be the model served."""
    if request.model_name is not None:
        named = catalogue.find(request.model_name)
        if named is None or named.name != spec.name:
            raise InvalidRequest.at(
                ("model_name",),
                f"{request.model_name[:100]!r} is not the path's model {spec.name!r}",
                "model_mismatch",
            )
    if request.model_version is not None and request.model_version != MODEL_VERSION:
        raise InvalidRequest.at(
            ("model_version",),
            f"{request.model_version[:20]!r} is not the path's version {MODEL_VERSION!r} of {spec.name}",
            "model_mismatch",
        )


def _chained(parameters: dict[str, Any], spec: FunctionSpec, options: DecodeOptions) -> Chained | None:
    """``"activation": "sigmoid"`` and its parameters as ``"activation.<name>"`` (the protocol's
    parameters are scalars); taken out of ``parameters``. Tensor parameters keep their defaults."""
    if not parameters:
        return None
    name = parameters.pop(ACTIVATION, None)
    prefix = ACTIVATION + "."
    given = {key[len(prefix) :]: parameters.pop(key) for key in [k for k in parameters if k.startswith(prefix)]}
    if name is None:
        if given:
            first = sorted(given)[0]
            raise InvalidRequest.at(("parameters", prefix + first), "needs the parameter activation", "unused_param")
        return None
    if not isinstance(name, str):
        raise InvalidRequest.at(("parameters", ACTIVATION), "must be an activation's name", "invalid_param")
    activation = options.catalogue.find(name)
    for param in activation.tensor_params if activation is not None else ():
        if param.name in given:
            raise InvalidRequest.at(
                ("parameters", prefix + param.name),
                "a tensor parameter of a chained activation cannot be sent over this protocol; its default applies",
                "tensor_parameter",
            )
    return chain_activation(
        options.catalogue,
        spec,
        name,
        given,
        ("parameters", ACTIVATION),
        ("parameters", ACTIVATION),
        lambda value, loc: np.asarray(value, dtype=np.float64),
    )


def infer_job(request: InferRequest, spec: FunctionSpec, options: DecodeOptions) -> InferDecoded:
    """A checked ``Job`` for ``spec`` from a decoded request, and the outputs to send back."""
    _check_model(request, spec, options.catalogue)
    ignored: list[str] = []
    grad = False
    binary_default = request.raw
    chained = None
    timeout = None
    parameters: dict[str, Any] = {}
    if request.parameters:
        parameters = sort_parameters(request.parameters, _RequestParameters(spec), ("parameters",), ignored)
        grad = _flag(parameters, GRAD, ("parameters",))
        binary_default = _flag(parameters, BINARY_DATA_OUTPUT, ("parameters",), binary_default)
        if PRIORITY in parameters:
            check_priority(parameters.pop(PRIORITY), ("parameters", PRIORITY))
        if TIMEOUT in parameters:
            timeout = microseconds_timeout(parameters.pop(TIMEOUT), ("parameters", TIMEOUT))
        for param in spec.tensor_params:
            if param.name in parameters:
                raise InvalidRequest.at(
                    ("parameters", param.name), f"a tensor: send it as the input {param.name!r}", "tensor_parameter"
                )
        chained = _chained(parameters, spec, options)
    scalars, tensor_defaults = validate_params(spec, parameters, ("parameters",))
    inputs = _Inputs(spec, options)
    for tensor in request.inputs:
        inputs.add(tensor, ignored)
    inputs.finish(tensor_defaults)
    locs = inputs.locs
    for name in scalars:
        locs[name] = ("parameters", name)
    arrays = inputs.arrays
    grad_weights = arrays.pop(OPTIONAL_INPUT_GRAD_OUTPUT, None)
    if grad_weights is not None and not grad:
        raise InvalidRequest.at(("inputs", OPTIONAL_INPUT_GRAD_OUTPUT), "needs the parameter grad", "unused_tensor")
    produced = _gradients_produced(spec, arrays) if grad else ()
    outputs = _requested(request, spec, grad, produced, binary_default, ignored)
    dtype = inputs.compute_dtype()
    job = build_job(spec, arrays, scalars, locs, dtype, grad, grad_weights, chained, timeout)
    return InferDecoded(job, request.id, outputs, sum(not output.binary for output in outputs), ignored)


def reply_outputs(decoded: InferDecoded, result: Result) -> list[OutputTensor]:
    """The outputs requested, in the order requested, in the job's datatype."""
    job = decoded.job
    datatype = DATATYPE_OF[job.dtype]
    values: dict[str, np.ndarray] = {value_output(job.spec): result.output}
    if result.grads:
        for name, grad in result.grads.items():
            values[grad_output_name(name)] = grad
    return [OutputTensor(output.name, datatype, values[output.name], output.binary) for output in decoded.outputs]


def reply_parameters(decoded: InferDecoded, result: Result) -> dict[str, list[str]]:
    """The reply's own parameters, when it has some: ``warnings`` (torch's, each as a torch user
    would see it) and ``ignored_parameters`` (where the request's ignored parameters were)."""
    parameters: dict[str, list[str]] = {}
    if result.warnings:
        parameters[WARNINGS] = list(result.warnings)
    if decoded.ignored:
        parameters[IGNORED] = listed(decoded.ignored)
    return parameters
