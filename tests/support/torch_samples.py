"""PyTorch's own test inputs for the catalogue's functions, as service requests.

``torch.testing._internal`` describes every operator (``op_db``: sample inputs and error inputs)
and module (``module_db``: constructor and forward arguments) with the inputs torch tests itself
on. Each sample of a catalogue function becomes a ``Case``: a request body for the service, and
the torch call that computes the reference in-process. Samples the wire format cannot carry (an
argument the API does not expose, a refused deprecated argument) become a ``Skip`` with the reason.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from app.compute.catalogue import FunctionSpec
from app.compute.catalogue.registry import Catalogue
from tests.support.reference import encode

Reference = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """One sample as a request, and how torch computes it."""

    spec: FunctionSpec
    label: str
    body: dict[str, Any]
    tensors: Mapping[str, torch.Tensor]
    """Every tensor sent, by argument name (tensor parameters included)."""
    reference: Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
    """torch's call on (possibly grad-requiring copies of) ``tensors``."""


@dataclass(frozen=True)
class Skip:
    spec_name: str
    reason: str


@dataclass(frozen=True)
class ErrorCase:
    spec: FunctionSpec
    label: str
    body: dict[str, Any]
    torch_error: str


@dataclass
class Tally:
    """Samples not carried, counted by reason; printed at the end of the session."""

    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    """Samples carried with a change (counted, also printed)."""

    def add(self, skip: Skip) -> None:
        key = f"{skip.spec_name}: {skip.reason}"
        self.skipped[key] = self.skipped.get(key, 0) + 1

    def note(self, spec_name: str, what: str) -> None:
        key = f"{spec_name}: {what}"
        self.notes[key] = self.notes.get(key, 0) + 1


def _op_names(spec: FunctionSpec) -> set[str]:
    return {spec.name, f"nn.functional.{spec.name}"}


def op_infos(spec: FunctionSpec) -> list[Any]:
    from torch.testing._internal.common_methods_invocations import op_db

    return [op for op in op_db if op.name in _op_names(spec)]


def module_infos(spec: FunctionSpec) -> list[Any]:
    from torch.testing._internal.common_modules import module_db

    return [info for info in module_db if info.module_cls.__name__ in spec.aliases]


def _signature(spec: FunctionSpec) -> inspect.Signature | None:
    fn = getattr(F, spec.name, None) or getattr(torch, spec.name, None)
    try:
        return inspect.signature(fn) if fn is not None else None
    except (TypeError, ValueError):
        return None


_WIRE_INTS = (torch.int64, torch.int32)


def _wire(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    if not tensor.is_floating_point() and tensor.dtype not in _WIRE_INTS:
        tensor = tensor.to(torch.int64)
    return tensor


def _place(spec: FunctionSpec, body: dict[str, Any], name: str, value: Any) -> None:
    arg = spec.tensor(name)
    if arg is not None and arg.top_level and spec.kind == "loss":
        body[name] = value
    elif arg is not None and spec.kind == "loss":
        body.setdefault("inputs", {})[name] = value
    elif arg is not None:
        body["input"] = value
    else:
        body.setdefault("params", {})[name] = value


def request_from(
    spec: FunctionSpec,
    named: Mapping[str, Any],
    dtype: torch.dtype,
    form_seed: int,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[str]] | Skip:
    """The request carrying ``named`` (torch argument name -> value), or why it cannot."""
    body: dict[str, Any] = {"function": spec.name, "dtype": str(dtype).removeprefix("torch."), "grad": True}
    tensors: dict[str, torch.Tensor] = {}
    promoted: list[str] = []
    for name, value in named.items():
        param = spec.param(name)
        if spec.tensor(name) is None and param is None:
            refusal = Catalogue.refusal(spec, name)
            if refusal is not None:
                return Skip(spec.name, f"refused argument {name!r}")
            return Skip(spec.name, f"argument {name!r} not exposed")
        if isinstance(value, torch.Tensor):
            if param is not None and param.kind != "tensor":
                if value.numel() != 1:
                    return Skip(spec.name, f"tensor-valued scalar {name!r}")
                value = value.item()
            else:
                tensor = _wire(value)
                arg = spec.tensor(name)
                if not tensor.is_floating_point() and (param is not None or (arg is not None and arg.kind == "float")):
                    # the service reads a floating-point argument as floating point; torch would promote
                    tensor = tensor.to(dtype)
                    promoted.append(name)
                if tensor.is_floating_point() and tensor.dtype != dtype:
                    return Skip(spec.name, f"{name!r} in {tensor.dtype}, not the sample's dtype")
                tensors[name] = tensor
                form = "base64" if (zlib.crc32(name.encode()) + form_seed) % 2 else "json"
                if tensor.is_floating_point() and dtype != torch.float64:
                    form = "base64"  # JSON numbers are read as float64 and rounded once: exact too, but slower
                _place(spec, body, name, encode(tensor, form))  # type: ignore[arg-type]
                continue
        if param is None and isinstance(value, (tuple, list)):
            value = torch.tensor(value)  # integer lengths torch also takes as a sequence
            tensors[name] = value
            _place(spec, body, name, encode(value, "json"))
            continue
        if param is None:
            return Skip(spec.name, f"tensor argument {name!r} given as {type(value).__name__}")
        if param.kind == "tensor":
            if value is None:
                continue
            return Skip(spec.name, f"tensor parameter {name!r} given as {type(value).__name__}")
        if callable(value):
            return Skip(spec.name, f"callable argument {name!r}")
        if isinstance(value, torch.dtype):
            return Skip(spec.name, f"dtype argument {name!r}")
        if value is None and not param.nullable:
            continue  # torch's own default, spelled out
        body.setdefault("params", {})[name] = value
    return body, tensors, promoted


def bind(spec: FunctionSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any] | Skip:
    signature = _signature(spec)
    if signature is None:  # a builtin: torch's order is the tensor arguments, then the parameters
        names = [*(arg.name for arg in spec.tensors), *(param.name for param in spec.params)]
        if len(args) > len(names):
            return Skip(spec.name, "more positional arguments than the function has")
        return {**dict(zip(names, args, strict=False)), **kwargs}
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        return Skip(spec.name, f"arguments do not bind: {error}")
    return dict(bound.arguments)


def seed_of(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())
