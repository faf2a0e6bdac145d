"""The protocol's ``ModelInfer`` on the road: a serialized ``ModelInferRequest`` to a ``Job``, a
``Result`` to a serialized ``ModelInferResponse``. Knows protobuf messages, never gRPC: the gRPC
transport hands the road the message's bytes as gRPC received them.

The message is decoded into the protocol's one ``InferRequest`` (``infer.py``) and the rest is the
REST face's (``app.protocols.oip.inference``): the same parameters, inputs, outputs and job.
What differs is the form of the reply. Its outputs travel raw (``raw_output_contents``) when the
request's tensors did, when the request asks for raw bytes (``binary_data_output``, or
``binary_data`` on any output: the protocol sends every output one way or the other), or when a
datatype has no typed field (FP16, BF16); else in typed ``contents``. The reply's parameters are
strings where the REST face's are lists (``InferParameter`` holds no list): ``warnings`` and
``ignored_parameters`` hold one item a line.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from app.compute.catalogue import FunctionSpec
from app.compute.jobs import Result
from app.compute.service import job_size
from app.core.errors import InvalidRequest, MalformedRequest
from app.protocols.oip.grpc.infer import decode_infer_request, model_named, serialize_infer_response
from app.protocols.oip.grpc.messages import ModelInferRequest
from app.protocols.oip.grpc.wire import split_raw_contents
from app.protocols.oip.inference import InferDecoded, infer_job, reply_outputs, reply_parameters
from app.protocols.oip.metadata import MODEL_VERSION, find_model, input_names, output_names
from app.protocols.oip.tensors import DATATYPE_OF, item_size
from app.serving.codec import Body, DecodeOptions, Encoded, RequestMeta, Subject

PROTOCOL = "oip"
MEDIA_TYPE = "application/grpc+proto"
LIST_SEPARATOR = "\n"
TYPED_EXPANSION = 16
SPLIT_FROM_BYTES = 64 * 1024
"""A body this large has its raw tensors found in place (``wire.py``); a smaller one is parsed
whole: walking its fields (~8 µs for relu's 256 FP32) costs more than copying its tensors."""
"""Between the items of a reply parameter that the REST face sends as a list."""


def parse_request(body: bytes) -> ModelInferRequest:
    try:
        return ModelInferRequest.FromString(body)
    except DecodeError:
        raise MalformedRequest.at(("body",), "not a serialized ModelInferRequest", "malformed_message") from None


def decode_model_infer(body: Body, options: DecodeOptions) -> InferDecoded:
    """A checked ``Job`` from a serialized ``ModelInferRequest``: the model it names first (404
    when unknown), its inputs and outputs counted against the model's before any tensor is read;
    raw tensors copied once, straight out of the body (``wire.py``)."""
    body = body if isinstance(body, bytes) else bytes(body)
    split = split_raw_contents(body) if len(body) >= SPLIT_FROM_BYTES else None
    message = parse_request(body if split is None else split.header)
    spec = find_model(options.catalogue, *model_named(message))
    _within(len(message.inputs), spec, "inputs")
    _within(len(message.outputs), spec, "outputs")
    raws = None if split is None else split.raws
    request = decode_infer_request(message, options.limits, options.max_total_elements, raws)
    del message  # its tensors are copied out
    return infer_job(request, spec, options)


def _within(given: int, spec: FunctionSpec, field: str) -> None:
    """Refuse more inputs (or outputs) than the model has, before any is read. The model's counts
    are its tensor arguments and parameters and ``grad_output`` (its value and a gradient per
    differentiable argument): what ``input_names`` and ``output_names`` list."""
    most = 1 + (len(spec.tensors) + len(spec.tensor_params) if field == "inputs" else len(spec.differentiable))
    if given > most:
        names = input_names(spec) if field == "inputs" else output_names(spec)
        raise InvalidRequest.at(
            (field,), f"holds {given}; {spec.name} has {len(names)} ({', '.join(names)})", f"too_many_{field}"
        )


def encode_model_infer(decoded: InferDecoded, result: Result) -> bytes:
    """The serialized ``ModelInferResponse``."""
    outputs = reply_outputs(decoded, result)
    parameters = {name: LIST_SEPARATOR.join(items) for name, items in reply_parameters(decoded, result).items()}
    raw = any(output.binary for output in outputs)
    return serialize_infer_response(decoded.job.spec.name, MODEL_VERSION, decoded.request_id, outputs, parameters, raw)


class ModelInferCodec:
    """``ModelInfer`` on the road. The model is named in the message, not in a path: it is resolved
    as the message is decoded (which gRPC has received whole before the service sees it)."""

    protocol = PROTOCOL
    parse_apart = None
    """A protobuf message is parsed in C, its tensors copied out of it: no long hold of the lock."""

    def subject(self, options: DecodeOptions, path: tuple[str, ...]) -> Subject:
        return None

    def check(self, meta: RequestMeta) -> None:
        """gRPC has checked its own content type."""

    def parsed_text(self, body: Body, meta: RequestMeta) -> bytes:
        """The whole message is parsed, its tensors copied out of it."""
        return body if isinstance(body, bytes) else bytes(body)

    def decoding_bytes(self, body: Body, text: bytes) -> int:
        """The body, a copy of its raw tensors, and what the rest may grow to once parsed and
        decoded: typed contents expand, at most ``TYPED_EXPANSION`` times (an INT64 of one varint
        byte is 8 bytes in the parsed message and 8 in its array)."""
        split = split_raw_contents(body if isinstance(body, bytes) else bytes(body))
        raw = 0 if split is None else sum(len(data) for data in split.raws)
        return len(body) + raw + TYPED_EXPANSION * (len(body) - raw)

    def decode(
        self, body: Body, meta: RequestMeta, subject: Subject, options: DecodeOptions, parsed: Any = None
    ) -> InferDecoded:
        return decode_model_infer(body, options)

    def reply_bytes(self, decoded: InferDecoded) -> int:
        """The outputs' bytes at most: no output holds more elements than the inputs together."""
        return job_size(decoded.job) * item_size(DATATYPE_OF[decoded.job.dtype]) * len(decoded.outputs)

    def encode(self, decoded: InferDecoded, result: Result) -> Encoded:
        return Encoded((encode_model_infer(decoded, result),), MEDIA_TYPE)


MODEL_INFER = ModelInferCodec()
