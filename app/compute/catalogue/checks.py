"""Host-side checks, run on the decoded numpy arrays before any tensor reaches the device.

Some of these guard the process itself: on CUDA an out-of-range class index or a BCE input
outside [0, 1] trips a device-side assert that poisons the whole context.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.compute.catalogue.spec import Arrays, Check, Params


class ArgumentError(Exception):
    """A check failed on the named tensor argument or parameter; the caller knows its location."""

    def __init__(self, arg: str, msg: str, type_: str) -> None:
        super().__init__(msg)
        self.arg, self.msg, self.type = arg, msg, type_


def fail(name: str, msg: str, type_: str) -> ArgumentError:
    return ArgumentError(name, msg, type_)


def _shape(arr: np.ndarray) -> list[int]:
    return list(arr.shape)


def same_shape(*names: str) -> Check:
    """All named tensors have the shape of the first one."""
    first, rest = names[0], names[1:]

    def check(arrays: Arrays, params: Params) -> None:
        expected = arrays[first].shape
        for name in rest:
            if arrays[name].shape != expected:
                raise fail(
                    name,
                    f"shape {_shape(arrays[name])} does not match {first}'s shape {list(expected)}",
                    "shape_mismatch",
                )

    return check


def _broadcast(shapes: tuple[tuple[int, ...], ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def broadcastable(*names: str) -> Check:
    """The named tensors (those given) broadcast together, as torch's elementwise operations demand."""

    def check(arrays: Arrays, params: Params) -> None:
        joint: tuple[int, ...] = ()
        first = names[0]
        for name in names:
            arr = arrays.get(name)
            if arr is None:
                continue
            merged = _broadcast((joint, arr.shape))
            if merged is None:
                raise fail(
                    name,
                    f"shape {_shape(arr)} does not broadcast with {first}'s shape {_shape(arrays[first])}"
                    + (f" (broadcast so far: {list(joint)})" if name != names[1] else ""),
                    "shape_mismatch",
                )
            joint = merged

    return check


def same_rank(*names: str) -> Check:
    """All named tensors have as many dimensions as the first (torch checks it before broadcasting)."""
    first, rest = names[0], names[1:]

    def check(arrays: Arrays, params: Params) -> None:
        ndim = arrays[first].ndim
        for name in rest:
            if arrays[name].ndim != ndim:
                raise fail(
                    name,
                    f"has {arrays[name].ndim} dimensions; {first} has {ndim} (torch wants the same number)",
                    "wrong_rank",
                )

    return check


def at_least_1d(name: str) -> Check:
    def check(arrays: Arrays, params: Params) -> None:
        if arrays[name].ndim == 0:
            raise fail(name, "must have at least 1 dimension, got a scalar", "wrong_rank")

    return check


def rank_in(name: str, ranks: tuple[int, ...]) -> Check:
    def check(arrays: Arrays, params: Params) -> None:
        ndim = arrays[name].ndim
        if ndim not in ranks:
            allowed = " or ".join(f"{r}-D" for r in ranks)
            raise fail(name, f"must be {allowed}, got {ndim}-D", "wrong_rank")

    return check


def in_unit_interval(*names: str) -> Check:
    """Values in [0, 1] (binary cross-entropy probabilities). NaN is not in [0, 1]."""

    def check(arrays: Arrays, params: Params) -> None:
        for name in names:
            arr = arrays[name]
            if arr.size and not bool(((arr >= 0) & (arr <= 1)).all()):
                bad = np.flatnonzero(~((arr >= 0) & (arr <= 1)))[0]
                index = [int(i) for i in np.unravel_index(bad, arr.shape)]
                raise fail(
                    name,
                    f"values must lie in [0, 1]; element {index} is {arr.flat[bad]!r}",
                    "out_of_range",
                )

    return check


def nonzero(param: str) -> Check:
    """A scalar parameter torch divides by."""

    def check(arrays: Arrays, params: Params) -> None:
        if params[param] == 0:
            raise fail(param, "must not be 0", "invalid_param")

    return check


def dim_in_range(name: str = "input", param: str = "dim") -> Check:
    def check(arrays: Arrays, params: Params) -> None:
        dim = params.get(param)
        if dim is None:
            return
        ndim = max(arrays[name].ndim, 1)
        if not -ndim <= dim < ndim:
            raise fail(
                param,
                f"dim {dim} is out of range for a {arrays[name].ndim}-D {name} (expected {-ndim} <= dim < {ndim})",
                "out_of_range",
            )

    return check


def even_along_dim(name: str = "input", param: str = "dim") -> Check:
    def check(arrays: Arrays, params: Params) -> None:
        arr = arrays[name]
        if arr.ndim == 0:
            raise fail(name, "must have at least 1 dimension", "wrong_rank")
        dim = params[param]
        size = arr.shape[dim]
        if size % 2:
            raise fail(name, f"size {size} along dim {dim} must be even to halve", "wrong_shape")

    return check


def nonempty_when_mean(*names: str) -> Check:
    """A mean over no elements is NaN in torch: refuse it rather than return NaN silently."""

    def check(arrays: Arrays, params: Params) -> None:
        if params.get("reduction") not in ("mean", "batchmean"):
            return
        for name in names:
            if arrays[name].size == 0:
                raise fail(
                    name,
                    f"is empty; a '{params['reduction']}' reduction over no elements is NaN",
                    "empty_tensor",
                )

    return check


_FEW = 64
"""Up to this many values, sorting a Python list costs less than numpy's two reductions (whose
dispatch dominates on a few values, the more so with cold caches on a busy server)."""


def _bounds(values: np.ndarray) -> tuple[Any, Any]:
    """The smallest and largest of a non-empty array."""
    if values.size <= _FEW:
        ordered = sorted(values.ravel().tolist())  # one C-level sort beats min() and max() on ≤64 values
        return ordered[0], ordered[-1]
    return values.min(), values.max()


def _check_indices(name: str, values: np.ndarray, low: int, high: int, allowed: int | None = None) -> None:
    """Every value in [low, high), or equal to ``allowed``."""
    if values.size == 0:
        return
    smallest, largest = _bounds(values)
    if low <= smallest and largest < high:
        return  # the common case
    ok = (values >= low) & (values < high)
    if allowed is not None:
        ok |= values == allowed
    if not bool(ok.all()):
        bad = int(np.flatnonzero(~ok)[0])
        index = [int(i) for i in np.unravel_index(bad, values.shape)]
        extra = f" or {allowed} (ignore_index)" if allowed is not None else ""
        raise fail(
            name,
            f"element {index} is {int(values.flat[bad])}; class indices must be in [{low}, {high}){extra}",
            "index_out_of_range",
        )


def _require_integer(name: str, arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind not in "iu":
        raise fail(name, f"must hold integer {what}, got {arr.dtype.name} values", "wrong_type")


def class_targets(ignore_index: bool, allow_probabilities: bool) -> Check:
    """nll_loss / cross_entropy: input (C) or (N, C, d1, ...); target () or (N, d1, ...)."""

    def check(arrays: Arrays, params: Params) -> None:
        inp, target = arrays["input"], arrays["target"]
        if inp.ndim == 0:
            raise fail("input", "must be 1-D (C) or N-D (N, C, ...), got a scalar", "wrong_rank")
        classes = inp.shape[0] if inp.ndim == 1 else inp.shape[1]
        if allow_probabilities and target.dtype.kind == "f":
            if target.shape != inp.shape:
                raise fail(
                    "target",
                    f"class probabilities must have input's shape {_shape(inp)}, got {_shape(target)}",
                    "shape_mismatch",
                )
            return
        if target.dtype.kind not in "iu":
            what = "class indices" + (" (or floating-point class probabilities)" if allow_probabilities else "")
            _require_integer("target", target, what)
        expected = () if inp.ndim == 1 else (inp.shape[0], *inp.shape[2:])
        if target.shape != expected and not (inp.ndim == 1 and target.shape == (1,)):
            raise fail(
                "target",
                f"shape {_shape(target)} does not fit input of shape {_shape(inp)}; expected {list(expected)}",
                "shape_mismatch",
            )
        allowed = params["ignore_index"] if ignore_index else None
        _check_indices("target", target, 0, classes, allowed)

    return check


def _margin_frames(name: str, inp: np.ndarray) -> tuple[int, int]:
    """(frames, classes) of a multi-margin input: () , (C) or (N, C), C not 0 (torch's shape check)."""
    if inp.ndim == 0:
        return 1, 1
    if inp.ndim > 2 or inp.shape[-1] == 0:
        raise fail(
            name,
            f"must be a scalar, a non-empty vector (C) or a matrix (N, C) with C > 0, got shape {_shape(inp)}",
            "wrong_shape",
        )
    return (1, inp.shape[0]) if inp.ndim == 1 else (inp.shape[0], inp.shape[1])


def multi_margin_targets(arrays: Arrays, params: Params) -> None:
    inp, target = arrays["input"], arrays["target"]
    frames, classes = _margin_frames("input", inp)
    _require_integer("target", target, "class indices")
    if target.ndim > 1 or target.size != frames:
        raise fail(
            "target", f"must be 0-D or 1-D with {frames} class indices, got shape {_shape(target)}", "wrong_shape"
        )
    weight = arrays.get("weight")
    if weight is not None and (weight.ndim > 1 or weight.size != classes):
        raise fail("weight", f"must be 0-D or 1-D with {classes} values, got shape {_shape(weight)}", "wrong_shape")
    _check_indices("target", target, 0, classes)


def multilabel_margin_targets(arrays: Arrays, params: Params) -> None:
    inp, target = arrays["input"], arrays["target"]
    _, classes = _margin_frames("input", inp)
    _require_integer("target", target, "class indices padded with -1")
    if inp.ndim <= 1 and (target.ndim > 1 or target.size != classes):
        raise fail("target", f"must be 0-D or 1-D with {classes} values, got shape {_shape(target)}", "wrong_shape")
    if inp.ndim == 2 and target.shape != inp.shape:
        raise fail("target", f"shape {_shape(target)} does not match input's {_shape(inp)}", "shape_mismatch")
    _check_indices("target", target, -1, classes)


def ctc_arguments(arrays: Arrays, params: Params) -> None:
    log_probs, targets = arrays["log_probs"], arrays["targets"]
    input_lengths, target_lengths = arrays["input_lengths"], arrays["target_lengths"]
    if log_probs.ndim not in (2, 3):
        raise fail("log_probs", f"must be (T, C) or (T, N, C), got {log_probs.ndim}-D", "wrong_rank")
    steps, classes = log_probs.shape[0], log_probs.shape[-1]
    batch = 1 if log_probs.ndim == 2 else log_probs.shape[1]
    for name, arr in (("targets", targets), ("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        _require_integer(name, arr, "values")
    blank = params["blank"]
    if not 0 <= blank < classes:
        raise fail("blank", f"must be in [0, {classes}) for {classes} classes", "out_of_range")
    batched_shape = [batch] if log_probs.ndim == 3 else []
    for name, arr in (("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if _shape(arr) != batched_shape:
            raise fail(name, f"shape {_shape(arr)} should be {batched_shape}", "shape_mismatch")
    if input_lengths.size and not bool(((input_lengths >= 0) & (input_lengths <= steps)).all()):
        raise fail("input_lengths", f"every length must be in [0, {steps}] (T)", "out_of_range")
    if target_lengths.size and bool((target_lengths < 0).any()):
        raise fail("target_lengths", "lengths must not be negative", "out_of_range")
    if targets.ndim == 2 and log_probs.ndim == 3:
        if targets.shape[0] != batch:
            raise fail("targets", f"padded targets need {batch} rows (N)", "shape_mismatch")
        if target_lengths.size and int(target_lengths.max()) > targets.shape[1]:
            raise fail("target_lengths", f"a length exceeds the padded width {targets.shape[1]}", "out_of_range")
        used = np.arange(targets.shape[1])[None, :] < target_lengths.reshape(-1, 1)
        values = targets[used]
    elif targets.ndim == 1:
        total = int(target_lengths.sum()) if target_lengths.size else 0
        if log_probs.ndim == 3 and total != targets.shape[0]:
            raise fail(
                "targets",
                f"concatenated targets hold {targets.shape[0]} labels but target_lengths sum to {total}",
                "shape_mismatch",
            )
        if log_probs.ndim == 2 and int(target_lengths) > targets.shape[0]:
            raise fail("target_lengths", "exceeds the number of targets", "out_of_range")
        values = targets
    else:
        raise fail("targets", f"must be 1-D or (N, S), got {targets.ndim}-D", "wrong_rank")
    _check_indices("targets", values, 0, classes)
    if values.size and bool((values == blank).any()):
        raise fail("targets", f"must not contain the blank label {blank}", "index_out_of_range")


def triplet_shapes(arrays: Arrays, params: Params) -> None:
    """anchor, positive and negative: the same rank; each pair torch measures broadcasts, and so do the distances."""
    same_rank("anchor", "positive", "negative")(arrays, params)
    pairs = [("anchor", "positive"), ("anchor", "negative")] + ([("positive", "negative")] if params["swap"] else [])
    distances = []
    for first, second in pairs:
        joint = _broadcast((arrays[first].shape, arrays[second].shape))
        if joint is None:
            raise fail(
                second,
                f"shape {_shape(arrays[second])} does not broadcast with {first}'s {_shape(arrays[first])}",
                "shape_mismatch",
            )
        distances.append(joint[:-1] if joint else joint)
    if _broadcast(tuple(distances)) is None:
        raise fail(
            "negative",
            f"the distances to positive {list(distances[0])} and to negative {list(distances[1])} do not broadcast",
            "shape_mismatch",
        )


def non_negative(name: str) -> Check:
    def check(arrays: Arrays, params: Params) -> None:
        arr = arrays[name]
        if arr.size and bool((arr < 0).any()):
            raise fail(name, "must not hold negative values", "out_of_range")

    return check


def prelu_weight(arrays: Arrays, params: Params) -> None:
    inp, weight = arrays["input"], arrays["weight"]
    channels = inp.shape[1] if inp.ndim >= 2 else 1
    if weight.ndim > 1 or weight.size not in (1, channels):
        raise fail(
            "weight",
            f"must hold 1 value or one per channel ({channels} for input of shape {_shape(inp)}), "
            f"got shape {_shape(weight)}",
            "wrong_shape",
        )


def pair_with_label(arrays: Arrays, params: Params) -> None:
    """cosine_embedding_loss: target () with 1-D inputs or (N) with 2-D inputs; all broadcast (torch's rules)."""
    target = arrays["target"]
    if target.ndim > 1:
        raise fail("target", f"must be 0-D or 1-D, got {target.ndim}-D", "wrong_rank")
    expected = target.ndim + 1
    for name in ("input1", "input2"):
        if arrays[name].ndim != expected:
            raise fail(
                name, f"must be {expected}-D for a {target.ndim}-D target, got {arrays[name].ndim}-D", "wrong_rank"
            )
    broadcastable("input1", "input2")(arrays, params)
    pairs = _broadcast((arrays["input1"].shape, arrays["input2"].shape))
    assert pairs is not None
    if _broadcast((pairs[:-1], target.shape)) is None:
        raise fail(
            "target", f"shape {_shape(target)} does not broadcast with the pairs' {list(pairs[:-1])}", "shape_mismatch"
        )


def gaussian_variance(arrays: Arrays, params: Params) -> None:
    """var: input's shape, input's shape less its last dim, or one dim of size 1 (torch's rule)."""
    inp, var = arrays["input"], arrays["var"]
    if var.shape == inp.shape or var.shape == inp.shape[:-1]:
        fitted = var.shape if var.shape == inp.shape else (*var.shape, 1)
    elif var.ndim == inp.ndim and sum(v for i, v in zip(inp.shape, var.shape, strict=True) if i != v) == 1:
        fitted = var.shape
    else:
        fitted = None
    if fitted is not None:
        if _broadcast((inp.shape, arrays["target"].shape, fitted)) is None:
            raise fail(
                "target",
                f"shape {_shape(arrays['target'])} does not broadcast with input {_shape(inp)} and var {_shape(var)}",
                "shape_mismatch",
            )
        return
    raise fail(
        "var",
        f"shape {_shape(var)} does not fit input {_shape(inp)}: use input's shape, input's shape without its "
        "last dim, or input's shape with one dim of size 1",
        "shape_mismatch",
    )


def class_weight(class_dim: int) -> Check:
    """A per-class ``weight`` of shape (C,), C read from ``input`` along ``class_dim`` (or dim 0 if 1-D)."""

    def check(arrays: Arrays, params: Params) -> None:
        weight = arrays.get("weight")
        if weight is None:
            return
        inp = arrays["input"]
        classes = inp.shape[0] if inp.ndim == 1 else inp.shape[class_dim] if inp.ndim else 1
        if weight.shape != (classes,):
            raise fail(
                "weight", f"must hold one weight per class: shape [{classes}], got {_shape(weight)}", "wrong_shape"
            )

    return check


def broadcastable_to_input(*names: str) -> Check:
    """Each named tensor parameter, when given, broadcasts to input's shape."""

    def check(arrays: Arrays, params: Params) -> None:
        inp = arrays["input"]
        for name in names:
            tensor = arrays.get(name)
            if tensor is None:
                continue
            try:
                fits = np.broadcast_shapes(tensor.shape, inp.shape) == inp.shape
            except ValueError:
                fits = False
            if not fits:
                raise fail(name, f"shape {_shape(tensor)} does not broadcast to input's {_shape(inp)}", "wrong_shape")

    return check


def some_target_counts(arrays: Arrays, params: Params) -> None:
    """A 'mean' over class-index targets divides by their total weight: refuse a zero total (NaN)."""
    target = arrays["target"]
    if params.get("reduction") != "mean" or target.dtype.kind not in "iu" or target.size == 0:
        return
    weight = arrays.get("weight")
    if weight is None and target.item(0) != params["ignore_index"]:
        return  # no weights, and the first target counts: the total is at least 1
    counted = target[target != params["ignore_index"]]
    with np.errstate(over="ignore"):  # huge weights sum to inf, which is not zero either
        total = counted.size if weight is None else float(np.asarray(weight, dtype=np.float64)[counted].sum())
    if total == 0:
        raise fail(
            "target",
            "every target is ignore_index or has weight 0: a 'mean' over no weight is NaN",
            "empty_tensor",
        )


def same_shape_when_given(name: str) -> Check:
    """A tensor parameter that, when given, must have exactly input's shape (torch's rule)."""

    def check(arrays: Arrays, params: Params) -> None:
        tensor = arrays.get(name)
        if tensor is not None and tensor.shape != arrays["input"].shape:
            raise fail(
                name, f"shape {_shape(tensor)} must equal input's shape {_shape(arrays['input'])}", "shape_mismatch"
            )

    return check
