"""Checking a file's rows, and applying them: each row through the pages' own forms and services.

A row with a sync id changes that sync of the account; a row without one adds a sync (and its
property when the account has none of that name). Each row is checked by the forms the pages use
(``syncs.forms.PropertyForm`` for a new property or a new time zone, ``syncs.forms.ConnectionForm``
for a new sync or a changed one: the link's shape, private addresses, our own export pasted back,
the portal recognised or contradicting the link, the same link twice) and saved by the services
the pages call (``syncs.editing``, ``syncs.operator_actions``), so that settings versions, the
activity log and "a new link on a paused sync is read at once" are the same as on the pages.

Rows are checked in the file's order and each one is saved before the next is checked, so that
the forms' duplicate checks see the rows above it: a link twice in the file is refused as a link
already imported. The preview does the same in a transaction it rolls back (``dry_run``: bare
rows, no export URL, no activity); the import in one transaction that it keeps only if every row
passes and does exactly what the preview showed.

A row's outcome is kept in the row (a dict stored in ``OnboardingUpload.rows``): ``action``
("add", "change", "same"; "" with ``errors``), ``changes`` ([{"field", "old", "new"}]), the
property's name and whether it is new, and the sync's link, portal and zone as they will be.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from syncs import editing, operator_actions
from syncs.clean_text import clean
from syncs.engine.fetch import link_identity
from syncs.forms import DEFAULT_EXPORT_SUMMARY, ConnectionForm, PropertyForm, tidy_link
from syncs.models import Account, Connection, Portal, Property
from syncs.onboarding.file import NO, YES, direction_of, folded, in_every_language, switch_of
from syncs.portals import portal_for_host

ADD, CHANGE, SAME = "add", "change", "same"
# What a row can change, in the order the preview lists it.
FIELDS = ("timezone", "url", "portal", "direction", "enabled", "interval")
_FORM_FIELDS = {"url": "import_url", "portal": "portal", "direction": "direction", "interval": "sync_interval_minutes"}


def property_key(name: str) -> str:
    """How a property's name is matched: spaces collapsed, any case, without the control
    characters a file's cells lose (a name saved before they were removed still matches)."""
    return " ".join(clean(name).split()).casefold()


def live_key(*, url: str, timezone: str, portal: str) -> str:
    """Names a live check's verdict (``LinkCheck.key``): the feed, and what its reading depends on."""
    return hashlib.sha256(f"{link_identity(url)}\n{timezone}\n{portal}".encode()).hexdigest()


class RowChecker:
    """Checks (and, unless ``dry_run``, saves) the rows of one file, in order, in the caller's
    transaction. ``user`` must be working in ``account`` (``jobs.as_member_of``)."""

    def __init__(self, *, user, account: Account, dry_run: bool):
        self.user = user
        self.account = account
        self.dry_run = dry_run
        self.portals = {portal.slug: portal for portal in Portal.objects.all()}
        self.portal_words = {
            word: portal
            for portal in self.portals.values()
            for word in {folded(portal.slug), folded(portal.name), *in_every_language(portal.name)}
        }
        properties = list(Property.objects.for_account(account))
        self.properties = {property_key(prop.name): prop for prop in properties}
        self.zone_at_start = {prop.pk: prop.timezone for prop in properties}
        by_pk = {prop.pk: prop for prop in properties}
        self.syncs = {}
        for connection in Connection.objects.for_account(account).select_related("portal"):
            if connection.property_id in by_pk:  # one object per property, whichever row reaches it
                connection.property = by_pk[connection.property_id]
                self.syncs[connection.pk] = connection
        self.seen: dict[int, int] = {}  # sync id -> the line that named it
        self.zone_asked: dict[str, tuple[str, int]] = {}  # property key -> (zone, line)
        self.made_here: set[str] = set()  # the properties the file adds (their keys)
        self._zones: dict[str, str | None] = {}
        self._pending: list[Property] = []  # made by the row being saved
        # The preview's bare rows, written again in each transaction it opens (``replay``).
        self._made_properties: list[Property] = []
        self._made_connections: list[tuple[str, dict]] = []
        self._links: dict[int, dict] = {}

    @property
    def untouched(self) -> int:
        """The account's syncs that no row named."""
        return len(self.syncs) - len(self.seen)

    def replay(self) -> None:
        """Write again the bare rows of the rows checked so far, in a new transaction of the
        preview: the rows after them are checked against them, as in the import."""
        if self._made_properties:
            self._made_properties = Property.objects.bulk_create(
                [Property(account=self.account, name=prop.name, timezone=prop.timezone) for prop in self._made_properties]
            )
            self.properties.update((property_key(prop.name), prop) for prop in self._made_properties)
        if self._made_connections:
            Connection.objects.bulk_create(
                [Connection(property=self.properties[key], **values) for key, values in self._made_connections]
            )
        for pk, values in self._links.items():
            Connection.objects.filter(pk=pk).update(**values)

    # ----- one row

    def check(self, row: dict, *, expected: dict | None = None) -> None:
        """Fill in the row's outcome (its errors included); unless ``dry_run``, save it.
        ``expected``: the row as the preview showed it; doing anything else is the row's error."""
        row.update(action="", changes=[], property="", property_new=False, sync=None, url="", portal="",
                   timezone="", live_key="")
        if row["errors"]:
            return
        self._pending = []
        try:
            if self.dry_run:
                self._check(row, expected)
            else:
                with transaction.atomic():  # a row that fails leaves nothing
                    self._check(row, expected)
        except ValidationError as error:
            row["errors"].extend(error.messages)
            row["action"] = ""
            return
        # A property made by an import row that failed went with it: the next rows make it again.
        self.properties.update((property_key(prop.name), prop) for prop in self._pending)

    def _check(self, row: dict, expected: dict | None) -> None:
        cells = row["cells"]
        sync = self._sync(row)
        wanted = self._wanted(cells)
        if sync is not None:
            prop, new_property = sync.property, None
            named = cells.get("property", "")
            if named and property_key(named) != property_key(prop.name):
                raise ValidationError(
                    _("Sync %(id)s is a sync of “%(property)s”: a file cannot move a sync to another property, nor "
                      "rename one. Rename the property on its page, or give its name here as it is.")
                    % {"id": sync.pk, "property": prop.name}
                )
        else:
            name = " ".join(cells.get("property", "").split())
            if not name:
                raise ValidationError(_("Give the property's name: a row without a sync id adds a sync to it."))
            prop = self.properties.get(property_key(name))
            new_property = self._new_property(name, wanted.get("timezone")) if prop is None else None
        zone_change = self._zone_change(row, prop, wanted.get("timezone"))
        needs_form = sync is None or any(field in _FORM_FIELDS for field in self._asked_changes(sync, wanted))
        if new_property is not None:
            prop = self._property_create(new_property, row["line"])
        form = self._form(prop, sync, wanted) if needs_form else None
        changes = [zone_change] if zone_change else []
        if sync is not None:
            changes += self._sync_changes(sync, form, wanted)
        row.update(
            action=ADD if sync is None else CHANGE if changes else SAME, changes=changes, property=prop.name,
            property_new=property_key(prop.name) in self.made_here,
        )
        if expected is not None:
            self._same_as_previewed(row, expected)
        if zone_change:
            self._zone_set(prop, zone_change["new"])
        if sync is None:
            sync = self._connection_create(prop, form, wanted)
        else:
            self._connection_change(sync, form, wanted, changes)
        self._outcome(row, prop, sync, form)

    def _sync(self, row: dict) -> Connection | None:
        cell = row["cells"].get("id", "")
        if not cell:
            return None
        if not (cell.isascii() and cell.isdigit()) or len(cell) > 18:
            raise ValidationError(
                _("“%(value)s” is not a sync id: leave the cell empty to add a new sync.") % {"value": cell[:40]}
            )
        sync = self.syncs.get(int(cell))
        if sync is None:
            # The same words for another account's sync: nothing here says whether it exists.
            raise ValidationError(
                _("Your account has no sync %(id)s: leave the id empty to add a new sync.") % {"id": cell}
            )
        if sync.pk in self.seen:
            raise ValidationError(_("Sync %(id)s is on line %(line)s already.") % {"id": sync.pk, "line": self.seen[sync.pk]})
        self.seen[sync.pk] = row["line"]
        return sync

    def _wanted(self, cells: dict) -> dict:
        """What the row asks for, read from its cells. A cell left empty (or a column the file
        does not have) asks for nothing: the sync keeps what it has, a new sync gets the add form's
        default. The link is the exception: an empty link cell is no link."""
        errors: list[str] = []
        wanted: dict = {}
        if "url" in cells:
            wanted["url"] = cells["url"]
        if cells.get("portal"):
            wanted["portal"] = self.portal_words.get(folded(cells["portal"]))
            if wanted["portal"] is None:
                errors.append(_("“%(portal)s” is not a portal we know. Use one of: %(names)s.") % {
                    "portal": cells["portal"][:60],
                    "names": ", ".join(sorted(portal.display_name for portal in self.portals.values())),
                })
        if cells.get("direction"):
            wanted["direction"] = direction_of(cells["direction"])
            if wanted["direction"] is None:
                errors.append(_("“%(value)s” is not a direction: write %(choices)s.") % {
                    "value": cells["direction"][:60],
                    "choices": ", ".join(str(label) for _value, label in Connection.Direction.choices),
                })
        if cells.get("enabled"):
            wanted["enabled"] = switch_of(cells["enabled"])
            if wanted["enabled"] is None:
                errors.append(
                    _("“%(value)s” does not say whether the sync is switched on: write %(yes)s or %(no)s.")
                    % {"value": cells["enabled"][:60], "yes": YES, "no": NO}
                )
        if cells.get("interval"):
            wanted["interval"] = cells["interval"]
        if cells.get("timezone"):
            wanted["timezone"] = self._zone(cells["timezone"])
            if wanted["timezone"] is None:
                errors.append(
                    _("“%(value)s” is not a time zone name. Choose one from the list, such as Europe/Lisbon.")
                    % {"value": cells["timezone"][:64]}
                )
        if errors:
            raise ValidationError(errors)
        return wanted

    def _zone(self, value: str) -> str | None:
        """The zone a cell names, as the property form reads it (its exact spelling); each
        spelling read once."""
        if value not in self._zones:
            form = PropertyForm({"name": "x", "timezone": value}, user=self.user)
            form.is_valid()
            self._zones[value] = None if form.has_error("timezone") else form.cleaned_data["timezone"]
        return self._zones[value]

    def _new_property(self, name: str, zone: str | None) -> dict:
        if zone is None:
            raise ValidationError(
                _("%(property)s is a new property: give its time zone, such as Europe/Lisbon.") % {"property": name}
            )
        form = PropertyForm({"name": name, "timezone": zone}, user=self.user)
        if not form.is_valid():
            raise ValidationError([error for errors in form.errors.values() for error in errors])
        return form.property_values()

    def _zone_change(self, row: dict, prop: Property | None, zone: str | None) -> dict | None:
        """A new time zone for an existing property, asked by the first row that gives it. The
        property's other rows may give its old zone (which asks nothing) or the same new one; a
        property the file adds has the zone of the row that adds it."""
        if prop is None or zone is None:
            return None
        key = property_key(prop.name)
        start = self.zone_at_start.get(prop.pk)
        asked = self.zone_asked.get(key)
        if asked is not None:
            if zone not in (asked[0], start):
                raise ValidationError(
                    _("Line %(line)s gives %(property)s the time zone %(zone)s: give all its rows the same one.")
                    % {"line": asked[1], "property": prop.name, "zone": asked[0]}
                )
            return None
        if zone == start:
            return None
        self.zone_asked[key] = (zone, row["line"])
        return {"field": "timezone", "old": start, "new": zone}

    def _asked_changes(self, sync: Connection, wanted: dict) -> set[str]:
        """The fields of an existing sync the row's cells differ on, before the form reads them
        (a link spelt differently is the same link once the form has tidied it)."""
        now = self._values_of(sync)
        asked = dict(wanted)
        if "portal" in asked:
            asked["portal"] = asked["portal"].slug
        if "interval" in asked:
            asked["interval"] = _number(asked["interval"])
        return {field for field in FIELDS if field in asked and field in now and asked[field] != now[field]}

    @staticmethod
    def _values_of(sync: Connection) -> dict:
        return {
            "url": sync.import_url, "portal": sync.portal.slug, "direction": sync.direction,
            "enabled": sync.enabled, "interval": sync.sync_interval_minutes,
        }

    def _sync_changes(self, sync: Connection, form: ConnectionForm | None, wanted: dict) -> list[dict]:
        """What the row changes of an existing sync, as the form read it."""
        now = self._values_of(sync)
        after = dict(now)
        if form is not None:
            values = form.connection_values()
            after.update(url=values["import_url"], portal=values["portal"].slug, direction=values["direction"],
                         interval=values["sync_interval_minutes"])
        if wanted.get("enabled") is not None:
            after["enabled"] = wanted["enabled"]
        return [{"field": field, "old": now[field], "new": after[field]} for field in FIELDS
                if field in now and after[field] != now[field]]

    def _same_as_previewed(self, row: dict, expected: dict) -> None:
        shown = (expected.get("action"), expected.get("property_new"), expected.get("changes"))
        if (row["action"], row["property_new"], row["changes"]) != shown:
            raise ValidationError(
                _("Since the file was checked, something changed in your account that this row touches: it would "
                  "no longer do what the check showed. Press “Check again” to see what it would do now.")
            )

    def _form(self, prop: Property, sync: Connection | None, wanted: dict) -> ConnectionForm:
        """The add or edit form, filled as the operator would fill it on the page."""
        url = wanted.get("url", sync.import_url if sync is not None else "")
        portal = wanted.get("portal") or (sync.portal if sync is not None else None)
        # A portal that the link's own address names is left for the form to recognise (no
        # look-up); any other is passed, and the form refuses one the link contradicts.
        named = portal_for_host(urlsplit(tidy_link(url)).hostname) if portal is not None and url else None
        data = {
            "import_url": url,
            "portal": portal.pk if portal is not None and not (named and named.slug == portal.slug) else "",
            "direction": wanted.get("direction") or (sync.direction if sync else Connection.Direction.TWO_WAY),
            "sync_interval_minutes": wanted.get("interval")
            or (sync.sync_interval_minutes if sync else settings.SYNC_DEFAULT_INTERVAL_MINUTES),
            "export_summary": sync.export_summary if sync else DEFAULT_EXPORT_SUMMARY,
        }
        form = ConnectionForm(data, user=self.user, property=prop, instance=sync, portals=self.portals)
        if not form.is_valid():
            raise ValidationError([error for errors in form.errors.values() for error in errors])
        return form

    # ----- writes

    def _property_create(self, values: dict, line: int) -> Property:
        if self.dry_run:
            prop = Property.objects.bulk_create([Property(account=self.account, **values)])[0]
            self._made_properties.append(prop)
            self.properties[property_key(prop.name)] = prop
        else:
            prop = editing.property_create(user=self.user, **values)
            self._pending.append(prop)
        self.zone_asked[property_key(prop.name)] = (prop.timezone, line)
        self.made_here.add(property_key(prop.name))
        return prop

    def _zone_set(self, prop: Property, zone: str) -> None:
        if not self.dry_run:
            # The property edit page's service: every feed of the property is read again.
            editing.property_edit(user=self.user, property=prop, name=prop.name, timezone=zone)

    def _connection_create(self, prop: Property, form: ConnectionForm, wanted: dict) -> Connection | None:
        values = form.connection_values()
        enabled = wanted.get("enabled") is not False
        if self.dry_run:
            self._made_connections.append((property_key(prop.name), {**values, "enabled": enabled}))
            Connection.objects.bulk_create([Connection(property=prop, enabled=enabled, **values)])
            return None
        connection = editing.connection_create(user=self.user, property=prop, **values)
        if not enabled:
            operator_actions.connection_set_enabled(connection=connection, enabled=False, user=self.user)
        return connection

    def _connection_change(self, sync: Connection, form: ConnectionForm | None, wanted: dict, changes: list[dict]) -> None:
        fields = {change["field"] for change in changes}
        if self.dry_run:
            if fields & {"url", "portal"}:
                # What the next rows' checks read: the sync's link and portal.
                values = form.connection_values()
                self._links[sync.pk] = {"import_url": values["import_url"], "portal": values["portal"]}
                Connection.objects.filter(pk=sync.pk).update(**self._links[sync.pk])
            return
        # As on the pages: switched off first (a new link of a sync being switched off is not
        # read), then edited, then switched on (the check of a paused sync reads the new link).
        if "enabled" in fields and not wanted["enabled"]:
            operator_actions.connection_set_enabled(connection=sync, enabled=False, user=self.user)
        if fields & set(_FORM_FIELDS):
            changed = editing.connection_edit(user=self.user, connection=sync, **form.connection_values())
            if ({"import_url", "portal"} & set(changed)) and sync.enabled and sync.paused_at is not None:
                # The edit page's rule (syncs.views.editing.connection_edit_follow_up): a new link
                # on a sync paused by errors is read at once.
                operator_actions.connection_read_new_link(connection=sync, user=self.user)
        if "enabled" in fields and wanted["enabled"]:
            operator_actions.connection_set_enabled(connection=sync, enabled=True, user=self.user)

    def _outcome(self, row: dict, prop: Property, sync: Connection | None, form: ConnectionForm | None) -> None:
        if form is not None:
            values = form.connection_values()
            url, portal, direction = values["import_url"], values["portal"].slug, values["direction"]
        else:
            url, portal, direction = sync.import_url, sync.portal.slug, sync.direction
        zone = self.zone_asked.get(property_key(prop.name), (prop.timezone,))[0]
        row.update(url=url, portal=portal, timezone=zone, sync=sync.pk if sync is not None else None)
        reads_new_link = row["action"] == ADD or any(change["field"] in ("url", "portal") for change in row["changes"])
        if reads_new_link and url and direction != Connection.Direction.EXPORT_ONLY:
            row["live_key"] = live_key(url=url, timezone=zone, portal=portal)


def _number(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else text
