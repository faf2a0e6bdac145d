"""Numbers in request headers, read strictly: ``str.isdigit`` accepts ``²`` (which ``int``
then refuses), ``int`` accepts signs, ``_`` and non-ASCII digits, and ``int`` of thousands of
digits is slow and then refused for its length (a 500 where the client deserves a 400)."""

from __future__ import annotations

MAX_DIGITS = 18
"""Digits a header number may have: up to a billion gigabytes, and always within an int64."""


def header_number(value: str) -> int | None:
    """The value of a non-negative decimal header (ASCII digits only, at most ``MAX_DIGITS``, no
    sign), or None when it is anything else."""
    value = value.strip(" \t")
    if 0 < len(value) <= MAX_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return None
