"""Reading the date-times of thousands of rows at once, as the account-wide reads do.

Django turns each PostgreSQL ``timestamptz`` into a date-time with a loader written in Python
(it subclasses psycopg's pure-Python loader to set the time zone, so psycopg's compiled one is
never used: Django ticket #36960, psycopg issue #1273), each SQLite date-time with a regular
expression, and each SQLite date with two converters written in Python. On a read of every sync
(or every stay) of a big account that is most of the read. ``values_rows`` asks the database for
those columns in a plain shape instead (seconds since 1970 on PostgreSQL, the stored ISO text on
SQLite) and builds each value with the ``datetime`` module's own constructors: the very values
``values_list`` gives, date-times aware and in UTC, to the microsecond (a test compares the two
on every backend the suite runs).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from django.db import connections
from django.db.models import DateField, DateTimeField, F, Field, Func, QuerySet
from django.db.models.constants import LOOKUP_SEP


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


def _dates_from_text(values: list) -> list:
    parse = date.fromisoformat
    return [None if value is None else parse(value) for value in values]


# How each backend hands a date-time column over in a plain shape, and how a column of them is
# read back. The column's type is a bare Field: Django then applies no converter of its own.
_PLAIN = {
    "postgresql": ("date_part('epoch', %(expressions)s)", _from_seconds),
    "sqlite": ("CAST(%(expressions)s AS TEXT)", _from_text),
}
# Dates: SQLite's go through two converters written in Python each; psycopg's loader is compiled.
_PLAIN_DATES = {
    "sqlite": ("CAST(%(expressions)s AS TEXT)", _dates_from_text),
}


@lru_cache(maxsize=64)
def _row_type(fields: tuple[str, ...]):
    return namedtuple("Row", fields)


def _field(model, name: str) -> Field:
    """The field a values_list name reads: its own, or at the end of a path of relations."""
    *path, last = name.split(LOOKUP_SEP)
    for step in path:
        model = model._meta.get_field(step).related_model
    return model._meta.pk if last == "pk" else model._meta.get_field(last)


def values_rows(queryset: QuerySet, fields: Sequence[str], *, named: bool = False) -> list[Any]:
    """``list(queryset.values_list(*fields, named=named))`` for field names and paths, with the
    date-time (and, on SQLite, date) columns read in their plain shape: the same values, much
    cheaper to build."""
    fields = tuple(fields)
    vendor = connections[queryset.db].vendor
    plain = {}
    for i, name in enumerate(fields):
        field = _field(queryset.model, name)
        shape = _PLAIN.get(vendor) if isinstance(field, DateTimeField) else (
            _PLAIN_DATES.get(vendor) if isinstance(field, DateField) else None
        )
        if shape:
            plain[i] = shape
    if not plain:
        return list(queryset.values_list(*fields, named=named))
    aliases = {f"plain_{i}": Func(F(fields[i]), template=template, output_field=Field()) for i, (template, _read) in plain.items()}
    columns = [f"plain_{i}" if i in plain else name for i, name in enumerate(fields)]
    raw = list(queryset.annotate(**aliases).values_list(*columns))
    if not raw:
        return []
    by_column = list(zip(*raw, strict=True))
    for i, (_template, read) in plain.items():
        by_column[i] = read(by_column[i])
    make = _row_type(fields)._make if named else tuple
    return list(map(make, zip(*by_column, strict=True)))
