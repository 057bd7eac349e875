"""Ids named in query strings and posts (``?member=12``, ``connection=3&connection=4``), read
so that anything else is "no such row", never an error page.

An id is ASCII digits within a database id's range: "abc", "1.5", "²" (a digit to
``str.isdigit``, not to ``int``), "-1" and 99999999999999999999999 (beyond a 64-bit key) name no row.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_ID = 2**63 - 1  # the largest BigAutoField, on PostgreSQL and SQLite alike


def parse_id(value) -> int | None:
    """The id ``value`` names, or None."""
    text = str(value or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def parse_ids(values: Iterable) -> list[int]:
    """The ids among ``values`` (a ``getlist``), without the values that name none."""
    return [number for number in map(parse_id, values) if number is not None]
