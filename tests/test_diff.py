"""The diff and the shrink guard on their own: pure functions, no database."""

from __future__ import annotations

from datetime import date

import pytest

from syncs.engine.diff import StoredBlock, answer_fingerprint, diff_blocks, shrink_guard_trips
from syncs.engine.parse.ical import ParsedEvent

TODAY = date(2027, 1, 10)


def block(id_: int, uid: str, start: date, end: date, kind: str = "reserved") -> StoredBlock:
    return StoredBlock(id=id_, uid=uid, recurrence_id="", start=start, end=end, kind=kind, summary="Reserved")


def event(uid: str, start: date, end: date, kind: str = "reserved") -> ParsedEvent:
    return ParsedEvent(uid=uid, start=start, end=end, kind=kind, summary="Reserved")


def test_the_same_events_are_no_change():
    stored = [block(1, "a", date(2027, 2, 1), date(2027, 2, 4))]
    diff = diff_blocks(stored=stored, events=[event("a", date(2027, 2, 1), date(2027, 2, 4))], today=TODAY)
    assert not diff.changed
    assert diff.unchanged == 1


def test_a_new_uid_for_the_same_nights_is_an_update_not_a_cancellation_and_a_booking():
    stored = [block(1, "old", date(2027, 2, 1), date(2027, 2, 4))]
    diff = diff_blocks(stored=stored, events=[event("new", date(2027, 2, 1), date(2027, 2, 4))], today=TODAY)
    assert (len(diff.added), len(diff.removed)) == (0, 0)
    assert [(b.id, e.uid) for b, e in diff.updated] == [(1, "new")]


def test_overlapping_blocks_of_another_kind_are_not_paired():
    stored = [block(1, "old", date(2027, 2, 1), date(2027, 2, 4), kind="blocked")]
    diff = diff_blocks(stored=stored, events=[event("new", date(2027, 2, 2), date(2027, 2, 5))], today=TODAY)
    assert [e.uid for e in diff.added] == ["new"]
    assert [b.id for b in diff.removed] == [1]


def test_a_block_that_ended_before_today_is_never_removed():
    stored = [block(1, "gone", date(2027, 1, 1), date(2027, 1, 10))]
    assert diff_blocks(stored=stored, events=[], today=TODAY).removed == []


def test_a_stay_in_progress_that_leaves_the_feed_is_a_removal():
    stored = [block(1, "now", date(2027, 1, 8), date(2027, 1, 12))]
    assert [b.id for b in diff_blocks(stored=stored, events=[], today=TODAY).removed] == [1]


@pytest.mark.parametrize(
    ("before", "removals", "trips"),
    [(0, 0, False), (5, 0, False), (1, 1, True), (2, 2, True), (4, 1, False), (4, 2, False), (6, 3, True), (5, 3, True), (10, 4, False)],
)
def test_the_shrink_guard_trips_on_all_or_at_least_half_and_three(before, removals, trips):
    assert shrink_guard_trips(future_blocks_before=before, future_removals=removals) is trips


def test_the_same_answer_has_the_same_fingerprint_whatever_the_order():
    a, b = event("a", date(2027, 2, 1), date(2027, 2, 4)), event("b", date(2027, 3, 1), date(2027, 3, 4))
    assert answer_fingerprint([a, b]) == answer_fingerprint([b, a])
    assert answer_fingerprint([a]) != answer_fingerprint([a, b])
