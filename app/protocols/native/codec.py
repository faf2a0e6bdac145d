"""The JSON protocol of /activate and /loss: request bytes to a ``Job``, a ``Result`` to bytes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import orjson

from app.compute.catalogue import Catalogue, FunctionSpec
from app.compute.catalogue.params import validate_params
from app.compute.catalogue.spec import FunctionKind
from app.compute.chaining import Chained, chain_activation
from app.compute.jobs import Job, Result, build_job
from app.compute.service import reply_bytes
from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc, Problem, TooLarge, UnsupportedMediaType
from app.protocols.decoding import EnvelopeT, validated
from app.protocols.native.models import ActivateRequest, ChainedActivation, LossRequest
from app.protocols.parsing import parse_apart, parse_object
from app.protocols.scan import scan_body
from app.protocols.tensors import Encoding, decode_tensor, encode_tensor
from app.serving.body import parsing_bytes
from app.serving.codec import Body, DecodeOptions, Encoded, RequestMeta, Subject

PROTOCOL = "native"
JSON_MEDIA_TYPE = "application/json"


class Decoded(NamedTuple):
    job: Job
    encoding: Encoding


def _find_function(name: str, kind: FunctionKind, catalogue: Catalogue) -> FunctionSpec:
    spec = catalogue.find(name)
    if spec is None:
        close = catalogue.suggest(name, kind) or catalogue.suggest(name)
        hint = f"; closest: {', '.join(close)}" if close else "; see GET /functions"
        raise InvalidRequest.at(("body", "function"), f"unknown function {name!r}{hint}", "unknown_function")
    if spec.kind != kind:
        endpoint = "/activate" if spec.kind == "activation" else "/loss"
        raise InvalidRequest.at(
            ("body", "function"),
            f"{spec.name} is {'an' if spec.kind == 'activation' else 'a'} {spec.kind}; POST it to {endpoint}",
            "wrong_endpoint",
        )
    return spec


class _Decoder:
    def __init__(self, body: bytes, options: DecodeOptions, dtype: FloatDType | None) -> None:
        self.options = options
        self.dtype: FloatDType = dtype or options.default_dtype
        self.scan = scan_body(body)
        self.arrays: dict[str, np.ndarray] = {}
        self.locs: dict[str, Loc] = {}
        self.total = 0
        self.problems: list[Problem] = []
        """What was wrong with the tensors decoded so far: every bad tensor is reported, not the first."""

    def decode(self, value: Any, loc: Loc) -> np.ndarray:
        arr = decode_tensor(value, loc, self.options.limits, self.scan, self.dtype)
        self.total += arr.size
        if self.total > self.options.max_total_elements:
            raise TooLarge.at(
                loc,
                f"the request's tensors exceed {self.options.max_total_elements} elements in all",
                "too_many_elements",
            )
        return arr

    def tensor(self, name: str, value: Any, loc: Loc) -> None:
        try:
            self.arrays[name] = self.decode(value, loc)
        except InvalidRequest as error:
            self.problems.extend(error.problems)
        self.locs[name] = loc

    def finish(
        self,
        spec: FunctionSpec,
        params: Mapping[str, Any],
        grad: bool,
        grad_output: Any,
        dtype: FloatDType | None,
        activation: Chained | None = None,
    ) -> Job:
        try:
            scalars, tensor_params = validate_params(spec, params, ("body", "params"))
        except InvalidRequest as error:
            raise InvalidRequest([*self.problems, *error.problems]) from None
        for name in scalars:
            self.locs[name] = ("body", "params", name)
        for name, value in tensor_params.items():
            self.tensor(name, value, ("body", "params", name))
        grad_array = None
        if grad_output is not None:
            loc: Loc = ("body", "grad_output")
            try:
                grad_array = decode_tensor(grad_output, loc, self.options.limits, self.scan, self.dtype)
            except InvalidRequest as error:
                self.problems.extend(error.problems)
            self.locs["grad_output"] = loc
        if self.problems:
            raise InvalidRequest(self.problems)
        return build_job(spec, self.arrays, scalars, self.locs, dtype or self.dtype, grad, grad_array, activation)


def _parse_envelope(body: bytes, model: type[EnvelopeT], parsed: dict[str, Any] | None) -> EnvelopeT:
    return validated(model, parse_object(body) if parsed is None else parsed, ("body",))


_LOSS_FIELDS = {
    "inputs": "/activate takes one tensor, 'input'; 'inputs' (a loss's other tensors) belongs to /loss",
    "target": "/activate takes one tensor, 'input'; 'target' belongs to /loss",
    "activation": "'activation' chains an activation into a loss on /loss; here, name the activation in 'function'",
}
"""What a /loss field sent to /activate is told instead of pydantic's "Extra inputs are not permitted"."""


def _meant_for_loss(problem: Problem) -> Problem:
    field = problem.loc[1] if len(problem.loc) == 2 else None
    if problem.type == "extra_forbidden" and isinstance(field, str) and field in _LOSS_FIELDS:
        return Problem(problem.loc, _LOSS_FIELDS[field], problem.type)
    return problem


def _parse_activate(body: bytes, parsed: dict[str, Any] | None) -> ActivateRequest:
    try:
        return _parse_envelope(body, ActivateRequest, parsed)
    except InvalidRequest as error:
        raise InvalidRequest([_meant_for_loss(p) for p in error.problems]) from None


def decode_activation(body: bytes, options: DecodeOptions, parsed: dict[str, Any] | None = None) -> Decoded:
    """``parsed``: the body's object when it was parsed apart (``app.protocols.parsing``)."""
    request = _parse_activate(body, parsed)
    spec = _find_function(request.function, "activation", options.catalogue)
    decoder = _Decoder(body, options, request.dtype)
    decoder.tensor("input", request.input, ("body", "input"))
    job = decoder.finish(spec, request.params, request.grad, request.grad_output, request.dtype)
    return Decoded(job, request.encoding)


def decode_loss(body: bytes, options: DecodeOptions, parsed: dict[str, Any] | None = None) -> Decoded:
    """``parsed``: the body's object when it was parsed apart (``app.protocols.parsing``)."""
    request = _parse_envelope(body, LossRequest, parsed)
    spec = _find_function(request.function, "loss", options.catalogue)
    decoder = _Decoder(body, options, request.dtype)
    for name, value, loc in _loss_tensors(request, spec):
        decoder.tensor(name, value, loc)
    chained = _chained(request.activation, spec, options.catalogue, decoder) if request.activation else None
    job = decoder.finish(spec, request.params, request.grad, request.grad_output, request.dtype, chained)
    return Decoded(job, request.encoding)


def _chained(
    activation: ChainedActivation | str, loss: FunctionSpec, catalogue: Catalogue, decoder: _Decoder
) -> Chained:
    """``"activation": "sigmoid"`` or ``"activation": {"function": "sigmoid", "params": {...}}``."""
    params_loc: Loc = ("body", "activation", "params")
    if isinstance(activation, str):
        return chain_activation(catalogue, loss, activation, {}, ("body", "activation"), params_loc, decoder.decode)
    loc: Loc = ("body", "activation", "function")
    return chain_activation(catalogue, loss, activation.function, activation.params, loc, params_loc, decoder.decode)


def _loss_tensors(request: LossRequest, spec: FunctionSpec) -> list[tuple[str, Any, Loc]]:
    """Each tensor argument of ``spec`` with where it was sent (top level or under ``inputs``);
    every misplaced, unknown, doubled or missing one reported at once."""
    expected = spec.tensor_names
    inputs = request.inputs
    found: list[tuple[str, Any, Loc]] = []
    problems: list[Problem] = []
    for name in inputs:
        if name not in expected:
            problems.append(
                Problem(
                    ("body", "inputs", name),
                    f"{spec.name} has no tensor argument {name!r} (expected: {', '.join(sorted(expected))})",
                    "unknown_tensor",
                )
            )
    for field_name, value in (("input", request.input), ("target", request.target)):
        if value is not None and field_name not in expected:
            problems.append(
                Problem(
                    ("body", field_name),
                    f"{spec.name} takes no {field_name!r}; its tensors are "
                    f"{', '.join(a.name for a in spec.tensors)} under 'inputs'",
                    "unknown_tensor",
                )
            )
    for arg in spec.tensors:
        name = arg.name
        top = getattr(request, name) if arg.top_level else None
        nested = inputs.get(name)
        if top is not None and nested is not None:
            problems.append(Problem(("body", "inputs", name), f"{name!r} is given twice", "duplicate_tensor"))
        elif top is None and nested is None and not arg.optional:
            where = ("body", name) if arg.top_level else ("body", "inputs", name)
            problems.append(Problem(where, f"required by {spec.name}", "missing"))
        elif top is not None:
            found.append((name, top, ("body", name)))
        elif name in inputs:  # sent, if only as null: decoding names the problem
            found.append((name, nested, ("body", "inputs", name)))
    if problems:
        raise InvalidRequest(problems)
    return found


_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def encode_activation(decoded: Decoded, result: Result) -> bytes:
    job, encoding = decoded.job, decoded.encoding
    grad = None
    if result.grads is not None:
        grad = encode_tensor(result.grads["input"], job.dtype, encoding)
    reply: dict[str, Any] = {
        "function": job.spec.name,
        "output": encode_tensor(result.output, job.dtype, encoding),
        "grad": grad,
        "shape": list(result.output.shape),
        "dtype": job.dtype,
    }
    if result.grads is not None and len(result.grads) > 1:
        reply["param_grads"] = {
            name: encode_tensor(g, job.dtype, encoding) for name, g in result.grads.items() if name != "input"
        }
    if result.warnings:
        reply["warnings"] = list(result.warnings)
    return orjson.dumps(reply, option=_DUMP_OPTIONS)


def encode_loss(decoded: Decoded, result: Result) -> bytes:
    job, encoding = decoded.job, decoded.encoding
    grads = None
    if result.grads is not None:
        grads = {name: encode_tensor(g, job.dtype, encoding) for name, g in result.grads.items()}
    loss = result.output
    reply: dict[str, Any] = {
        "function": job.spec.name,
        "loss": encode_tensor(loss, job.dtype, "json" if loss.ndim == 0 else encoding),
        "grad": grads,
        "shape": list(loss.shape),
        "dtype": job.dtype,
    }
    if result.warnings:
        reply["warnings"] = list(result.warnings)
    return orjson.dumps(reply, option=_DUMP_OPTIONS)


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", JSON_MEDIA_TYPE) or media.endswith("+json")


class NativeCodec:
    """The service's own JSON protocol of ``/activate`` and ``/loss`` on the road."""

    protocol = PROTOCOL
    parse_apart = functools.partial(parse_apart, bare_non_finite=False)

    def __init__(
        self,
        decode: Callable[[bytes, DecodeOptions, dict[str, Any] | None], Decoded],
        encode: Callable[[Decoded, Result], bytes],
    ) -> None:
        self._decode = decode
        self._encode = encode

    def subject(self, options: DecodeOptions, path: tuple[str, ...]) -> Subject:
        return None  # the function is named in the body

    def check(self, meta: RequestMeta) -> None:
        if not is_json(meta.content_type):
            raise UnsupportedMediaType.at(("header", "content-type"), "send the body as application/json", "media_type")

    def parsed_text(self, body: Body, meta: RequestMeta) -> bytes:
        return body if isinstance(body, bytes) else bytes(body)

    def decoding_bytes(self, body: Body, text: bytes) -> int:
        return parsing_bytes(len(body), text)

    def decode(
        self, body: Body, meta: RequestMeta, subject: Subject, options: DecodeOptions, parsed: Any = None
    ) -> Decoded:
        return self._decode(self.parsed_text(body, meta), options, parsed)

    def reply_bytes(self, decoded: Decoded) -> int:
        return reply_bytes(decoded.job)

    def encode(self, decoded: Decoded, result: Result) -> Encoded:
        return Encoded((self._encode(decoded, result),), JSON_MEDIA_TYPE)


ACTIVATE = NativeCodec(decode_activation, encode_activation)
LOSS = NativeCodec(decode_loss, encode_loss)
