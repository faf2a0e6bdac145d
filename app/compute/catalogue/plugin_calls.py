"""Calling an operator's plugin: its module built per request, its failures kept to that request.

An error that is the input's fault (a shape torch or the plugin refuses, an unsupported dtype)
goes on to the engine, which answers it as torch's own errors (a 4xx naming the field); any
other error is the plugin's: 500 ``plugin_error`` naming it, its traceback in the log only.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from app.compute.catalogue.spec import Call
from app.core.errors import InvalidRequest, PluginFailure, ServiceError, UnsupportedDType

logger = logging.getLogger(__name__)

_INPUT_FAULT = re.compile(
    r"size|shape|dimension|\bdims?\b|broadcast|must match|out of (range|bounds)|not implemented for|"
    r"CUDA error|out of memory",
    re.IGNORECASE,
)
"""What torch (and plugins that check their inputs) say about shapes, and the errors the engine
itself must see (a dtype without a kernel, the device running out of memory or failing)."""
_PASSED_ON = (ServiceError, MemoryError, torch.OutOfMemoryError, torch.AcceleratorError)


def input_fault(error: Exception) -> bool:
    """Whether ``error`` is the request's fault (or the device's), not the plugin's."""
    if isinstance(error, _PASSED_ON):
        return True
    return isinstance(error, (RuntimeError, ValueError, IndexError)) and bool(_INPUT_FAULT.search(str(error)))


def module_call(cls: type[nn.Module], tensors: Sequence[inspect.Parameter]) -> Call:
    """``cls(**params)(*tensors)``; a module with weights or buffers is moved to the tensors'
    device and dtype first. A ``ValueError`` from the constructor refuses the parameters (4xx)."""
    names = ["input", "target", *(p.name for p in tensors[2:])][: len(tensors)]

    def call(given: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        try:
            module = cls(**params)
        except ValueError as error:
            raise InvalidRequest.at(
                ("body", "params"), f"{cls.__name__} refused its parameters: {str(error)[:200]}", "invalid_param"
            ) from None
        first = given["input"] if "input" in given else next(iter(given.values()))
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            module = module.to(device=first.device, dtype=first.dtype if first.is_floating_point() else None)
        return module(*(given.get(name) for name in names))  # type: ignore[no-any-return]

    return call


def contained(name: str, call: Call, dtypes: Sequence[str] | None) -> Call:
    """``call``, with its errors sorted into the request's and the plugin's, and its result checked."""

    def checked(given: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        if dtypes is not None:
            floating = [t.dtype for t in given.values() if t.is_floating_point()]
            dtype = str(floating[0]).removeprefix("torch.") if floating else None
            if dtype is not None and dtype not in dtypes:
                raise UnsupportedDType.at(
                    ("body", "dtype"), f"{name} computes in {', '.join(dtypes)} only, not {dtype}", "unsupported_dtype"
                )
        try:
            output = call(given, params)
        except Exception as error:
            if input_fault(error):
                raise
            logger.error("plugin %s failed", name, exc_info=True)
            raise PluginFailure.at(
                ("plugin", name), f"plugin {name} failed: {type(error).__name__}", "plugin_error"
            ) from None
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            what = f"a {output.dtype} tensor" if isinstance(output, torch.Tensor) else type(output).__name__
            logger.error("plugin %s returned %s, not a floating-point tensor", name, what)
            raise PluginFailure.at(
                ("plugin", name),
                f"plugin {name} failed: it returned {what}, not a floating-point tensor",
                "plugin_error",
            )
        return output

    return checked
