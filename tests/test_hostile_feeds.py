"""Hostile and broken feeds (tests/hostile_feeds.py), each read by the parser and by a whole sync
in a child process under a hard time and memory limit: each ends as its expected outcome, and a
feed that cannot be read changes nothing of what the previous one brought."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import time_machine

from syncs.engine.fetch import FetchError, _unpacked
from syncs.engine.parse.ical import MAX_BODY_BYTES, FeedParseError, parse_feed
from syncs.engine.task import connection_sync_leased
from syncs.models import Block, Connection, SyncRun
from tests import feeds
from tests.factories import ConnectionFactory, PropertyFactory, portal
from tests.helpers import TODAY
from tests.hostile_feeds import BASE, BASE_NIGHTS, CORPUS
from tests.isolated import MiB, run_isolated

# Hard limits for one reading: the parser's own deadline (15 s) with room for a busy machine,
# and far less memory than the 1.7 GB a single rule once took.
SECONDS = 45
MEMORY = 768 * MiB


def read(body: bytes) -> dict:
    """The parser's reading of what a fetch would hand it (fetch unpacks a gzip body)."""
    try:
        feed = parse_feed(_unpacked(body, MAX_BODY_BYTES), timezone="Europe/Lisbon", today=TODAY)
    except (FeedParseError, FetchError) as error:
        return {"outcome": error.code}
    return {
        "outcome": "ok",
        "nights": sorted({(event.start, event.end) for event in feed.events}),
        "events": len(feed.events),
        "skipped": Counter(skipped.reason for skipped in feed.skipped),
        "text": [(event.uid, event.summary) for event in feed.events],
    }


def expect_reading(hostile, reading: dict) -> None:
    assert reading["outcome"] == hostile.outcome
    if hostile.outcome != "ok":
        return
    if hostile.nights is None:  # a capped flood: whatever fits the budget, and the stays
        assert set(BASE_NIGHTS) <= set(reading["nights"])
    else:
        assert reading["nights"] == sorted(hostile.nights)
    if hostile.skipped is not None:
        assert reading["skipped"] == Counter(hostile.skipped)
    for uid, summary in reading["text"]:
        assert uid.isprintable() and summary.isprintable(), (uid, summary)


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_parser_reads_each_hostile_feed_as_expected_within_hard_limits(name):
    hostile = CORPUS[name]

    result = run_isolated(lambda: read(hostile.body), seconds=SECONDS, memory=MEMORY)

    expect_reading(hostile, result.value)


@pytest.fixture
def clock():
    with time_machine.travel(datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC).replace(hour=12), tick=True):
        yield


def current(connection: Connection) -> list[tuple]:
    return sorted(
        Block.objects.filter(source=connection, removed_at__isnull=True).values_list("start_date", "end_date", "uid", "summary")
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("name", list(CORPUS))
def test_a_whole_sync_of_each_hostile_feed_ends_as_expected_and_keeps_what_was_there(name, clock, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    hostile = CORPUS[name]
    connection = ConnectionFactory(
        property=PropertyFactory(timezone="Europe/Lisbon"), portal=portal("airbnb"), import_url=httpserver.url_for("/feed.ics")
    )
    httpserver.expect_request("/feed.ics").respond_with_data(feeds.airbnb(*BASE), content_type="text/calendar")
    assert connection_sync_leased(connection_id=connection.pk).outcome == "ok_changed"
    before = current(connection)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/feed.ics").respond_with_data(hostile.body, content_type="text/calendar")

    def sync() -> dict:
        run = connection_sync_leased(connection_id=connection.pk)
        return {"outcome": run.outcome, "error": run.error_code, "blocks": current(connection)}

    result = run_isolated(sync, seconds=SECONDS, memory=MEMORY).value

    blocks = result["blocks"]
    if hostile.outcome != "ok":
        # A failed run, recorded as such (it counts toward the pause), and nothing lost.
        assert (result["outcome"], result["error"]) == (hostile.outcome, hostile.outcome)
        assert blocks == before
        return
    assert result["outcome"] in ("ok_changed", "ok_unchanged") and result["error"] == ""
    assert set(before) <= set(blocks), "the stays the feed still lists are untouched"
    nights = sorted({(start, end) for start, end, _uid, _summary in blocks})
    if hostile.nights is not None:
        assert nights == sorted(hostile.nights)
    assert all(uid.isprintable() and summary.isprintable() for _s, _e, uid, summary in blocks)


@pytest.mark.django_db
def test_a_feed_that_takes_too_long_to_read_is_a_failed_run_not_an_empty_calendar(clock, httpserver, settings, monkeypatch):
    from syncs.engine.parse import ical

    settings.FETCH_ALLOW_LOOPBACK = True
    connection = ConnectionFactory(
        property=PropertyFactory(timezone="Europe/Lisbon"), portal=portal("airbnb"), import_url=httpserver.url_for("/feed.ics")
    )
    httpserver.expect_request("/feed.ics").respond_with_data(feeds.airbnb(*BASE))
    connection_sync_leased(connection_id=connection.pk)
    before = current(connection)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/feed.ics").respond_with_data(CORPUS["thousands_of_series"].body)
    monkeypatch.setattr(ical, "PARSE_SECONDS", 0.2)

    run = connection_sync_leased(connection_id=connection.pk)

    assert (run.outcome, run.error_code) == ("too_slow", "too_slow")
    connection.refresh_from_db()
    assert connection.consecutive_failures == 1 and connection.last_error_code == "too_slow"
    assert current(connection) == before
    assert SyncRun.objects.filter(connection=connection, outcome="ok_empty").count() == 0
