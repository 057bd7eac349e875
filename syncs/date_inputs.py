"""Dates typed into pages or query strings, read and checked against the service's range
(``syncs.horizon``), with a message the operator understands instead of an error page."""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.utils import formats
from django.utils.translation import gettext as _

from syncs.explain import day
from syncs.horizon import earliest_night, latest_checkout


def parse_day(value) -> date | None:
    """A day written as YYYY-MM-DD, or None."""
    try:
        return date.fromisoformat(str(value or "").strip())
    except ValueError:
        return None


def month_bounds(today: date) -> tuple[date, date]:
    """The first and the last month (as their first days) that pages show."""
    return earliest_night(today).replace(day=1), (latest_checkout(today) - timedelta(days=1)).replace(day=1)


def month_from_query(value: str, *, today: date) -> tuple[date, str]:
    """The month a query string asks for (``2027-03``), as its first day, and "" ; or the current
    month and why the one asked for cannot be shown."""
    current = today.replace(day=1)
    if not value:
        return current, ""
    month = parse_day(f"{value}-01") if len(value) == 7 else None
    if month is None:
        return current, _("“%(value)s” is not a month: this month is shown.") % {"value": value[:20]}
    first, last = month_bounds(today)
    if not first <= month <= last:
        return current, _("Months from %(first)s to %(last)s can be shown: this month is shown.") % {
            "first": _month_words(first), "last": _month_words(last),
        }
    return month, ""


def timeline_bounds(today: date, nights: int) -> tuple[date, date]:
    """The first and the last first night of a timeline showing ``nights`` nights: back as far as
    history is kept, ahead until its last night is the last one kept."""
    return earliest_night(today) - timedelta(days=settings.RETENTION_DAYS), latest_checkout(today) - timedelta(days=nights)


def day_from_query(value: str, *, first: date, last: date, default: date) -> tuple[date, str]:
    """The day a query string asks for (``2027-03-01``) and ""; or, for a day that is not a date
    or is outside ``first``..``last``, ``default`` or the nearest end of the range, and why the one
    asked for is not shown. Never date arithmetic on what was typed: year 9999 is a date."""
    if not value:
        return default, ""
    asked = parse_day(value)
    if asked is None:
        return default, _("“%(value)s” is not a date (year-month-day): %(shown)s is shown.") % {
            "value": value[:20], "shown": day(default),
        }
    shown = min(max(asked, first), last)
    if shown != asked:
        return shown, _("Dates from %(first)s to %(last)s can be shown: %(shown)s is shown.") % {
            "first": day(first), "last": day(last), "shown": day(shown),
        }
    return asked, ""


def nights_error(start: date, end: date, *, today: date) -> str:
    """Why nights from ``start`` to the check-out day ``end`` cannot be closed, or ""."""
    if end <= start:
        return _("The check-out day must be after the first night.")
    first, last = earliest_night(today), latest_checkout(today)
    if start < first:
        return _("The first night must be %(first)s or later.") % {"first": day(first)}
    if end > last:
        return _("The check-out day must be %(last)s or earlier: dates further ahead are not kept.") % {
            "last": day(last)
        }
    return ""


def night_error(night: date, *, today: date) -> str:
    """Why this one night cannot be used, or "" (no date arithmetic on what was typed)."""
    first, last = earliest_night(today), latest_checkout(today) - timedelta(days=1)
    if not first <= night <= last:
        return _("Choose a night from %(first)s to %(last)s.") % {"first": day(first), "last": day(last)}
    return ""


def _month_words(month: date) -> str:
    return formats.date_format(month, "YEAR_MONTH_FORMAT")
