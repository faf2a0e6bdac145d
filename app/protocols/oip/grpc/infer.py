"""``ModelInferRequest`` to plain values and numpy arrays, and outputs to ``ModelInferResponse``.

Transport-neutral and pure: what a request names (model, version, id), its parameters as plain
Python values, its input tensors decoded as the HTTP face decodes them (the same datatypes, limits
and arrays: ``app.protocols.oip.tensors``), the outputs it asks for, and whether its tensors came in
raw form; the protocol's shared logic builds the job from that. Every problem is a
``ServiceError`` naming the input, parameter or output at fault.

Tensors travel either in each input's typed ``contents`` or, for every input in order, in
``raw_input_contents`` (the protocol allows one form or the other per request). FP16 and BF16 have
no typed field and travel raw only. A reply is raw when the request was (as Triton answers its
clients) or when an output's datatype has no typed field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from app.core.errors import InvalidRequest, Loc, TooLarge
from app.core.limits import MAX_INFERENCE_ID, MAX_NAME, MAX_PARAM_STRING, TensorLimits, longer_than
from app.protocols.oip.grpc.contents import (
    FIELD_OF,
    LENGTH_DELIMITED,
    filled_fields,
    packed_contents,
    packs,
    read_values,
    varint,
)
from app.protocols.oip.grpc.messages import InferParameter, ModelInferRequest, ModelInferResponse
from app.protocols.oip.inference import BINARY_DATA_SIZE, InferRequest, InputTensor, OutputTensor, RequestedOutput
from app.protocols.oip.parameters import MAX_PARAMETERS
from app.protocols.oip.tensors import (
    FLOAT_DATATYPES,
    check_datatype,
    element_count,
    from_bytes,
    item_size,
    to_bytes,
    wire_dtype,
)

Parameter = bool | int | float | str
Parameters = dict[str, Parameter]

MAX_NAME_LENGTH = MAX_NAME
"""Longest model, version, tensor and parameter name, as the JSON face's models allow
(``app/protocols/oip/models.py``)."""
MAX_ID_LENGTH = MAX_INFERENCE_ID
"""Longest request id, as the JSON face's models allow."""


class _Checked(NamedTuple):
    """One input whose name, datatype, shape, parameters and contents' size are checked."""

    entry: ModelInferRequest.InferInputTensor
    name: str
    datatype: str
    shape: list[int]
    elements: int
    loc: Loc
    parameters: Parameters
    """Its parameters but ``binary_data_size``."""


def model_named(request: ModelInferRequest) -> tuple[str, str | None]:
    """The model and version the request names (None: no version), within the name limit: what
    the REST face's path names, to be resolved before anything else is read."""
    for field in ("model_name", "model_version"):
        if len(getattr(request, field)) > MAX_NAME:
            raise InvalidRequest.at((field,), longer_than(MAX_NAME), "string_too_long")
    return request.model_name, request.model_version or None


def decode_infer_request(
    request: ModelInferRequest,
    limits: TensorLimits,
    max_total_elements: int,
    raws: Sequence[bytes | memoryview] | None = None,
) -> InferRequest:
    """The request's plain values and input arrays, every size checked before any tensor is copied.
    ``raws``: its ``raw_input_contents`` when they were taken out of the message before it was
    parsed (``wire.split_raw_contents``)."""
    if len(request.id) > MAX_ID_LENGTH:
        raise InvalidRequest.at(("id",), longer_than(MAX_ID_LENGTH), "string_too_long")
    entries = list(request.inputs)  # (each read of a message field builds a new wrapper: read once)
    if raws is None:
        raws = request.raw_input_contents
    raw = len(raws) > 0
    if raw and len(raws) != len(entries):
        raise InvalidRequest.at(
            ("raw_input_contents",),
            f"holds {len(raws)} tensors; the request has {len(entries)} inputs",
            "size_mismatch",
        )
    checked = _checked_inputs(entries, limits, max_total_elements, raw)
    if raw:  # each element read is a copy of its bytes out of the message: read once
        arrays = [_raw_array(tensor, data) for tensor, data in zip(checked, raws, strict=True)]
    else:
        arrays = [_typed_array(tensor) for tensor in checked]
    return InferRequest(
        request.model_name,
        request.model_version or None,
        request.id or None,
        decode_parameters(request.parameters, ("parameters",)) if request.parameters else {},
        tuple(
            InputTensor(tensor.name, tensor.datatype, tensor.shape, array, tensor.parameters)
            for tensor, array in zip(checked, arrays, strict=True)
        ),
        _requested_outputs(request) if request.outputs else None,
        raw,
    )


def _checked_inputs(
    entries: list[ModelInferRequest.InferInputTensor], limits: TensorLimits, max_total_elements: int, raw: bool
) -> list[_Checked]:
    """Each input within the limits, its name, datatype, shape, parameters and contents checked."""
    checked: list[_Checked] = []
    total = 0
    for index, entry in enumerate(entries):
        name, datatype = entry.name, entry.datatype
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest.at(("inputs", index, "name"), longer_than(MAX_NAME_LENGTH), "string_too_long")
        loc: Loc = ("inputs", name)
        parameters, declared_size = _input_parameters(entry, raw, loc) if entry.parameters else ({}, None)
        check_datatype(datatype, (*loc, "datatype"))
        shape = list(entry.shape)
        if any(dimension < 0 for dimension in shape):
            raise InvalidRequest.at((*loc, "shape"), "dimensions must be non-negative", "invalid_shape")
        count = element_count(shape, (*loc, "shape"), limits)
        total += count
        if total > max_total_elements:
            raise TooLarge.at(
                loc, f"the request's tensors exceed {max_total_elements} elements in all", "too_many_elements"
            )
        needed = count * item_size(datatype)
        if declared_size is not None and declared_size != needed:
            raise InvalidRequest.at(
                (*loc, "parameters", BINARY_DATA_SIZE),
                f"is {declared_size}; shape {shape} of {datatype} needs {needed} bytes",
                "size_mismatch",
            )
        filled = filled_fields(entry.contents) if entry.HasField("contents") else []
        if raw and filled:
            raise InvalidRequest.at(
                (*loc, "contents"),
                "the request's tensors are in raw_input_contents: no input may hold contents",
                "invalid_data",
            )
        if not raw:
            _check_typed(entry, datatype, shape, filled, count, loc)
        checked.append(_Checked(entry, name, datatype, shape, count, loc, parameters))
    return checked


def _input_parameters(entry: ModelInferRequest.InferInputTensor, raw: bool, loc: Loc) -> tuple[Parameters, int | None]:
    """The input's parameters but ``binary_data_size``, and the size it declares: KServe's client
    names each raw tensor's size in it, as over HTTP. The rest are the protocol's rule's to sort
    (``app.protocols.oip.parameters``)."""
    parameters = decode_parameters(entry.parameters, (*loc, "parameters"))
    size = parameters.pop(BINARY_DATA_SIZE, None)
    if size is not None and (not raw or isinstance(size, bool) or not isinstance(size, int)):
        why = "an integer" if raw else "given with raw_input_contents only"
        raise InvalidRequest.at((*loc, "parameters", BINARY_DATA_SIZE), f"must be {why}", "invalid_param")
    return parameters, size


def _check_typed(
    entry: ModelInferRequest.InferInputTensor, datatype: str, shape: list[int], filled: list[str], count: int, loc: Loc
) -> None:
    field = FIELD_OF.get(datatype)
    if field is None:  # FP16, BF16
        raise InvalidRequest.at(
            (*loc, "contents"), f"{datatype} has no typed contents field: send it in raw_input_contents", "invalid_data"
        )
    stray = [name for name in filled if name != field]
    if stray:
        raise InvalidRequest.at(
            (*loc, "contents", stray[0]), f"{datatype} values go in contents.{field}", "invalid_data"
        )
    held = len(getattr(entry.contents, field)) if filled else 0
    if held != count:
        raise InvalidRequest.at(
            (*loc, "contents", field), f"holds {held} values; shape {shape} needs {count}", "size_mismatch"
        )


def _raw_array(tensor: _Checked, data: bytes | memoryview) -> np.ndarray:
    loc = (*tensor.loc, "raw_input_contents")
    needed = tensor.elements * item_size(tensor.datatype)
    if len(data) != needed:
        raise InvalidRequest.at(
            loc, f"holds {len(data)} bytes; shape {tensor.shape} of {tensor.datatype} needs {needed}", "size_mismatch"
        )
    return from_bytes(memoryview(bytearray(data)), tensor.shape, tensor.datatype, loc)


def _typed_array(tensor: _Checked) -> np.ndarray:
    loc = (*tensor.loc, "contents", FIELD_OF[tensor.datatype])
    if tensor.elements == 0:
        return from_bytes(memoryview(bytearray()), tensor.shape, tensor.datatype, loc)
    values = read_values(tensor.entry.contents, tensor.datatype, tensor.elements)
    if not packs(tensor.datatype):
        values = _narrowed(values, tensor.datatype, loc)
    return from_bytes(values.data.cast("B"), tensor.shape, tensor.datatype, loc)


def _narrowed(values: np.ndarray, datatype: str, loc: Loc) -> np.ndarray:
    """Integer values in the datatype's own width and byte order, as raw bytes would bring them:
    ``int_contents`` and ``uint_contents`` are 32-bit for the narrower datatypes too."""
    wire = wire_dtype(datatype)
    info = np.iinfo(wire)
    if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
        raise InvalidRequest.at(loc, f"values must lie in [{info.min}, {info.max}] for {datatype}", "dtype_overflow")
    return values.astype(wire, copy=False)


def decode_parameters(parameters: Mapping[str, InferParameter], loc: Loc) -> Parameters:
    """Each ``InferParameter`` as the plain value it holds (bool, int, float or str), in name order;
    at most ``MAX_PARAMETERS`` of them, names and strings within the JSON face's limits."""
    if len(parameters) > MAX_PARAMETERS:
        raise InvalidRequest.at(loc, f"holds {len(parameters)} keys; at most {MAX_PARAMETERS}", "too_many_parameters")
    plain: Parameters = {}
    for name in sorted(parameters):
        if len(name) > MAX_NAME:
            raise InvalidRequest.at((*loc, name[:MAX_NAME]), f"the name is {longer_than(MAX_NAME)}", "string_too_long")
        parameter = parameters[name]
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidRequest.at((*loc, name), "holds no value", "invalid_param")
        value = getattr(parameter, choice)
        if isinstance(value, str) and len(value) > MAX_PARAM_STRING:
            raise InvalidRequest.at((*loc, name), longer_than(MAX_PARAM_STRING), "string_too_long")
        plain[name] = value
    return plain


def _requested_outputs(request: ModelInferRequest) -> tuple[RequestedOutput, ...]:
    outputs = []
    for index, entry in enumerate(request.outputs):
        if len(entry.name) > MAX_NAME_LENGTH:
            raise InvalidRequest.at(("outputs", index, "name"), longer_than(MAX_NAME_LENGTH), "string_too_long")
        outputs.append(
            RequestedOutput(entry.name, decode_parameters(entry.parameters, ("outputs", entry.name, "parameters")))
        )
    return tuple(outputs)


_INT64_MAX = int(np.iinfo(np.int64).max)


def encode_parameter(value: Parameter) -> InferParameter:
    """A plain value as an ``InferParameter``: an integer past int64 as ``uint64_param``."""
    if isinstance(value, bool):
        return InferParameter(bool_param=value)
    if isinstance(value, int):
        return InferParameter(int64_param=value) if value <= _INT64_MAX else InferParameter(uint64_param=value)
    if isinstance(value, float):
        return InferParameter(double_param=value)
    return InferParameter(string_param=value)


def _response_head(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[OutputTensor],
    parameters: Mapping[str, Parameter],
) -> ModelInferResponse:
    """The response without its tensors' values: names, versions, id, parameters, outputs."""
    response = ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id or "")
    for name, value in parameters.items():
        response.parameters[name].CopyFrom(encode_parameter(value))
    for output in outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.array.shape)
    return response


def _raw_reply(raw: bool, outputs: Sequence[OutputTensor]) -> bool:
    return raw or any(not packs(output.datatype) for output in outputs)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[OutputTensor],
    parameters: Mapping[str, Parameter],
    raw: bool,
) -> ModelInferResponse:
    """The response: the outputs in order, raw when ``raw`` or when one of them is FP16 or BF16."""
    response = _response_head(model_name, model_version, request_id, outputs, parameters)
    raw = _raw_reply(raw, outputs)
    for tensor, output in zip(response.outputs, outputs, strict=True):
        data = _output_bytes(output)
        if raw:
            response.raw_output_contents.append(bytes(data))
        elif data:
            tensor.contents.MergeFromString(packed_contents(data, output.datatype))
    return response


_RAW_OUTPUT_TAG = varint(
    ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number << 3 | LENGTH_DELIMITED
)


def serialize_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[OutputTensor],
    parameters: Mapping[str, Parameter],
    raw: bool,
) -> bytes:
    """``encode_infer_response(...).SerializeToString()``, with each raw output copied once: its
    ``raw_output_contents`` field written after the rest of the message (protobuf's wire format
    lets a message's fields come in any order, and parsers merge them) rather than copied into
    the message and out again. For 1,000,000 FP32: 0.25 ms instead of 0.74."""
    if not _raw_reply(raw, outputs):
        return encode_infer_response(
            model_name, model_version, request_id, outputs, parameters, raw
        ).SerializeToString()
    head = _response_head(model_name, model_version, request_id, outputs, parameters).SerializeToString()
    parts: list[bytes | memoryview] = [head]
    for output in outputs:
        data = _output_bytes(output)
        parts += (_RAW_OUTPUT_TAG, varint(len(data)), data)
    return b"".join(parts)


def _output_bytes(output: OutputTensor) -> memoryview:
    if output.datatype not in FLOAT_DATATYPES:
        raise ValueError(f"output {output.name!r}: {output.datatype} is not a float datatype")
    data = to_bytes(output.array, output.datatype)
    if len(data) != output.array.size * item_size(output.datatype):
        raise ValueError(f"output {output.name!r}: a {output.array.dtype} array does not hold {output.datatype}")
    return data
