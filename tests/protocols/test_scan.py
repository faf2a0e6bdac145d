"""The raw-body scan that decides whether tensors need the exact (element-wise) path."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from app.core.errors import InvalidRequest
from app.core.limits import TensorLimits
from app.protocols.scan import STRING_SCAN_FROM, scan_body
from app.protocols.tensors import decode_tensor


@pytest.mark.parametrize(
    ("body", "strings", "booleans"),
    [
        (b'{"function": "relu", "input": [1.0, 2.5e-3, -4]}', False, False),
        (b'{"function": "relu", "input": [1.0], "grad": true, "params": {"log_input": false}}', False, False),
        (b'{"input": [1.0, true]}', False, True),
        (b'{"input": [ false ]}', False, True),
        (b'{"input": [[1.0],\n [  true]]}', False, True),
        (b'{"input": [1.0, "NaN"]}', True, False),
        (b'{"input": ["Infinity", 2]}', True, False),
        (b'{"a": 1, "b": "x", "c": {"d": "e"}}', False, False),
        (b'{"function": "a\\", [\\"b", "input": [1]}', False, False),
        (b'{"input": {"shape": [2], "dtype": "float32", "data": "AAAAAAAAAAA="}}', False, False),
        (b'{"input": {"shape": [2], "data": [1, "NaN"]}}', True, False),
        (b'{"function": "true, [false"}', False, True),  # inside a string: a harmless false positive
    ],
)
def test_scan_finds_strings_and_booleans_inside_lists(body: bytes, strings: bool, booleans: bool) -> None:
    scan = scan_body(body, string_scan_from=0)
    assert (scan.strings_in_lists, scan.booleans_in_lists) == (strings, booleans)


def test_small_bodies_leave_strings_to_numpy_and_still_decode_exactly() -> None:
    body = b'{"input": [1.0, "NaN", "-Infinity"]}'
    scan = scan_body(body)
    assert not scan.strings_in_lists  # small: numpy's string dtype reveals them
    assert scan_body(body + b" " * STRING_SCAN_FROM).strings_in_lists
    limits = TensorLimits(max_elements=100, max_rank=4)
    decoded = decode_tensor(orjson.loads(body)["input"], ("body", "input"), limits, scan)
    assert decoded.dtype == np.float64
    assert decoded.tolist()[::2] == [1.0, -np.inf]
    assert np.isnan(decoded[1])
    with pytest.raises(InvalidRequest) as raised:
        decode_tensor([1.0, "x"], ("body", "input"), limits, scan)
    assert raised.value.problems[0].loc == ("body", "input", 1)


def test_scan_of_many_candidates_gives_up_as_suspect() -> None:
    scan = scan_body(orjson.dumps({"note": "not false", "input": [None] * 10_000}))
    assert scan.booleans_in_lists  # "null" holds the letters it looks for: suspect, never wrong


def test_scan_of_a_body_without_the_words_is_settled_at_once() -> None:
    assert not scan_body(orjson.dumps({"input": [None] * 10_000})).booleans_in_lists
