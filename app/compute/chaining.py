"""An activation applied to a loss's ``input`` first: ``loss(activation(input), target)`` in one
request, its gradient taken with respect to the raw ``input`` through both (the logits' gradient
a training step needs). Transport-neutral: each protocol names the activation its own way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.compute.catalogue import Catalogue, FunctionSpec
from app.compute.catalogue.checks import ArgumentError
from app.compute.catalogue.cost import Cost
from app.compute.catalogue.params import validate_params
from app.core.errors import InvalidRequest, Loc
from app.core.limits import MAX_NAME, longer_than


@dataclass(frozen=True)
class Chained:
    """The activation a loss request applies to its ``input`` first."""

    spec: FunctionSpec
    params: Mapping[str, Any]
    """Scalar parameters, defaults filled."""
    arrays: Mapping[str, np.ndarray]
    """Tensor parameters (PReLU's ``weight``), given or default; not differentiated."""
    locs: Mapping[str, Loc]


TensorDecoder = Callable[[Any, Loc], np.ndarray]


def chain_activation(
    catalogue: Catalogue,
    loss: FunctionSpec,
    name: str,
    given: Mapping[str, Any],
    loc: Loc,
    params_loc: Loc,
    decode: TensorDecoder,
) -> Chained:
    """The activation ``name`` with its parameters ``given``, checked for chaining into ``loss``.
    ``loc`` is where the name was sent, ``params_loc`` where its parameters were."""
    if loss.kind != "loss":
        raise InvalidRequest.at(loc, f"{loss.name} is an activation: only a loss takes one", "activation_not_chainable")
    if loss.tensor("input") is None:
        raise InvalidRequest.at(
            loc, f"{loss.name} has no `input` to apply an activation to", "activation_not_chainable"
        )
    if len(name) > MAX_NAME:
        raise InvalidRequest.at(loc, f"an activation's name is {longer_than(MAX_NAME)}", "string_too_long")
    spec = catalogue.find(name)
    if spec is None:
        close = catalogue.suggest(name, "activation")
        hint = f"; closest: {', '.join(close)}" if close else "; see GET /functions?kind=activation"
        raise InvalidRequest.at(loc, f"unknown activation {name[:100]!r}{hint}", "unknown_function")
    if spec.kind != "activation":
        raise InvalidRequest.at(loc, f"{spec.name} is a loss, not an activation", "wrong_kind")
    scalars, tensor_params = validate_params(spec, given, params_loc)
    locs: dict[str, Loc] = {name: (*params_loc, name) for name in (*scalars, *tensor_params)}
    arrays = {name: decode(value, locs[name]) for name, value in tensor_params.items() if value is not None}
    return Chained(spec, scalars, arrays, locs)


def check_activation(chained: Chained, inputs: np.ndarray, input_loc: Loc) -> None:
    """The activation's own host-side checks, on the loss's ``input``."""
    arrays = {"input": inputs, **chained.arrays}
    for check in chained.spec.checks:
        try:
            check(arrays, chained.params)
        except ArgumentError as error:
            loc = input_loc if error.arg == "input" else chained.locs.get(error.arg, input_loc)
            raise InvalidRequest.at(loc, f"{chained.spec.name}: {error.msg}", error.type) from None


def activation_cost(chained: Chained, inputs: np.ndarray) -> Cost:
    return chained.spec.cost({"input": inputs, **chained.arrays}, chained.params)
