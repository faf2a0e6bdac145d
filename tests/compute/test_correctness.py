"""The service's values and gradients equal torch's, bit for bit, for every function of the catalogue.

``INPUTS`` maps every function name to a generator of valid inputs (shapes and non-default
parameters); ``REFERENCE`` maps it to the torch.nn.functional call computed in-process. Each
variant is crossed with every reduction (with and without gradients, plus a random
``grad_output`` for activations and reduction="none"), every dtype, and a rotation of the wire forms
(JSON or base64 inputs, JSON or base64 replies). The reference runs on the service's device and
dtype; where torch has no kernel for that dtype, the service must answer 422 unsupported_dtype.

Equality is bitwise, except on CUDA for the cases where torch itself names a nondeterministic
kernel (atomic reductions such as nll_loss2d's, ctc_loss's backward): torch does not reproduce
those bit for bit from one call to the next, so they are compared with torch's tolerances.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE, FunctionSpec
from tests.support.reference import (
    DTYPES,
    WireForm,
    as_tensor,
    assert_close,
    assert_same,
    decode,
    encode,
    is_object_form,
)

Array = np.ndarray
Rng = np.random.Generator


@dataclass(frozen=True)
class Variant:
    """One set of inputs: tensors by torch argument name, parameters (numpy arrays are tensor params)."""

    label: str
    tensors: Mapping[str, Array]
    params: Mapping[str, Any] = field(default_factory=dict)


Generator = Callable[[Rng], list[Variant]]

# --- input generators --------------------------------------------------------------------------


def _normal(rng: Rng, shape: tuple[int, ...], scale: float = 1.5) -> Array:
    return rng.standard_normal(shape) * scale


def _uniform(rng: Rng, shape: tuple[int, ...], low: float, high: float) -> Array:
    return rng.uniform(low, high, shape)


def _binary(rng: Rng, shape: tuple[int, ...]) -> Array:
    return rng.integers(0, 2, shape).astype(np.float64)


def _signs(rng: Rng, shape: tuple[int, ...]) -> Array:
    return rng.choice(np.array([-1.0, 1.0]), shape)


def _log_softmax(rng: Rng, shape: tuple[int, ...], dim: int = -1) -> Array:
    x = _normal(rng, shape)
    shifted = x - x.max(axis=dim, keepdims=True)
    out: Array = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return out


def _softmax(rng: Rng, shape: tuple[int, ...], dim: int = -1) -> Array:
    out: Array = np.exp(_log_softmax(rng, shape, dim))
    return out


def _classes(rng: Rng, shape: tuple[int, ...], classes: int, low: int = 0) -> Array:
    return rng.integers(low, classes, shape).astype(np.int64)


def _label(params: Mapping[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        shown = "x".join(map(str, value.shape)) if isinstance(value, np.ndarray) else str(value)
        parts.append(f"{name}={shown}")
    return ",".join(parts) or "default"


SPECIAL = np.array(
    [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, -20.0, 88.0, -104.0, 1e-4]
)
"""Non-finite values, signed zeros and the kinks of the piecewise activations."""

ACT_SHAPES: dict[str, tuple[int, ...]] = {"0d": (), "1d": (7,), "2d": (3, 5), "3d": (2, 3, 4), "empty": (0, 3)}


def _activation(
    *param_sets: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
    shapes: Mapping[str, tuple[int, ...]] = ACT_SHAPES,
    param_shape: tuple[int, ...] = (3, 5),
    special: Array | None = SPECIAL,
    scale: float = 4.0,
) -> Generator:
    """Each shape with default parameters (plus ``base``), then each parameter set on one shape."""
    fixed = dict(base or {})

    def generate(rng: Rng) -> list[Variant]:
        variants = [Variant(label, {"input": _normal(rng, shape, scale)}, fixed) for label, shape in shapes.items()]
        if special is not None:
            variants.append(Variant("special", {"input": special}, fixed))
        for params in param_sets:
            merged = {**fixed, **params}
            variants.append(Variant(_label(params), {"input": _normal(rng, param_shape, scale)}, merged))
        return variants

    return generate


def _prelu(rng: Rng) -> list[Variant]:
    variants = _activation()(rng)
    for shape in ((3, 5), (2, 3, 4), (2, 3, 2, 2)):
        weight = _uniform(rng, (shape[1],), -0.5, 0.5)
        variants.append(Variant(f"{len(shape)}d,per_channel", {"input": _normal(rng, shape, 3.0)}, {"weight": weight}))
    variants.append(Variant("1d,weight=0.1", {"input": _normal(rng, (6,), 3.0)}, {"weight": np.array([0.1])}))
    return variants


def _glu(rng: Rng) -> list[Variant]:
    shapes = {"1d": (6,), "2d": (3, 4), "3d": (2, 3, 4), "empty": (0, 4)}
    variants = _activation(shapes=shapes, special=SPECIAL[:16])(rng)
    variants.append(Variant("dim=0", {"input": _normal(rng, (4, 3), 4.0)}, {"dim": 0}))
    variants.append(Variant("dim=1", {"input": _normal(rng, (2, 4, 3), 4.0)}, {"dim": 1}))
    return variants


def _softmax_like(rng: Rng) -> list[Variant]:
    variants = _activation(scale=3.0)(rng)
    variants.append(Variant("2d,dim=0", {"input": _normal(rng, (3, 5), 3.0)}, {"dim": 0}))
    variants.append(Variant("3d,dim=1", {"input": _normal(rng, (2, 3, 4), 3.0)}, {"dim": 1}))
    variants.append(Variant("3d,dim=-2", {"input": _normal(rng, (2, 3, 4), 3.0)}, {"dim": -2}))
    return variants


def _softmax2d(rng: Rng) -> list[Variant]:
    shapes = {"3d": (3, 2, 2), "4d": (2, 3, 2, 2), "empty": (0, 3, 2, 2)}
    return _activation(shapes=shapes, special=SPECIAL[:16].reshape(4, 2, 2))(rng)


def _elementwise_loss(
    target: Callable[[Rng, tuple[int, ...]], Array],
    *param_sets: Mapping[str, Any],
    prediction: Callable[[Rng, tuple[int, ...]], Array] = _normal,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> Generator:
    """input and target of one shape, for each shape; then each parameter set on a 2-D pair.

    A parameter set may hold a callable taking the rng, for values drawn per variant.
    """
    shapes = shapes or {"0d": (), "1d": (6,), "2d": (3, 4), "3d": (2, 3, 2)}

    def generate(rng: Rng) -> list[Variant]:
        variants = [
            Variant(label, {"input": prediction(rng, shape), "target": target(rng, shape)})
            for label, shape in shapes.items()
        ]
        for params in param_sets:
            drawn = {k: v(rng) if callable(v) else v for k, v in params.items()}
            tensors = {"input": prediction(rng, (3, 4)), "target": target(rng, (3, 4))}
            variants.append(Variant(_label(drawn), tensors, drawn))
        return variants

    return generate


def _per_class(low: float, high: float, classes: int = 4) -> Callable[[Rng], Array]:
    return lambda rng: _uniform(rng, (classes,), low, high)


def _full_weight(rng: Rng) -> Array:
    """A weight per element: torch's l1/mse/huber losses demand the input's shape (3, 4)."""
    return _uniform(rng, (3, 4), 0.2, 2.0)


def _probabilities(rng: Rng, shape: tuple[int, ...]) -> Array:
    return _uniform(rng, shape, 0.02, 0.98)


def _binary_cross_entropy(rng: Rng) -> list[Variant]:
    variants = _elementwise_loss(
        _probabilities,
        {"weight": _per_class(0.2, 2.0)},
        prediction=_probabilities,
    )(rng)
    variants.append(Variant("binary_target", {"input": _probabilities(rng, (3, 4)), "target": _binary(rng, (3, 4))}))
    edges = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-3])
    variants.append(Variant("edges", {"input": edges, "target": np.array([0.0, 1.0, 0.7, 0.2, 0.5, 1.0])}))
    return variants


def _class_loss(probabilities: bool) -> Generator:
    """cross_entropy (``probabilities``: also float targets and label smoothing) or nll_loss."""

    def prediction(rng: Rng, shape: tuple[int, ...]) -> Array:
        return _normal(rng, shape, 2.0) if probabilities else _log_softmax(rng, shape, dim=1 if len(shape) > 1 else 0)

    def generate(rng: Rng) -> list[Variant]:
        c = 4
        variants = [
            Variant("NC", {"input": prediction(rng, (5, c)), "target": _classes(rng, (5,), c)}),
            Variant("NCd", {"input": prediction(rng, (3, c, 2)), "target": _classes(rng, (3, 2), c)}),
            Variant("NCd1d2", {"input": prediction(rng, (2, c, 2, 3)), "target": _classes(rng, (2, 2, 3), c)}),
            Variant("C", {"input": prediction(rng, (c,)), "target": _classes(rng, (), c)}),
            Variant(
                "NC,weight",
                {"input": prediction(rng, (5, c)), "target": _classes(rng, (5,), c)},
                {"weight": _uniform(rng, (c,), 0.2, 2.0)},
            ),
            Variant(
                "NCd,ignore_index=1",
                {"input": prediction(rng, (3, c, 2)), "target": np.array([[1, 0], [2, 1], [3, 1]])},
                {"ignore_index": 1},
            ),
            Variant("NC,ignored=-100", {"input": prediction(rng, (5, c)), "target": np.array([0, -100, 3, -100, 2])}),
        ]
        if probabilities:
            variants += [
                Variant("NC,probs", {"input": prediction(rng, (5, c)), "target": _softmax(rng, (5, c))}),
                Variant("NCd,probs", {"input": prediction(rng, (3, c, 2)), "target": _softmax(rng, (3, c, 2), 1)}),
                Variant("C,probs", {"input": prediction(rng, (c,)), "target": _softmax(rng, (c,))}),
                Variant(
                    "NC,label_smoothing=0.2",
                    {"input": prediction(rng, (5, c)), "target": _classes(rng, (5,), c)},
                    {"label_smoothing": 0.2},
                ),
                Variant(
                    "NC,probs,label_smoothing=0.3,weight",
                    {"input": prediction(rng, (5, c)), "target": _softmax(rng, (5, c))},
                    {"label_smoothing": 0.3, "weight": _uniform(rng, (c,), 0.2, 2.0)},
                ),
                Variant(
                    "NCd,weight,ignore_index=0,label_smoothing=0.1",
                    {"input": prediction(rng, (3, c, 2)), "target": np.array([[0, 3], [2, 0], [1, 2]])},
                    {"weight": _uniform(rng, (c,), 0.2, 2.0), "ignore_index": 0, "label_smoothing": 0.1},
                ),
            ]
        return variants

    return generate


def _ctc(rng: Rng) -> list[Variant]:
    steps, batch, c = 6, 3, 5

    def log_probs(shape: tuple[int, ...]) -> Array:
        return _log_softmax(rng, shape)

    def padded(lengths: list[int], low: int = 1) -> Array:
        return _classes(rng, (len(lengths), 3), c, low)

    def ints(values: Any) -> Array:
        return np.array(values, dtype=np.int64)

    target_lengths = [3, 0, 2]
    blank_targets = rng.choice(np.array([0, 1, 3, 4]), (batch, 3)).astype(np.int64)
    return [
        Variant(
            "padded",
            {
                "log_probs": log_probs((steps, batch, c)),
                "targets": padded(target_lengths),
                "input_lengths": ints([6, 5, 4]),
                "target_lengths": ints(target_lengths),
            },
        ),
        Variant(
            "concatenated",
            {
                "log_probs": log_probs((steps, batch, c)),
                "targets": _classes(rng, (5,), c, 1),
                "input_lengths": ints([6, 6, 5]),
                "target_lengths": ints(target_lengths),
            },
        ),
        Variant(
            "unbatched",
            {
                "log_probs": log_probs((steps, c)),
                "targets": _classes(rng, (3,), c, 1),
                "input_lengths": ints(5),
                "target_lengths": ints(3),
            },
        ),
        Variant(
            "blank=2",
            {
                "log_probs": log_probs((steps, batch, c)),
                "targets": blank_targets,
                "input_lengths": ints([6, 6, 6]),
                "target_lengths": ints([3, 2, 1]),
            },
            {"blank": 2},
        ),
        Variant(
            "infeasible",
            {
                "log_probs": log_probs((steps, batch, c)),
                "targets": padded(target_lengths),
                "input_lengths": ints([2, 6, 6]),
                "target_lengths": ints(target_lengths),
            },
        ),
        Variant(
            "infeasible,zero_infinity=True",
            {
                "log_probs": log_probs((steps, batch, c)),
                "targets": padded(target_lengths),
                "input_lengths": ints([2, 6, 6]),
                "target_lengths": ints(target_lengths),
            },
            {"zero_infinity": True},
        ),
    ]


def _counts(rng: Rng, shape: tuple[int, ...]) -> Array:
    return rng.integers(0, 7, shape).astype(np.float64)


def _rates(rng: Rng, shape: tuple[int, ...]) -> Array:
    rates = _uniform(rng, shape, 0.0, 4.0)
    rates.flat[0] = 0.0
    return rates


def _poisson(rng: Rng) -> list[Variant]:
    variants = _elementwise_loss(_counts, {"full": True})(rng)
    for params in ({"log_input": False}, {"log_input": False, "full": True}, {"log_input": False, "eps": 0.25}):
        tensors = {"input": _rates(rng, (3, 4)), "target": _counts(rng, (3, 4))}
        variants.append(Variant(_label(params), tensors, params))
    return variants


def _gaussian(rng: Rng) -> list[Variant]:
    def tensors(shape: tuple[int, ...], var_shape: tuple[int, ...]) -> dict[str, Array]:
        return {"input": _normal(rng, shape), "target": _normal(rng, shape), "var": _uniform(rng, var_shape, 0.2, 2.5)}

    return [
        Variant("1d", tensors((6,), (6,))),
        Variant("2d", tensors((3, 4), (3, 4))),
        Variant("3d", tensors((2, 3, 2), (2, 3, 2))),
        Variant("2d,var=3x1", tensors((3, 4), (3, 1))),
        Variant("2d,var=3", tensors((3, 4), (3,))),
        Variant("full=True", tensors((3, 4), (3, 4)), {"full": True}),
        Variant("eps=0.5", tensors((3, 4), (3, 4)), {"eps": 0.5}),
    ]


def _kl_div(rng: Rng) -> list[Variant]:
    def pair(shape: tuple[int, ...]) -> dict[str, Array]:
        return {"input": _log_softmax(rng, shape), "target": _softmax(rng, shape)}

    zero_target = _softmax(rng, (3, 4))
    zero_target[0, 1] = 0.0
    return [
        Variant("1d", pair((5,))),
        Variant("2d", pair((3, 4))),
        Variant("3d", pair((2, 3, 4))),
        Variant("zero_target", {"input": _log_softmax(rng, (3, 4)), "target": zero_target}),
        Variant(
            "log_target=True",
            {"input": _log_softmax(rng, (3, 4)), "target": _log_softmax(rng, (3, 4))},
            {"log_target": True},
        ),
    ]


def _margin_ranking(rng: Rng) -> list[Variant]:
    def triple(shape: tuple[int, ...]) -> dict[str, Array]:
        return {"input1": _normal(rng, shape), "input2": _normal(rng, shape), "target": _signs(rng, shape)}

    return [
        Variant("0d", triple(())),
        Variant("1d", triple((6,))),
        Variant("2d", triple((3, 4))),
        Variant("margin=0.5", triple((6,)), {"margin": 0.5}),
    ]


def _multilabel_targets(rng: Rng, rows: int, classes: int) -> Array:
    """Per row: distinct labels, then -1, then arbitrary in-range values that must be ignored."""
    out = rng.integers(-1, classes, (rows, classes))
    for row in range(rows):
        count = int(rng.integers(0, classes + 1))
        out[row, :count] = rng.permutation(classes)[:count]
        if count < classes:
            out[row, count] = -1
    return out.astype(np.int64)


def _multilabel_margin(rng: Rng) -> list[Variant]:
    return [
        Variant("NC", {"input": _normal(rng, (6, 4)), "target": _multilabel_targets(rng, 6, 4)}),
        Variant("C", {"input": _normal(rng, (5,)), "target": _multilabel_targets(rng, 1, 5)[0]}),
        Variant("NC,full_rows", {"input": _normal(rng, (2, 3)), "target": np.array([[2, 0, 1], [1, -1, 2]])}),
    ]


def _multilabel_soft_margin(rng: Rng) -> list[Variant]:
    return [
        Variant("NC", {"input": _normal(rng, (5, 4)), "target": _binary(rng, (5, 4))}),
        Variant("C", {"input": _normal(rng, (4,)), "target": _binary(rng, (4,))}),
        Variant(
            "NC,weight",
            {"input": _normal(rng, (5, 4)), "target": _binary(rng, (5, 4))},
            {"weight": _uniform(rng, (4,), 0.2, 2.0)},
        ),
    ]


def _cosine_embedding(rng: Rng) -> list[Variant]:
    def triple(batch: tuple[int, ...]) -> dict[str, Array]:
        shape = (*batch, 4)
        return {"input1": _normal(rng, shape), "input2": _normal(rng, shape), "target": _signs(rng, batch)}

    return [
        Variant("ND", triple((5,))),
        Variant("D", triple(())),
        Variant("margin=0.3", triple((6,)), {"margin": 0.3}),
        Variant("margin=-0.5", triple((6,)), {"margin": -0.5}),
    ]


def _multi_margin(rng: Rng) -> list[Variant]:
    def pair(batch: tuple[int, ...], classes: int = 4) -> dict[str, Array]:
        return {"input": _normal(rng, (*batch, classes)), "target": _classes(rng, batch, classes)}

    return [
        Variant("NC", pair((5,))),
        Variant("C", pair(())),
        Variant("C,target=1", {"input": _normal(rng, (4,)), "target": _classes(rng, (1,), 4)}),
        Variant("p=2", pair((5,)), {"p": 2}),
        Variant("margin=0.5", pair((5,)), {"margin": 0.5}),
        Variant("weight", pair((5,)), {"weight": _uniform(rng, (4,), 0.2, 2.0)}),
        Variant("p=2,margin=2.0,weight", pair((5,)), {"p": 2, "margin": 2.0, "weight": _uniform(rng, (4,), 0.2, 2.0)}),
    ]


def _triplets(shape: tuple[int, ...], rng: Rng) -> dict[str, Array]:
    return {"anchor": _normal(rng, shape), "positive": _normal(rng, shape), "negative": _normal(rng, shape)}


def _triplet_margin(rng: Rng) -> list[Variant]:
    return [
        Variant("ND", _triplets((5, 3), rng)),
        Variant("D", _triplets((4,), rng)),
        *(
            Variant(_label(params), _triplets((5, 3), rng), params)
            for params in ({"margin": 0.5}, {"p": 1.0}, {"p": 3.0, "eps": 0.001}, {"swap": True})
        ),
    ]


def _triplet_with_distance(rng: Rng) -> list[Variant]:
    return [
        Variant("ND", _triplets((5, 3), rng)),
        Variant("D", _triplets((4,), rng)),
        *(
            Variant(_label(params), _triplets((5, 3), rng), params)
            for params in (
                {"distance_function": "pairwise_distance"},
                {"distance_function": "cosine_distance"},
                {"distance_function": "l1_distance"},
                {"margin": 0.5},
                {"distance_function": "cosine_distance", "swap": True, "margin": 0.2},
            )
        ),
    ]


INPUTS: dict[str, Generator] = {
    # activations
    "elu": _activation({"alpha": 0.7}, {"alpha": 1.5}),
    "hardshrink": _activation({"lambd": 0.3}, {"lambd": 0.0}),
    "hardsigmoid": _activation(),
    "hardtanh": _activation({"min_val": -0.5, "max_val": 2.0}),
    "hardswish": _activation(),
    "leaky_relu": _activation({"negative_slope": 0.2}),
    "logsigmoid": _activation(),
    "prelu": _prelu,
    "relu": _activation(),
    "relu6": _activation(),
    "rrelu": _activation(
        {"lower": 0.05, "upper": 0.6},
        {"training": True, "seed": 7},
        {"training": True, "seed": 12345, "lower": 0.2, "upper": 0.4},
        {"training": False, "seed": 3},
    ),
    "selu": _activation(),
    "celu": _activation({"alpha": 0.5}),
    "gelu": _activation({"approximate": "tanh"}, {"approximate": "none"}),
    "sigmoid": _activation(),
    "silu": _activation(),
    "mish": _activation(),
    "softplus": _activation({"beta": 2.0, "threshold": 1.5}, {"beta": 0.5}, {"threshold": 3.0}),
    "softshrink": _activation({"lambd": 0.3}, {"lambd": 0.0}),
    "softsign": _activation(),
    "tanh": _activation(),
    "tanhshrink": _activation(),
    "threshold": _activation({"threshold": -0.5, "value": 0.0}, base={"threshold": 0.1, "value": -2.0}),
    "glu": _glu,
    "softmin": _softmax_like,
    "softmax": _softmax_like,
    "softmax2d": _softmax2d,
    "log_softmax": _softmax_like,
    # losses
    "l1_loss": _elementwise_loss(_normal, {"weight": _full_weight}),
    "mse_loss": _elementwise_loss(_normal, {"weight": _full_weight}),
    "cross_entropy": _class_loss(probabilities=True),
    "ctc_loss": _ctc,
    "nll_loss": _class_loss(probabilities=False),
    "poisson_nll_loss": _poisson,
    "gaussian_nll_loss": _gaussian,
    "kl_div": _kl_div,
    "binary_cross_entropy": _binary_cross_entropy,
    "binary_cross_entropy_with_logits": _elementwise_loss(
        _probabilities,
        {"weight": _per_class(0.2, 2.0)},
        {"pos_weight": _per_class(0.5, 3.0)},
        {"weight": _full_weight, "pos_weight": _per_class(0.5, 3.0)},
    ),
    "margin_ranking_loss": _margin_ranking,
    "hinge_embedding_loss": _elementwise_loss(_signs, {"margin": 0.5}),
    "multilabel_margin_loss": _multilabel_margin,
    "huber_loss": _elementwise_loss(
        _normal, {"delta": 0.5}, {"weight": _full_weight}, {"delta": 2.0, "weight": _full_weight}
    ),
    "smooth_l1_loss": _elementwise_loss(_normal, {"beta": 0.5}, {"beta": 0.0}),
    "soft_margin_loss": _elementwise_loss(_signs, shapes={"1d": (6,), "2d": (3, 4), "3d": (2, 3, 2)}),
    "multilabel_soft_margin_loss": _multilabel_soft_margin,
    "cosine_embedding_loss": _cosine_embedding,
    "multi_margin_loss": _multi_margin,
    "triplet_margin_loss": _triplet_margin,
    "triplet_margin_with_distance_loss": _triplet_with_distance,
}
"""Every function of the catalogue, by name: its input generator."""

# --- the in-process reference ------------------------------------------------------------------

RefCall = Callable[[dict[str, torch.Tensor], dict[str, Any]], torch.Tensor]


def _keywords(fn: Callable[..., torch.Tensor]) -> RefCall:
    """``fn(**tensors, **params)``: the service's argument names are torch's keyword names."""
    return lambda tensors, params: fn(**tensors, **params)


def _softmax_family(fn: Callable[..., torch.Tensor]) -> RefCall:
    """The service defaults ``dim`` to -1 where torch's implicit choice is deprecated."""
    return lambda tensors, params: fn(tensors["input"], dim=params.get("dim", -1))


def _prelu_reference(tensors: dict[str, torch.Tensor], params: dict[str, Any]) -> torch.Tensor:
    x = tensors["input"]
    weight = tensors.get("weight")
    if weight is None:  # torch.nn.PReLU's initial slope
        weight = torch.full((1,), 0.25, dtype=x.dtype, device=x.device)
    return F.prelu(x, weight)


def _rrelu_reference(tensors: dict[str, torch.Tensor], params: dict[str, Any]) -> torch.Tensor:
    params = dict(params)
    seed = params.pop("seed", None)
    x = tensors["input"]
    if not params.get("training", False):
        return F.rrelu(x, **params)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return F.rrelu(x, **params)


DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "pairwise_distance": F.pairwise_distance,
    "cosine_distance": lambda x, y: 1 - F.cosine_similarity(x, y),
    "l1_distance": lambda x, y: F.pairwise_distance(x, y, p=1.0),
}


def _triplet_with_distance_reference(tensors: dict[str, torch.Tensor], params: dict[str, Any]) -> torch.Tensor:
    params = dict(params)
    if "distance_function" in params:
        params["distance_function"] = DISTANCES[params["distance_function"]]
    return F.triplet_margin_with_distance_loss(tensors["anchor"], tensors["positive"], tensors["negative"], **params)


_SAME_NAME_IN_F = (
    "elu",
    "hardshrink",
    "hardsigmoid",
    "hardtanh",
    "hardswish",
    "leaky_relu",
    "logsigmoid",
    "relu",
    "relu6",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "softplus",
    "softshrink",
    "softsign",
    "tanhshrink",
    "threshold",
    "glu",
    "l1_loss",
    "mse_loss",
    "cross_entropy",
    "ctc_loss",
    "nll_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "kl_div",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "multilabel_margin_loss",
    "huber_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "cosine_embedding_loss",
    "multi_margin_loss",
    "triplet_margin_loss",
)

REFERENCE: dict[str, RefCall] = {
    **{name: _keywords(getattr(F, name)) for name in _SAME_NAME_IN_F},
    "sigmoid": _keywords(torch.sigmoid),
    "tanh": _keywords(torch.tanh),
    "prelu": _prelu_reference,
    "rrelu": _rrelu_reference,
    "softmin": _softmax_family(F.softmin),
    "softmax": _softmax_family(F.softmax),
    "log_softmax": _softmax_family(F.log_softmax),
    "softmax2d": lambda tensors, params: torch.nn.Softmax2d()(tensors["input"]),
    "triplet_margin_with_distance_loss": _triplet_with_distance_reference,
}
"""Every function of the catalogue, by name: torch computing it in-process."""

# --- the cases ----------------------------------------------------------------------------------

FORMS: tuple[tuple[WireForm, WireForm], ...] = (
    ("json", "json"),
    ("base64", "base64"),
    ("json", "base64"),
    ("base64", "json"),
)
"""(input form, reply encoding), rotated over variants and modes."""


@dataclass(frozen=True)
class Mode:
    reduction: str | None
    grad: bool
    random_grad_output: bool = False

    @property
    def label(self) -> str:
        grad = "grad_output" if self.random_grad_output else "grad" if self.grad else "value"
        return grad if self.reduction is None else f"{self.reduction}-{grad}"


def modes_of(spec: FunctionSpec) -> list[Mode]:
    reduction = spec.param("reduction")
    if reduction is None:
        return [Mode(None, False), Mode(None, True), Mode(None, True, random_grad_output=True)]
    modes = [Mode(r, grad) for r in reduction.choices for grad in (False, True)]
    return [*modes, Mode("none", True, random_grad_output=True)]


@dataclass(frozen=True)
class Case:
    spec: FunctionSpec
    variant: Variant
    mode: Mode
    dtype: str
    input_form: WireForm
    encoding: WireForm

    @property
    def id(self) -> str:
        forms = f"{self.input_form}>{self.encoding}"
        return f"{self.spec.name}-{self.variant.label}-{self.mode.label}-{self.dtype}-{forms}"


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


def build_cases() -> Iterator[Case]:
    for spec in CATALOGUE:
        variants = INPUTS[spec.name](np.random.default_rng(_seed(spec.name))) if spec.name in INPUTS else []
        for v_index, variant in enumerate(variants):
            for m_index, mode in enumerate(modes_of(spec)):
                input_form, encoding = FORMS[(v_index + m_index) % len(FORMS)]
                for dtype in DTYPES:
                    yield Case(spec, variant, mode, dtype, input_form, encoding)


CASES = list(build_cases())

_KL_MEAN_WARNING = pytest.mark.filterwarnings(
    # torch warns on every kl_div(reduction='mean') call (in the service's thread too), and
    # filterwarnings=error would turn the service's call into a 500: unavoidable for this mode.
    "ignore:reduction. 'mean' divides the total loss by both the batch size and the support size:UserWarning"
)


def _param(case: Case) -> Any:
    marks = [_KL_MEAN_WARNING] if case.spec.name == "kl_div" and case.mode.reduction == "mean" else []
    return pytest.param(case, id=case.id, marks=marks)


# --- reference computation and request ----------------------------------------------------------

_NOT_IMPLEMENTED = re.compile(r"not implemented for '(Half|BFloat16)'")


@dataclass
class Expected:
    value: torch.Tensor
    grads: dict[str, torch.Tensor] | None


def _split_params(case: Case) -> tuple[dict[str, Any], dict[str, Array]]:
    scalars = {k: v for k, v in case.variant.params.items() if not isinstance(v, np.ndarray)}
    tensors = {k: v for k, v in case.variant.params.items() if isinstance(v, np.ndarray)}
    if case.mode.reduction is not None:
        scalars["reduction"] = case.mode.reduction
    return scalars, tensors


def compute_reference(
    case: Case, device: torch.device, dtype: torch.dtype, grad_output: torch.Tensor | None
) -> Expected:
    """torch in-process, as the service is documented to compute: leaves are the floating-point
    arguments of ``spec.differentiable``; gradients are the vector-Jacobian product with
    ``grad_output`` (ones by default)."""
    scalars, tensor_params = _split_params(case)
    tensors = {name: as_tensor(arr, dtype).to(device) for name, arr in case.variant.tensors.items()}
    tensors.update({name: as_tensor(arr, dtype).to(device) for name, arr in tensor_params.items()})
    for param in case.spec.tensor_params:  # a default tensor (PReLU's slope) is differentiated too
        if param.name not in tensors and param.default is not None:
            tensors[param.name] = as_tensor(np.asarray(param.default), dtype).to(device)
    leaves = [n for n in case.spec.differentiable if n in tensors and tensors[n].is_floating_point()]
    if case.mode.grad:
        for name in leaves:
            tensors[name].requires_grad_(True)
    arguments = tensors
    with torch.set_grad_enabled(case.mode.grad):
        value = REFERENCE[case.spec.name](arguments, scalars)
        if not case.mode.grad:
            return Expected(value.detach(), None)
        weight = torch.ones_like(value) if grad_output is None else grad_output.to(device)
        grads = torch.autograd.grad(value, [tensors[n] for n in leaves], weight, materialize_grads=True)
    return Expected(value.detach(), dict(zip(leaves, grads, strict=True)))


def torch_nondeterminism(
    case: Case, device: torch.device, dtype: torch.dtype, grad_output: torch.Tensor | None
) -> str | None:
    """Why torch may not reproduce this case bit for bit on ``device`` (None: it does).

    With deterministic algorithms requested in warn-only mode, torch warns for each kernel that
    has no deterministic implementation. The probe's values are not used: that mode may pick
    other kernels than the service's default one.
    """
    if device.type != "cuda":
        return None
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            compute_reference(case, device, dtype, grad_output)
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    reasons = [str(w.message) for w in caught if "deterministic" in str(w.message)]
    return reasons[0] if reasons else None


def _random_grad_output(case: Case, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    if not case.mode.random_grad_output:
        return None
    # The output's shape, from float64 (which every function supports).
    shape_case = Case(case.spec, case.variant, Mode(case.mode.reduction, False), "float64", "json", "json")
    shape = compute_reference(shape_case, device, torch.float64, None).value.shape
    rng = np.random.default_rng(_seed(case.id))
    return as_tensor(rng.standard_normal(tuple(shape)), dtype)


def build_request(case: Case, dtype: torch.dtype, grad_output: torch.Tensor | None) -> tuple[str, dict[str, Any]]:
    spec, form = case.spec, case.input_form
    scalars, tensor_params = _split_params(case)
    params: dict[str, Any] = {**scalars, **{k: encode(v, form, dtype) for k, v in tensor_params.items()}}
    body: dict[str, Any] = {"function": spec.name}
    tensors = {name: encode(arr, form, dtype) for name, arr in case.variant.tensors.items()}
    if spec.kind == "activation":
        body["input"] = tensors["input"]
    elif spec.tensor("input") is not None:
        body["input"], body["target"] = tensors.pop("input"), tensors.pop("target")
        if tensors:
            body["inputs"] = tensors
    else:  # no `input` argument: every tensor, target included, under "inputs"
        body["inputs"] = tensors
    body.update(params=params, grad=case.mode.grad, dtype=case.dtype, encoding=case.encoding)
    if grad_output is not None:
        body["grad_output"] = encode(grad_output, form)
    return ("/activate" if spec.kind == "activation" else "/loss"), body


def _check_form(value: Any, encoding: WireForm, tensor: torch.Tensor, plain_scalar: bool) -> None:
    """The documented shapes of reply tensors for each encoding."""
    if encoding == "base64" and not plain_scalar:
        assert is_object_form(value, base64_data=True), f"expected the base64 object form, got {value!r}"
    elif tensor.dim() == 0:
        assert isinstance(value, (float, int, str)), f"expected a plain number, got {value!r}"
    elif tensor.numel() == 0:
        assert is_object_form(value, base64_data=False), f"expected the object form for an empty tensor: {value!r}"
    else:
        assert isinstance(value, list), f"expected nested lists, got {value!r}"


# --- tests --------------------------------------------------------------------------------------


def test_tables_cover_the_catalogue() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert sorted(INPUTS) == sorted(names), "every function needs an input generator, and only those"
    assert sorted(REFERENCE) == sorted(names), "every function needs a reference call, and only those"


@pytest.mark.parametrize("spec", list(CATALOGUE), ids=lambda spec: spec.name)
def test_every_parameter_and_several_shapes_are_exercised(spec: FunctionSpec) -> None:
    variants = [case.variant for case in CASES if case.spec is spec]
    assert variants, f"{spec.name} has no case"
    shapes = {tuple(next(iter(v.tensors.values())).shape) for v in variants}
    assert len(shapes) >= 2, f"{spec.name} is tested on one shape only: {shapes}"
    for param in spec.params:
        if param.name == "reduction":
            tested = {case.mode.reduction for case in CASES if case.spec is spec}
            assert tested == set(param.choices), f"{spec.name}: reductions tested {tested}"
            continue
        given = [v.params[param.name] for v in variants if param.name in v.params]
        non_default = [g for g in given if isinstance(g, np.ndarray) or param.required or g != param.default]
        assert non_default, f"{spec.name}: parameter {param.name} never takes a non-default value"
        for choice in param.choices:
            assert choice in given or choice == param.default, f"{spec.name}: {param.name}={choice!r} untested"


def test_every_dtype_meets_every_wire_form() -> None:
    for dtype in DTYPES:
        forms = {(case.input_form, case.encoding) for case in CASES if case.dtype == dtype}
        assert forms == set(FORMS), f"{dtype}: only {forms}"
        for kind in ("activation", "loss"):
            kinds = {(c.input_form, c.encoding) for c in CASES if c.dtype == dtype and c.spec.kind == kind}
            assert kinds == set(FORMS), f"{dtype} {kind}s: only {kinds}"


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_service_matches_torch(client: TestClient, device: torch.device, case: Case) -> None:
    dtype = DTYPES[case.dtype]
    grad_output = _random_grad_output(case, device, dtype)
    endpoint, body = build_request(case, dtype, grad_output)
    try:
        expected = compute_reference(case, device, dtype, grad_output)
    except RuntimeError as error:
        if not _NOT_IMPLEMENTED.search(str(error)):
            raise
        response = client.post(endpoint, json=body)
        assert response.status_code == 422, response.text
        reply = response.json()
        assert reply["error"] == "unsupported_dtype", reply
        assert [d["type"] for d in reply["details"]] == ["unsupported_dtype"], reply
        return

    compare = assert_same if torch_nondeterminism(case, device, dtype, grad_output) is None else assert_close
    response = client.post(endpoint, json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["function"] == case.spec.name
    assert reply["dtype"] == case.dtype
    assert reply["shape"] == list(expected.value.shape)
    key = "output" if case.spec.kind == "activation" else "loss"
    _check_form(reply[key], case.encoding, expected.value, plain_scalar=key == "loss" and expected.value.dim() == 0)
    compare(decode(reply[key], dtype), expected.value)

    if expected.grads is None:
        assert reply["grad"] is None
        return
    if case.spec.kind == "activation":
        replied = {"input": reply["grad"], **(reply.get("param_grads") or {})}
        assert sorted(replied) == sorted(expected.grads), f"gradients for {sorted(replied)}"
    else:
        replied = reply["grad"]
        assert isinstance(replied, dict), reply
        assert sorted(replied) == sorted(expected.grads), f"gradients for {sorted(replied)}"
    for name, grad in expected.grads.items():
        _check_form(replied[name], case.encoding, grad, plain_scalar=False)
        try:
            compare(decode(replied[name], dtype), grad)
        except AssertionError as error:
            raise AssertionError(f"gradient wrt {name}: {error}") from None


def test_object_form_input_is_computed_without_warnings(client: TestClient) -> None:
    """Base64 data decodes to a read-only buffer; torch warns when it wraps one in a tensor.

    torch warns only once per process, so without ``set_warn_always`` only whichever base64 case
    ran first would show it; with warnings as errors the service's call fails.
    """
    body = {"function": "relu", "input": encode(np.array([1.5, -2.0]), "base64", torch.float32), "grad": True}
    previous = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        response = client.post("/activate", json=body)
    finally:
        torch.set_warn_always(previous)
    assert response.status_code == 200, response.text
    assert_same(decode(response.json()["output"], torch.float32), torch.tensor([1.5, 0.0]))
