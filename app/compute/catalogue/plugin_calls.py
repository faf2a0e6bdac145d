"""Calling an operator's plugin: its module built per request, its failures kept to that request.

Whatever a plugin raises, ``BaseException`` included (``SystemExit``, ``KeyboardInterrupt``), fails
its own request only, in the service's own words: a plugin's text reaches the client only through
``InputRejected`` (``app.plugins``), the one error type meant for it. Otherwise:

- an error about the input's shapes (what torch says inside the plugin) is a 4xx naming the
  shapes the plugin was given (``PluginRefusal``, placed by the engine);
- a dtype without a kernel is a 4xx naming the dtype;
- the device running out of memory or failing goes on to the engine, which answers it as for
  torch's own functions;
- anything else is the plugin's: 500 ``plugin_error`` naming the plugin, its traceback logged
  with the request's id (``ComputeService.run``), never sent.

A result that is not a tensor of the request's compute dtype is the plugin's error too: a client
must never decode bytes of one dtype labelled as another.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from app.compute.catalogue.spec import Call
from app.core.errors import InputRejected, PluginFailure, UnsupportedDType


class PluginRefusal(Exception):
    """A plugin's call refused the request's input, in the service's own words; the engine answers
    it as a 422 at the location of ``argument`` (a tensor or parameter name) in the request."""

    def __init__(self, message: str, type_: str, argument: str | None) -> None:
        super().__init__(message)
        self.message, self.type, self.argument = message, type_, argument


_SHAPE_FAULT = re.compile(r"size|shape|dimension|\bdims?\b|broadcast|must match|out of (range|bounds)", re.IGNORECASE)
"""What torch says about shapes (inside a plugin): the input's fault, answered without its text."""
_NO_KERNEL = re.compile(r"not implemented for '\w+'")
_OUT_OF_MEMORY = re.compile(r"out of memory|can't allocate memory|CUBLAS_STATUS_ALLOC_FAILED")
_DEVICE_FAULT = re.compile(r"CUDA error|device-side assert|illegal memory access|CUDNN_STATUS_INTERNAL_ERROR")
_PASSED_ON = (MemoryError, torch.OutOfMemoryError, torch.AcceleratorError, PluginRefusal)
"""The device's errors, which the engine answers in its own words (503 out of memory, a sticky
device failure), and the refusals already in the service's words."""
_MAX_MESSAGE = 300
_MAX_TEXT = 2000
"""Of a plugin's exception, the most text read to classify it (its ``str`` could be anything)."""


def module_call(cls: type[nn.Module], tensors: Sequence[inspect.Parameter]) -> Call:
    """``cls(**params)(*tensors)``; a module with weights or buffers is moved to the tensors'
    device and dtype first. A ``ValueError`` from the constructor refuses the parameters (4xx)."""
    names = ["input", "target", *(p.name for p in tensors[2:])][: len(tensors)]

    def call(given: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        try:
            module = cls(**params)
        except ValueError:
            first = next(iter(params), None)
            raise PluginRefusal(f"{cls.__name__} refused its parameters", "invalid_param", first) from None
        first_tensor = given["input"] if "input" in given else next(iter(given.values()))
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            module = module.to(
                device=first_tensor.device, dtype=first_tensor.dtype if first_tensor.is_floating_point() else None
            )
        return module(*(given.get(name) for name in names))  # type: ignore[no-any-return]

    return call


def _text(error: BaseException) -> str:
    """The start of ``error``'s text, or "" when even that fails (it is the plugin's code)."""
    try:
        return str(error)[:_MAX_TEXT]
    except BaseException:  # a plugin's __str__ may raise anything
        return ""


def _shapes(given: Mapping[str, torch.Tensor]) -> str:
    return ", ".join(f"{name} {list(tensor.shape)}" for name, tensor in given.items())


def _sorted(
    name: str, error: BaseException, given: Mapping[str, torch.Tensor], dtype: torch.dtype | None
) -> BaseException:
    """What the request's caller gets for ``error``, raised by the plugin ``name``'s call."""
    if isinstance(error, InputRejected):
        message = error.message if isinstance(error.message, str) else ""
        argument = error.argument if isinstance(error.argument, str) else None
        return PluginRefusal(f"{name} refused the input: {message[:_MAX_MESSAGE]}", "plugin_refused", argument)
    if isinstance(error, _PASSED_ON):
        return error
    if isinstance(error, (RuntimeError, ValueError, IndexError)):
        text = _text(error)
        on_gpu = any(tensor.is_cuda for tensor in given.values())
        if _OUT_OF_MEMORY.search(text) or (on_gpu and _DEVICE_FAULT.search(text)):
            return error
        if _NO_KERNEL.search(text) and dtype is not None:
            dtype_name = str(dtype).removeprefix("torch.")
            return UnsupportedDType.at(("body", "dtype"), f"{name} has no {dtype_name} kernel", "unsupported_dtype")
        if _SHAPE_FAULT.search(text):
            return PluginRefusal(f"{name} cannot compute on these shapes ({_shapes(given)})", "invalid_shape", None)
    what = type(error).__name__ if type(error).__module__ == "builtins" else "an exception"
    return PluginFailure.at(("plugin", name), f"plugin {name} failed: {what}", "plugin_error")


def contained(name: str, call: Call, dtypes: Sequence[str] | None) -> Call:
    """``call``, with its errors sorted into the request's and the plugin's, and its result checked."""

    def checked(given: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        floating = [t.dtype for t in given.values() if t.is_floating_point()]
        dtype = floating[0] if floating else None
        if dtypes is not None and dtype is not None:
            dtype_name = str(dtype).removeprefix("torch.")
            if dtype_name not in dtypes:
                raise UnsupportedDType.at(
                    ("body", "dtype"),
                    f"{name} computes in {', '.join(dtypes)} only, not {dtype_name}",
                    "unsupported_dtype",
                )
        try:
            output = call(given, params)
        except BaseException as error:  # the plugin's code: SystemExit and the like included
            sorted_error = _sorted(name, error, given, dtype)
            if sorted_error is error:
                raise
            raise sorted_error from error  # the cause's traceback is logged with the request's id
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            what = f"a {output.dtype} tensor" if isinstance(output, torch.Tensor) else type(output).__name__
            raise PluginFailure.at(
                ("plugin", name),
                f"plugin {name} failed: it returned {what}, not a floating-point tensor",
                "plugin_error",
            )
        if dtype is not None and output.dtype != dtype:
            returned, computed = (str(d).removeprefix("torch.") for d in (output.dtype, dtype))
            raise PluginFailure.at(
                ("plugin", name),
                f"plugin {name} failed: it returned {returned} for a {computed} request "
                "(a plugin must compute in the dtype of its input)",
                "plugin_error",
            )
        return output

    return checked
