"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from torchfn_client import protocol
from torchfn_client.arrays import Array, TensorLike
from torchfn_client.connection import Cert, RetryPolicy, Verify, http_options, transport_failure
from torchfn_client.results import ActivationResult, FunctionInfo, LossResult

DEFAULT_TIMEOUT_S = 60.0
LIST_MAX_ELEMENTS = 1024
"""Tensors up to this many elements travel as JSON lists; larger ones in the base64 object form."""


class Client:
    """Calls the service at ``base_url``; close it, or use it as a context manager.

    ``api_key`` is sent as ``Authorization: Bearer <key>``. ``timeout`` (seconds, or an
    ``httpx.Timeout``; None waits forever) bounds each attempt. ``verify`` and ``cert`` set TLS:
    see ``torchfn_client.connection``. A 503 with ``Retry-After`` is tried again up to
    ``max_retries`` times, waiting what the service asks but at most ``max_retry_wait`` seconds.
    ``transport`` replaces httpx's (a mock in tests, a proxy...).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
        verify: Verify = True,
        cert: Cert | None = None,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
        list_max_elements: int = LIST_MAX_ELEMENTS,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        options = http_options(base_url, api_key=api_key, timeout=timeout, verify=verify, cert=cert, headers=headers)
        self._http = httpx.Client(**options, transport=transport)
        self._retry = RetryPolicy(max_retries, max_retry_wait)
        self._list_max_elements = list_max_elements

    def activate(
        self,
        name: str,
        x: TensorLike,
        grad: bool = False,
        params: Mapping[str, Any] | None = None,
        grad_output: TensorLike | None = None,
        dtype: Any = None,
    ) -> ActivationResult[Array]:
        """``torch.nn.functional.<name>(x, **params)`` and, with ``grad``, its vector-Jacobian
        product. ``dtype`` (a name, numpy or torch dtype) defaults to ``x``'s own when it is a
        floating-point array or tensor, else to the service's default."""
        call = protocol.activate_call(
            name,
            x,
            grad=grad,
            params=params,
            grad_output=grad_output,
            dtype=dtype,
            list_max_elements=self._list_max_elements,
        )
        return protocol.activation_result(self._send(call))

    def loss(
        self,
        name: str,
        input: TensorLike | None = None,
        target: TensorLike | None = None,
        grad: bool = False,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, TensorLike] | None = None,
        activation: str | Mapping[str, Any] | None = None,
        grad_output: TensorLike | None = None,
        dtype: Any = None,
    ) -> LossResult[Array]:
        """A loss and, with ``grad``, its gradient per differentiable argument. Tensors other than
        ``input`` and ``target`` (``var``, ``anchor``, ``log_probs``...) go in ``inputs``.
        ``activation`` (a name, or ``{"function": name, "params": {...}}``) is applied to
        ``input`` first, on servers that chain. ``dtype`` as in ``activate``."""
        call = protocol.loss_call(
            name,
            input,
            target,
            grad=grad,
            params=params,
            inputs=inputs,
            activation=activation,
            grad_output=grad_output,
            dtype=dtype,
            list_max_elements=self._list_max_elements,
        )
        return protocol.loss_result(self._send(call))

    def functions(self, kind: str | None = None) -> list[FunctionInfo]:
        """The catalogue; ``kind`` is ``activation`` or ``loss`` for one half of it."""
        return protocol.functions_result(self._send(protocol.functions_call(kind)))

    def function(self, name: str) -> FunctionInfo:
        """One function, by canonical name or alias, any case."""
        return protocol.function_result(self._send(protocol.function_call(name)))

    def _send(self, call: protocol.Call) -> httpx.Response:
        retries = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, content=call.body, params=call.query, headers=call.headers
                )
            except httpx.TransportError as error:
                raise transport_failure(call.method, call.path, error) from error
            wait = self._retry.wait_before_retry(response, retries)
            if wait is None:
                return response
            retries += 1
            time.sleep(wait)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
