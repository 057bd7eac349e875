"""Error and outcome codes in plain words, produced when shown, in the reader's language.

Codes and their parameters are what the database stores (see SyncRun.error_code and
Connection.pause_reason); this is the one place that turns them into sentences.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timedelta

from django.utils import formats, timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from syncs.models import GENERIC_PORTAL_SLUG, Portal
from syncs.portals import BY_SLUG
from syncs.readers import STALE_FACTOR, ExportReaderFacts
from syncs.sync_state import SyncState, SyncStatus

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
    """One sentence an operator understands, e.g. "Airbnb answered 404: the calendar link no longer exists".

    ``portal``: the portal's name in a sentence (``Portal.name_in_sentence``); None words it as
    "the portal", in a sentence of its own (a name cannot stand for it in every language).
    """
    params = params or {}
    who = {"who": portal, "status": params.get("status")}
    sentences = {
        "ok_changed": lambda: _("Synced: the calendar changed and was updated."),
        "ok_unchanged": lambda: _("Synced: nothing changed."),
        "ok_empty": lambda: _("Synced: the portal's calendar is empty."),
        "dns": lambda: _("The portal's address could not be found (DNS). Check the link for typos."),
        "connect": lambda: (
            _("%(who)s could not be reached (connection refused or no route).") if portal
            else _("The portal could not be reached (connection refused or no route).")
        ) % who,
        "timeout": lambda: (
            _("%(who)s took too long to answer.") if portal else _("The portal took too long to answer.")
        ) % who,
        "tls": lambda: (
            _("The secure connection to %(who)s failed (certificate or TLS error).") if portal
            else _("The secure connection to the portal failed (certificate or TLS error).")
        ) % who,
        "http_4xx": lambda: (
            _("%(who)s answered %(status)s: %(meaning)s.") if portal else _("The portal answered %(status)s: %(meaning)s.")
        ) % {**who, "meaning": _HTTP_STATUS_WORDS.get(params.get("status"), lambda: _("the request was refused"))()},
        "http_5xx": lambda: (
            _("%(who)s had an error of its own (HTTP %(status)s). This usually passes.") if portal
            else _("The portal had an error of its own (HTTP %(status)s). This usually passes.")
        ) % who,
        "rate_limited": lambda: (
            _("%(who)s asked us to slow down; we will try again later.") if portal
            else _("The portal asked us to slow down; we will try again later.")
        ) % who,
        "too_large": lambda: _("The calendar is larger than we accept (5 MiB): this is not a normal portal feed."),
        "blocked_address": lambda: _(
            "The link points to a private or local network address, which we never fetch."
        ),
        "invalid_url": lambda: _("The link is not a valid http:// or https:// address."),
        "not_ical": lambda: _(
            "The link returned a web page, not a calendar: often a login page. Copy the portal's calendar link again."
        ),
        "parse_error": lambda: _("The calendar could not be read: it is damaged or cut short."),
        "too_slow": lambda: _(
            "The calendar took too long to read: it is far more complicated than a portal's feed. "
            "We will try again."
        ),
        "too_complex": lambda: _(
            "The calendar holds far more lines, values or nested parts than a portal's feed: it was not read."
        ),
        "not_implemented": lambda: _("Recorded before the import engine existed."),
        "database_error": lambda: _(
            "Our database could not save this sync; nothing was changed, and it will be tried again."
        ),
        "sync_failed": lambda: _("This sync stopped on an unexpected error; nothing was changed, and it will be tried again."),
    }
    sentence = sentences.get(code)
    return sentence() if sentence else _("Unexpected outcome (%(code)s).") % {"code": code}


def until(moment: datetime, now: datetime | None = None) -> str:
    """How long from ``now`` to ``moment``, as in "5 minutes" or "less than a minute".

    Rounded to the nearest minute: a retry due in 4 minutes 59 seconds is "5 minutes" away
    (Django's timeuntil would cut it to 4, which the next refresh then contradicts).
    """
    now = now or timezone.now()
    if moment - now < timedelta(minutes=1):
        return _("less than a minute")
    return timesince(now, moment + timedelta(seconds=30))


# A first sync more than this late says that syncs may not be running at all.
LATE_FIRST_SYNC = timedelta(minutes=5)


def describe_state(status: SyncStatus, now: datetime | None = None) -> str:
    """Why a sync is in its state, in one or two sentences (empty for a sync that works).

    ``status`` is the state of a loaded connection (with its portal).
    Every page, the checklist and the emails word a state with this.
    """
    now = now or timezone.now()
    connection, state = status.connection, status.state
    portal = connection.portal.name_in_sentence
    if state == SyncState.PAUSED:
        words = describe(connection.pause_reason, connection.pause_params, portal=portal)
        if connection.ready_to_resume_at:
            words += " " + _("Its calendar works again: ready to resume.")
        return words
    if state == SyncState.CHECKING:
        return (
            _(
                "Switched back on %(ago)s ago: the next sync checks that %(portal)s's calendar works again. "
                "It was paused because: %(reason)s"
            ) if portal else _(
                "Switched back on %(ago)s ago: the next sync checks that the portal's calendar works again. "
                "It was paused because: %(reason)s"
            )
        ) % {
            "ago": since(connection.checking_since, now),
            "portal": portal,
            "reason": describe(connection.pause_reason, connection.pause_params, portal=portal),
        }
    if state == SyncState.FAILING:
        words = describe(connection.last_error_code, connection.last_error_params, portal=portal)
        retry = connection.next_sync_at
        when = until(retry, now) if retry else _("less than a minute")
        return words + " " + ngettext(
            "It failed %(n)d time in a row; we try again in %(when)s.",
            "It failed %(n)d times in a row; we try again in %(when)s.",
            connection.consecutive_failures,
        ) % {"n": connection.consecutive_failures, "when": when}
    if state == SyncState.HELD:
        return (
            ngettext(
                "%(portal)s's calendar suddenly lost %(n)d future booking or block. It is kept until %(portal)s says the same again, or you accept the change.",
                "%(portal)s's calendar suddenly lost %(n)d future bookings or blocks. They are kept until %(portal)s says the same again, or you accept the change.",
                connection.held_removals,
            ) if portal else ngettext(
                "The portal's calendar suddenly lost %(n)d future booking or block. It is kept until the portal says the same again, or you accept the change.",
                "The portal's calendar suddenly lost %(n)d future bookings or blocks. They are kept until the portal says the same again, or you accept the change.",
                connection.held_removals,
            )
        ) % {"portal": portal, "n": connection.held_removals}
    if state == SyncState.NOT_READING:
        return describe_readers(status.readers, portal=portal)
    if state == SyncState.STALE:
        return _("No successful sync for a while: the last one was %(ago)s ago.") % {
            "ago": since(connection.last_success_at, now)
        }
    if state == SyncState.WAITING:
        due = connection.next_sync_at
        if due is not None and due > now:
            return _("Waiting for its first sync, due in %(when)s.") % {"when": until(due, now)}
        if due is not None and now - due > LATE_FIRST_SYNC:
            return _("Waiting for its first sync, due %(ago)s ago: syncs may not be running.") % {
                "ago": since(due, now)
            }
        return _("Waiting for its first sync, due within a minute.")
    if state == SyncState.SWITCHED_OFF:
        return _("Switched off: nothing is imported or checked until you switch it on.")
    return ""


def describe_notice(code: str, params: dict | None = None) -> str:
    """What the operator should know about a feed that was read all the same (``ical.Notice``)."""
    params = params or {}
    if code == "duplicate_uids":
        count = params.get("events", 0)
        return ngettext(
            "%(count)s event shared its booking number (UID) with an event on other nights: each kept its own nights.",
            "%(count)s events shared booking numbers (UIDs) with events on other nights: each kept its own nights.",
            count,
        ) % {"count": count}
    if code == "decoded_as_windows_1252":
        return _("The calendar is not in UTF-8: it was read as Windows-1252 (Western European). Check the accents in its titles.")
    if code == "control_characters":
        return _("Invisible control characters were removed from the calendar's text.")
    if code == "far_end_cut":
        count = params.get("count", 0)
        when = date.fromisoformat(params["day"]) if params.get("day") else None
        return ngettext(
            "%(count)s event ran past %(day)s: its nights were kept up to that day.",
            "%(count)s events ran past %(day)s: their nights were kept up to that day.",
            count,
        ) % {"count": count, "day": day(when) if when else "?"}
    return _("Note (%(code)s).") % {"code": code}


def describe_readers(facts: ExportReaderFacts | None, *, portal: str | None) -> str:
    """Whether the portal reads our calendar, e.g. "Airbnb last read this calendar 47 minutes ago".

    ``portal``: its name in a sentence (``Portal.name_in_sentence``), None for "the portal"."""
    if facts is None:
        return ""
    if facts.state == "waiting":
        sentence = (
            _("Not read yet: %(portal)s usually picks up a new calendar within %(delay)s.") if portal
            else _("Not read yet: the portal usually picks up a new calendar within %(delay)s.")
        ) % {"portal": portal, "delay": timesince(timezone.now() - facts.expected_within / STALE_FACTOR)}
    elif facts.state == "never_read":
        sentence = (
            _("Never read since it was created: the URL was probably not pasted into %(portal)s, or pasted wrong.") if portal
            else _("Never read since it was created: the URL was probably not pasted into the portal, or pasted wrong.")
        ) % {"portal": portal}
    else:
        sentence = _("%(reader)s last read this calendar %(ago)s ago.") % {
            "reader": reader_name(facts.last_reader, portal=portal), "ago": since(facts.last_read_at),
        }
        if facts.state == "stale":
            sentence += " " + (
                _("%(portal)s seems to have stopped reading it.") % {"portal": portal} if portal
                else _("The portal seems to have stopped reading it.")
            )
    if facts.old_url_read_at is not None:
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


def day_of(moment: datetime, zone: str) -> str:
    """The day a moment falls on in a time zone (a property's), in a sentence: "3 March 2027"."""
    return day(timezone.localtime(moment, zoneinfo.ZoneInfo(zone)).date())


def nights_words(first: date, last: date, count: int) -> str:
    """The nights of a double booking that clash, as the operator checks them on the portals:
    "the night of 12 December 2026", "2 nights, 12 December to 13 December 2026" (both nights
    named, never a check-out day), "3 nights between 2 December and 16 December 2026" when
    they are apart."""
    if count == 1:
        return _("the night of %(night)s") % {"night": day(first)}
    names = {"n": count, "first": day(first, with_year=first.year != last.year), "last": day(last)}
    if (last - first).days + 1 == count:
        return ngettext("%(n)d night, %(first)s to %(last)s", "%(n)d nights, %(first)s to %(last)s", count) % names
    return ngettext(
        "%(n)d night between %(first)s and %(last)s", "%(n)d nights between %(first)s and %(last)s", count
    ) % names


def clash_words(clash) -> str:
    """A syncs.conflicts.Clash in words (nights_words)."""
    return nights_words(clash.first_night, clash.last_night, clash.nights)


def reader_name(slug: str, *, portal: str | None) -> str:
    """A reader's name from its slug ("airbnb" -> "Airbnb"), as the subject of a sentence; unknown
    software is named as such, an unnamed reader is the sync's portal (None: "The portal")."""
    if slug in BY_SLUG and slug != GENERIC_PORTAL_SLUG:
        return BY_SLUG[slug].name
    if slug:
        return _("A calendar program")
    return portal or _("The portal")


def describe_activity(entry) -> str:
    """The details of an activity row (an Activity), e.g. why a sync was paused, which nights
    were closed, to how many people an email went; empty when the action says it all."""
    params = entry.params or {}
    portal = entry.connection.portal.name_in_sentence if entry.connection_id else None
    action = entry.action
    if action == "paused":
        words = describe(params.get("code", ""), params.get("params"), portal=portal)
        if params.get("again"):
            words = _("The check after switching it back on failed: %(reason)s") % {"reason": words}
        return words
    if action == "resumed":
        return {
            "operator": lambda: _("Its calendar was read without error after it was switched back on."),
            "edit": lambda: _("Its new link was read without error."),
            "probe": lambda: _("The background check found its calendar working, and your account resumes such syncs."),
        }.get(params.get("by"), lambda: _("A sync worked again."))()
    if action == "switch_off_undone" and "count" in params:
        words = ngettext("%(n)d sync put back as it was", "%(n)d syncs put back as they were", params["count"]) % {
            "n": params["count"],
        }
        if params.get("left"):
            words += "; " + ngettext(
                "%(n)d changed since, left as it is", "%(n)d changed since, left as they are", params["left"]
            ) % {"n": params["left"]}
        return words
    if action.startswith("bulk_") and "count" in params:
        return ngettext("%(n)d sync", "%(n)d syncs", params["count"]) % {"n": params["count"]}
    if action in ("properties_assigned", "properties_unassigned") and "count" in params:
        return ngettext("%(n)d property", "%(n)d properties", params["count"]) % {"n": params["count"]}
    if action == "syncs_imported" and "count" in params:
        if "changed" not in params:  # before files could change syncs
            return ngettext("%(n)d sync from %(file)s", "%(n)d syncs from %(file)s", params["count"]) % {
                "n": params["count"], "file": params.get("file", ""),
            }
        return _("%(added)s and %(changed)s, from %(file)s") % {
            "added": ngettext("%(n)d sync added", "%(n)d syncs added", params["count"]) % {"n": params["count"]},
            "changed": ngettext("%(n)d changed", "%(n)d changed", params["changed"]) % {"n": params["changed"]},
            "file": params.get("file", ""),
        }
    if action in ("webhook_added", "webhook_removed"):
        return params.get("host", "")
    if action in ("double_booking_handled", "double_booking_back") and params.get("first_night"):
        first, last = date.fromisoformat(params["first_night"]), date.fromisoformat(params["last_night"])
        return nights_words(first, last, params["nights"])
    if action in ("block_added", "block_removed", "test_block_added", "test_block_removed", "double_booking_handled",
                  "double_booking_back") and params.get("start"):
        start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
        return _("%(first)s to %(checkout)s (check-out)") % {"first": day(start), "checkout": day(end)}
    if action in ("pause_email_sent", "reminder_sent", "restored_email_sent") and "recipients" in params:
        return ngettext("to %(n)d person", "to %(n)d people", params["recipients"]) % {"n": params["recipients"]}
    if action == "held_accepted" and "removals" in params:
        return ngettext("%(n)d removal", "%(n)d removals", params["removals"]) % {"n": params["removals"]}
    if action in ("property_removed", "property_restored") and "syncs" in params:
        words = ngettext("with its %(n)d sync", "with its %(n)d syncs", params["syncs"]) % {"n": params["syncs"]}
        if params.get("kept"):
            words += "; " + ngettext(
                "%(n)d stays removed: another sync imports its link now",
                "%(n)d stay removed: other syncs import their links now", params["kept"],
            ) % {"n": params["kept"]}
        return words
    if action == "removed_deleted" and params.get("removed_at"):
        removed = day(timezone.localtime(datetime.fromisoformat(params["removed_at"])).date())
        what = (
            _("the %(portal)s sync of %(property)s") % {"portal": Portal.name_in_words(params["portal"]), "property": params.get("property", "")}
            if params.get("portal") else _("%(property)s and its syncs") % {"property": params.get("property", "")}
        )
        if params.get("removed_by"):
            return _("%(what)s, removed on %(day)s by %(who)s") % {"what": what, "day": removed, "who": params["removed_by"]}
        return _("%(what)s, removed on %(day)s") % {"what": what, "day": removed}
    if action == "sync_requested" and params.get("from") == "checklist":
        return _("from the fix checklist")
    if action == "switched_on" and params.get("automatic"):
        return _("The background check found its calendar working, and your account resumes such syncs.")
    return ""
