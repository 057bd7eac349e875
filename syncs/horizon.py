"""The dates the service works with: from yesterday to about three years ahead.

Nights before yesterday are history, not availability; a date years beyond any booking window
is a broken feed or a typo, and dates near the ends of the calendar (year 9999, year 1) make
date arithmetic fail. Feeds are read within this range (``syncs.engine.parse.ical``) and every date typed
into a page is checked against it (``syncs.date_inputs``). Pure: no Django.
"""

from __future__ import annotations

from datetime import date, timedelta

YEARS_AHEAD = 3


def earliest_night(today: date) -> date:
    """The first night that still matters: yesterday (a stay whose last night was yesterday
    checks out today)."""
    return today - timedelta(days=1)


def latest_checkout(today: date) -> date:
    """The last check-out day we keep: the first day of the month after the same day three
    years ahead. It moves once a month, not daily, so a block cut at it changes at most monthly."""
    year, month = today.year + YEARS_AHEAD, today.month + 1
    if month > 12:
        year, month = year + 1, 1
    return date(year, month, 1)
