"""The account-wide reads build date-times their own way (syncs.moments): they must give exactly
what Django's own read gives, on the backend the suite runs on (SQLite, and PostgreSQL in CI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from syncs.models import Connection, ExportToken
from syncs.moments import values_rows
from syncs.sync_state import FIELDS, statuses_of
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

# Microseconds of every size, both sides of a second, years far apart, an offset that is not
# UTC, and none: the read must return each one to the microsecond, aware and in UTC.
MOMENTS = [
    datetime(2026, 12, 2, 4, 5, 6, 123456, tzinfo=UTC),
    datetime(2026, 12, 2, 4, 5, 6, 999999, tzinfo=UTC),
    datetime(2026, 12, 2, 4, 5, 7, 1, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(2150, 7, 1, 12, 0, 0, 654321, tzinfo=UTC),
    None,
]


@pytest.fixture
def connections():
    made = []
    for index, moment in enumerate(MOMENTS):
        made.append(ConnectionFactory(
            last_success_at=moment, paused_at=MOMENTS[-1 - index], checking_since=MOMENTS[index - 1],
            last_attempt_at=moment, held_since=None if index % 2 else moment,
        ))
    return made


def test_rows_are_those_of_values_list(connections):
    rows = Connection.objects.order_by("pk")
    assert values_rows(rows, FIELDS) == list(rows.values_list(*FIELDS))
    named = values_rows(rows, FIELDS, named=True)
    assert named == list(rows.values_list(*FIELDS, named=True))
    assert [row.last_success_at for row in named] == [m and m.astimezone(UTC) for m in MOMENTS]
    for row in named:
        for moment in (row.last_success_at, row.paused_at, row.checking_since):
            assert moment is None or moment.utcoffset() == timedelta(0)


def test_token_moments_and_empty_reads(connections):
    tokens = ExportToken.objects.order_by("pk")
    fields = ("connection_id", "created_at", "expires_at", "last_read_at", "last_reader")
    tokens.filter(pk=tokens.first().pk).update(last_read_at=MOMENTS[0], expires_at=MOMENTS[5])
    assert values_rows(tokens, fields) == list(tokens.values_list(*fields))
    assert values_rows(Connection.objects.none(), FIELDS, named=True) == []
    assert values_rows(Connection.objects.filter(pk=-1), FIELDS) == []
    # No date-time among the fields: Django's read as it is.
    assert values_rows(Connection.objects.order_by("pk"), ("id", "enabled")) == list(
        Connection.objects.order_by("pk").values_list("id", "enabled")
    )


def test_dates_and_fields_across_relations_read_as_values_list_reads_them(connections):
    from datetime import date

    from syncs.models import Block
    from tests.factories import BlockFactory

    for n, day in enumerate((date(1999, 12, 31), date(2026, 2, 28), date(2028, 2, 29), date(2150, 1, 1))):
        BlockFactory(property=connections[n].property, source=connections[n] if n % 2 else None, start_date=day,
                     end_date=day + timedelta(days=1 + n))
    fields = ("pk", "start_date", "end_date", "source__portal__name", "source__last_success_at", "property__created_at")
    blocks = Block.objects.order_by("pk")
    assert values_rows(blocks, fields) == list(blocks.values_list(*fields))
    assert values_rows(blocks, fields, named=True) == list(blocks.values_list(*fields, named=True))
    assert {type(row[1]) for row in values_rows(blocks, fields)} == {date}


def test_states_read_from_narrow_rows_match_loaded_connections(connections):
    """The states of many syncs (narrow rows) and of one loaded sync agree, with every date-time
    the rules compare."""
    from syncs.sync_state import connection_status

    now = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)
    many = {s.connection.id: s.state for s in statuses_of(Connection.objects.all(), tokens=ExportToken.objects.all(), now=now)}
    one = {c.pk: connection_status(Connection.objects.select_related("portal").get(pk=c.pk), now=now).state for c in connections}
    assert many == one
    assert len(set(many.values())) > 1


def test_sqlite_text_in_other_shapes_is_read_as_utc():
    """Text Django did not write (milliseconds only, an offset) still reads as the same instant."""
    from syncs.moments import _from_text

    assert _from_text(["2026-12-02 04:05:06.123", "2026-12-02 04:05:06+01:00", "2026-12-02T04:05:06", None]) == [
        datetime(2026, 12, 2, 4, 5, 6, 123000, tzinfo=UTC), datetime(2026, 12, 2, 3, 5, 6, tzinfo=UTC),
        datetime(2026, 12, 2, 4, 5, 6, tzinfo=UTC), None,
    ]
