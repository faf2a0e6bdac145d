"""How the clients reach the service: headers (API key), timeouts, TLS, and the retry policy."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from torchfn_client.errors import Timeout, TransportError, retry_after_seconds
from torchfn_client.version import __version__

Verify: TypeAlias = bool | str | ssl.SSLContext
"""True (the system's and certifi's CAs), False (no verification), a CA bundle file or
directory, or a ready ``ssl.SSLContext``."""

Cert: TypeAlias = str | tuple[str, str] | tuple[str, str, str]
"""A client certificate: one PEM file with the key, (certificate, key), or (certificate, key, password)."""


def ssl_setting(verify: Verify, cert: Cert | None) -> bool | ssl.SSLContext:
    """What httpx takes as ``verify``: its own plain settings, or a context holding a CA bundle
    or a client certificate (httpx 0.28 deprecates passing those any other way)."""
    if cert is None and not isinstance(verify, str):
        return verify
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif isinstance(verify, str):
        context = (
            ssl.create_default_context(capath=verify)
            if os.path.isdir(verify)
            else ssl.create_default_context(cafile=verify)
        )
    else:
        context = httpx.create_ssl_context(verify=verify)
    if cert is not None:
        if isinstance(cert, str):
            context.load_cert_chain(cert)
        else:
            context.load_cert_chain(*cert)
    return context


def http_options(
    base_url: str,
    *,
    api_key: str | None,
    timeout: float | httpx.Timeout | None,
    verify: Verify,
    cert: Cert | None,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Keyword arguments shared by ``httpx.Client`` and ``httpx.AsyncClient``."""
    all_headers = {"user-agent": f"torchfn-client/{__version__}", "accept": "application/json", **(headers or {})}
    if api_key is not None:
        all_headers["authorization"] = f"Bearer {api_key}"
    return {
        "base_url": base_url,
        "headers": all_headers,
        "timeout": timeout,
        "verify": ssl_setting(verify, cert),
    }


@dataclass(frozen=True)
class RetryPolicy:
    """A 503 that carries ``Retry-After`` (queue full, not ready yet, out of device memory) is
    tried again after the time it names, capped, at most ``max_retries`` times."""

    max_retries: int = 3
    max_wait_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_wait_s < 0:
            raise ValueError("max_retries and max_retry_wait must not be negative")

    def wait_before_retry(self, response: httpx.Response, retries_done: int) -> float | None:
        """Seconds to wait before trying again, or None to give up with this response."""
        if response.status_code != 503 or retries_done >= self.max_retries:
            return None
        seconds = retry_after_seconds(response)
        return None if seconds is None else min(seconds, self.max_wait_s)


def transport_failure(method: str, path: str, error: httpx.TransportError) -> TransportError:
    """The client's error for a request that got no answer: ``Timeout`` when it ran out of time."""
    if isinstance(error, httpx.TimeoutException):
        return Timeout(f"{method} {path}: no answer in time ({error})")
    return TransportError(f"{method} {path}: {error}")
