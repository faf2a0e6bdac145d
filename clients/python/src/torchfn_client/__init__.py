"""Python client and command line for the torch functions service."""

from __future__ import annotations

from torchfn_client.async_client import AsyncClient
from torchfn_client.client import Client
from torchfn_client.errors import (
    APIError,
    BadRequest,
    ClientError,
    ErrorDetail,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    Timeout,
    TorchfnError,
    TransportError,
    Unauthorized,
)
from torchfn_client.results import ActivationResult, FunctionInfo, LossResult
from torchfn_client.version import __version__

__all__ = [
    "APIError",
    "ActivationResult",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientError",
    "ErrorDetail",
    "FunctionInfo",
    "InvalidInput",
    "LossResult",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "ServiceUnavailable",
    "Timeout",
    "TorchfnError",
    "TransportError",
    "Unauthorized",
    "__version__",
]
