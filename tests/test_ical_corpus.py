"""Every calendar of the shared corpus reads as a feed or a feed error, quickly.

The corpus lives outside the project (../shared: real portal feeds and icalendar's own broken
test calendars), so this module skips itself when that folder is absent.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from syncs.ical import FeedParseError, parse_feed
from syncs.portals import KINDS

SHARED = Path(__file__).resolve().parents[2] / "shared"

if not SHARED.is_dir():
    pytest.skip(f"the shared corpus is not at {SHARED}", allow_module_level=True)

CORPUS = sorted(
    [
        *(SHARED / "feeds" / "real").glob("*.ics"),
        *(SHARED / "peer-corpus" / "icalendar").rglob("*.ics"),
    ]
)


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
