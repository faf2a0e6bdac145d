"""A cheap scan of the raw body for the two things ``numpy.asarray`` would hide or make slow:
booleans and strings inside JSON arrays.

numpy turns ``true`` into 1 among numbers, so booleans are always looked for. A string among
numbers numpy does not hide (the array comes out with a string dtype, which sends the tensor
down the exact path), but it converts every number to text first: half a second for a million
elements. So strings are looked for only in bodies larger than ``STRING_SCAN_FROM``, where that
conversion could cost more than the scan. The scan visits only string tokens and the letters of
``true``/``false``, never the digits, so a body of numbers costs a few memchr passes. A positive
is a hint that sends the tensors down the exact path, never a rejection by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

_WHITESPACE = b" \t\r\n"
_BACKSLASH, _COLON = ord("\\"), ord(":")
_MAX_HITS = 256
"""Past this many candidates the body is simply suspect: a body of numbers has almost none."""
STRING_SCAN_FROM = 8192
"""Bodies up to this many bytes hold at most ~800 numbers, which numpy turns to text in ~0.4 ms
when a string is among them: cheaper, over all requests, than scanning every body for strings."""


@dataclass(frozen=True)
class BodyScan:
    strings_in_lists: bool
    """A string may sit inside a list (looked for only past ``STRING_SCAN_FROM`` bytes)."""
    booleans_in_lists: bool


EVERYTHING_SUSPECT = BodyScan(strings_in_lists=True, booleans_in_lists=True)
_SCANS = {(strings, booleans): BodyScan(strings, booleans) for strings in (False, True) for booleans in (False, True)}


def scan_body(body: bytes, string_scan_from: int = STRING_SCAN_FROM) -> BodyScan:
    strings = len(body) > string_scan_from and _strings_in_lists(body)
    return _SCANS[strings, _booleans_in_lists(body)]


def _previous_significant(body: bytes, index: int) -> int:
    index -= 1
    while index >= 0 and body[index] in _WHITESPACE:
        index -= 1
    return index


def _next_significant(body: bytes, index: int) -> int:
    while index < len(body) and body[index] in _WHITESPACE:
        index += 1
    return index if index < len(body) else -1


def _closing_quote(body: bytes, start: int) -> int:
    end = body.find(b'"', start)
    while end != -1:
        backslashes = 0
        while body[end - 1 - backslashes] == _BACKSLASH:
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        end = body.find(b'"', end + 1)
    return -1


def _strings_in_lists(body: bytes) -> bool:
    """A string that follows '[' or ',' and is not an object key (no ':' after it)."""
    opening = body.find(b'"')
    for _ in range(_MAX_HITS):
        if opening == -1:
            return False
        closing = _closing_quote(body, opening + 1)
        if closing == -1:
            return False  # unterminated: the JSON parser rejects the body
        before = _previous_significant(body, opening)
        if before >= 0 and body[before] in b"[,":
            after = _next_significant(body, closing + 1)
            if after == -1 or body[after] != _COLON:
                return True
        opening = body.find(b'"', closing + 1)
    return True


def _booleans_in_lists(body: bytes) -> bool:
    """``true``/``false`` after '[' or ','. Found through the letters 'u' and 'l', which no
    number contains: a search for one byte is a ``memchr``, fifteen times cheaper than a search
    for a word, and a body of numbers holds these letters only in its keys and names. Hits inside
    strings are harmless false positives. Past ``_MAX_HITS`` candidates (a list of nulls) the
    body is suspect only if it holds the word at all."""
    for letter, literal in ((b"u", b"true"), (b"l", b"false")):
        position = body.find(letter)
        for _ in range(_MAX_HITS):
            if position == -1:
                break
            start = position - 2
            if start >= 0 and body[start : start + len(literal)] == literal:
                before = _previous_significant(body, start)
                if before >= 0 and body[before] in b"[,":
                    return True
            position = body.find(letter, position + 1)
        else:
            if literal in body:
                return True
    return False
