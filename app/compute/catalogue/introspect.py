"""An operator's class or function to a ``FunctionSpec``, read from its signature and type hints.

``forward``'s tensors (or a function's untyped positional arguments) are the tensor arguments: one
makes an activation, two or more a loss, whose first two take the places of ``input`` and
``target``. Typed keyword arguments with defaults (``float``, ``int``, ``bool``, ``Literal[...]``,
each optionally ``| None``) are the parameters, validated from their hints.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch import nn

from app.compute.catalogue.declarations import Function
from app.compute.catalogue.declarations import Param as ParamInfo
from app.compute.catalogue.plugin_calls import contained, module_call
from app.compute.catalogue.spec import REQUIRED, Call, FunctionKind, FunctionSpec, Param, ParamKind, TensorArg

RESERVED_TENSOR_NAMES = frozenset({"input", "target", "grad_output"})


class UnusableSignature(Exception):
    """The class or function cannot be served as it is declared; the message says why."""


def snake_case(name: str) -> str:
    """``CustomActivation`` -> ``custom_activation``, ``BCEFocalLoss`` -> ``bce_focal_loss``."""
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", spaced).lower()


@dataclass(frozen=True)
class _Signature:
    tensors: tuple[inspect.Parameter, ...]
    params: tuple[inspect.Parameter, ...]
    hints: Mapping[str, Any]


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as error:  # a hint naming something that does not exist
        raise UnusableSignature(f"its type hints cannot be read ({type(error).__name__}: {error})") from None


def _signature(fn: Callable[..., Any], what: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as error:
        raise UnusableSignature(f"{what} has no readable signature ({error})") from None


def _no_var_args(signature: inspect.Signature, what: str) -> None:
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            star = "*" if parameter.kind is inspect.Parameter.VAR_POSITIONAL else "**"
            raise UnusableSignature(f"{what} takes {star}{parameter.name}: declare each argument by name")


def _module_signature(cls: type[nn.Module]) -> _Signature:
    forward = _signature(cls.forward, "forward")
    _no_var_args(forward, "forward")
    tensors = tuple(p for name, p in forward.parameters.items() if name != "self")
    keyword_only = [p.name for p in tensors if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if keyword_only:
        raise UnusableSignature(f"forward takes keyword-only {', '.join(keyword_only)}: parameters go to __init__")
    if cls.__init__ is nn.Module.__init__:
        return _Signature(tensors, (), {})
    init = _signature(cls.__init__, "__init__")
    _no_var_args(init, "__init__")
    params = tuple(p for name, p in init.parameters.items() if name != "self")
    return _Signature(tensors, params, _hints(cls.__init__))


def _is_scalar_hint(hint: Any) -> bool:
    return _param_type(hint) is not None


def _function_signature(fn: Callable[..., Any]) -> _Signature:
    signature = _signature(fn, "the function")
    _no_var_args(signature, "the function")
    hints = _hints(fn)
    tensors: list[inspect.Parameter] = []
    params: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        is_param = parameter.kind is inspect.Parameter.KEYWORD_ONLY or _is_scalar_hint(hints.get(parameter.name))
        (params if is_param else tensors).append(parameter)
    return _Signature(tuple(tensors), tuple(params), hints)


def _param_type(hint: Any) -> tuple[ParamKind, tuple[Any, ...], bool] | None:
    """(kind, choices, nullable) of a supported hint; None for any other."""
    nullable = False
    if typing.get_origin(hint) in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(members) != 1 or len(typing.get_args(hint)) != 2:
            return None
        hint, nullable = members[0], True
    if hint is bool:
        return "bool", (), nullable
    if hint is int:
        return "int", (), nullable
    if hint is float:
        return "float", (), nullable
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if choices and all(isinstance(choice, (str, int, float)) for choice in choices):
            return "choice", tuple(choices), nullable
    return None


def _param(parameter: inspect.Parameter, hint: Any, info: ParamInfo | None) -> Param:
    name = parameter.name
    if hint is None:
        raise UnusableSignature(f"parameter {name!r} has no type hint (float, int, bool or Literal[...])")
    typed = _param_type(hint)
    if typed is None:
        raise UnusableSignature(f"parameter {name!r}: type {hint!r} is not float, int, bool or Literal[...]")
    kind, choices, nullable = typed
    default = REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default
    if default is not REQUIRED and default is not None:
        if kind == "choice" and default not in choices:
            raise UnusableSignature(f"parameter {name!r}: default {default!r} is not one of its choices")
        if kind == "float" and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        expected = {"bool": bool, "int": int, "float": float, "choice": object}[kind]
        if not isinstance(default, expected) or (kind == "int" and isinstance(default, bool)):
            raise UnusableSignature(f"parameter {name!r}: default {default!r} is not a {kind}")
    if default is None and not nullable:
        raise UnusableSignature(f"parameter {name!r}: default None needs the hint '{kind} | None'")
    info = info or ParamInfo()
    return Param(
        name,
        kind,
        info.doc or f"{kind} parameter of the plugin",
        default=default,
        ge=info.ge,
        gt=info.gt,
        le=info.le,
        lt=info.lt,
        choices=choices,
        nullable=nullable,
    )


def _tensor_names(tensors: tuple[inspect.Parameter, ...], kind: FunctionKind) -> tuple[str, ...]:
    if not tensors:
        raise UnusableSignature("it takes no tensor argument")
    if kind == "activation" and len(tensors) > 1:
        raise UnusableSignature(f"an activation takes one tensor; it takes {len(tensors)}")
    names = ["input", "target"][: len(tensors)] + [p.name for p in tensors[2:]]
    clash = [name for name in names[2:] if name in RESERVED_TENSOR_NAMES]
    if clash:
        raise UnusableSignature(f"its third or later tensor is named {clash[0]!r}, a name the service reserves")
    for parameter in tensors:
        if parameter.default is not inspect.Parameter.empty and parameter.default is not None:
            raise UnusableSignature(f"tensor argument {parameter.name!r} has a default other than None")
    return tuple(names)


_SAMPLE_INPUT = [[0.8, 0.3, 0.6], [0.1, 0.9, 0.45]]
_SAMPLE_TARGET = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
_SAMPLE_ACTIVATION = [[-1.5, 0.2, 3.0], [0.7, -0.1, 2.5]]


def _generated_example(name: str, kind: FunctionKind, tensors: tuple[TensorArg, ...]) -> dict[str, Any]:
    """A small request: probabilities against 0/1 targets for a loss, mixed signs for an activation."""
    if kind == "activation":
        return {"function": name, "input": _SAMPLE_ACTIVATION, "grad": True}
    example: dict[str, Any] = {"function": name}
    extra: dict[str, Any] = {}
    for arg in tensors:
        if arg.optional:
            continue
        value = [[1, 0, 1], [0, 1, 0]] if arg.kind == "index" else (_SAMPLE_TARGET if arg.name != "input" else None)
        value = _SAMPLE_INPUT if arg.name == "input" else value
        (example if arg.top_level else extra)[arg.name] = value
    if extra:
        example["inputs"] = extra
    example["grad"] = True
    return example


def describe_plugin(obj: Any, entry: str) -> FunctionSpec:
    """The spec of a plugin object (an ``nn.Module`` subclass, a function or a ``Function``)."""
    declared = obj if isinstance(obj, Function) else Function(obj)
    implementation = declared.implementation
    if isinstance(implementation, type) and issubclass(implementation, nn.Module):
        signature = _module_signature(implementation)
    elif inspect.isfunction(implementation) or inspect.isbuiltin(implementation):
        signature = _function_signature(implementation)
    else:
        raise UnusableSignature(
            f"{type(implementation).__name__} {implementation!r:.60} is not an nn.Module subclass, "
            "a function or an app.plugins.Function"
        )
    kind: FunctionKind = declared.kind or ("activation" if len(signature.tensors) == 1 else "loss")
    tensor_names = _tensor_names(signature.tensors, kind)
    unknown = set(declared.params) - {p.name for p in signature.params}
    if unknown:
        raise UnusableSignature(f"declares parameter(s) {', '.join(sorted(unknown))} its signature does not take")
    params = tuple(_param(p, signature.hints.get(p.name), declared.params.get(p.name)) for p in signature.params)
    clash = set(tensor_names) & {p.name for p in params}
    if clash:
        raise UnusableSignature(f"{', '.join(sorted(clash))} is both a tensor and a parameter")
    for listed in (*declared.index_tensors, *(declared.differentiable or ()), *declared.tensors):
        if listed not in tensor_names:
            raise UnusableSignature(f"declares tensor {listed!r}; its tensors are {', '.join(tensor_names)}")
    if declared.elementwise and kind != "activation":
        raise UnusableSignature("only an activation can be elementwise")
    tensors = tuple(
        TensorArg(
            name,
            declared.tensors.get(name, "a tensor argument of the plugin"),
            kind="index" if name in declared.index_tensors else "float",
            differentiable=declared.differentiable is None or name in declared.differentiable,
            optional=parameter.default is None,
        )
        for name, parameter in zip(tensor_names, signature.tensors, strict=True)
    )
    class_name = getattr(implementation, "__name__", "plugin")
    name = declared.name or snake_case(class_name)
    aliases = tuple(dict.fromkeys(a for a in (class_name, *declared.aliases) if a.lower() != name.lower()))
    call: Call
    if isinstance(implementation, type):
        call = module_call(implementation, signature.tensors)
    else:
        call = _function_call(implementation, signature.tensors)
    own_doc = inspect.cleandoc(getattr(implementation, "__dict__", {}).get("__doc__") or implementation.__doc__ or "")
    summary = declared.summary or own_doc.split("\n")[0] or f"plugin {entry}"
    return FunctionSpec(
        name=name,
        kind=kind,
        summary=summary,
        call=contained(name, call, declared.dtypes),
        tensors=tensors,
        example=dict(declared.example or _generated_example(name, kind, tensors)),
        params=params,
        aliases=aliases,
        fusable=(lambda params: True) if declared.elementwise else None,
        cost=declared.cost,
        composite=True,
        plugin=entry,
        dtypes=tuple(declared.dtypes) if declared.dtypes else None,
    )


def _function_call(fn: Callable[..., torch.Tensor], tensors: tuple[inspect.Parameter, ...]) -> Call:
    names = ["input", "target", *(p.name for p in tensors[2:])][: len(tensors)]

    def call(given: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        return fn(*(given.get(name) for name in names), **params)

    return call
