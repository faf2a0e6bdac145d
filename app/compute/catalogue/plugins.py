"""The catalogue a service runs with: torch's functions and the operator's plugins, loaded once
at start-up from ``TORCHFN_PLUGINS`` (``module:attribute`` entries) and the entry-point group
``torchfn.functions``. Any plugin that cannot be served stops start-up (``PluginError``), naming
its entry and the reason: it is the operator's code, and a half-loaded catalogue helps no one."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from app.compute.catalogue.declarations import Function
from app.compute.catalogue.introspect import UnusableSignature, describe_plugin
from app.compute.catalogue.params import validate_params
from app.compute.catalogue.plugin_calls import PluginRefusal
from app.compute.catalogue.registry import BUILT_IN, Catalogue
from app.compute.catalogue.spec import FunctionSpec
from app.core.config import Settings
from app.core.errors import ServiceError

ENTRY_POINT_GROUP = "torchfn.functions"


class PluginError(Exception):
    """A plugin that cannot be served: ``entry`` names it, ``reason`` says why."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"plugin {entry}: {reason}")
        self.entry, self.reason = entry, reason


def _import(entry: str) -> Any:
    module_name, colon, attribute = entry.partition(":")
    if not colon or not module_name.strip() or not attribute.strip():
        raise PluginError(entry, "expected module:attribute (e.g. my_plugins:Swish)")
    try:
        obj: Any = importlib.import_module(module_name.strip())
    except Exception as error:  # the operator's module: anything may fail in it
        raise PluginError(entry, f"cannot import {module_name.strip()} ({type(error).__name__}: {error})") from None
    for part in attribute.strip().split("."):
        if not hasattr(obj, part):
            raise PluginError(entry, f"{module_name.strip()} has no attribute {attribute.strip()!r}")
        obj = getattr(obj, part)
    return obj


def _from_entry_points() -> Iterator[tuple[str, Any]]:
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist.name if point.dist is not None else "an installed package"
        label = f"{point.value} (entry point {point.name!r} of {dist})"
        try:
            yield label, point.load()
        except Exception as error:
            raise PluginError(label, f"cannot load it ({type(error).__name__}: {error})") from None


def _objects(label: str, obj: Any) -> Iterator[tuple[str, Any]]:
    """A list or tuple of plugins stands for each of them."""
    if isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj):
            yield f"{label}[{index}]", item
    else:
        yield label, obj


def _identity(obj: Any) -> Any:
    return obj.implementation if isinstance(obj, Function) else obj


def _try_example(spec: FunctionSpec, entry: str) -> None:
    """Compute the catalogue example once, on the CPU: a plugin whose example fails (or a
    generated example that does not suit it) is caught now, not by the first client."""
    import torch

    example = spec.example
    try:
        scalars, tensor_params = validate_params(spec, example.get("params", {}), ("example", "params"))
        given = {name: example[name] for name in ("input", "target") if name in example}
        given.update(example.get("inputs", {}))
        given.update({name: value for name, value in tensor_params.items() if value is not None})
        tensors = {}
        for name, value in given.items():
            arg = spec.tensor(name)
            integer = arg is not None and arg.kind == "index"
            tensors[name] = torch.tensor(np.asarray(value), dtype=torch.int64 if integer else torch.float32)
        with torch.no_grad():
            spec.call(tensors, scalars)
    except (ServiceError, PluginRefusal, RuntimeError, ValueError, IndexError, TypeError, KeyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PluginError(
            entry,
            f"it failed on its example {dict(example)}: {message[:300]}. Check that its forward computes "
            "this input; if the example does not suit it (a shape or range it refuses), declare one that "
            "does with app.plugins.Function(..., example={...})",
        ) from None


def load_plugins(entries: Sequence[str], use_entry_points: bool) -> tuple[FunctionSpec, ...]:
    """The specs of every plugin named in ``entries`` and (when ``use_entry_points``) contributed
    by installed packages; the same object named twice is loaded once."""
    found: list[tuple[str, Any]] = [item for entry in entries for item in _objects(entry, _import(entry))]
    if use_entry_points:
        found += [item for label, obj in _from_entry_points() for item in _objects(label, obj)]
    specs: list[FunctionSpec] = []
    taken = {key.lower(): spec for spec in BUILT_IN for key in (spec.name, *spec.aliases)}
    seen: set[int] = set()
    for label, obj in found:
        if id(_identity(obj)) in seen:
            continue
        seen.add(id(_identity(obj)))
        try:
            spec = describe_plugin(obj, label)
        except UnusableSignature as error:
            raise PluginError(label, str(error)) from None
        for key in (spec.name, *spec.aliases):
            holder = taken.get(key.lower())
            if holder is not None:
                owner = f"the plugin {holder.plugin}" if holder.plugin else "a built-in function"
                raise PluginError(label, f"its name {key!r} is already {holder.name!r}, {owner}")
            taken[key.lower()] = spec
        _try_example(spec, label)
        specs.append(spec)
    return tuple(specs)


def build_catalogue(settings: Settings) -> Catalogue:
    """torch's functions and the plugins ``settings`` name; raises ``PluginError``."""
    return Catalogue(BUILT_IN + load_plugins(settings.plugins, settings.plugin_entry_points))
