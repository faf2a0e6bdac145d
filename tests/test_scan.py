"""The raw-body scan that decides whether tensors need the exact (element-wise) path."""

from __future__ import annotations

import orjson
import pytest

from app.wire.scan import scan_body


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
    scan = scan_body(body)
    assert (scan.strings_in_lists, scan.booleans_in_lists) == (strings, booleans)


def test_scan_of_many_candidates_gives_up_as_suspect() -> None:
    scan = scan_body(orjson.dumps({"note": "not false", "input": [None] * 10_000}))
    assert scan.booleans_in_lists  # "null" holds the letters it looks for: suspect, never wrong


def test_scan_of_a_body_without_the_words_is_settled_at_once() -> None:
    assert not scan_body(orjson.dumps({"input": [None] * 10_000})).booleans_in_lists
