"""A corpus of hostile and broken feeds, each with what the engine must make of it.

Built by code rather than kept as files: several are megabytes of repetition. Every feed that
can still be read carries the two stays of ``BASE`` (so a test can tell that nothing of them was
lost), and the expectations say what a reading gives: the outcome of a sync ("ok" or an error
code), and for readable feeds the nights taken and the reasons events were skipped.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import date

from tests import feeds
from tests.helpers import d  # the corpus is read on the tests' today; its dates are around it

BASE = (("stay-a", d(3), d(6)), ("stay-b", d(10), d(12)))
BASE_NIGHTS = [(d(3), d(6)), (d(10), d(12))]


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    outcome: str  # "ok", or the error code of the failed run
    nights: list = field(default_factory=lambda: list(BASE_NIGHTS))  # for "ok": what the feed takes
    skipped: tuple = ()  # for "ok": the reasons, in any order
    content_encoding: str | None = None  # how the loopback portal serves it


def _with_base(*events: str, header: str = "") -> bytes:
    """An Airbnb-like feed with the BASE stays and these extra events (LF text, one property a line)."""
    body = feeds.airbnb(*BASE).decode()
    extra = "".join("BEGIN:VEVENT\r\n" + "\r\n".join(event.strip().splitlines()) + "\r\nEND:VEVENT\r\n" for event in events)
    if header:
        body = body.replace("VERSION:2.0\r\n", "VERSION:2.0\r\n" + header + "\r\n", 1)
    return body.replace("END:VCALENDAR\r\n", extra + "END:VCALENDAR\r\n").encode()


def _calendar(inner: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Hostile//EN\r\n" + inner + "END:VCALENDAR\r\n").encode()


def _gzip_bomb(size: int) -> bytes:
    return gzip.compress(_with_base() + b"X-PAD:" + b"0" * size, compresslevel=9)


def corpus() -> list[Hostile]:
    start = f"{d(1):%Y%m%d}"
    every_day = ",".join(f"{d(n):%Y%m%d}" for n in range(1, 337))
    secondly_filters = "BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=" + ",".join(map(str, range(60)))
    return [
        Hostile("interval_zero", _with_base(f"UID:zero\nDTSTART;VALUE=DATE:{start}\nRRULE:FREQ=DAILY;INTERVAL=0"),
                "ok", skipped=("invalid_rule",)),
        Hostile("interval_negative", _with_base(f"UID:neg\nDTSTART;VALUE=DATE:{start}\nRRULE:FREQ=WEEKLY;INTERVAL=-3"),
                "ok", skipped=("invalid_rule",)),
        Hostile("secondly_since_1970", _with_base("UID:sec\nDTSTART:19700101T000000Z\nRRULE:FREQ=SECONDLY"),
                "ok", skipped=("too_many_occurrences",)),
        Hostile("secondly_with_every_minute_of_every_hour",
                _with_base(*[f"UID:sec{n}\nDTSTART:{start}T000000Z\nRRULE:FREQ=SECONDLY;{secondly_filters}" for n in range(200)]),
                "ok", nights=[(d(1), d(2)), *BASE_NIGHTS], skipped=("too_many_occurrences",) * 200),
        Hostile("yearly_with_every_second_of_the_year",
                _with_base(f"UID:yearly\nDTSTART:{start}T000000Z\nRRULE:FREQ=YEARLY;BYSETPOS=-1;{secondly_filters};"
                           "BYSECOND=" + ",".join(map(str, range(60)))),
                "ok", nights=[(d(1), d(2)), *BASE_NIGHTS], skipped=("too_many_occurrences",)),
        Hostile("rdate_flood",
                _with_base(f"UID:flood\nDTSTART;VALUE=DATE:{start}\n" + "\n".join(f"RDATE;VALUE=DATE:{every_day}" for _ in range(60))),
                "ok", skipped=("too_many_occurrences",)),
        Hostile("thousands_of_series",
                _with_base(*[f"UID:s{n}\nDTSTART;VALUE=DATE:{start}\nRRULE:FREQ=DAILY;COUNT=2" for n in range(2000)]),
                "ok", nights=None, skipped=None),
        Hostile("deep_nesting", _calendar("BEGIN:X-A\r\n" * 5000 + "END:X-A\r\n" * 5000), "too_complex"),
        Hostile("nested_events", _calendar("BEGIN:VEVENT\r\nUID:n\r\n" * 12 + "END:VEVENT\r\n" * 12), "too_complex"),
        Hostile("a_4_mib_line", _with_base(f"UID:long\nDTSTART;VALUE=DATE:{start}\nSUMMARY:" + "x" * (4 * 1024 * 1024)),
                "ok", nights=[(d(1), d(2)), *BASE_NIGHTS]),
        Hostile("two_million_values", _with_base(f"UID:cats\nDTSTART;VALUE=DATE:{start}\nCATEGORIES:" + "a," * 2_000_000),
                "too_complex"),
        Hostile("a_million_parameters", _with_base(f"UID:params\nDTSTART;VALUE=DATE:{start}\nX-P" + ";A=1" * 1_000_000 + ":v"),
                "too_complex"),
        Hostile("half_a_million_lines", _with_base(f"UID:lines\nDTSTART;VALUE=DATE:{start}\n" + "X-A:1\n" * 500_000),
                "too_complex"),
        Hostile("folded_begin_lines_past_the_event_cap",
                _calendar("".join(f"BEGIN:VEV\r\n ENT\r\nUID:{n}\r\nDTSTART;VALUE=DATE:{start}\r\nEND:VEVENT\r\n" for n in range(5001))),
                "too_large"),
        Hostile("nul_and_controls_in_uid_and_summary",
                _with_base(f"UID:nul\x00uid\x07\nDTSTART;VALUE=DATE:{d(20):%Y%m%d}\nDTEND;VALUE=DATE:{d(22):%Y%m%d}\nSUMMARY:Re\x00served\x1b"),
                "ok", nights=[*BASE_NIGHTS, (d(20), d(22))]),
        Hostile("one_uid_for_two_stays",
                _with_base(f"UID:twice\nDTSTART;VALUE=DATE:{d(20):%Y%m%d}\nDTEND;VALUE=DATE:{d(22):%Y%m%d}",
                           f"UID:twice\nDTSTART;VALUE=DATE:{d(30):%Y%m%d}\nDTEND;VALUE=DATE:{d(33):%Y%m%d}",
                           f"UID:twice\nDTSTART;VALUE=DATE:{d(20):%Y%m%d}\nDTEND;VALUE=DATE:{d(22):%Y%m%d}"),
                "ok", nights=[*BASE_NIGHTS, (d(20), d(22)), (d(30), d(33))]),
        Hostile("utf16_le_with_bom", b"\xff\xfe" + _with_base("UID:é\nSUMMARY:Réservé\nDTSTART;VALUE=DATE:" + f"{d(20):%Y%m%d}").decode().encode("utf-16-le"),
                "ok", nights=[*BASE_NIGHTS, (d(20), d(21))]),
        Hostile("utf16_be_with_bom", b"\xfe\xff" + _with_base().decode().encode("utf-16-be"), "ok"),
        Hostile("doubled_utf8_bom", b"\xef\xbb\xbf\xef\xbb\xbf" + _with_base(), "ok"),
        Hostile("windows_1252", _with_base("UID:cp\nSUMMARY:Réservé « Zoë »\nDTSTART;VALUE=DATE:" + f"{d(20):%Y%m%d}").decode().encode("windows-1252"),
                "ok", nights=[*BASE_NIGHTS, (d(20), d(21))]),
        Hostile("gzip_without_content_encoding", gzip.compress(_with_base()), "ok"),
        Hostile("gzip_bomb_without_content_encoding", _gzip_bomb(64 * 1024 * 1024), "too_large"),
        Hostile("year_9999_and_year_1",
                _with_base("UID:far\nDTSTART;VALUE=DATE:99991230\nDTEND;VALUE=DATE:99991231",
                           "UID:old\nDTSTART;VALUE=DATE:00010101\nDTEND;VALUE=DATE:00010102",
                           f"UID:forever\nDTSTART;VALUE=DATE:{d(40):%Y%m%d}\nDTEND;VALUE=DATE:99991231"),
                "ok", nights=[*BASE_NIGHTS, (d(40), date(2030, 2, 1))], skipped=("too_far_ahead", "in_the_past")),
        Hostile("html_login_page", feeds.LOGIN_PAGE, "not_ical"),
        Hostile("cut_off_mid_event", _with_base()[:-60], "parse_error"),
    ]


CORPUS = {hostile.name: hostile for hostile in corpus()}
