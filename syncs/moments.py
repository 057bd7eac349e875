"""Reading the date-times of thousands of rows at once, as the account-wide reads do.

Django turns each PostgreSQL ``timestamptz`` into a date-time with a loader written in Python
(it subclasses psycopg's pure-Python loader to set the time zone, so psycopg's compiled one is
never used: Django ticket #36960, psycopg issue #1273), and each SQLite date-time with a regular
expression. On a read of every sync of a big account that is most of the read. ``values_rows``
asks the database for the date-time columns in a plain shape instead (seconds since 1970 on
PostgreSQL, the stored ISO text on SQLite) and builds each date-time with the ``datetime``
module's own constructors: the very values ``values_list`` gives, aware and in UTC, to the
microsecond (a test compares the two on every backend the suite runs).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django.db import connections
from django.db.models import DateTimeField, F, Field, Func, QuerySet


def _from_seconds(values: list) -> list:
    # A double holds the seconds of any date-time before the year 2200 to well under a
    # microsecond, and fromtimestamp rounds to the nearest one: the stored value, exactly.
    at = datetime.fromtimestamp
    return [None if value is None else at(value, UTC) for value in values]


def _from_text(values: list) -> list:
    parse = datetime.fromisoformat
    moments = []
    for value in values:
        if value is None:
            moments.append(None)
        elif len(value) in (19, 26) and value[19:20] in ("", "."):
            # Naive UTC, as Django stores SQLite date-times: read with its offset, which is far
            # cheaper than replacing the zone of the date-time read without it.
            moments.append(parse(value + "+00:00"))
        else:
            moment = parse(value)
            moments.append(moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC))
    return moments


# How each backend hands a date-time column over in a plain shape, and how a column of them is
# read back. The column's type is a bare Field: Django then applies no converter of its own.
_PLAIN = {
    "postgresql": ("date_part('epoch', %(expressions)s)", _from_seconds),
    "sqlite": ("CAST(%(expressions)s AS TEXT)", _from_text),
}


@lru_cache(maxsize=64)
def _row_type(fields: tuple[str, ...]):
    return namedtuple("Row", fields)


def values_rows(queryset: QuerySet, fields: Sequence[str], *, named: bool = False) -> list[Any]:
    """``list(queryset.values_list(*fields, named=named))`` for plain field names, with the
    date-time columns read in their plain shape (the same values, much cheaper to build)."""
    fields = tuple(fields)
    plain = _PLAIN.get(connections[queryset.db].vendor)
    meta = queryset.model._meta
    moments = [i for i, name in enumerate(fields) if isinstance(meta.get_field(name), DateTimeField)]
    if plain is None or not moments:
        return list(queryset.values_list(*fields, named=named))
    template, read = plain
    aliases = {f"plain_moment_{i}": Func(F(fields[i]), template=template, output_field=Field()) for i in moments}
    columns = [f"plain_moment_{i}" if i in moments else name for i, name in enumerate(fields)]
    raw = list(queryset.annotate(**aliases).values_list(*columns))
    if not raw:
        return []
    by_column = list(zip(*raw, strict=True))
    for i in moments:
        by_column[i] = read(by_column[i])
    make = _row_type(fields)._make if named else tuple
    return list(map(make, zip(*by_column, strict=True)))
