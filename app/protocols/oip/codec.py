"""The Open Inference Protocol's REST face: an inference request's JSON (and binary tensors) to a
``Job``, and a ``Result`` to its JSON (and binary) response.

This face reads its wire form into the protocol's one ``InferRequest`` (its tensors decoded, its
parameters as plain values) and the rest is shared with the gRPC face (``inference.py``): the same
``Job`` as ``/activate`` and ``/loss`` build, so the same batcher and engine compute it. A model is
a function of the catalogue; its inputs are the function's tensor arguments (and tensor
parameters, and ``grad_output``); its parameters travel in the request's ``parameters``.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from app.compute.catalogue import FunctionSpec
from app.compute.jobs import Result
from app.compute.service import job_size
from app.core.errors import InvalidRequest, Loc, TooLarge
from app.core.limits import TensorLimits
from app.protocols.decoding import validated
from app.protocols.oip.binary import HEADER_LENGTH, BinaryReader, SplitBody, split_body
from app.protocols.oip.inference import (
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    InferDecoded,
    InferRequest,
    InputTensor,
    RequestedOutput,
    infer_job,
    reply_outputs,
    reply_parameters,
)
from app.protocols.oip.metadata import MODEL_VERSION, find_model, model_inputs
from app.protocols.oip.models import InferenceRequest, RequestInput
from app.protocols.oip.tensors import (
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
from app.serving.body import parsing_bytes
from app.serving.codec import Body, DecodeOptions, Encoded, RequestMeta, Subject

PROTOCOL = "oip"
JSON_MEDIA_TYPE = "application/json"
BINARY_MEDIA_TYPE = "application/octet-stream"


def _envelope(header: bytes, parsed: dict[str, Any] | None) -> InferenceRequest:
    """The request's JSON object; bare ``NaN``/``Infinity`` tokens, as tritonclient writes them for
    non-finite data, are read as this service's non-finite strings (``parse_object``)."""
    return validated(InferenceRequest, parse_object(header, bare_non_finite=True) if parsed is None else parsed)


def _input_tensor(
    entry: RequestInput, reader: BinaryReader, scan: BodyScan, limits: TensorLimits, total: int, max_total: int
) -> tuple[InputTensor, int]:
    """One input's array from its JSON ``data`` or its binary bytes, and the elements counted so
    far: within the limits before anything is decoded."""
    loc: Loc = ("inputs", entry.name)
    check_datatype(entry.datatype, (*loc, "datatype"))
    total += element_count(entry.shape, (*loc, "shape"), limits)
    if total > max_total:
        raise TooLarge.at(loc, f"the request's tensors exceed {max_total} elements in all", "too_many_elements")
    parameters: dict[str, Any] = dict(entry.parameters) if entry.parameters else {}
    size = parameters.pop(BINARY_DATA_SIZE, None)
    if size is not None:
        size_loc = (*loc, "parameters", BINARY_DATA_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidRequest.at(size_loc, "must be a non-negative integer", "invalid_param")
        if entry.data is not None:
            raise InvalidRequest.at((*loc, "data"), "give data or binary_data_size, not both", "invalid_data")
        arr = from_bytes(reader.take(size, size_loc), entry.shape, entry.datatype, size_loc)
    elif entry.data is None:
        raise InvalidRequest.at((*loc, "data"), "required (or binary_data_size in parameters)", "missing")
    else:
        arr = from_json(entry.data, entry.shape, entry.datatype, (*loc, "data"), limits, scan)
    return InputTensor(entry.name, entry.datatype, entry.shape, arr, parameters), total


def _decoded_request(
    envelope: InferenceRequest, split: SplitBody, scan: BodyScan, options: DecodeOptions
) -> InferRequest:
    """The envelope and its tensors as the protocol's one ``InferRequest``."""
    reader = BinaryReader(split.binary)
    inputs: list[InputTensor] = []
    total = 0
    for entry in envelope.inputs:
        tensor, total = _input_tensor(entry, reader, scan, options.limits, total, options.max_total_elements)
        inputs.append(tensor)
    reader.finish()
    outputs = None
    if envelope.outputs is not None:
        outputs = tuple(RequestedOutput(entry.name, entry.parameters or {}) for entry in envelope.outputs)
    return InferRequest(
        envelope.model_name,
        envelope.model_version,
        envelope.id,
        envelope.parameters or {},
        tuple(inputs),
        outputs,
        raw=False,
    )


def decode_infer(
    body: Body, meta: RequestMeta, spec: FunctionSpec, options: DecodeOptions, parsed: dict[str, Any] | None = None
) -> InferDecoded:
    """A checked ``Job`` for ``spec`` from an inference request (``meta.binary_header_length``: the
    binary tensor data extension's JSON header size), and the outputs to send back; ``parsed``: its
    JSON header's object when it was parsed apart (``app.protocols.parsing``)."""
    split = split_body(body, meta.binary_header_length)
    if meta.binary_header_length is not None and not split.json:
        envelope = _raw_request(spec, split.binary, meta.content_type)
        header = b""
    else:
        # the whole body for JSON tensors (as read: bytes); a small header for binary ones
        header = split.json if isinstance(split.json, bytes) else bytes(split.json)
        envelope = _envelope(header, parsed)
    return infer_job(_decoded_request(envelope, split, scan_body(header), options), spec, options)


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
    return InferenceRequest(inputs=[raw], parameters={BINARY_DATA_OUTPUT: True})


def json_reply_bytes(decoded: InferDecoded) -> int:
    """A bound on the JSON text of the reply's tensors: no output is larger than all inputs."""
    return job_size(decoded.job) * decoded.json_outputs * 16 if decoded.json_outputs else 0


def encode_infer(decoded: InferDecoded, result: Result) -> Encoded:
    """The inference response: JSON ``data`` or raw bytes after the header, output by output."""
    outputs: list[dict[str, Any]] = []
    buffers: list[memoryview] = []
    for output in reply_outputs(decoded, result):
        arr = output.array
        entry: dict[str, Any] = {"name": output.name, "shape": list(arr.shape), "datatype": output.datatype}
        if output.binary:
            raw = to_bytes(arr, output.datatype)
            entry["parameters"] = {BINARY_DATA_SIZE: len(raw)}
            buffers.append(raw)
        else:
            entry["data"] = to_json_data(arr, output.datatype)
        outputs.append(entry)
    reply: dict[str, Any] = {"model_name": decoded.job.spec.name, "model_version": MODEL_VERSION}
    if decoded.request_id is not None:
        reply["id"] = decoded.request_id
    parameters = reply_parameters(decoded, result)
    if parameters:
        reply["parameters"] = parameters
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

    def parsed_text(self, body: Body, meta: RequestMeta) -> bytes:
        """Binary tensors are only viewed: what is parsed is the JSON header."""
        header = meta.binary_header_length
        text = body if header is None else memoryview(body)[:header]
        return text if isinstance(text, bytes) else bytes(text)

    def decoding_bytes(self, body: Body, text: bytes) -> int:
        return parsing_bytes(len(body), text)

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
