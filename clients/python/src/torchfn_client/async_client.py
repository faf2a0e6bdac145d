"""The asynchronous client: ``Client``'s methods as coroutines, on ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from torchfn_client import protocol
from torchfn_client.arrays import Array, TensorLike
from torchfn_client.client import DEFAULT_TIMEOUT_S, LIST_MAX_ELEMENTS
from torchfn_client.connection import Cert, RetryPolicy, Verify, http_options, transport_failure
from torchfn_client.results import ActivationResult, FunctionInfo, LossResult


class AsyncClient:
    """Calls the service at ``base_url`` from a running event loop; ``async with`` closes it.
    Arguments as for ``Client``."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = http_options(base_url, api_key=api_key, timeout=timeout, verify=verify, cert=cert, headers=headers)
        self._http = httpx.AsyncClient(**options, transport=transport)
        self._retry = RetryPolicy(max_retries, max_retry_wait)
        self._list_max_elements = list_max_elements

    async def activate(
        self,
        name: str,
        x: TensorLike,
        grad: bool = False,
        params: Mapping[str, Any] | None = None,
        grad_output: TensorLike | None = None,
        dtype: Any = None,
    ) -> ActivationResult[Array]:
        """See ``Client.activate``."""
        call = protocol.activate_call(
            name,
            x,
            grad=grad,
            params=params,
            grad_output=grad_output,
            dtype=dtype,
            list_max_elements=self._list_max_elements,
        )
        return protocol.activation_result(await self._send(call))

    async def loss(
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
        """See ``Client.loss``."""
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
        return protocol.loss_result(await self._send(call))

    async def functions(self, kind: str | None = None) -> list[FunctionInfo]:
        """See ``Client.functions``."""
        return protocol.functions_result(await self._send(protocol.functions_call(kind)))

    async def function(self, name: str) -> FunctionInfo:
        """See ``Client.function``."""
        return protocol.function_result(await self._send(protocol.function_call(name)))

    async def _send(self, call: protocol.Call) -> httpx.Response:
        retries = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, content=call.body, params=call.query, headers=call.headers
                )
            except httpx.TransportError as error:
                raise transport_failure(call.method, call.path, error) from error
            wait = self._retry.wait_before_retry(response, retries)
            if wait is None:
                return response
            retries += 1
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
