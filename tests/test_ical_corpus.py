"""Every calendar of the shared corpus reads as a feed or a feed error, quickly.

The corpus lives outside the project (../shared: real portal feeds and icalendar's own broken
test calendars), so this module skips itself when that folder is absent, and fails instead when
CI asked for every service (REQUIRE_SERVICES=1), which it has beside the project.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from syncs.engine.parse.ical import FeedParseError, parse_feed
from syncs.portals import KINDS
from tests.conftest import require

SHARED = Path(__file__).resolve().parents[2] / "shared"

CORPUS = sorted(
    [
        *(SHARED / "feeds" / "real").glob("*.ics"),
        *(SHARED / "peer-corpus" / "icalendar").rglob("*.ics"),
    ]
)


def test_the_shared_corpus_is_beside_the_project():
    require(None if len(CORPUS) > 100 else f"the shared corpus is not at {SHARED}")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", CORPUS, ids=[str(p.relative_to(SHARED)) for p in CORPUS])
def test_it_reads_every_corpus_calendar_as_a_feed_or_a_feed_error(path):
    try:
        result = parse_feed(path.read_bytes(), timezone="Europe/Lisbon", today=date(2026, 6, 1))
    except FeedParseError as error:
        assert error.code in {"not_ical", "parse_error", "too_large", "too_complex", "too_slow"}
        assert error.message
        return
    for event in result.events:
        assert event.start < event.end
        assert event.kind in KINDS
        assert "\n" not in event.summary
