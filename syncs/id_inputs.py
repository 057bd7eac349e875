"""Ids named in query strings and posts (``?member=12``, ``connection=3&connection=4``), read
so that anything else is "no such row" (404) or a request no page of ours sends (400), never an
error page.

An id is ASCII digits within a database id's range: "abc", "1.5", "²" (a digit to
``str.isdigit``, not to ``int``), "-1" and 99999999999999999999999 (beyond a 64-bit key) name no row.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import BadRequest

MAX_ID = 2**63 - 1  # the largest BigAutoField, on PostgreSQL and SQLite alike


def parse_id(value) -> int | None:
    """The id ``value`` names, or None."""
    text = str(value or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def parse_ids(values: Iterable) -> list[int]:
    """The ids ``values`` name (a ``getlist`` of ticked boxes); a value that is not an id makes
    the request a bad one (400): our forms only ever send ids, so it was written by hand."""
    ids = [parse_id(value) for value in values]
    if None in ids:
        raise BadRequest("An id in the request is not a number.")
    return ids
