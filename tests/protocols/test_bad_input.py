"""A corpus of bad requests: each is refused with the right status, names the offending field,
answers cheaply and briefly in the service's error format, and leaves the server healthy.

Expectations are written from the API user's side (what a careful client may rely on), not
from what the implementation happens to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pytest
import torch
from _pytest.mark.structures import ParameterSet
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.support.cpu import tree_cpu_seconds
from tests.support.error_bodies import FAST, SLOW, check_error_body

Loc = tuple[str | int, ...]
Content = bytes | Callable[[], bytes | Iterator[bytes]] | None
AppName = Literal["default", "small"]


SMALL = Settings(
    max_body_bytes=2048,
    max_tensor_elements=100,
    max_total_elements=150,
    max_rank=3,
    max_reported_errors=3,
)
"""The limits of the ``small`` app, low enough to cross with tiny requests."""

ERROR_CODES: dict[int, str] = {
    400: "malformed_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}

RELU_OK: dict[str, Any] = {"function": "relu", "input": [-1.0, 2.0]}
MSE_OK: dict[str, Any] = {"function": "mse_loss", "input": [1.0, 2.0], "target": [1.0, 0.0]}


@dataclass(frozen=True)
class Bad:
    """One bad request and what a careful client expects back."""

    content: Content
    status: int | tuple[int, ...]
    loc: Loc | None
    """A prefix of the ``loc`` of some detail; None where no field is at fault (404, 405)."""
    path: str
    method: str
    headers: tuple[tuple[str, str], ...]
    error: str | None
    says: tuple[str, ...]
    """Words the message or a detail must contain (whole words, any case)."""
    other_loc: Loc | None
    """An equally acceptable loc prefix."""
    app: AppName
    max_seconds: float
    cpu_only: bool
    truncated: bool
    details: int | None
    """Exact number of details expected, where it matters."""


def case(
    case_id: str,
    body: Any,
    status: int | tuple[int, ...],
    loc: Loc | None,
    *,
    path: str = "/activate",
    method: str = "POST",
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
    error: str | None = None,
    says: tuple[str, ...] = (),
    other_loc: Loc | None = None,
    app: AppName = "default",
    max_seconds: float = FAST,
    cpu_only: bool = False,
    truncated: bool = False,
    details: int | None = None,
) -> ParameterSet:
    """``body`` is sent as JSON, unless it is bytes (sent as is), a callable (called at run
    time: huge bodies and streams) or None (no body)."""
    raw = body is None or isinstance(body, bytes) or callable(body)
    content: Content = body if raw else orjson.dumps(body)
    bad = Bad(
        content,
        status,
        loc,
        path,
        method,
        headers,
        error,
        says,
        other_loc,
        app,
        max_seconds,
        cpu_only,
        truncated,
        details,
    )
    return pytest.param(bad, id=case_id)


def act(function: str, x: Any, **fields: Any) -> dict[str, Any]:
    return {"function": function, "input": x, **fields}


def loss(function: str, **fields: Any) -> dict[str, Any]:
    return {"function": function, **fields}


def relu(x: Any, **fields: Any) -> dict[str, Any]:
    return act("relu", x, **fields)


def mse(x: Any = MSE_OK["input"], t: Any = MSE_OK["target"], **fields: Any) -> dict[str, Any]:
    return loss("mse_loss", input=x, target=t, **fields)


def obj(shape: Any, data: Any, dtype: str | None = "float32", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": shape, "data": data, **extra}
    if dtype is not None:
        out["dtype"] = dtype
    return out


X2 = [[0.2, -1.3, 0.8], [1.1, 0.4, -0.6]]
"""A (2, 3) float tensor."""
LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
LOG_PROBS = [[-0.5, -1.2, -2.0], [-1.0, -0.3, -2.2]]
SCORES = [[0.1, 0.2, 0.4, 0.8], [0.5, 0.1, 0.3, 0.2]]
P = [[0.8, 0.1, 0.6], [0.3, 0.9, 0.2]]
B = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
CTC_INPUTS: dict[str, Any] = {
    "log_probs": [[[-1.2, -0.9, -1.3]], [[-0.7, -1.5, -1.2]], [[-1.1, -1.1, -1.1]]],
    "targets": [[1, 2]],
    "input_lengths": [3],
    "target_lengths": [2],
}
"""T=3, N=1, C=3; targets padded to width 2."""


def ctc(**changes: Any) -> dict[str, Any]:
    return loss("ctc_loss", inputs={**CTC_INPUTS, **changes})


def xent(x: Any = LOGITS, t: Any = (0, 2), **fields: Any) -> dict[str, Any]:
    return loss("cross_entropy", input=x, target=list(t) if isinstance(t, tuple) else t, **fields)


def nll(t: Any, **fields: Any) -> dict[str, Any]:
    return loss("nll_loss", input=LOG_PROBS, target=t, **fields)


def bce(x: Any = P, t: Any = B, **fields: Any) -> dict[str, Any]:
    return loss("binary_cross_entropy", input=x, target=t, **fields)


def bce_logits(x: Any = X2, t: Any = B, **fields: Any) -> dict[str, Any]:
    return loss("binary_cross_entropy_with_logits", input=x, target=t, **fields)


def big_ints(body: Any) -> bytes:
    """JSON with integers beyond 64 bits, which orjson will not write."""
    return json.dumps(body).encode()


def lazy_json(make: Callable[[], Any]) -> Callable[[], bytes]:
    return lambda: orjson.dumps(make())


def deep_body() -> bytes:
    return b'{"function": "relu", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def chunks(body: bytes, size: int = 256) -> Callable[[], Iterator[bytes]]:
    def stream() -> Iterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]

    return stream


LARGE_BODY = orjson.dumps(relu([0.5] * 600))
"""About 2.4 KB: over the small app's 2048-byte limit."""
VALID = orjson.dumps(RELU_OK)
HUGE_NAME = "p" * 100_000

BODY = ("body",)
INPUT = ("body", "input")
TARGET = ("body", "target")


def params(*name: str) -> Loc:
    return ("body", "params", *name)


def inputs(*name: str) -> Loc:
    return ("body", "inputs", *name)


JSON_CASES = [
    case("json-truncated", b'{"function": "relu", "input": [1, 2', 400, BODY),
    case("json-trailing-comma", b'{"function": "relu", "input": [1, 2,]}', 400, BODY),
    case("json-single-quotes", b"{'function': 'relu', 'input': [1]}", 400, BODY),
    case("json-two-documents", VALID + VALID, 400, BODY),
    case("json-empty-body", b"", 400, BODY),
    case("json-empty-body-loss", b"", 400, BODY, path="/loss"),
    case("json-whitespace-only", b"  \n ", 400, BODY),
    case("json-not-object-list", [1, 2], 422, BODY),
    case("json-not-object-string", "relu", 422, BODY),
    case("json-not-object-null", b"null", 422, BODY),
    case("json-not-object-number", 42, 422, BODY, path="/loss"),
    case("json-literal-NaN", b'{"function": "relu", "input": [1.0, NaN]}', 400, BODY),
    case("json-literal-Infinity", b'{"function": "relu", "input": Infinity}', 400, BODY),
    case("json-literal-minus-Infinity", b'{"function": "relu", "input": [-Infinity]}', 400, BODY),
    case("json-number-1e400", b'{"function": "relu", "input": [1e400]}', 400, BODY),
    case("json-number-1e400-in-param", b'{"function": "elu", "input": [1], "params": {"alpha": 1e400}}', 400, BODY),
    case("utf8-invalid-in-string", b'{"function": "rel\xffu", "input": [1]}', 400, BODY),
    case("utf8-invalid-bytes-only", b"\xff\xfe\xfd", 400, BODY),
    case("utf8-lone-surrogate", b'{"function": "relu\xed\xa0\x80", "input": [1]}', 400, BODY),
    case("deep-100000-brackets", deep_body, (400, 422), BODY, max_seconds=SLOW),
    case("deep-100000-bare-brackets", lambda: b"[" * 100_000 + b"]" * 100_000, (400, 422), BODY, max_seconds=SLOW),
    case("deep-100000-objects", lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000, (400, 422), BODY, max_seconds=SLOW),
    case("deep-1000-input", b'{"function": "relu", "input": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}", 422, INPUT),
    case("deep-over-max-rank", relu(nested(9)), 422, INPUT),
    case("deep-over-max-rank-target", mse([1.0], nested(9)), 422, TARGET, path="/loss"),
    case("deep-over-max-rank-object-shape", relu(obj([1] * 9, [1.0])), 422, INPUT),
    case("deep-over-max-rank-grad-output", relu([1.0], grad=True, grad_output=nested(9)), 422, ("body", "grad_output")),
    case("deep-over-max-rank-tensor-param", act("prelu", [[1.0]], params={"weight": nested(9)}), 422, params("weight")),
]

ENVELOPE_CASES = [
    case("envelope-unknown-field", relu([1.0], foo=1), 422, ("body", "foo")),
    case("envelope-target-on-activate", relu([1.0], target=[1.0]), 422, TARGET, says=("/loss",)),
    case(
        "envelope-inputs-on-activate",
        relu([1.0], inputs={"var": [1.0]}),
        422,
        ("body", "inputs"),
        says=("/activate takes one tensor", "'input'", "belongs to /loss"),
    ),
    case(
        "envelope-activation-on-activate",
        relu([1.0], activation="sigmoid"),
        422,
        ("body", "activation"),
        says=("/loss", "'function'"),
    ),
    case("envelope-missing-function", {"input": [1.0]}, 422, ("body", "function")),
    case("envelope-missing-input", {"function": "relu"}, 422, INPUT),
    case("envelope-function-not-string", {"function": 42, "input": [1.0]}, 422, ("body", "function")),
    case("envelope-function-too-long", {"function": "r" * 300, "input": [1.0]}, 422, ("body", "function")),
    case("envelope-params-not-object", relu([1.0], params=[1, 2]), 422, ("body", "params")),
    case("envelope-inputs-not-object", mse(inputs=[1.0]), 422, ("body", "inputs"), path="/loss"),
    case("envelope-grad-string", relu([1.0], grad="yes"), 422, ("body", "grad")),
    case("envelope-grad-integer", relu([1.0], grad=1), 422, ("body", "grad")),
    case("envelope-dtype-int32", relu([1.0], dtype="int32"), 422, ("body", "dtype")),
    case("envelope-dtype-float8", relu([1.0], dtype="float8"), 422, ("body", "dtype")),
    case("envelope-encoding-hex", relu([1.0], encoding="hex"), 422, ("body", "encoding")),
    case("envelope-input-null", relu(None), 422, INPUT),
    case("function-unknown-relux", act("relux", [1.0]), 422, ("body", "function"), says=("relu",)),
    case(
        "function-unknown-on-loss",
        {**mse(), "function": "mse_los"},
        422,
        ("body", "function"),
        path="/loss",
        says=("mse_loss",),
    ),
    case("function-loss-on-activate", act("mse_loss", [1.0]), 422, ("body", "function"), says=("/loss",)),
    case("function-activation-on-loss", relu([1.0]), 422, ("body", "function"), path="/loss", says=("/activate",)),
    case(
        "function-get-unknown",
        None,
        404,
        ("path", "name"),
        path="/functions/relux",
        method="GET",
        error="unknown_function",
        says=("relu",),
    ),
]

ELEMENT_CASES = [
    case("ragged-2d", relu([[1.0, 2.0], [3.0]]), 422, INPUT),
    case("ragged-number-then-list", relu([1.0, [2.0, 3.0]]), 422, INPUT),
    case("ragged-list-then-number", relu([[1.0, 2.0], 3.0]), 422, INPUT),
    case("ragged-3d", relu([[[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]]]), 422, INPUT),
    case("ragged-empty-row", relu([[1.0, 2.0], []]), 422, INPUT),
    case("ragged-empty-first-row", relu([[], [1.0]]), 422, INPUT),
    case("ragged-target", mse([[1.0, 2.0]], [[1.0], [2.0, 3.0]]), 422, TARGET, path="/loss"),
    case(
        "ragged-inputs-var",
        loss("gaussian_nll_loss", input=[[1.0, 2.0]], target=[[1.0, 2.0]], inputs={"var": [[1.0], [1.0, 2.0]]}),
        422,
        inputs("var"),
        path="/loss",
    ),
    case(
        "ragged-tensor-param", act("prelu", [[1.0, 2.0]], params={"weight": [[0.1], [0.2, 0.3]]}), 422, params("weight")
    ),
    case(
        "ragged-grad-output",
        relu([[1.0, 2.0]], grad=True, grad_output=[[1.0], [1.0, 2.0]]),
        422,
        ("body", "grad_output"),
    ),
    case("bool-scalar", relu(True), 422, INPUT),
    case("bool-list", relu([True, False]), 422, INPUT),
    case("bool-mixed-int", relu([1, True]), 422, INPUT),
    case("bool-mixed-float", relu([1.5, False]), 422, INPUT),
    case("bool-nested", relu([[1.0, 2.0], [True, 3.0]]), 422, INPUT),
    case("bool-in-target", mse([1.0, 2.0], [1.0, True]), 422, TARGET, path="/loss"),
    case("bool-in-object-data", relu(obj([2], [1.0, True])), 422, INPUT),
    case("bool-only-in-object-data", relu(obj([2], [True, False])), 422, INPUT),
    case("string-scalar", relu("abc"), 422, INPUT),
    case("string-list", relu(["a", "b"]), 422, INPUT),
    case("string-mixed", relu([1.0, "a"]), 422, INPUT),
    case("string-number-as-string", relu(["1.5"]), 422, INPUT),
    case("string-lowercase-nan", relu(["NaN", "nan"]), 422, INPUT),
    case("string-nested", relu([[1.0, 2.0], [3.0, "x"]]), 422, INPUT),
    case("string-mixed-with-bool", relu([1.0, "NaN", True]), 422, INPUT),
    case("string-in-object-data", relu(obj([2], [1.0, "a"])), 422, INPUT),
    case("string-in-tensor-param", mse(params={"weight": "abc"}), 422, params("weight"), path="/loss"),
    case("null-in-list", relu([1.0, None]), 422, INPUT),
    case("null-only-list", relu([None]), 422, INPUT),
    case("null-nested", relu([[1.0, 2.0], [None, 3.0]]), 422, INPUT),
    case("null-in-object-data", relu(obj([2], [1.0, None])), 422, INPUT),
    case("null-target", mse([1.0], None), 422, TARGET, path="/loss"),
    case("object-inside-list", relu([{"a": 1}]), 422, INPUT),
    case("tensor-param-bool", mse(params={"weight": True}), 422, params("weight"), path="/loss"),
]

OBJECT_FORM_CASES = [
    case("object-bad-base64", relu(obj([2], "!!!!not base64")), 422, ("body", "input", "data")),
    case("object-bad-base64-padding", relu(obj([1], "AAAAA")), 422, ("body", "input", "data")),
    case("object-base64-wrong-length", relu(obj([2], "AAAAAA==")), 422, ("body", "input", "data")),
    case("object-list-wrong-length", relu(obj([2, 2], [1.0, 2.0, 3.0])), 422, ("body", "input", "data")),
    case("object-list-nested-data", relu(obj([2, 2], [[1.0, 2.0], [3.0, 4.0]])), 422, ("body", "input", "data")),
    case("object-unknown-dtype", relu(obj([1], "AAAAAA==", dtype="float128")), 422, ("body", "input", "dtype")),
    case("object-dtype-not-string", relu({"shape": [1], "data": [1.0], "dtype": 4}), 422, ("body", "input", "dtype")),
    case("object-negative-shape", relu(obj([-1], [])), 422, ("body", "input", "shape")),
    case("object-shape-not-list", relu(obj(2, [1.0, 2.0])), 422, ("body", "input", "shape")),
    case("object-shape-float", relu(obj([2.0], [1.0, 2.0])), 422, ("body", "input", "shape")),
    case("object-shape-bool", relu(obj([True], [1.0])), 422, ("body", "input", "shape")),
    case("object-missing-shape", relu({"data": [1.0]}), 422, ("body", "input", "shape")),
    case("object-missing-data", relu({"shape": [1], "dtype": "float32"}), 422, ("body", "input", "data")),
    case("object-data-number", relu(obj([1], 1.0)), 422, ("body", "input", "data")),
    case("object-extra-key", relu(obj([1], [1.0], extra="x")), 422, ("body", "input", "extra")),
    case("object-int-dtype-float-data", relu(obj([2], [1.5, 2.0], dtype="int64")), 422, ("body", "input", "data")),
    case("object-huge-shape", relu(obj([100_000, 100_000], "")), 413, ("body", "input")),
    case("object-uint8-out-of-range", relu(obj([1], [300], dtype="uint8")), 422, ("body", "input")),
    case("object-int8-out-of-range", relu(obj([1], [200], dtype="int8")), 422, ("body", "input")),
    case("object-float16-data-overflows", relu(obj([1], [70000.0], dtype="float16")), 422, ("body", "input")),
    case("object-float32-data-overflows", relu(obj([1], [1e39], dtype="float32")), 422, ("body", "input")),
]

SHAPE_CASES = [
    case("shape-softmax2d-2d-input", act("softmax2d", X2), 422, INPUT),
    case("shape-softmax2d-5d-input", act("softmax2d", nested(5)), 422, INPUT),
    case("shape-glu-odd-size", act("glu", X2), 422, INPUT),
    case("shape-glu-odd-size-dim0", act("glu", [[1.0, 2.0]], params={"dim": 0}), 422, INPUT),
    case("shape-glu-scalar", act("glu", 1.0), 422, INPUT),
    case("shape-cross-entropy-target", xent(t=(0,)), 422, TARGET, path="/loss"),
    case("shape-cross-entropy-target-2d-indices", xent(t=[[0, 1], [1, 0]]), 422, TARGET, path="/loss"),
    case("shape-cross-entropy-probabilities", xent(t=[[0.5, 0.5]]), 422, TARGET, path="/loss"),
    case("shape-cross-entropy-scalar-input", xent(x=1.0, t=0), 422, INPUT, path="/loss"),
    case("shape-mse-mismatch", mse([1.0, 2.0], [1.0, 2.0, 3.0]), 422, TARGET, path="/loss"),
    case("shape-mse-not-broadcastable", mse([[1.0, 2.0, 3.0]], [[1.0, 2.0]]), 422, TARGET, path="/loss"),
    case("shape-prelu-weight-size", act("prelu", X2, params={"weight": [0.1, 0.2]}), 422, params("weight")),
    case("shape-prelu-weight-2d", act("prelu", X2, params={"weight": [[0.1, 0.2, 0.3]]}), 422, params("weight")),
    case("shape-ctc-lengths-sum", ctc(targets=[1, 2, 1]), 422, inputs("targets"), path="/loss"),
    case("shape-ctc-input-length-over-T", ctc(input_lengths=[4]), 422, inputs("input_lengths"), path="/loss"),
    case("shape-ctc-target-length-over-width", ctc(target_lengths=[3]), 422, inputs("target_lengths"), path="/loss"),
    case("shape-ctc-negative-target-length", ctc(target_lengths=[-1]), 422, inputs("target_lengths"), path="/loss"),
    case("shape-ctc-lengths-batch", ctc(input_lengths=[3, 3]), 422, inputs("input_lengths"), path="/loss"),
    case("shape-ctc-log-probs-1d", ctc(log_probs=[-1.0, -2.0]), 422, inputs("log_probs"), path="/loss"),
    case(
        "shape-cosine-target",
        loss("cosine_embedding_loss", inputs={"input1": X2, "input2": X2, "target": [1.0, -1.0, 1.0]}),
        422,
        inputs("target"),
        path="/loss",
    ),
    case(
        "shape-margin-ranking",
        loss("margin_ranking_loss", inputs={"input1": [1.0, 2.0], "input2": [1.0, 2.0, 3.0], "target": [1.0, -1.0]}),
        422,
        inputs("input2"),
        path="/loss",
    ),
    case(
        "shape-triplet-negative",
        loss("triplet_margin_loss", inputs={"anchor": X2, "positive": X2, "negative": [[1.0, 2.0]]}),
        422,
        inputs("negative"),
        path="/loss",
    ),
    case(
        "shape-multilabel-margin-target",
        loss("multilabel_margin_loss", input=SCORES, target=[[3, 0, -1, 1]]),
        422,
        TARGET,
        path="/loss",
    ),
    case(
        "shape-gaussian-var",
        loss("gaussian_nll_loss", input=X2, target=X2, inputs={"var": [1.0, 1.0, 1.0, 1.0]}),
        422,
        inputs("var"),
        path="/loss",
    ),
    case("shape-cross-entropy-weight", xent(params={"weight": [1.0, 2.0]}), 422, params("weight"), path="/loss"),
    case(
        "shape-mse-weight",
        mse([1.0, 2.0], [1.0, 2.0], params={"weight": [1.0, 2.0, 3.0]}),
        422,
        params("weight"),
        path="/loss",
    ),
    case(
        "shape-bce-pos-weight", bce_logits(params={"pos_weight": [1.0, 2.0]}), 422, params("pos_weight"), path="/loss"
    ),
    case(
        "grad-output-wrong-shape",
        relu([1.0, 2.0, 3.0], grad=True, grad_output=[1.0, 1.0]),
        422,
        ("body", "grad_output"),
    ),
    case(
        "grad-output-wrong-shape-loss",
        mse(grad=True, grad_output=[1.0, 1.0]),
        422,
        ("body", "grad_output"),
        path="/loss",
    ),
]

CLASS_INDEX_CASES = [
    case("index-cross-entropy-equals-C", xent(t=(0, 3)), 422, TARGET, path="/loss"),
    case("index-cross-entropy-minus-one", xent(t=(-1, 2)), 422, TARGET, path="/loss"),
    case("index-nll-too-large", nll([0, 1000]), 422, TARGET, path="/loss"),
    case("index-nll-equals-C", nll([3, 0]), 422, TARGET, path="/loss"),
    case("index-nll-minus-one", nll([-1, 0]), 422, TARGET, path="/loss"),
    case("index-nll-huge", nll([0, 10**18]), 422, TARGET, path="/loss"),
    case("index-nll-float", nll([0.0, 1.0]), 422, TARGET, path="/loss", says=("integers",)),
    case("index-nll-fractional", nll([0.5, 1.0]), 422, TARGET, path="/loss"),
    case("index-nll-object-float32", nll(obj([2], [0, 1], dtype="float32")), 422, TARGET, path="/loss"),
    case(
        "index-multi-margin-equals-C", loss("multi_margin_loss", input=SCORES, target=[4, 0]), 422, TARGET, path="/loss"
    ),
    case(
        "index-multi-margin-minus-one",
        loss("multi_margin_loss", input=SCORES, target=[-1, 0]),
        422,
        TARGET,
        path="/loss",
    ),
    case(
        "index-multilabel-margin-equals-C",
        loss("multilabel_margin_loss", input=[[0.1, 0.2, 0.4, 0.8]], target=[[4, 0, -1, 1]]),
        422,
        TARGET,
        path="/loss",
    ),
    case(
        "index-multilabel-margin-minus-two",
        loss("multilabel_margin_loss", input=[[0.1, 0.2, 0.4, 0.8]], target=[[-2, 0, -1, 1]]),
        422,
        TARGET,
        path="/loss",
    ),
    case("index-ctc-target-equals-C", ctc(targets=[[1, 3]]), 422, inputs("targets"), path="/loss"),
    case("index-ctc-target-is-blank", ctc(targets=[[0, 2]]), 422, inputs("targets"), path="/loss"),
    case("index-ctc-target-float", ctc(targets=[[1.0, 2.0]]), 422, inputs("targets"), path="/loss"),
    case("index-ctc-lengths-float", ctc(input_lengths=[3.0]), 422, inputs("input_lengths"), path="/loss"),
    case(
        "index-ctc-blank-equals-C",
        loss("ctc_loss", inputs=CTC_INPUTS, params={"blank": 3}),
        422,
        params("blank"),
        path="/loss",
    ),
]

PROBABILITY_CASES = [
    case("bce-input-above-one", bce(x=[[1.5, 0.1, 0.6], [0.3, 0.9, 0.2]]), 422, INPUT, path="/loss"),
    case("bce-input-negative", bce(x=[[0.8, -0.5, 0.6], [0.3, 0.9, 0.2]]), 422, INPUT, path="/loss"),
    case("bce-input-nan", bce(x=[[0.8, "NaN", 0.6], [0.3, 0.9, 0.2]]), 422, INPUT, path="/loss"),
    case("bce-input-infinity", bce(x=[[0.8, "Infinity", 0.6], [0.3, 0.9, 0.2]]), 422, INPUT, path="/loss"),
    case("bce-target-above-one", bce(t=[[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), 422, TARGET, path="/loss"),
    case("bce-target-negative", bce(t=[[1.0, -0.1, 1.0], [0.0, 1.0, 0.0]]), 422, TARGET, path="/loss"),
    case("bce-target-nan", bce(t=[[1.0, 0.0, 1.0], [0.0, "NaN", 0.0]]), 422, TARGET, path="/loss"),
    case("bce-logits-target-above-one", bce_logits(t=[[1.5, 0.0, 1.0], [0.0, 1.0, 0.0]]), 422, TARGET, path="/loss"),
    case("bce-logits-target-negative", bce_logits(t=[[1.0, 0.0, -0.1], [0.0, 1.0, 0.0]]), 422, TARGET, path="/loss"),
    case("bce-logits-target-nan", bce_logits(t=[[1.0, 0.0, 1.0], ["NaN", 1.0, 0.0]]), 422, TARGET, path="/loss"),
    case(
        "gaussian-var-negative",
        loss("gaussian_nll_loss", input=X2, target=X2, inputs={"var": [[0.5, -1.0, 2.0], [1.0, 1.0, 0.5]]}),
        422,
        inputs("var"),
        path="/loss",
    ),
]

PARAM_CASES = [
    case("param-unknown", act("leaky_relu", X2, params={"slope": 0.1}), 422, params("slope"), says=("negative_slope",)),
    case("param-unknown-none-known", relu(X2, params={"alpha": 1.0}), 422, params("alpha")),
    case("param-unknown-on-loss", mse(params={"beta": 1.0}), 422, params("beta"), path="/loss"),
    case("param-refused-inplace", relu(X2, params={"inplace": True}), 422, params("inplace"), says=("in-place",)),
    case(
        "param-refused-inplace-false", relu(X2, params={"inplace": False}), 422, params("inplace"), says=("in-place",)
    ),
    case(
        "param-refused-size-average",
        mse(params={"size_average": True}),
        422,
        params("size_average"),
        path="/loss",
        says=("deprecated", "reduction"),
    ),
    case(
        "param-refused-reduce",
        mse(params={"reduce": False}),
        422,
        params("reduce"),
        path="/loss",
        says=("deprecated", "reduction"),
    ),
    case(
        "param-refused-softmax-dtype",
        act("softmax", X2, params={"dtype": "float64"}),
        422,
        params("dtype"),
        says=("dtype",),
    ),
    case(
        "param-rrelu-training-no-seed",
        act("rrelu", X2, params={"training": True}),
        422,
        params("training"),
        says=("seed",),
    ),
    case("param-rrelu-negative-seed", act("rrelu", X2, params={"training": True, "seed": -1}), 422, params("seed")),
    case("param-rrelu-lower-above-upper", act("rrelu", X2, params={"lower": 0.5, "upper": 0.1}), 422, params("lower")),
    case(
        "param-hardtanh-min-above-max",
        act("hardtanh", X2, params={"min_val": 2.0, "max_val": 1.0}),
        422,
        params("min_val"),
    ),
    case(
        "param-label-smoothing-1.5", xent(params={"label_smoothing": 1.5}), 422, params("label_smoothing"), path="/loss"
    ),
    case(
        "param-huber-delta-zero",
        loss("huber_loss", input=X2, target=X2, params={"delta": 0}),
        422,
        params("delta"),
        path="/loss",
    ),
    case(
        "param-multi-margin-p-3",
        loss("multi_margin_loss", input=SCORES, target=[3, 0], params={"p": 3}),
        422,
        params("p"),
        path="/loss",
    ),
    case("param-softshrink-negative-lambd", act("softshrink", X2, params={"lambd": -1.0}), 422, params("lambd")),
    case("param-string-slope", act("leaky_relu", X2, params={"negative_slope": "0.1"}), 422, params("negative_slope")),
    case(
        "param-nan-string-slope", act("leaky_relu", X2, params={"negative_slope": "NaN"}), 422, params("negative_slope")
    ),
    case("param-bool-for-float", act("leaky_relu", X2, params={"negative_slope": True}), 422, params("negative_slope")),
    case(
        "param-list-for-float", act("leaky_relu", X2, params={"negative_slope": [0.1]}), 422, params("negative_slope")
    ),
    case("param-null-for-float", act("leaky_relu", X2, params={"negative_slope": None}), 422, params("negative_slope")),
    case("param-float-for-int-dim", act("softmax", X2, params={"dim": 1.0}), 422, params("dim")),
    case("param-bool-for-int-dim", act("softmax", X2, params={"dim": True}), 422, params("dim")),
    case(
        "param-string-for-bool",
        loss("poisson_nll_loss", input=X2, target=P, params={"log_input": "yes"}),
        422,
        params("log_input"),
        path="/loss",
    ),
    case(
        "param-int-for-bool",
        loss("poisson_nll_loss", input=X2, target=P, params={"full": 1}),
        422,
        params("full"),
        path="/loss",
    ),
    case("param-unknown-reduction", mse(params={"reduction": "avg"}), 422, params("reduction"), path="/loss"),
    case("param-batchmean-on-mse", mse(params={"reduction": "batchmean"}), 422, params("reduction"), path="/loss"),
    case("param-reduction-null", mse(params={"reduction": None}), 422, params("reduction"), path="/loss"),
    case("param-unknown-approximate", act("gelu", X2, params={"approximate": "fast"}), 422, params("approximate")),
    case(
        "param-unknown-distance",
        loss(
            "triplet_margin_with_distance_loss",
            inputs={"anchor": X2, "positive": X2, "negative": X2},
            params={"distance_function": "cosine"},
        ),
        422,
        params("distance_function"),
        path="/loss",
    ),
    case("param-threshold-missing-value", act("threshold", X2, params={"threshold": 0.5}), 422, params("value")),
    case("param-threshold-missing-both", act("threshold", X2), 422, params("threshold"), details=2),
    case("param-dim-out-of-range", act("softmax", X2, params={"dim": 2}), 422, params("dim")),
    case("param-dim-negative-out-of-range", act("log_softmax", X2, params={"dim": -3}), 422, params("dim")),
    case("param-glu-dim-out-of-range", act("glu", [[1.0, 2.0]], params={"dim": 5}), 422, params("dim")),
    case(
        "param-many-unknown-capped",
        act("leaky_relu", X2, params={f"p{i}": 1 for i in range(50)}),
        422,
        params("p0"),
        truncated=True,
        details=10,
    ),
]

DTYPE_CASES = [
    case("overflow-float32-input", relu([1.0, 1e39]), 422, INPUT, says=("overflows",)),
    case("overflow-float32-negative-input", relu([[-1e39, 1.0]]), 422, INPUT),
    case("overflow-float16-input", relu([1.0, 70000], dtype="float16"), 422, INPUT),
    case("overflow-float16-float-input", relu([70000.0], dtype="float16"), 422, INPUT),
    case("overflow-bfloat16-input", relu([1e39], dtype="bfloat16"), 422, INPUT),
    case("overflow-float32-target", mse([1.0, 2.0], [1.0, 1e39]), 422, TARGET, path="/loss"),
    case(
        "overflow-float16-inputs-var",
        loss("gaussian_nll_loss", input=[1.0], target=[1.0], inputs={"var": [70000.0]}, dtype="float16"),
        422,
        inputs("var"),
        path="/loss",
    ),
    case("overflow-float32-tensor-param", act("prelu", [[1.0, 2.0]], params={"weight": [1e39]}), 422, params("weight")),
    case(
        "overflow-float16-tensor-param",
        mse(params={"weight": [70000.0]}, dtype="float16"),
        422,
        params("weight"),
        path="/loss",
    ),
    case("overflow-float32-grad-output", relu([1.0], grad=True, grad_output=[1e39]), 422, ("body", "grad_output")),
    case(
        "dtype-ctc-float16-on-cpu",
        loss("ctc_loss", inputs=CTC_INPUTS, dtype="float16"),
        422,
        ("body", "dtype"),
        path="/loss",
        error="unsupported_dtype",
        cpu_only=True,
    ),
]

TENSOR_ARGUMENT_CASES = [
    case("inputs-unknown-tensor", mse(inputs={"var": [1.0, 1.0]}), 422, inputs("var"), path="/loss"),
    case("inputs-missing-target", loss("mse_loss", input=[1.0]), 422, TARGET, path="/loss"),
    case("inputs-missing-input", loss("mse_loss", target=[1.0]), 422, INPUT, path="/loss"),
    case("inputs-missing-var", loss("gaussian_nll_loss", input=[1.0], target=[1.0]), 422, inputs("var"), path="/loss"),
    case(
        "inputs-missing-ctc-targets",
        loss("ctc_loss", inputs={k: v for k, v in CTC_INPUTS.items() if k != "targets"}),
        422,
        inputs("targets"),
        path="/loss",
    ),
    case("inputs-target-twice", mse(inputs={"target": [1.0, 0.0]}), 422, inputs("target"), path="/loss"),
    case(
        "inputs-input-on-pair-loss",
        loss("cosine_embedding_loss", input=X2, inputs={"input1": X2, "input2": X2, "target": [1.0, -1.0]}),
        422,
        INPUT,
        path="/loss",
    ),
    case("empty-mse-mean", mse([], []), 422, INPUT, path="/loss"),
    case("empty-mse-default-reduction-2d", mse(obj([0, 3], ""), obj([0, 3], "")), 422, INPUT, path="/loss"),
    case(
        "empty-kl-div-batchmean",
        loss("kl_div", input=[], target=[], params={"reduction": "batchmean"}),
        422,
        INPUT,
        path="/loss",
    ),
    case("empty-nll-mean-all-targets-ignored", nll([-100, -100]), 422, TARGET, path="/loss"),
    case(
        "empty-xent-mean-all-weights-zero",
        xent(t=(1, 1), params={"weight": [1.0, 0.0, 1.0]}),
        422,
        TARGET,
        path="/loss",
    ),
    case(
        "empty-nll-mean",
        loss("nll_loss", input=obj([0, 3], ""), target=obj([0], "", dtype="int64")),
        422,
        INPUT,
        path="/loss",
    ),
]

HTTP_CASES = [
    case("http-text-plain", VALID, 415, ("header", "content-type"), headers=(("content-type", "text/plain"),)),
    case(
        "http-form-urlencoded",
        b"function=relu&input=1",
        415,
        ("header", "content-type"),
        headers=(("content-type", "application/x-www-form-urlencoded"),),
    ),
    case(
        "http-multipart",
        VALID,
        415,
        ("header", "content-type"),
        headers=(("content-type", "multipart/form-data; boundary=x"),),
    ),
    case(
        "http-xml-on-loss",
        b"<mse/>",
        415,
        ("header", "content-type"),
        path="/loss",
        headers=(("content-type", "application/xml"),),
    ),
    case("http-get-activate", None, 405, None, method="GET", says=("use POST",)),
    case("http-put-activate", VALID, 405, None, method="PUT", says=("use POST",)),
    case("http-get-loss", None, 405, None, method="GET", path="/loss", says=("use POST",)),
    case("http-put-loss", VALID, 405, None, method="PUT", path="/loss"),
    case("http-delete-loss", None, 405, None, method="DELETE", path="/loss"),
    case("http-post-functions", VALID, 405, None, path="/functions"),
    case("http-unknown-route", VALID, 404, None, path="/activates"),
    case(
        "http-content-length-not-a-number",
        VALID,
        400,
        ("header", "content-length"),
        headers=(("content-type", "application/json"), ("content-length", "abc")),
    ),
    case(
        "http-content-length-negative",
        VALID,
        400,
        ("header", "content-length"),
        headers=(("content-type", "application/json"), ("content-length", "-5")),
    ),
    case(
        "http-content-length-claims-more",
        VALID,
        400,
        BODY,
        other_loc=("header", "content-length"),
        headers=(("content-type", "application/json"), ("content-length", str(len(VALID) + 100))),
    ),
    case(
        "http-content-length-claims-less",
        VALID,
        400,
        BODY,
        other_loc=("header", "content-length"),
        headers=(("content-type", "application/json"), ("content-length", "10")),
    ),
    case(
        "http-content-length-claims-terabyte",
        VALID,
        413,
        BODY,
        headers=(("content-type", "application/json"), ("content-length", str(10**12))),
    ),
]

LIMIT_CASES = [
    case("limit-tensor-elements", relu([0.0] * 101), 413, INPUT, app="small"),
    case("limit-tensor-elements-target", mse([0.0], [0.0] * 101), 413, TARGET, path="/loss", app="small"),
    case(
        "limit-tensor-elements-param",
        mse([0.0], [0.0], params={"weight": [1.0] * 101}),
        413,
        params("weight"),
        path="/loss",
        app="small",
    ),
    case(
        "limit-tensor-elements-grad-output",
        relu([0.0], grad=True, grad_output=[1.0] * 101),
        413,
        ("body", "grad_output"),
        app="small",
    ),
    case("limit-tensor-elements-object-shape", relu(obj([11, 10], "")), 413, INPUT, app="small"),
    case("limit-total-elements", mse([0.0] * 80, [0.0] * 80), 413, TARGET, path="/loss", app="small"),
    case("limit-rank", relu(nested(4)), 422, INPUT, app="small"),
    case("limit-body-with-content-length", LARGE_BODY, 413, BODY, app="small"),
    case("limit-body-chunked", chunks(LARGE_BODY), 413, BODY, app="small"),
    case(
        "limit-errors-capped",
        act("leaky_relu", X2, params={f"p{i}": 1 for i in range(10)}),
        422,
        params("p0"),
        app="small",
        truncated=True,
        details=3,
    ),
]

ECHO_CASES = [
    case("echo-million-strings", lazy_json(lambda: relu(["x"] * 1_000_000)), 422, INPUT, max_seconds=SLOW),
    case(
        "echo-million-strings-last-bad", lazy_json(lambda: relu([0.0] * 999_999 + ["x"])), 422, INPUT, max_seconds=SLOW
    ),
    case("echo-million-booleans", lazy_json(lambda: relu([True] * 1_000_000)), 422, INPUT, max_seconds=SLOW),
    case("echo-million-nulls", lazy_json(lambda: relu([None] * 1_000_000)), 422, INPUT, max_seconds=SLOW),
    case("echo-megabyte-string-element", lazy_json(lambda: relu(["x" * 1_000_000])), 422, INPUT, max_seconds=SLOW),
    case(
        "echo-megabyte-function-name",
        lazy_json(lambda: act("f" * 1_000_000, [1.0])),
        422,
        ("body", "function"),
        max_seconds=SLOW,
    ),
    case(
        "echo-megabyte-dtype",
        lazy_json(lambda: relu([1.0], dtype="f" * 1_000_000)),
        422,
        ("body", "dtype"),
        max_seconds=SLOW,
    ),
    case(
        "echo-megabyte-reduction",
        lazy_json(lambda: mse(params={"reduction": "r" * 1_000_000})),
        422,
        params("reduction"),
        path="/loss",
        max_seconds=SLOW,
    ),
    case("echo-huge-unknown-param-name", relu([1.0], params={HUGE_NAME: 1}), 422, ("body", "params")),
    case("echo-huge-unknown-field-name", {"function": "relu", "input": [1.0], HUGE_NAME: 1}, 422, BODY),
    case("echo-huge-unknown-tensor-name", mse(inputs={HUGE_NAME: [1.0]}), 422, ("body", "inputs"), path="/loss"),
    case("echo-huge-object-key", relu({"shape": [1], "data": [1.0], HUGE_NAME: 1}), 422, INPUT),
    case(
        "echo-huge-unknown-function-path",
        None,
        404,
        ("path", "name"),
        method="GET",
        path="/functions/" + "x" * 5000,
        error="unknown_function",
    ),
]

ABSURD_PARAM_CASES = [
    case("absurd-dim-2-pow-63", act("softmax", X2, params={"dim": 2**63}), 422, params("dim")),
    case("absurd-dim-minus-2-pow-63", act("softmax", X2, params={"dim": -(2**63)}), 422, params("dim")),
    case("absurd-dim-10-pow-30", big_ints(act("softmax", X2, params={"dim": 10**30})), 422, params("dim")),
    case(
        "absurd-ignore-index-2-pow-63", xent(params={"ignore_index": 2**63}), 422, params("ignore_index"), path="/loss"
    ),
    case(
        "absurd-seed-2-pow-80",
        big_ints(act("rrelu", X2, params={"training": True, "seed": 2**80})),
        422,
        params("seed"),
    ),
    case(
        "absurd-ctc-blank-10-pow-30",
        big_ints(ctc() | {"params": {"blank": 10**30}}),
        422,
        params("blank"),
        path="/loss",
    ),
    case(
        "absurd-slope-overflows-float32",
        act("leaky_relu", X2, params={"negative_slope": 1e308}),
        422,
        params("negative_slope"),
        says=("overflows",),
    ),
    case("absurd-elu-alpha-negative-huge", act("elu", X2, params={"alpha": -1e308}), 422, params("alpha")),
    case(
        "absurd-threshold-and-value", act("threshold", X2, params={"threshold": 1e300, "value": 1e300}), 422, params()
    ),
    case("absurd-hardtanh-bounds", act("hardtanh", X2, params={"min_val": -1e308, "max_val": 1e308}), 422, params()),
    case("absurd-softplus-threshold", act("softplus", X2, params={"threshold": 1e308}), 422, params("threshold")),
    case("absurd-celu-alpha-zero", act("celu", X2, params={"alpha": 0}), 422, params("alpha")),
    case(
        "absurd-hinge-margin",
        loss("hinge_embedding_loss", input=[1.0], target=[1.0], params={"margin": 1e308}),
        422,
        params("margin"),
        path="/loss",
    ),
    case(
        "absurd-multi-margin-margin",
        loss("multi_margin_loss", input=SCORES, target=[3, 0], params={"margin": 1e308}),
        422,
        params("margin"),
        path="/loss",
    ),
    case(
        "absurd-gaussian-eps",
        loss("gaussian_nll_loss", input=[1.0], target=[1.0], inputs={"var": [1.0]}, params={"eps": 1e308}),
        422,
        params("eps"),
        path="/loss",
    ),
    case(
        "absurd-triplet-margin-negative",
        loss("triplet_margin_loss", inputs={"anchor": X2, "positive": X2, "negative": X2}, params={"margin": -1e308}),
        422,
        params("margin"),
        path="/loss",
    ),
    case("absurd-object-shape-zero-beside-huge", relu(obj([0, 2**62], "")), 413, ("body", "input", "shape")),
    case("absurd-object-shape-huge-beside-zero", relu(obj([2**31, 2**31, 0], "")), 413, ("body", "input", "shape")),
    case("absurd-object-shape-10-pow-30", big_ints(relu(obj([10**30], ""))), 422, ("body", "input", "shape")),
    case(
        "absurd-cross-entropy-weight",
        xent(params={"weight": [1e308, 1e308, 1e308]}),
        422,
        params("weight"),
        path="/loss",
    ),
]

EMPTY_CASES = [
    case(
        "empty-cross-entropy-mean",
        loss("cross_entropy", input=obj([0, 3], ""), target=obj([0], "", dtype="int64")),
        422,
        INPUT,
        path="/loss",
    ),
    case(
        "empty-cosine-embedding-mean",
        loss("cosine_embedding_loss", inputs={"input1": obj([0, 3], ""), "input2": obj([0, 3], ""), "target": []}),
        422,
        inputs("input1"),
        path="/loss",
    ),
    case("empty-classes-nll", loss("nll_loss", input=obj([2, 0], ""), target=[0, 0]), 422, TARGET, path="/loss"),
    case(
        "empty-ctc-log-probs",
        ctc(log_probs=obj([0, 1, 3], ""), input_lengths=[0], targets=[[1]], target_lengths=[1]),
        422,
        inputs("log_probs"),
        path="/loss",
    ),
    case("empty-grad-output-for-nonempty", relu([1.0], grad=True, grad_output=[]), 422, ("body", "grad_output")),
]

CASES = [
    *JSON_CASES,
    *ENVELOPE_CASES,
    *ELEMENT_CASES,
    *OBJECT_FORM_CASES,
    *SHAPE_CASES,
    *CLASS_INDEX_CASES,
    *PROBABILITY_CASES,
    *PARAM_CASES,
    *DTYPE_CASES,
    *TENSOR_ARGUMENT_CASES,
    *HTTP_CASES,
    *LIMIT_CASES,
    *ECHO_CASES,
    *ABSURD_PARAM_CASES,
    *EMPTY_CASES,
]


@pytest.fixture(scope="module")
def small_client() -> Iterator[TestClient]:
    with TestClient(create_app(SMALL)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def clients(client: TestClient, small_client: TestClient) -> dict[AppName, TestClient]:
    for c in (client, small_client):  # first requests pay one-off costs; the cases must not
        assert_healthy(c)
    return {"default": client, "small": small_client}


def assert_healthy(c: TestClient) -> None:
    """A valid request of each kind still succeeds."""
    ok = c.post("/activate", json=RELU_OK)
    assert ok.status_code == 200, ok.text
    assert ok.json()["output"] == [0.0, 2.0]
    ok = c.post("/loss", json=MSE_OK)
    assert ok.status_code == 200, ok.text
    assert ok.json()["loss"] == pytest.approx(2.0)


def says(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def has_loc(details: list[dict[str, Any]], prefix: Loc) -> bool:
    return any(tuple(d["loc"][: len(prefix)]) == prefix for d in details)


@pytest.mark.parametrize("bad", CASES)
def test_bad_request_is_refused_cheaply(
    bad: Bad, clients: dict[AppName, TestClient], device: torch.device, settings: Settings
) -> None:
    if bad.cpu_only and device.type != "cpu":
        pytest.skip("expectation holds on CPU only")
    c = clients[bad.app]
    content = bad.content() if callable(bad.content) else bad.content
    started = tree_cpu_seconds()  # the app's CPU time (its threads and its parse process): a loaded
    response = c.request(bad.method, bad.path, content=content, headers=dict(bad.headers))
    elapsed = tree_cpu_seconds() - started  # machine stretches wall-clock time, not this

    assert response.status_code != 500, response.text[:1000]
    statuses = bad.status if isinstance(bad.status, tuple) else (bad.status,)
    assert response.status_code in statuses, response.text[:1000]
    assert response.headers["content-type"].startswith("application/json")
    body = check_error_body(response.content, response.status_code)
    expected_error = bad.error or ERROR_CODES[response.status_code]
    assert body["error"] == expected_error, body
    if bad.loc is not None:
        acceptable = [bad.loc] if bad.other_loc is None else [bad.loc, bad.other_loc]
        assert any(has_loc(body["details"], loc) for loc in acceptable), (acceptable, body["details"])
    text = " ".join([body["message"], *(d["msg"] for d in body["details"])])
    for word in bad.says:
        assert says(text, word), f"{word!r} not in {text!r}"
    max_errors = SMALL.max_reported_errors if bad.app == "small" else settings.max_reported_errors
    assert len(body["details"]) <= max_errors
    assert body["truncated"] is bad.truncated, body
    if bad.details is not None:
        assert len(body["details"]) == bad.details, body["details"]
    if response.status_code == 405:
        allowed = response.headers.get("allow", "")
        assert allowed, "a 405 says which methods are allowed"
        assert bad.method not in allowed.split(", ")
    assert elapsed < bad.max_seconds, f"took {elapsed * 1000:.0f} ms of CPU"

    assert_healthy(c)


@dataclass(frozen=True)
class Good:
    path: str
    body: dict[str, Any]
    key: str
    expected: Any


GOOD_CASES = [
    pytest.param(
        Good("/activate", relu([]), "output", {"shape": [0], "dtype": "float32", "data": []}), id="relu-empty"
    ),
    pytest.param(
        Good("/activate", relu(obj([2, 0], "")), "output", {"shape": [2, 0], "dtype": "float32", "data": []}),
        id="relu-empty-2d-base64-object",
    ),
    pytest.param(
        Good("/activate", relu(["NaN", "Infinity", "-Infinity", 1.0]), "output", ["NaN", "Infinity", 0.0, 1.0]),
        id="relu-non-finite-tokens",
    ),
    pytest.param(Good("/loss", mse([], [], params={"reduction": "sum"}), "loss", 0.0), id="mse-empty-sum"),
    pytest.param(
        Good(
            "/loss", mse([], [], params={"reduction": "none"}), "loss", {"shape": [0], "dtype": "float32", "data": []}
        ),
        id="mse-empty-none",
    ),
    pytest.param(
        Good("/loss", xent(t=(-1, 2), params={"ignore_index": -1}), "function", "cross_entropy"),
        id="cross-entropy-minus-one-ignored",
    ),
    pytest.param(
        Good("/loss", xent(t=(-100, 2)), "function", "cross_entropy"),
        id="cross-entropy-first-target-ignored",
    ),
    pytest.param(
        Good(
            "/loss",
            bce_logits(x=[[5.0, -7.0, 0.0]], t=[[1.0, 0.0, 0.5]]),
            "function",
            "binary_cross_entropy_with_logits",
        ),
        id="bce-logits-input-unbounded",
    ),
]


@pytest.mark.parametrize("good", GOOD_CASES)
def test_edge_request_that_is_fine(good: Good, clients: dict[AppName, TestClient]) -> None:
    """Contrast cases: close to the bad ones, but valid."""
    response = clients["default"].post(
        good.path, content=orjson.dumps(good.body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()[good.key] == good.expected
