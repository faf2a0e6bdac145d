"""The service's JSON protocol without any I/O: request bodies built from the caller's arguments,
and replies read into results. The sync and async clients share it."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from torchfn_client.arrays import Array, Given, TensorLike, as_given, float_dtype_name
from torchfn_client.errors import error_from_response
from torchfn_client.results import ActivationResult, FunctionInfo, LossResult
from torchfn_client.wire import TensorEncoder, decode_tensor


@dataclass(frozen=True)
class Call:
    """One HTTP request to make."""

    method: str
    path: str
    body: bytes | None = None
    query: Mapping[str, str] | None = None

    @property
    def headers(self) -> dict[str, str] | None:
        return {"content-type": "application/json"} if self.body is not None else None


def _json_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()


def _params(params: Mapping[str, Any] | None, encoder: TensorEncoder) -> dict[str, Any]:
    """Scalars as JSON values; arrays and tensors (``weight``, ``pos_weight``) as wire tensors."""
    out: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if isinstance(value, str | bool | int | float) or value is None:
            out[key] = value
        else:
            given = as_given(value, f"params.{key}")
            out[key] = given.raw if given.array is None else encoder.encode(given)
    return out


def _request_dtype(dtype: Any, given: list[Given]) -> str | None:
    """The dtype asked for, else the floating-point dtype of the first tensor that has one."""
    if dtype is not None:
        return float_dtype_name(dtype)
    return next((g.float_dtype for g in given if g.float_dtype is not None), None)


def _finish(
    body: dict[str, Any],
    encoder: TensorEncoder,
    grad: bool,
    params: Mapping[str, Any] | None,
    dtype: str | None,
) -> None:
    if params:
        body["params"] = _params(params, encoder)
    if grad:
        body["grad"] = True
    if dtype is not None:
        body["dtype"] = dtype
    if encoder.used_base64:
        body["encoding"] = "base64"  # a large request: its reply in the compact form too


def activate_call(
    name: str,
    x: TensorLike,
    *,
    grad: bool,
    params: Mapping[str, Any] | None,
    grad_output: TensorLike | None,
    dtype: Any,
    list_max_elements: int,
) -> Call:
    encoder = TensorEncoder(list_max_elements)
    given = [as_given(x, "input")]
    if grad_output is not None:
        given.append(as_given(grad_output, "grad_output"))
    body: dict[str, Any] = {"function": name, "input": encoder.encode(given[0])}
    if grad_output is not None:
        body["grad_output"] = encoder.encode(given[1])
    _finish(body, encoder, grad, params, _request_dtype(dtype, given))
    return Call("POST", "/activate", _json_body(body))


def loss_call(
    name: str,
    input: TensorLike | None,
    target: TensorLike | None,
    *,
    grad: bool,
    params: Mapping[str, Any] | None,
    inputs: Mapping[str, TensorLike] | None,
    activation: str | Mapping[str, Any] | None,
    grad_output: TensorLike | None,
    dtype: Any,
    list_max_elements: int,
) -> Call:
    encoder = TensorEncoder(list_max_elements)
    named: dict[str, Given] = {}
    if input is not None:
        named["input"] = as_given(input, "input")
    if target is not None:
        named["target"] = as_given(target, "target")
    nested = {key: as_given(value, f"inputs.{key}") for key, value in (inputs or {}).items()}
    body: dict[str, Any] = {"function": name}
    body.update({key: encoder.encode(given) for key, given in named.items()})
    if nested:
        body["inputs"] = {key: encoder.encode(given) for key, given in nested.items()}
    if activation is not None:
        chained: dict[str, Any] = {"function": activation} if isinstance(activation, str) else dict(activation)
        if chained.get("params"):  # tensor parameters (PReLU's weight) as wire tensors, as a loss's own
            chained["params"] = _params(chained["params"], encoder)
        body["activation"] = chained
    every = [*named.values(), *nested.values()]
    if grad_output is not None:
        every.append(as_given(grad_output, "grad_output"))
        body["grad_output"] = encoder.encode(every[-1])
    _finish(body, encoder, grad, params, _request_dtype(dtype, every))
    return Call("POST", "/loss", _json_body(body))


def functions_call(kind: str | None) -> Call:
    return Call("GET", "/functions", query={"kind": kind} if kind else None)


def function_call(name: str) -> Call:
    return Call("GET", f"/functions/{urllib.parse.quote(name, safe='')}")


def checked_json(response: httpx.Response) -> Any:
    """The reply's JSON, or the typed exception for an error status."""
    if response.status_code >= 400:
        raise error_from_response(response)
    return response.json()


def activation_result(response: httpx.Response) -> ActivationResult[Array]:
    reply = checked_json(response)
    dtype = reply["dtype"]
    grad = reply.get("grad")
    return ActivationResult(
        reply["function"],
        decode_tensor(reply["output"], dtype),
        None if grad is None else decode_tensor(grad, dtype),
        dtype,
    )


def loss_result(response: httpx.Response) -> LossResult[Array]:
    reply = checked_json(response)
    dtype = reply["dtype"]
    grads = reply.get("grad")
    return LossResult(
        reply["function"],
        decode_tensor(reply["loss"], dtype),
        None if grads is None else {name: decode_tensor(value, dtype) for name, value in grads.items()},
        dtype,
    )


def functions_result(response: httpx.Response) -> list[FunctionInfo]:
    return [FunctionInfo.from_json(entry) for entry in checked_json(response)["functions"]]


def function_result(response: httpx.Response) -> FunctionInfo:
    return FunctionInfo.from_json(checked_json(response))
