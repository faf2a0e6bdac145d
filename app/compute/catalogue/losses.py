"""Every loss function of ``torch.nn``, described once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.compute.catalogue import checks
from app.compute.catalogue.cost import ELEMENTWISE, CostModel, ctc, multilabel_margin
from app.compute.catalogue.spec import Call, Check, FunctionSpec, Param, Params, RowSplit, TensorArg

REDUCTION = Param(
    "reduction",
    "choice",
    "how to reduce the per-element losses",
    default="mean",
    choices=("none", "mean", "sum"),
)
_INPUT = TensorArg("input", "predictions")
_TARGET = TensorArg("target", "targets, same shape as input")
_LABEL_TARGET = TensorArg("target", "labels 1 or -1", differentiable=False)


def _weight(doc: str, differentiable: bool = False) -> Param:
    return Param("weight", "tensor", doc, default=None, nullable=True, differentiable=differentiable)


def _positional(name: str, arguments: tuple[str, ...], tensor_params: tuple[str, ...] = ()) -> Call:
    """``F.<name>(*tensor arguments in order, <tensor params>=..., **params)``."""
    fn: Callable[..., torch.Tensor] = getattr(F, name)

    def call(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        args = [tensors[arg] for arg in arguments]
        extra = {p: tensors.get(p) for p in tensor_params}
        return fn(*args, **extra, **params)

    return call


def _loss(
    name: str,
    alias: str,
    summary: str,
    tensors: tuple[TensorArg, ...],
    example: Mapping[str, Any],
    params: tuple[Param, ...] = (REDUCTION,),
    extra_checks: tuple[Check, ...] = (),
    call: Call | None = None,
    row_split: RowSplit | None = None,
    cost: CostModel = ELEMENTWISE,
) -> FunctionSpec:
    tensor_params = tuple(p.name for p in params if p.kind == "tensor")
    empty_check = checks.nonempty_when_mean(*(arg.name for arg in tensors if not arg.optional))
    return FunctionSpec(
        name=name,
        kind="loss",
        summary=summary,
        call=call or _positional(name, tuple(arg.name for arg in tensors), tensor_params),
        tensors=tensors,
        params=params,
        aliases=(alias,),
        checks=(*extra_checks, empty_check),
        example={"function": name, **example, "grad": True},
        row_split=row_split,
        cost=cost,
    )


def _nll_of_rows(log_probabilities: torch.Tensor, target: torch.Tensor, params: Params) -> torch.Tensor:
    return F.nll_loss(log_probabilities, target, ignore_index=params["ignore_index"], reduction=params["reduction"])


# torch's cross_entropy on class indices without label smoothing is log_softmax over the class
# dimension, then nll_loss; nll_loss's row-wise step is the identity.
_CROSS_ENTROPY_ROWS = RowSplit(
    applies=lambda params: params["label_smoothing"] == 0.0,
    rows=lambda logits: torch.log_softmax(logits, 1, dtype=logits.dtype),
    reduce=_nll_of_rows,
)
_NLL_ROWS = RowSplit(applies=lambda params: True, rows=lambda rows: rows, reduce=_nll_of_rows)


def _distance(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "pairwise_distance":
        return F.pairwise_distance
    if name == "cosine_distance":
        return lambda x, y: 1.0 - F.cosine_similarity(x, y)
    return lambda x, y: F.pairwise_distance(x, y, p=1.0)


DISTANCES = ("pairwise_distance", "cosine_distance", "l1_distance")


def _triplet_with_distance(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
    return F.triplet_margin_with_distance_loss(
        tensors["anchor"],
        tensors["positive"],
        tensors["negative"],
        distance_function=_distance(params["distance_function"]),
        margin=params["margin"],
        swap=params["swap"],
        reduction=params["reduction"],
    )


_X = [[0.2, -1.3, 0.8], [1.1, 0.4, -0.6]]
_Y = [[0.0, -1.0, 1.0], [1.5, 0.5, -0.5]]
_P = [[0.8, 0.1, 0.6], [0.3, 0.9, 0.2]]
_B = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
_PM = [[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]]
_ELEMENTWISE = (checks.broadcastable("input", "target"),)
"""torch broadcasts input and target (warning, for some losses, when their sizes differ)."""
_WEIGHTED_ELEMENTWISE = (*_ELEMENTWISE, checks.same_shape_when_given("weight"))
_SAME_SIZE = (checks.same_shape("input", "target"), checks.broadcastable_to_input("weight", "pos_weight"))
"""Binary cross-entropy: torch demands target's size equal input's."""
_CLASS_WEIGHT = _weight("a manual rescaling weight per class (C)")
_IGNORE = Param("ignore_index", "int", "target value that is ignored", default=-100)

LOSSES: tuple[FunctionSpec, ...] = (
    _loss(
        "l1_loss",
        "L1Loss",
        "Mean absolute error.",
        (_INPUT, _TARGET),
        {"input": _X, "target": _Y, "params": {"reduction": "mean"}},
        params=(REDUCTION, _weight("per-element weight, input's shape", differentiable=True)),
        extra_checks=_WEIGHTED_ELEMENTWISE,
    ),
    _loss(
        "mse_loss",
        "MSELoss",
        "Mean squared error.",
        (_INPUT, _TARGET),
        {"input": _X, "target": _Y, "params": {"reduction": "mean"}},
        params=(REDUCTION, _weight("per-element weight, input's shape", differentiable=True)),
        extra_checks=_WEIGHTED_ELEMENTWISE,
    ),
    _loss(
        "cross_entropy",
        "CrossEntropyLoss",
        "Cross-entropy of logits against class indices (integers) or class probabilities (floats).",
        (_INPUT, TensorArg("target", "class indices (N) or class probabilities (N, C)", kind="float_or_index")),
        {
            "input": [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]],
            "target": [0, 2],
            "params": {"reduction": "mean", "label_smoothing": 0.1},
        },
        params=(
            _CLASS_WEIGHT,
            _IGNORE,
            REDUCTION,
            Param("label_smoothing", "float", "amount of smoothing (torch refuses above 1 only)", default=0.0, le=1.0),
        ),
        extra_checks=(
            checks.class_targets(ignore_index=True, allow_probabilities=True),
            checks.class_weight(1),
            checks.some_target_counts,
        ),
        row_split=_CROSS_ENTROPY_ROWS,
    ),
    _loss(
        "ctc_loss",
        "CTCLoss",
        "Connectionist temporal classification loss.",
        (
            TensorArg("log_probs", "log-probabilities (T, N, C) or (T, C)"),
            TensorArg("targets", "padded (N, S) or concatenated target labels", kind="index"),
            TensorArg("input_lengths", "length of each input (N)", kind="index"),
            TensorArg("target_lengths", "length of each target (N)", kind="index"),
        ),
        {
            "inputs": {
                "log_probs": [[[-1.2, -0.9, -1.3]], [[-0.7, -1.5, -1.2]], [[-1.1, -1.1, -1.1]]],
                "targets": [[1, 2]],
                "input_lengths": [3],
                "target_lengths": [2],
            },
            "params": {"blank": 0, "reduction": "mean", "zero_infinity": False},
        },
        params=(
            Param("blank", "int", "blank label", default=0, ge=0),
            REDUCTION,
            Param("zero_infinity", "bool", "zero infinite losses and their gradients", default=False),
        ),
        extra_checks=(checks.ctc_arguments,),
        cost=ctc,
    ),
    _loss(
        "nll_loss",
        "NLLLoss",
        "Negative log-likelihood of log-probabilities against class indices.",
        (_INPUT, TensorArg("target", "class indices (N) or (N, d1, ...)", kind="index")),
        {"input": [[-0.5, -1.2, -2.0], [-1.0, -0.3, -2.2]], "target": [0, 1]},
        params=(_CLASS_WEIGHT, _IGNORE, REDUCTION),
        extra_checks=(
            checks.class_targets(ignore_index=True, allow_probabilities=False),
            checks.class_weight(1),
            checks.some_target_counts,
        ),
        row_split=_NLL_ROWS,
    ),
    _loss(
        "poisson_nll_loss",
        "PoissonNLLLoss",
        "Negative log-likelihood of a Poisson target.",
        (_INPUT, _TARGET),
        {"input": _X, "target": [[1.0, 0.0, 2.0], [3.0, 1.0, 0.0]], "params": {"log_input": True}},
        params=(
            Param("log_input", "bool", "input holds log-rates", default=True),
            Param("full", "bool", "add the Stirling approximation term", default=False),
            Param("eps", "float", "added to the rate when log_input is false", default=1e-8),
            REDUCTION,
        ),
        extra_checks=_ELEMENTWISE,
    ),
    _loss(
        "gaussian_nll_loss",
        "GaussianNLLLoss",
        "Negative log-likelihood of a Gaussian target.",
        (_INPUT, _TARGET, TensorArg("var", "variances, input's shape or with one dim fewer/of size 1")),
        {"input": _X, "target": _Y, "inputs": {"var": [[0.5, 1.0, 2.0], [1.0, 1.0, 0.5]]}},
        params=(
            Param("full", "bool", "add the constant term", default=False),
            Param("eps", "float", "clamp for the variance", default=1e-6),
            REDUCTION,
        ),
        extra_checks=(checks.gaussian_variance, checks.non_negative("var")),
    ),
    _loss(
        "kl_div",
        "KLDivLoss",
        "Kullback-Leibler divergence; input holds log-probabilities.",
        (_INPUT, _TARGET),
        {"input": [[-1.2, -0.9, -1.2]], "target": [[0.2, 0.5, 0.3]], "params": {"reduction": "batchmean"}},
        params=(
            Param("reduction", "choice", "how to reduce", default="mean", choices=("none", "mean", "sum", "batchmean")),
            Param("log_target", "bool", "target holds log-probabilities", default=False),
        ),
        extra_checks=_ELEMENTWISE,
    ),
    _loss(
        "binary_cross_entropy",
        "BCELoss",
        "Binary cross-entropy of probabilities in [0, 1].",
        (_INPUT, TensorArg("target", "probabilities in [0, 1], input's shape")),
        {"input": _P, "target": _B},
        params=(_weight("per-element weight, broadcastable to input"), REDUCTION),
        extra_checks=(*_SAME_SIZE, checks.in_unit_interval("input", "target")),
    ),
    _loss(
        "binary_cross_entropy_with_logits",
        "BCEWithLogitsLoss",
        "Binary cross-entropy of logits (numerically stable sigmoid + BCE).",
        (_INPUT, TensorArg("target", "probabilities in [0, 1], input's shape")),
        {"input": _X, "target": _B, "params": {"pos_weight": [1.0, 2.0, 0.5]}},
        params=(
            _weight("per-element weight, broadcastable to input"),
            REDUCTION,
            Param("pos_weight", "tensor", "weight of positive examples per class", default=None, nullable=True),
        ),
        extra_checks=(*_SAME_SIZE, checks.in_unit_interval("target")),
    ),
    _loss(
        "margin_ranking_loss",
        "MarginRankingLoss",
        "Ranking loss of two inputs by a 1/-1 label.",
        (
            TensorArg("input1", "first scores"),
            TensorArg("input2", "second scores"),
            TensorArg("target", "1 if input1 should rank higher, -1 otherwise"),
        ),
        {
            "inputs": {"input1": [0.5, -0.2, 1.0], "input2": [0.1, 0.4, 1.2], "target": [1.0, -1.0, 1.0]},
            "params": {"margin": 0.1},
        },
        params=(Param("margin", "float", "margin", default=0.0), REDUCTION),
        extra_checks=(
            checks.same_rank("input1", "input2", "target"),
            checks.broadcastable("input1", "input2", "target"),
        ),
    ),
    _loss(
        "hinge_embedding_loss",
        "HingeEmbeddingLoss",
        "Hinge loss for 1/-1 labelled distances.",
        (_INPUT, _LABEL_TARGET),
        {"input": _X, "target": _PM, "params": {"margin": 1.0}},
        params=(Param("margin", "float", "margin", default=1.0), REDUCTION),
        extra_checks=_ELEMENTWISE,
    ),
    _loss(
        "multilabel_margin_loss",
        "MultiLabelMarginLoss",
        "Multi-class multi-label hinge loss; target holds class indices padded with -1.",
        (_INPUT, TensorArg("target", "class indices, -1 ends the list; input's shape", kind="index")),
        {"input": [[0.1, 0.2, 0.4, 0.8]], "target": [[3, 0, -1, 1]]},
        extra_checks=(checks.multilabel_margin_targets,),
        cost=multilabel_margin,
    ),
    _loss(
        "huber_loss",
        "HuberLoss",
        "Huber loss: squared below `delta`, linear above.",
        (_INPUT, _TARGET),
        {"input": _X, "target": _Y, "params": {"delta": 1.0}},
        params=(
            REDUCTION,
            Param("delta", "float", "threshold between the quadratic and linear parts", default=1.0, gt=0.0),
            _weight("per-element weight, input's shape", differentiable=True),
        ),
        extra_checks=_WEIGHTED_ELEMENTWISE,
    ),
    _loss(
        "smooth_l1_loss",
        "SmoothL1Loss",
        "Smooth L1 loss: squared below `beta`, linear above.",
        (_INPUT, _TARGET),
        {"input": _X, "target": _Y, "params": {"beta": 1.0}},
        params=(REDUCTION, Param("beta", "float", "threshold", default=1.0, ge=0.0)),
        extra_checks=_ELEMENTWISE,
    ),
    _loss(
        "soft_margin_loss",
        "SoftMarginLoss",
        "Logistic loss for 1/-1 labels.",
        (_INPUT, _LABEL_TARGET),
        {"input": _X, "target": _PM},
        extra_checks=(checks.broadcastable_to_input("target"),),
    ),
    _loss(
        "multilabel_soft_margin_loss",
        "MultiLabelSoftMarginLoss",
        "Multi-label one-versus-all logistic loss; target holds 0/1 per class.",
        (_INPUT, _TARGET),
        {"input": _X, "target": _B},
        params=(_weight("a weight per class (C)", differentiable=True), REDUCTION),
        extra_checks=(checks.at_least_1d("input"), checks.broadcastable("input", "target", "weight")),
    ),
    _loss(
        "cosine_embedding_loss",
        "CosineEmbeddingLoss",
        "Cosine similarity loss for 1/-1 labelled pairs.",
        (
            TensorArg("input1", "first embeddings (N, D)"),
            TensorArg("input2", "second embeddings (N, D)"),
            TensorArg("target", "1 for similar pairs, -1 for dissimilar (N)", differentiable=False),
        ),
        {"inputs": {"input1": _X, "input2": _Y, "target": [1.0, -1.0]}, "params": {"margin": 0.0}},
        params=(Param("margin", "float", "margin (meaningful in [-1, 1])", default=0.0), REDUCTION),
        extra_checks=(checks.pair_with_label,),
    ),
    _loss(
        "multi_margin_loss",
        "MultiMarginLoss",
        "Multi-class hinge loss against class indices.",
        (_INPUT, TensorArg("target", "class indices (N)", kind="index")),
        {"input": [[0.1, 0.2, 0.4, 0.8], [0.5, 0.1, 0.3, 0.2]], "target": [3, 0]},
        params=(
            Param("p", "int", "exponent, 1 or 2", default=1, choices=(1, 2)),
            Param("margin", "float", "margin", default=1.0),
            _CLASS_WEIGHT,
            REDUCTION,
        ),
        extra_checks=(checks.multi_margin_targets,),
    ),
    _loss(
        "triplet_margin_loss",
        "TripletMarginLoss",
        "Triplet loss with a p-norm distance.",
        (
            TensorArg("anchor", "anchors (N, D)"),
            TensorArg("positive", "positives (N, D)"),
            TensorArg("negative", "negatives (N, D)"),
        ),
        {"inputs": {"anchor": _X, "positive": _Y, "negative": _P}, "params": {"margin": 1.0, "p": 2.0}},
        params=(
            Param("margin", "float", "margin", default=1.0, gt=0.0),
            Param("p", "float", "norm degree", default=2.0),
            Param("eps", "float", "added for numerical stability", default=1e-6),
            Param("swap", "bool", "use the distance swap", default=False),
            REDUCTION,
        ),
        extra_checks=(checks.triplet_shapes,),
    ),
    _loss(
        "triplet_margin_with_distance_loss",
        "TripletMarginWithDistanceLoss",
        "Triplet loss with a distance chosen by name: " + ", ".join(DISTANCES) + ".",
        (
            TensorArg("anchor", "anchors (N, D)"),
            TensorArg("positive", "positives (N, D)"),
            TensorArg("negative", "negatives (N, D)"),
        ),
        {
            "inputs": {"anchor": _X, "positive": _Y, "negative": _P},
            "params": {"distance_function": "cosine_distance", "margin": 0.5},
        },
        params=(
            Param(
                "distance_function",
                "choice",
                "pairwise_distance (Euclidean, torch's default), cosine_distance "
                "(1 - cosine similarity) or l1_distance (pairwise_distance with p=1)",
                default="pairwise_distance",
                choices=DISTANCES,
            ),
            Param("margin", "float", "margin", default=1.0, gt=0.0),
            Param("swap", "bool", "use the distance swap", default=False),
            REDUCTION,
        ),
        extra_checks=(checks.triplet_shapes,),
        call=_triplet_with_distance,
    ),
)
