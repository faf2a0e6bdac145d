"""Limits on what one request may hold, on every protocol: the longest string a client may send in
each place (documented in docs/api.md and docs/open-inference-protocol.md), and the tensors'.

Each string limit is checked before any work that grows with the string's length (a close-match
suggestion compares a name with every name in the catalogue, quadratic in both): a longer one is
answered with the protocol's 4xx. The request head and body limits bound everything else a client
sends; these keep the work done on each string small and its echo in an error message short.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_NAME = 128
"""Function, activation and model names; tensor, input and output names; parameter keys
(``activation.<name>`` included); keys of a tensor's object form."""

MAX_PARAM_STRING = 128
"""A parameter's string value (a choice such as ``reduction``)."""

MAX_TYPE_NAME = 16
"""Dtype, datatype and encoding names."""

MAX_INFERENCE_ID = 256
"""The Open Inference Protocol's request ``id``, echoed in its response."""

MAX_REQUEST_ID = 128
"""``X-Request-ID``: a longer one (or one with other characters) is replaced by a fresh id."""

MAX_HEADER_VALUE = 1024
"""Any other header the service reads (``Content-Type``, ``Content-Encoding``,
``X-Request-Timeout``, ``Authorization``, ``X-API-Key``)."""


def longer_than(limit: int) -> str:
    """The refusal's words for a string over ``limit``."""
    return f"longer than {limit} characters"


@dataclass(frozen=True)
class TensorLimits:
    """The most elements any one tensor may hold, and its deepest rank."""

    max_elements: int
    max_rank: int
