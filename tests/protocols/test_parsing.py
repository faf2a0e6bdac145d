"""Large JSON parsed apart (``app.protocols.parsing``) decodes to exactly what the same JSON decodes
to in the server's process, errors included, on both protocols; large tensors written in pieces are
the same JSON text's values."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import orjson
import pytest

from app.compute.catalogue import CATALOGUE
from app.core.errors import InvalidRequest, ServiceError, TooLarge
from app.core.limits import TensorLimits
from app.protocols import parsing, tensors
from app.protocols.native.codec import decode_activation, decode_loss
from app.protocols.oip.codec import decode_infer
from app.serving.codec import DecodeOptions, RequestMeta

LIMITS = TensorLimits(max_elements=100_000, max_rank=4)
OPTIONS = DecodeOptions(CATALOGUE, LIMITS, 400_000, "float32")
RNG = np.random.default_rng(7)
X = RNG.standard_normal((20, 30)).round(4).tolist()
"""600 numbers: over the lowered threshold, so predecoded."""


@pytest.fixture(autouse=True)
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "PREDECODE_FROM", 100)


def outcome(decode: Any) -> Any:
    """What decoding gave: the job's arrays, scalars and dtype, or the refusal's class and problems."""
    try:
        decoded = decode()
    except ServiceError as error:
        return type(error), [(p.loc, p.msg, p.type) for p in error.problems]
    job = decoded.job
    return {name: (arr.dtype.str, arr.shape, arr.tobytes()) for name, arr in job.arrays.items()}, job.params, job.dtype


def with_element(value: Any, at: int) -> list[Any]:
    flat = [v for row in X for v in row]
    flat[at] = value
    return [flat[i : i + 30] for i in range(0, 600, 30)]


NATIVE = [
    {"function": "relu", "input": X},
    {"function": "relu", "input": X, "grad": True, "grad_output": X},
    {"function": "relu", "input": {"shape": [600], "data": [v for row in X for v in row]}},
    {"function": "relu", "input": {"shape": [600], "dtype": "float16", "data": [v for row in X for v in row]}},
    {"function": "relu", "input": {"shape": [20, 30], "data": X}},
    {"function": "relu", "input": with_element("NaN", 17)},
    {"function": "relu", "input": with_element(True, 17)},
    {"function": "relu", "input": with_element("x", 599)},
    {"function": "relu", "input": with_element(None, 3)},
    {"function": "relu", "input": with_element(2**64, 0)},
    {"function": "relu", "input": with_element(2**63, 0)},
    {"function": "relu", "input": [*X, [1.0]]},
    {"function": "relu", "input": [[[[[v]] for v in row] for row in X]]},
    {"function": "mse_loss", "input": X, "target": with_element(False, 5)},
    {"function": "cross_entropy", "input": X, "target": list(range(20))},
    {"function": "prelu", "input": X, "params": {"weight": [0.25] * 150}},
    {"function": "binary_cross_entropy", "input": X, "target": X, "activation": "sigmoid"},
]


@pytest.mark.parametrize("body", NATIVE, ids=range(len(NATIVE)))
def test_native_bodies_parsed_apart_decode_as_in_process(body: dict[str, Any]) -> None:
    text = json.dumps(body).encode()  # orjson will not write integers past 64 bits
    decode = decode_activation if CATALOGUE.find(body["function"]).kind == "activation" else decode_loss  # type: ignore[union-attr]
    parsed = parsing.parse_apart(text, LIMITS)
    assert outcome(lambda: decode(text, OPTIONS, parsed)) == outcome(lambda: decode(text, OPTIONS))


OIP = [
    {"inputs": [{"name": "input", "shape": [600], "datatype": "FP32", "data": [v for row in X for v in row]}]},
    {"inputs": [{"name": "input", "shape": [20, 30], "datatype": "FP64", "data": X}]},
    {"inputs": [{"name": "input", "shape": [600], "datatype": "INT32", "data": list(range(600))}]},
    {"inputs": [{"name": "input", "shape": [600], "datatype": "INT8", "data": list(range(600))}]},
    {"inputs": [{"name": "input", "shape": [20, 30], "datatype": "FP32", "data": with_element("NaN", 11)}]},
    {"inputs": [{"name": "input", "shape": [20, 30], "datatype": "FP32", "data": with_element(True, 11)}]},
    {"inputs": [{"name": "input", "shape": [599], "datatype": "FP32", "data": [v for row in X for v in row]}]},
    {
        "outputs": [{"name": "output"}] * 300,
        "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1]}],
    },
]


@pytest.mark.parametrize("body", OIP, ids=range(len(OIP)))
def test_protocol_bodies_parsed_apart_decode_as_in_process(body: dict[str, Any]) -> None:
    text = json.dumps(body).encode()  # orjson will not write integers past 64 bits
    relu = CATALOGUE.find("relu")
    assert relu is not None
    parsed = parsing.parse_apart(text, LIMITS, bare_non_finite=True)
    expected = outcome(lambda: decode_infer(text, RequestMeta(), relu, OPTIONS))
    assert outcome(lambda: decode_infer(text, RequestMeta(), relu, OPTIONS, parsed)) == expected


def test_bare_non_finite_tokens_are_read_apart_too() -> None:
    text = b'{"inputs": [{"name": "input", "shape": [200], "datatype": "FP32", "data": [NaN' + b", 1.5" * 199 + b"]}]}"
    parsed = parsing.parse_apart(text, LIMITS, bare_non_finite=True)
    data = parsed["inputs"][0]["data"]
    assert isinstance(data, tensors.Predecoded)
    assert data.array is not None
    assert np.isnan(data.array[0])


@pytest.mark.parametrize(
    ("text", "error"), [(b"{", "json_invalid"), (b"[1, 2]", "model_type"), (b'{"input": [1, 2', "json_invalid")]
)
def test_what_is_not_a_json_object_is_refused_apart_as_in_process(text: bytes, error: str) -> None:
    with pytest.raises(ServiceError) as apart:
        parsing.parse_apart(text, LIMITS)
    with pytest.raises(ServiceError) as here:
        parsing.parse_object(text)
    assert apart.value.problems == here.value.problems
    assert apart.value.problems[0].type == error


def test_service_errors_cross_processes_with_their_problems() -> None:
    for error in (InvalidRequest.at(("body", "input", 3), "bad", "not_a_number"), TooLarge.at(("body",), "big", "x")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.problems == error.problems
        assert str(copy) == str(error)


@pytest.mark.parametrize("shape", [(1000,), (40, 25), (25, 40), (2, 5, 100), (1, 1000), (1000, 1), (3, 0)])
@pytest.mark.parametrize("non_finite", [False, True])
def test_a_large_tensor_written_in_pieces_reads_back_the_same(
    shape: tuple[int, ...], non_finite: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensors, "ENCODE_STEP", 37)
    arr = RNG.standard_normal(shape).astype(np.float32)
    if non_finite and arr.size:
        arr.flat[0], arr.flat[arr.size // 2], arr.flat[-1] = np.nan, np.inf, -np.inf
    text = orjson.dumps({"t": tensors.encode_tensor(arr, "float32", "json")}, option=orjson.OPT_SERIALIZE_NUMPY)
    read = orjson.loads(text)["t"]
    if arr.size == 0:
        assert read == {"shape": [3, 0], "dtype": "float32", "data": []}
        return
    decoded = tensors.decode_tensor(read, ("t",), TensorLimits(10_000, 4))
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded.astype(np.float32), arr)
    if not non_finite:
        assert text == orjson.dumps({"t": arr}, option=orjson.OPT_SERIALIZE_NUMPY)
