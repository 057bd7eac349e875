"""Error and outcome codes in plain words, produced when shown, in the reader's language.

Codes and their parameters are what the database stores (see SyncRun.error_code and
Connection.pause_reason); this is the one place that turns them into sentences.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.utils import formats, timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from syncs.portals import BY_SLUG
from syncs.readers import STALE_FACTOR, ExportReaderFacts

_HTTP_STATUS_WORDS = {
    401: lambda: _("the portal asked for a password: the calendar link is private or was revoked"),
    403: lambda: _("the portal refused access: the calendar link was revoked or is not shared"),
    404: lambda: _("the calendar link no longer exists"),
    410: lambda: _("the calendar link was deleted"),
}


def since(moment: datetime, now: datetime | None = None) -> str:
    """How long from ``moment`` to ``now``, as in "3 hours" or "less than a minute".

    Django's timesince says "0 minutes" for anything under a minute (and for a moment a little
    in the future, as another machine's clock may give): "0 minutes ago" reads like a fault.
    """
    now = now or timezone.now()
    if now - moment < timedelta(minutes=1):
        return _("less than a minute")
    return timesince(moment, now)


def describe(code: str, params: dict | None = None, *, portal: str | None = None) -> str:
    """One sentence an operator understands, e.g. "Airbnb answered 404: the calendar link no longer exists"."""
    params = params or {}
    who = portal or _("The portal")
    status = params.get("status")
    sentences = {
        "ok_changed": lambda: _("Synced: the calendar changed and was updated."),
        "ok_unchanged": lambda: _("Synced: nothing changed."),
        "ok_empty": lambda: _("Synced: the portal's calendar is empty."),
        "dns": lambda: _("The portal's address could not be found (DNS). Check the link for typos."),
        "connect": lambda: _("%(who)s could not be reached (connection refused or no route).") % {"who": who},
        "timeout": lambda: _("%(who)s took too long to answer.") % {"who": who},
        "tls": lambda: _("The secure connection to %(who)s failed (certificate or TLS error).") % {"who": who},
        "http_4xx": lambda: _("%(who)s answered %(status)s: %(meaning)s.")
        % {
            "who": who,
            "status": status,
            "meaning": _HTTP_STATUS_WORDS.get(status, lambda: _("the request was refused"))(),
        },
        "http_5xx": lambda: _("%(who)s had an error of its own (HTTP %(status)s). This usually passes.")
        % {"who": who, "status": status},
        "rate_limited": lambda: _("%(who)s asked us to slow down; we will try again later.") % {"who": who},
        "too_large": lambda: _("The calendar is larger than we accept (5 MiB): this is not a normal portal feed."),
        "blocked_address": lambda: _(
            "The link points to a private or local network address, which we never fetch."
        ),
        "invalid_url": lambda: _("The link is not a valid http:// or https:// address."),
        "not_ical": lambda: _(
            "The link returned a web page, not a calendar: often a login page. Copy the export link again."
        ),
        "parse_error": lambda: _("The calendar could not be read: it is damaged or cut short."),
        "not_implemented": lambda: _("Recorded before the import engine existed."),
        "database_error": lambda: _(
            "Our database could not save this sync; nothing was changed, and it will be tried again."
        ),
        "sync_failed": lambda: _("This sync stopped on an unexpected error; nothing was changed, and it will be tried again."),
    }
    sentence = sentences.get(code)
    return sentence() if sentence else _("Unexpected outcome (%(code)s).") % {"code": code}



def describe_readers(facts: ExportReaderFacts | None, *, portal: str) -> str:
    """Whether the portal reads our calendar, e.g. "Airbnb last read this calendar 47 minutes ago"."""
    if facts is None:
        return ""
    if facts.state == "waiting":
        sentence = _("Not read yet: %(portal)s usually picks up a new calendar within %(delay)s.") % {
            "portal": portal, "delay": timesince(timezone.now() - facts.expected_within / STALE_FACTOR),
        }
    elif facts.state == "never_read":
        sentence = _(
            "Never read since it was created: the URL was probably not pasted into %(portal)s, or pasted wrong."
        ) % {"portal": portal}
    else:
        sentence = _("%(reader)s last read this calendar %(ago)s ago.") % {
            "reader": reader_name(facts.last_reader, portal=portal), "ago": since(facts.last_read_at),
        }
        if facts.state == "stale":
            sentence += " " + _("%(portal)s seems to have stopped reading it.") % {"portal": portal}
    if facts.old_url_reader:
        sentence += " " + _("%(reader)s still reads the old URL (last %(ago)s ago): paste the new one there.") % {
            "reader": reader_name(facts.old_url_reader, portal=portal), "ago": since(facts.old_url_read_at),
        }
    return sentence


def day(value: date, *, with_year: bool = True) -> str:
    """A day in a sentence, the reader's way: "3 March 2027", "3 de março de 2027", "3 de marzo de 2027"."""
    if with_year:
        # Translators: how a day with its year is written in a sentence, in Django's date format letters.
        return formats.date_format(value, pgettext("date format with year", "j F Y"))
    # Translators: how a day without the year is written in a sentence, in Django's date format letters.
    return formats.date_format(value, pgettext("date format without year", "j F"))


def reader_name(slug: str, *, portal: str) -> str:
    """A reader's name from its slug ("airbnb" -> "Airbnb"); unknown software is named as such."""
    if slug in BY_SLUG and slug != "other":
        return BY_SLUG[slug].name
    return _("A calendar program") if slug else portal
