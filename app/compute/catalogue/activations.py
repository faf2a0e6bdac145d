"""Every activation function of ``torch.nn``, described once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.compute.catalogue import checks
from app.compute.catalogue.spec import Arrays, Call, Check, FunctionSpec, Param, Params, TensorArg

INPUT = TensorArg("input", "the tensor to transform, any shape")
_X = [[-1.5, 0.2, 3.0], [0.7, -0.1, 2.5]]


def _plain(fn: Callable[..., torch.Tensor]) -> Call:
    """``fn(input, **params)``."""

    def call(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        return fn(tensors["input"], **params)

    return call


def _activation(
    name: str,
    alias: str,
    summary: str,
    params: tuple[Param, ...] = (),
    call: Call | None = None,
    example_params: Mapping[str, Any] | None = None,
    example_input: Any = None,
    extra_checks: tuple[Check, ...] = (),
    refused: Mapping[str, str] | None = None,
    fusable: Callable[[Params], bool] | None = lambda params: True,
) -> FunctionSpec:
    example: dict[str, Any] = {"function": name, "input": _X if example_input is None else example_input}
    if example_params:
        example["params"] = dict(example_params)
    example["grad"] = True
    return FunctionSpec(
        name=name,
        kind="activation",
        summary=summary,
        call=call or _plain(getattr(F, name)),
        tensors=(INPUT,),
        params=params,
        aliases=(alias,),
        checks=extra_checks,
        example=example,
        refused=dict(refused or {}),
        fusable=fusable,
    )


def _softmax_like(name: str, alias: str, summary: str) -> FunctionSpec:
    return _activation(
        name,
        alias,
        summary + " Unlike torch's deprecated implicit choice, `dim` defaults to -1.",
        params=(Param("dim", "int", "dimension along which to normalise", default=-1),),
        example_params={"dim": -1},
        extra_checks=(checks.dim_in_range(),),
        refused={"dtype": "use the request's top-level `dtype` to choose the computation dtype"},
        fusable=None,
    )


def _softmax2d(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
    return F.softmax(tensors["input"], dim=-3)


def _rrelu(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
    x = tensors["input"]
    if not params["training"]:
        return F.rrelu(x, lower=params["lower"], upper=params["upper"], training=False)
    devices = [x.device] if x.device.type != "cpu" else []
    with torch.random.fork_rng(devices=devices, device_type=x.device.type):
        torch.manual_seed(params["seed"])
        return F.rrelu(x, lower=params["lower"], upper=params["upper"], training=True)


def _rrelu_seed_with_training(arrays: Arrays, params: Params) -> None:
    if params["training"] and params["seed"] is None:
        raise checks.fail(
            "training",
            "random training mode is not reproducible over HTTP; pass `seed` with `training: true`",
            "seed_required",
        )
    if params["lower"] > params["upper"]:
        raise checks.fail("lower", "lower must not exceed upper", "out_of_range")


def _hardtanh_bounds(arrays: Arrays, params: Params) -> None:
    if params["min_val"] > params["max_val"]:
        raise checks.fail("min_val", "min_val must not exceed max_val", "out_of_range")


_ALPHA = Param("alpha", "float", "scale of the negative saturation", default=1.0)
_LAMBD = Param("lambd", "float", "shrinkage threshold", default=0.5, ge=0.0)
_HARD_LAMBD = Param("lambd", "float", "shrinkage threshold (torch accepts a negative one)", default=0.5)

ACTIVATIONS: tuple[FunctionSpec, ...] = (
    _activation("elu", "ELU", "Exponential linear unit.", (_ALPHA,), example_params={"alpha": 1.0}),
    _activation("hardshrink", "Hardshrink", "Hard shrinkage.", (_HARD_LAMBD,), example_params={"lambd": 0.5}),
    _activation("hardsigmoid", "Hardsigmoid", "Piecewise-linear sigmoid."),
    _activation(
        "hardtanh",
        "Hardtanh",
        "Clamp to [min_val, max_val].",
        (
            Param("min_val", "float", "lower bound", default=-1.0),
            Param("max_val", "float", "upper bound", default=1.0),
        ),
        example_params={"min_val": -1.0, "max_val": 1.0},
        extra_checks=(_hardtanh_bounds,),
    ),
    _activation("hardswish", "Hardswish", "Hard swish."),
    _activation(
        "leaky_relu",
        "LeakyReLU",
        "Leaky rectified linear unit.",
        (Param("negative_slope", "float", "slope for negative inputs", default=0.01),),
        example_params={"negative_slope": 0.1},
    ),
    _activation("logsigmoid", "LogSigmoid", "log(sigmoid(x))."),
    _activation(
        "prelu",
        "PReLU",
        "Parametric ReLU; `weight` holds one slope or one per channel (dim 1).",
        (
            Param(
                "weight",
                "tensor",
                "learnable slope(s): 1 value or one per channel",
                default=[0.25],
                differentiable=True,
            ),
        ),
        call=lambda t, p: F.prelu(t["input"], t["weight"]),
        example_params={"weight": [0.25, 0.1]},
        example_input=[[-1.5, 0.2], [3.0, -0.1]],
        extra_checks=(checks.prelu_weight,),
        fusable=None,
    ),
    _activation("relu", "ReLU", "Rectified linear unit."),
    _activation("relu6", "ReLU6", "min(max(0, x), 6)."),
    _activation(
        "rrelu",
        "RReLU",
        "Randomised leaky ReLU. Deterministic eval mode (slope (lower+upper)/2) by default; "
        "`training: true` samples slopes and needs a `seed`.",
        (
            Param("lower", "float", "lower bound of the slope distribution", default=1.0 / 8.0),
            Param("upper", "float", "upper bound of the slope distribution", default=1.0 / 3.0),
            Param("training", "bool", "sample random slopes (needs `seed`)", default=False),
            Param("seed", "int", "random seed for training mode", default=None, nullable=True, ge=0),
        ),
        call=_rrelu,
        example_params={"lower": 0.125, "upper": 0.333},
        extra_checks=(_rrelu_seed_with_training,),
        fusable=lambda params: not params["training"],
    ),
    _activation("selu", "SELU", "Scaled exponential linear unit."),
    _activation(
        "celu",
        "CELU",
        "Continuously differentiable ELU.",
        (_ALPHA,),
        example_params={"alpha": 1.0},
        extra_checks=(checks.nonzero("alpha"),),
    ),
    _activation(
        "gelu",
        "GELU",
        "Gaussian error linear unit, exact or tanh-approximated.",
        (Param("approximate", "choice", "approximation", default="none", choices=("none", "tanh")),),
        example_params={"approximate": "tanh"},
        # The exact GELU kernel rounds some elements differently when they share a call (measured).
        fusable=lambda params: params["approximate"] == "tanh",
    ),
    _activation("sigmoid", "Sigmoid", "Logistic sigmoid.", call=lambda t, p: torch.sigmoid(t["input"])),
    _activation("silu", "SiLU", "Sigmoid linear unit (swish)."),
    _activation("mish", "Mish", "x * tanh(softplus(x))."),
    _activation(
        "softplus",
        "Softplus",
        "Smooth approximation of ReLU.",
        (
            Param("beta", "float", "sharpness", default=1.0),
            Param("threshold", "float", "linear above beta * x > threshold", default=20.0),
        ),
        example_params={"beta": 1.0, "threshold": 20.0},
    ),
    _activation("softshrink", "Softshrink", "Soft shrinkage.", (_LAMBD,), example_params={"lambd": 0.5}),
    _activation("softsign", "Softsign", "x / (1 + |x|)."),
    _activation("tanh", "Tanh", "Hyperbolic tangent.", call=lambda t, p: torch.tanh(t["input"])),
    _activation("tanhshrink", "Tanhshrink", "x - tanh(x)."),
    _activation(
        "threshold",
        "Threshold",
        "Replace values at or below `threshold` with `value`.",
        (
            Param("threshold", "float", "the threshold"),
            Param("value", "float", "the replacement"),
        ),
        example_params={"threshold": 0.5, "value": 0.0},
    ),
    _activation(
        "glu",
        "GLU",
        "Gated linear unit: first half * sigmoid(second half) along `dim`.",
        (Param("dim", "int", "dimension to split in half", default=-1),),
        example_params={"dim": -1},
        example_input=[[-1.5, 0.2, 3.0, 0.4], [0.7, -0.1, 2.5, -2.0]],
        extra_checks=(checks.dim_in_range(), checks.even_along_dim()),
        fusable=None,
    ),
    _softmax_like("softmin", "Softmin", "softmax(-x) along `dim`."),
    _softmax_like("softmax", "Softmax", "Normalised exponential along `dim`."),
    _activation(
        "softmax2d",
        "Softmax2d",
        "Softmax over channels at each location of a (C, H, W) or (N, C, H, W) input.",
        call=_softmax2d,
        example_input=[[[0.1, 0.2]], [[1.0, -1.0]]],
        extra_checks=(checks.rank_in("input", (3, 4)),),
        fusable=None,
    ),
    _softmax_like("log_softmax", "LogSoftmax", "log(softmax(x)) along `dim`."),
)
