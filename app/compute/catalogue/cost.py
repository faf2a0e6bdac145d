"""What one request costs, known before it runs: each function declares how its compute time and
working memory grow with its inputs (``CostModel``), and ``estimate`` turns that into the figures
a request is admitted by (dtype and gradients taken into account).

Units: ``work`` is in *cost units*, about one nanosecond of one core of the reference machine
(the 2-core development VM this repository is measured on, torch on one thread); ``memory`` is
in elements of the computation dtype, beside the inputs themselves. Coefficients come from
``python -m bench.cost``, which runs the most expensive request each function admits and reports
the time and peak memory it really took; that benchmark keeps these numbers honest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

Arrays = Mapping[str, np.ndarray]
Params = Mapping[str, object]


class Cost(NamedTuple):
    """One forward pass: ``work`` in cost units, ``memory`` in elements of the computation dtype
    created while computing (outputs and intermediates, not the inputs)."""

    work: float
    memory: float


CostModel = Callable[[Arrays, Params], Cost]
"""A function's cost from its decoded arrays (shapes, and values where they drive the cost,
such as CTC's target lengths) and parameters."""


def _elements(arrays: Arrays) -> int:
    """The elements of all tensors, or of their shapes broadcast together when that is more:
    torch's elementwise losses compute over the broadcast shape (an (N, 1) input against a (1, N)
    target is N² elements of work and, with reduction 'none', of output)."""
    if len(arrays) == 1:  # most requests: a single tensor (~2 µs of the sums below)
        for arr in arrays.values():
            return int(arr.size)
    total = sum(arr.size for arr in arrays.values())
    shapes = [arr.shape for arr in arrays.values()]
    if len(shapes) < 2 or all(shape == shapes[0] for shape in shapes):
        return total
    try:
        joint = math.prod(np.broadcast_shapes(*shapes))
    except ValueError:  # shapes that do not broadcast (a function that does not broadcast them)
        return total
    return max(total, joint)


def elementwise(work_per_element: float = 30.0, memory_per_element: float = 4.0) -> CostModel:
    """Cost linear in the elements of all tensors: pointwise functions, reductions, softmax over
    a dimension, distance-based losses. 30 units an element (90 with gradients) covers the slowest
    pointwise functions measured by ``bench.cost`` (tanh, glu, kl_div in bfloat16 or float64)."""

    def cost(arrays: Arrays, params: Params) -> Cost:
        elements = _elements(arrays)
        return Cost(work_per_element * elements, memory_per_element * elements)

    return cost


ELEMENTWISE = elementwise()


def _rows_and_classes(arr: np.ndarray) -> tuple[int, int]:
    """(N, C) of an (N, C), (C) or 0-D input."""
    classes = arr.shape[-1] if arr.ndim else 1
    return (arr.size // classes if classes else 0), classes


def multilabel_margin(arrays: Arrays, params: Params) -> Cost:
    """torch compares every class with every target class of the same row: N·C² steps (measured
    ~0.7 units a step forward), and a C-sized mask per row."""
    rows, classes = _rows_and_classes(arrays["input"])
    return Cost(1.0 * rows * classes * classes + ELEMENTWISE(arrays, params).work, 4.0 * _elements(arrays))


def ctc(arrays: Arrays, params: Params) -> Cost:
    """The forward (alpha) recursion over T steps and 2S+1 extended labels per sequence, where S
    is the longest target length: N·T·(2S+1) cells, each ~25 units forward (measured; the
    backward pass adds beta and the gradient over the classes). Memory: alpha (and beta), N·T·(2S+1)."""
    log_probs, lengths = arrays["log_probs"], arrays["target_lengths"]
    steps = log_probs.shape[0] if log_probs.ndim else 1
    batch = log_probs.shape[1] if log_probs.ndim == 3 else 1
    longest = int(lengths.max()) if lengths.size else 0
    cells = batch * steps * (2 * max(longest, 0) + 1)
    return Cost(25.0 * cells + ELEMENTWISE(arrays, params).work, 1.0 * cells + 4.0 * log_probs.size)


GRAD_WORK = 3.0
"""A backward pass costs about twice its forward (measured over the catalogue: 1.3x to 2.9x the
forward alone)."""
GRAD_MEMORY = 3.0
"""With gradients, autograd keeps what the backward needs and creates a gradient per input."""


class Estimate(NamedTuple):
    work: float
    """Cost units (about nanoseconds of one reference core)."""
    memory_bytes: int
    """Bytes of the inputs as computed, plus the working memory."""
    output_elements: int | None = None
    """The most elements the function's output may have: the working memory its cost model
    declares, which holds the output (None: not estimated). The engine refuses a larger output
    before anything is copied or encoded: a function whose output is larger than its inputs
    (a plugin's) declares it in its cost model."""

    @property
    def seconds(self) -> float:
        """The estimate as seconds on one core of the reference machine."""
        return self.work / 1e9


def estimate(cost: Cost, arrays: Arrays, itemsize: int, grad: bool) -> Estimate:
    """The figures a request is admitted by, for its computation dtype's ``itemsize``."""
    work = cost.work * (GRAD_WORK if grad else 1.0)
    inputs = sum(arr.size * max(itemsize, arr.itemsize) for arr in arrays.values())
    working = cost.memory * itemsize * (GRAD_MEMORY if grad else 1.0)
    return Estimate(work, inputs + math.ceil(working), max(1, math.ceil(cost.memory)))
