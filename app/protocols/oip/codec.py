"""The Open Inference Protocol's inference request to a ``Job``, and a ``Result`` to its response.

The same ``Job`` as ``/activate`` and ``/loss`` build, so the same batcher and engine compute it.
A model is a function of the catalogue; its inputs are the function's tensor arguments (and
tensor parameters, and ``grad_output``); its parameters travel in the request's ``parameters``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import orjson

from app.compute.catalogue import Catalogue, FunctionSpec
from app.compute.catalogue.params import validate_params
from app.compute.chaining import Chained, chain_activation
from app.compute.jobs import Job, Result, build_job
from app.compute.service import job_size
from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc, ProblemList, TooLarge
from app.protocols.decoding import validated
from app.protocols.oip.binary import HEADER_LENGTH, BinaryReader, SplitBody, split_body
from app.protocols.oip.metadata import (
    MODEL_VERSION,
    OPTIONAL_INPUT_GRAD_OUTPUT,
    find_model,
    grad_output_name,
    input_names,
    model_inputs,
    output_names,
    value_output,
)
from app.protocols.oip.models import InferenceRequest, RequestInput
from app.protocols.oip.parameters import (
    IGNORED,
    PRIORITY,
    TIMEOUT,
    check_priority,
    listed,
    microseconds_timeout,
    sort_parameters,
)
from app.protocols.oip.tensors import (
    DATATYPE_OF,
    FLOAT_DATATYPES,
    check_datatype,
    element_count,
    from_bytes,
    from_json,
    item_size,
    to_bytes,
    to_json_data,
)
from app.protocols.parsing import parse_apart, parse_object
from app.protocols.scan import BodyScan, scan_body
from app.protocols.tensors import decode_tensor
from app.serving.codec import Body, DecodeOptions, Encoded, RequestMeta, Subject

PROTOCOL = "oip"
JSON_MEDIA_TYPE = "application/json"
BINARY_MEDIA_TYPE = "application/octet-stream"

ACTIVATION = "activation"
"""The request parameter naming an activation to apply to a loss's ``input`` first."""
RESERVED_PARAMETERS = ("grad", "binary_data_output", ACTIVATION, PRIORITY, TIMEOUT)
"""The request's own parameters besides the function's."""
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
_INPUT_PARAMETERS = frozenset((BINARY_DATA_SIZE,))
_OUTPUT_PARAMETERS = frozenset((BINARY_DATA,))


class Requested(NamedTuple):
    """One output the reply carries, and whether as raw bytes."""

    name: str
    binary: bool


class InferDecoded(NamedTuple):
    job: Job
    request_id: str | None
    outputs: tuple[Requested, ...]
    json_outputs: int
    """How many of the outputs travel as JSON ``data``."""
    ignored: list[str]
    """Where the request's ignored parameters were (``parameters.sort_parameters``)."""


def _envelope(header: bytes, parsed: dict[str, Any] | None) -> InferenceRequest:
    """The request's JSON object; bare ``NaN``/``Infinity`` tokens, as tritonclient writes them for
    non-finite data, are read as this service's non-finite strings (``parse_object``)."""
    return validated(InferenceRequest, parse_object(header, bare_non_finite=True) if parsed is None else parsed)


def _flag(parameters: dict[str, Any], name: str, loc: Loc) -> bool:
    value = parameters.pop(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest.at((*loc, name), "must be true or false", "invalid_param")
    return value


def _accepts(spec: FunctionSpec, name: str) -> bool:
    """``name in input_names(spec)``, without building the tuple on every input."""
    if name in spec.tensor_names or name == OPTIONAL_INPUT_GRAD_OUTPUT:
        return True
    return any(param.name == name for param in spec.tensor_params)


class _Inputs:
    """Decodes the request's input tensors into arrays, checking names, sizes and datatypes."""

    def __init__(
        self, spec: FunctionSpec, split: SplitBody, scan: BodyScan, options: DecodeOptions, ignored: list[str]
    ) -> None:
        self.spec = spec
        self.ignored = ignored
        self.scan = scan
        self.options = options
        self.reader = BinaryReader(split.binary)
        self.arrays: dict[str, np.ndarray] = {}
        self.locs: dict[str, Loc] = {}
        self.datatypes: dict[str, str] = {}
        self.total = 0

    def add(self, entry: RequestInput) -> None:
        loc: Loc = ("inputs", entry.name)
        if not _accepts(self.spec, entry.name):
            accepted = input_names(self.spec)
            raise InvalidRequest.at(
                loc, f"{self.spec.name} has no input {entry.name!r} (accepted: {', '.join(accepted)})", "unknown_tensor"
            )
        if entry.name in self.arrays:
            raise InvalidRequest.at(loc, f"input {entry.name!r} is given twice", "duplicate_tensor")
        check_datatype(entry.datatype, (*loc, "datatype"))
        limits = self.options.limits
        count = element_count(entry.shape, (*loc, "shape"), limits)
        self.total += count
        if self.total > self.options.max_total_elements:
            raise TooLarge.at(
                loc,
                f"the request's tensors exceed {self.options.max_total_elements} elements in all",
                "too_many_elements",
            )
        size = None
        if entry.parameters:
            own = sort_parameters(entry.parameters, _INPUT_PARAMETERS, (*loc, "parameters"), self.ignored)
            size = own.get(BINARY_DATA_SIZE)
        if size is not None:
            size_loc = (*loc, "parameters", BINARY_DATA_SIZE)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidRequest.at(size_loc, "must be a non-negative integer", "invalid_param")
            if entry.data is not None:
                raise InvalidRequest.at((*loc, "data"), "give data or binary_data_size, not both", "invalid_data")
            raw = self.reader.take(size, size_loc)
            arr = from_bytes(raw, entry.shape, entry.datatype, size_loc)
        elif entry.data is None:
            raise InvalidRequest.at((*loc, "data"), "required (or binary_data_size in parameters)", "missing")
        else:
            arr = from_json(entry.data, entry.shape, entry.datatype, (*loc, "data"), limits, self.scan)
        self.arrays[entry.name] = arr
        self.locs[entry.name] = loc
        self.datatypes[entry.name] = entry.datatype

    def finish(self, tensor_defaults: dict[str, Any]) -> None:
        self.reader.finish()
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
            listed = ", ".join(f"{name} {DATATYPE_OF[dtype]}" for name, dtype in floats.items())
            raise InvalidRequest.at(
                ("inputs",), f"floating-point inputs must share one datatype, got {listed}", "mixed_datatypes"
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
    request: InferenceRequest,
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
            if BINARY_DATA in own:
                binary = _flag(own, BINARY_DATA, (*loc, "parameters"))
        chosen.append(Requested(entry.name, binary))
    return tuple(chosen)


def decode_infer(
    body: Body, meta: RequestMeta, spec: FunctionSpec, options: DecodeOptions, parsed: dict[str, Any] | None = None
) -> InferDecoded:
    """A checked ``Job`` for ``spec`` from an inference request (``meta.binary_header_length``: the
    binary tensor data extension's JSON header size), and the outputs to send back; ``parsed``: its
    JSON header's object when it was parsed apart (``app.protocols.parsing``)."""
    split = split_body(body, meta.binary_header_length)
    if meta.binary_header_length is not None and not split.json:
        request = _raw_request(spec, split.binary, meta.content_type)
        header = b""
    else:
        # the whole body for JSON tensors (as read: bytes); a small header for binary ones
        header = split.json if isinstance(split.json, bytes) else bytes(split.json)
        request = _envelope(header, parsed)
        _check_model(request, spec, options.catalogue)
    ignored: list[str] = []
    grad = binary_default = False
    chained = None
    timeout = None
    parameters: dict[str, Any] = {}
    if request.parameters:
        parameters = sort_parameters(request.parameters, _RequestParameters(spec), ("parameters",), ignored)
        grad = _flag(parameters, "grad", ("parameters",))
        binary_default = _flag(parameters, "binary_data_output", ("parameters",))
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
    inputs = _Inputs(spec, split, scan_body(header), options, ignored)
    for entry in request.inputs:
        inputs.add(entry)
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


def _check_model(request: InferenceRequest, spec: FunctionSpec, catalogue: Catalogue) -> None:
    """A body's ``model_name`` and ``model_version`` must agree with the path's."""
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


def _raw_request(spec: FunctionSpec, binary: memoryview, content_type: str) -> InferenceRequest:
    """Triton's raw binary request (``Inference-Header-Content-Length: 0``): the body is the one
    required input's raw bytes, of its metadata datatype, in one dimension; every output produced
    comes back as binary data. A body declared JSON is not taken for raw bytes."""
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        raise InvalidRequest.at(
            ("header", "content-type"),
            f"is application/json, but {HEADER_LENGTH} 0 says the body is a raw tensor's bytes "
            "(application/octet-stream)",
            "raw_binary",
        )
    required = [entry for entry in model_inputs(spec) if not entry.optional]
    loc = ("header", HEADER_LENGTH)
    if len(required) != 1:
        names = ", ".join(entry.name for entry in required)
        raise InvalidRequest.at(
            loc,
            f"is 0: a raw binary request, whose input is deduced for a model with 1 required input; "
            f"{spec.name} has {len(required)} ({names}): send a JSON header",
            "raw_binary",
        )
    entry = required[0]
    size = item_size(entry.datatype)
    if len(binary) % size:
        raise InvalidRequest.at(
            loc,
            f"is 0: the body is the raw {entry.datatype} input {entry.name!r}, a multiple of {size} bytes, "
            f"not {len(binary)}",
            "size_mismatch",
        )
    raw = RequestInput(
        name=entry.name,
        shape=[len(binary) // size],
        datatype=entry.datatype,
        parameters={BINARY_DATA_SIZE: len(binary)},
    )
    return InferenceRequest(inputs=[raw], parameters={"binary_data_output": True})


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


def json_reply_bytes(decoded: InferDecoded) -> int:
    """A bound on the JSON text of the reply's tensors: no output is larger than all inputs."""
    return job_size(decoded.job) * decoded.json_outputs * 16 if decoded.json_outputs else 0


def encode_infer(decoded: InferDecoded, result: Result) -> Encoded:
    """The inference response: JSON ``data`` or raw bytes after the header, output by output."""
    job = decoded.job
    datatype = DATATYPE_OF[job.dtype]
    values: dict[str, np.ndarray] = {value_output(job.spec): result.output}
    if result.grads:
        for name, grad in result.grads.items():
            values[grad_output_name(name)] = grad
    outputs: list[dict[str, Any]] = []
    buffers: list[memoryview] = []
    for requested in decoded.outputs:
        arr = values[requested.name]
        entry: dict[str, Any] = {"name": requested.name, "shape": list(arr.shape), "datatype": datatype}
        if requested.binary:
            raw = to_bytes(arr, datatype)
            entry["parameters"] = {BINARY_DATA_SIZE: len(raw)}
            buffers.append(raw)
        else:
            entry["data"] = to_json_data(arr, datatype)
        outputs.append(entry)
    reply: dict[str, Any] = {"model_name": job.spec.name, "model_version": MODEL_VERSION}
    if decoded.request_id is not None:
        reply["id"] = decoded.request_id
    if result.warnings or decoded.ignored:
        parameters: dict[str, Any] = {}
        reply["parameters"] = parameters
        if result.warnings:
            parameters["warnings"] = list(result.warnings)
        if decoded.ignored:
            parameters[IGNORED] = listed(decoded.ignored)
    reply["outputs"] = outputs
    header = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
    if not buffers:
        return Encoded((header,), JSON_MEDIA_TYPE)
    return Encoded((header, *buffers), BINARY_MEDIA_TYPE, len(header))


class InferCodec:
    """The protocol's inference request on the road (REST: JSON, or JSON and binary tensors)."""

    protocol = PROTOCOL
    parse_apart = functools.partial(parse_apart, bare_non_finite=True)

    def subject(self, options: DecodeOptions, path: tuple[str, ...]) -> Subject:
        return find_model(options.catalogue, *path)

    def check(self, meta: RequestMeta) -> None:
        """Any media type: Triton's clients send binary bodies as application/octet-stream."""

    def json_text(self, body: Body, meta: RequestMeta) -> bytes:
        """Binary tensors are only viewed: what is parsed is the JSON header."""
        header = meta.binary_header_length
        text = body if header is None else memoryview(body)[:header]
        return text if isinstance(text, bytes) else bytes(text)

    def decode(
        self, body: Body, meta: RequestMeta, subject: Subject, options: DecodeOptions, parsed: Any = None
    ) -> InferDecoded:
        assert subject is not None  # ``subject`` resolves the model or refuses
        return decode_infer(body, meta, subject, options, parsed)

    def reply_bytes(self, decoded: InferDecoded) -> int:
        return json_reply_bytes(decoded)

    def encode(self, decoded: InferDecoded, result: Result) -> Encoded:
        return encode_infer(decoded, result)


INFER = InferCodec()
