"""Onboarding by file: a CSV of syncs (property name, time zone, portal, import link; one row per
sync) checked row by row, then imported; and the other way, every sync with its export URL.

The check is the import itself, rolled back: each row goes through the add forms' own
validation (``syncs.forms.PropertyForm``'s time zone, ``syncs.forms.ConnectionForm``: the
link's shape, private addresses, our own export pasted back, the portal recognised from the link
or refused when they disagree, the same link twice) and the services that save
(``syncs.editing.property_create``, ``connection_create``), each row in a savepoint. Rows
earlier in the file are in the database by then, so a link that appears twice in the file is
found by the very duplicate check that refuses it against existing syncs. The preview rolls the
whole transaction back; the import commits it, with exactly the rows that pass (checked again:
the account may have changed since the preview). Errors are per row, in words.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from syncs.activity import activity_record
from syncs.editing import connection_create, feed_check, property_create
from syncs.explain import describe
from syncs.export_tokens import export_token_ensure, export_url
from syncs.fetch import FetchError
from syncs.forms import DEFAULT_EXPORT_SUMMARY, ConnectionForm, PropertyForm, tidy_link
from syncs.ical import FeedParseError
from syncs.models import Account, Activity, Connection, OnboardingUpload, Portal, Property
from syncs.portals import portal_for_host
from syncs.sync_state import connection_statuses

log = logging.getLogger(__name__)

MAX_ROWS = 5000
MAX_BYTES = 2 * 1024 * 1024
COLUMNS = 4
HEADER_WORDS = ("property", "propriedade", "propiedad", "name", "nome", "nombre")


class _DryRun(Exception):
    """Raised to roll the preview's transaction back."""


@dataclass
class Row:
    line: int
    property: str
    timezone: str
    portal: str
    url: str
    errors: list[str]

    def as_dict(self) -> dict:
        return {"line": self.line, "property": self.property, "timezone": self.timezone, "portal": self.portal,
                "url": self.url, "errors": self.errors}


def rows_read(data: bytes) -> tuple[list[Row], list[str]]:
    """The rows of an uploaded file, and problems with the file as a whole. Commas or semicolons
    (spreadsheets in Portugal and Spain save with semicolons); UTF-8, else Latin-1."""
    if len(data) > MAX_BYTES:
        return [], [_("The file is larger than 2 MB: split it into several files.")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if "\x00" in text:
        return [], [_("This is not a CSV file: save the spreadsheet as CSV and upload that.")]
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    rows: list[Row] = []
    for line, cells in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        cells = [cell.strip() for cell in cells]
        if not any(cells):
            continue
        if not rows and line == 1 and cells[0].casefold() in HEADER_WORDS:
            continue
        if len(rows) >= MAX_ROWS:
            return rows, [_("Only the first %(n)d rows are read: split the file.") % {"n": MAX_ROWS}]
        cells += [""] * (COLUMNS - len(cells))
        row = Row(line=line, property=cells[0][:200], timezone=cells[1][:64], portal=cells[2][:100], url=cells[3][:2100], errors=[])
        filled = len([cell for cell in cells if cell])
        if filled < 2 or len(cells) > COLUMNS + 2:
            row.errors.append(
                ngettext(
                    "This line has %(n)d column; each line needs 4: property name, time zone, portal, import link.",
                    "This line has %(n)d columns; each line needs 4: property name, time zone, portal, import link.",
                    filled,
                )
                % {"n": filled}
            )
        rows.append(row)
    if not rows:
        return [], [_("The file has no rows. Each line: property name, time zone, portal, import link.")]
    return rows, []


def _portal(value: str, portals: dict[str, Portal]) -> tuple[Portal | None, bool]:
    """The portal a cell names (its name or slug, any case); (None, False) for a name we do not know."""
    if not value:
        return None, True
    found = portals.get(value.casefold())
    return found, found is not None


def _rows_apply(*, user, account: Account, rows: list[Row], dry_run: bool = False) -> list[Connection]:
    """Check each row and save it in its own savepoint; returns the syncs saved. The caller's
    transaction decides whether they stay.

    ``dry_run`` (the preview, rolled back): the rows are checked by the same forms, and saved as
    bare rows only (no export URL, no activity entry), which is all that the checks of the
    later rows read: a thousand rows are previewed in seconds. The import saves through the
    services."""
    by_slug = {portal.slug: portal for portal in Portal.objects.all()}
    portals = {key: portal for portal in by_slug.values() for key in (portal.slug.casefold(), portal.name.casefold())}
    existing = {p.name.casefold(): p for p in Property.objects.for_account(account)}
    made: list[Connection] = []
    zones: dict[str, str] = {prop.timezone: prop.timezone for prop in existing.values()}
    for row in rows:
        if row.errors:
            continue
        portal, known = _portal(row.portal, portals)
        if not known:
            row.errors.append(_("“%(portal)s” is not a portal we know. Use one of: %(names)s.") % {
                "portal": row.portal, "names": ", ".join(sorted({p.name for p in portals.values()})),
            })
            continue
        try:
            # A savepoint per imported row, so that a row that fails leaves nothing; the preview's
            # bare inserts cannot fail halfway, and its whole transaction is rolled back anyway.
            with contextlib.nullcontext() if dry_run else transaction.atomic():
                prop = existing.get(" ".join(row.property.split()).casefold())
                if prop is None:
                    form = PropertyForm({"name": row.property, "timezone": row.timezone}, user=user)
                    if not form.is_valid():
                        raise ValidationError([e for errors in form.errors.values() for e in errors])
                    if dry_run:
                        prop = Property.objects.bulk_create([Property(account=account, **form.property_values())])[0]
                    else:
                        prop = property_create(user=user, **form.property_values())
                    existing[prop.name.casefold()] = prop
                elif row.timezone and _zone(row.timezone, user, zones) != prop.timezone:
                    raise ValidationError(
                        _("%(property)s is in %(zone)s: give the same time zone, or leave it empty.")
                        % {"property": prop.name, "zone": prop.timezone}
                    )
                # A portal the link's own address names is left for the form to recognise (one
                # look-up less per row); any other is passed, and the form refuses a mismatch.
                named = portal_for_host(urlsplit(tidy_link(row.url)).hostname) if portal else None
                form = ConnectionForm(
                    {"import_url": row.url, "portal": portal.pk if portal and not (named and named.slug == portal.slug) else "", "direction": Connection.Direction.TWO_WAY,
                     "sync_interval_minutes": settings.SYNC_DEFAULT_INTERVAL_MINUTES,
                     "export_summary": DEFAULT_EXPORT_SUMMARY},
                    user=user, property=prop, portals=by_slug,
                )
                if not form.is_valid():
                    raise ValidationError([e for errors in form.errors.values() for e in errors])
                if dry_run:
                    made += Connection.objects.bulk_create([Connection(property=prop, **form.connection_values())])
                else:
                    made.append(connection_create(user=user, property=prop, **form.connection_values()))
        except ValidationError as error:
            row.errors.extend(error.messages)
    return made


def _zone(value: str, user, known: dict[str, str]) -> str:
    """The zone a cell names, as the property form reads it; each spelling read once."""
    if value not in known:
        form = PropertyForm({"name": "x", "timezone": value}, user=user)
        form.is_valid()
        known[value] = form.cleaned_data.get("timezone", value)
    return known[value]


def onboarding_preview(*, user, account: Account, filename: str, data: bytes) -> tuple[OnboardingUpload | None, list[str]]:
    """Read and check every row (the import, rolled back); keep the rows for the import."""
    rows, problems = rows_read(data)
    if not rows:
        return None, problems
    try:
        with transaction.atomic():
            _rows_apply(user=user, account=account, rows=rows, dry_run=True)
            raise _DryRun
    except _DryRun:
        pass
    upload = OnboardingUpload.objects.create(
        account=account, user=user, filename=filename[:200], rows=[row.as_dict() for row in rows]
    )
    return upload, problems


def onboarding_import(*, user, upload: OnboardingUpload) -> tuple[list[Connection], list[Row]]:
    """Create every row that passes, in one transaction; returns the syncs made and every row
    with the errors found now."""
    rows = [Row(**{k: v for k, v in row.items() if k in Row.__dataclass_fields__} | {"errors": []}) for row in upload.rows]
    with transaction.atomic():
        if OnboardingUpload.objects.select_for_update().filter(pk=upload.pk, imported_at__isnull=True).update(
            imported_at=timezone.now()
        ) != 1:
            return [], []  # imported already (a second click)
        # The file-level problems (columns) are checked again too.
        checked, _problems = rows_read(_as_csv(rows))
        by_line = {row.line: row for row in checked}
        for row in rows:
            row.errors = list(by_line[row.line].errors) if row.line in by_line else []
        made = _rows_apply(user=user, account=upload.account, rows=rows)
        if made:
            activity_record(
                user=user, action=Activity.Action.SYNCS_IMPORTED,
                params={"count": len(made), "rows": len(rows), "file": upload.filename},
            )
    return made, rows


def _as_csv(rows: list[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    # Blank lines are not rows: line numbers are kept by writing filler lines.
    line = 0
    for row in rows:
        while line < row.line - 1:
            out.write("\n")
            line += 1
        writer.writerow([row.property, row.timezone, row.portal, row.url])
        line += 1
    return out.getvalue().encode()


# --------------------------------------------------------------------------- live checks


def onboarding_live_request(*, upload: OnboardingUpload) -> int:
    """Ask the worker to read each good row's link once (nothing is saved from it)."""
    indexes = [index for index, row in enumerate(upload.rows) if not row["errors"]]
    OnboardingUpload.objects.filter(pk=upload.pk).update(live_requested_at=timezone.now(), live_checked=0)
    transaction.on_commit(lambda: _publish(upload.pk, indexes))
    return len(indexes)


def _publish(upload_id: int, indexes: list[int]) -> None:
    import threading

    def publish() -> None:
        try:
            for index in indexes:
                onboarding_check_row.apply_async((upload_id, index))
        except Exception:
            log.warning("onboarding live checks not queued upload=%s: broker unavailable", upload_id)

    threading.Thread(target=publish, name=f"onboarding-{upload_id}", daemon=True).start()


@shared_task(ignore_result=True, acks_late=True)
def onboarding_check_row(upload_id: int, index: int) -> None:
    """Read one row's link as the next sync would (syncs.editing.feed_check), and record what
    it found on the row: the progress page counts the rows done."""
    upload = OnboardingUpload.objects.filter(pk=upload_id).first()
    if upload is None or index >= len(upload.rows):
        return
    row = upload.rows[index]
    portal = portals_by_typed_name().get(row["portal"].casefold())
    try:
        found = feed_check(url=row["url"].strip(), timezone=row["timezone"] or "UTC", portal=portal)
        live = {"ok": True, "events": found.events}
    except (FetchError, FeedParseError) as exc:
        live = {"ok": False, "code": exc.code, "params": getattr(exc, "params", {})}
    with transaction.atomic():
        locked = OnboardingUpload.objects.select_for_update().get(pk=upload_id)
        if "live" not in locked.rows[index]:
            locked.live_checked += 1
        locked.rows[index]["live"] = live
        locked.save(update_fields=["rows", "live_checked"])


def portals_by_typed_name() -> dict[str, Portal]:
    """Every portal by the words a file may name it with: its slug or its name, in any case."""
    portals = list(Portal.objects.all())
    return {**{p.name.casefold(): p for p in portals}, **{p.slug.casefold(): p for p in portals}}


def live_words(live: dict, portal: Portal | None = None) -> str:
    """What the live check of a row's link found, naming its portal as sentences do."""
    if live.get("ok"):
        events = live.get("events", 0)
        return ngettext("The link works: %(n)d event.", "The link works: %(n)d events.", events) % {"n": events}
    return describe(live.get("code", ""), live.get("params"), portal=portal.name_in_sentence if portal else None)


# --------------------------------------------------------------------------- the export list


def export_csv_rows(*, account: Account) -> list[list[str]]:
    """Every sync of the account with its state and export URL (managers and owners only: export
    URLs are secrets), for pasting into the portals."""
    header = [_("Property"), _("Time zone"), _("Portal"), _("Direction"), _("State"), _("Export URL")]
    connections = list(
        Connection.objects.for_account(account).select_related("property", "portal").order_by("property__name", "portal__position", "pk")
    )
    statuses = connection_statuses(connections)
    rows = [header]
    for connection in connections:
        url = export_url(export_token_ensure(property=connection.property, connection=connection)) if connection.exports else ""
        rows.append([
            connection.property.name, connection.property.timezone, connection.portal.name,
            connection.get_direction_display(), statuses[connection.pk].label, url,
        ])
    return rows
