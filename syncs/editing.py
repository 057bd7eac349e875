"""Write services behind the add/edit forms: properties and their calendar syncs.

Each service writes in one transaction (all or nothing) and records the operator's action in
the activity log. Existing rows are changed with ``filter(pk=...).update(...)`` on the fields the
forms own, never with ``save()``: the sync worker writes other fields of the same rows
(``calendar_version``, validators, lease, pause state) at any moment, and a full save would put
stale copies of them back.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.html import conditional_escape, format_html
from django.utils.timezone import now
from django.utils.translation import gettext as _

from syncs.activity import activity_record
from syncs.conflicts import double_bookings_record
from syncs.engine.fetch import FetchError, fetch_feed, https_variant_works, link_identity
from syncs.engine.parse.ical import INVALID_REASONS, FeedParseError, parse_feed
from syncs.explain import day_of
from syncs.export_tokens import export_token_ensure
from syncs.models import Account, Activity, Connection, Portal, Property
from syncs.sync_settings import connection_settings_update, property_settings_update

CONNECTION_FIELDS = ("portal", "direction", "import_url", "sync_interval_minutes", "export_summary")
# A live check of a link (the form's, the checklist's) in all, the https:// variant of an
# http:// link included: the operator waits for it (syncs.live_checks).
HTTPS_PROBE_SECONDS = 10.0


# --------------------------------------------------------------------------- properties


def property_name_taken_error(name: str) -> ValidationError:
    return ValidationError(
        _("You already have a property called “%(name)s”. Choose another name."),
        code="duplicate", params={"name": name},
    )


def property_create(*, user, name: str, timezone: str) -> Property:
    """A new property of the user's account; its export URL comes with it (syncs.signals)."""
    account = Account.of_user(user)
    if account is None:
        raise PermissionDenied  # a user of no account has nowhere to add a property to
    try:
        with transaction.atomic():
            prop = Property.objects.create(account=account, name=name, timezone=timezone)
            activity_record(user=user, action=Activity.Action.PROPERTY_CREATED, property=prop)
    except IntegrityError:  # the same name saved a moment ago by another request
        raise ValidationError({"name": property_name_taken_error(name)}) from None
    return prop


def property_edit(*, user, property: Property, name: str, timezone: str) -> list[str]:
    """Rename or move a property to another time zone; returns the names of the changed fields."""
    values = {"name": name, "timezone": timezone}
    changed = [field for field, value in values.items() if getattr(property, field) != value]
    if not changed:
        return []
    moment = now()
    try:
        with transaction.atomic():
            # A new zone makes every feed of the property read again from scratch, at once, and
            # voids the polls made in the old one (syncs.sync_settings).
            property_settings_update(
                property_id=property.pk, values={**{field: values[field] for field in changed}, "updated_at": moment},
                now=moment,
            )
            activity_record(
                user=user, action=Activity.Action.PROPERTY_EDITED, property=property,
                params={"fields": changed},
            )
    except IntegrityError:
        raise ValidationError({"name": property_name_taken_error(name)}) from None
    for field in changed:
        setattr(property, field, values[field])
    return changed


# --------------------------------------------------------------------------- connections


@dataclass(frozen=True)
class LinkUse:
    """Which other syncs import a link, however it is spelt (``fetch.link_identity``: http and
    https as one, the host's case, a trailing dot, the default port, a #fragment).

    A portal's link belongs to one sync of an account: ``holder`` takes it. A removed sync does
    not hold its link (it is free to use again), but its restore is then refused: ``removed``
    names it. Two accounts may hold the same link (a hand-over between managers): that is only
    worth a warning, and the other account is never named."""

    holder: Connection | None = None  # the account's live sync that imports it
    removed: Connection | None = None  # else, the account's latest removed sync that imported it
    other_accounts: bool = False  # a live sync of another account imports it


def link_use(*, account_id: int, import_url: str, exclude: Connection | None = None) -> LinkUse:
    """Who else imports ``import_url``: one query for the three answers, whatever the number of
    syncs (the database finds the candidates by a part every spelling contains, link_identity
    decides), then the holder and the removed sync loaded with their property and portal."""
    if not import_url:
        return LinkUse()
    identity = link_identity(import_url)
    candidates = Connection.all_objects.exclude(import_url="").filter(import_url__icontains=_link_part(import_url))
    if exclude is not None and exclude.pk:
        candidates = candidates.exclude(pk=exclude.pk)
    rows = candidates.order_by("pk").values_list("pk", "import_url", "property__account_id", "archived_at")
    same = [(pk, account, archived) for pk, link, account, archived in rows if link_identity(link) == identity]
    holder = next((pk for pk, account, archived in same if account == account_id and archived is None), None)
    removed = max(
        ((archived, pk) for pk, account, archived in same if account == account_id and archived is not None),
        default=(None, None),
    )[1]
    loaded = Connection.all_objects.select_related("property", "portal").in_bulk([pk for pk in (holder, removed) if pk])
    return LinkUse(
        holder=loaded.get(holder), removed=loaded.get(removed) if holder is None else None,
        other_accounts=any(account != account_id and archived is None for _pk, account, archived in same),
    )


def _link_part(url: str) -> str:
    """A part of the link that every spelling of it contains, in some case: the path after its
    first slash, with the query (link_identity keeps both, but for the hex case of %-escapes);
    the host when there is neither. Unreadable, the whole link."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.hostname:
        return text
    part = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    return part or parts.hostname.rstrip(".")


class WordsWithLinks(str):
    """A sentence that is plain text where text is stored or sent (a CSV preview's row, a log,
    JSON), and links the names it gives in a page: templates render ``__html__``."""

    def __new__(cls, text: str, html: str) -> WordsWithLinks:
        words = super().__new__(cls, text)
        words._html = html
        return words

    def __str__(self) -> str:
        # str() of a form error must keep the links for the page (ValidationError yields str(message)).
        return self

    def __html__(self) -> str:
        return self._html


def words_with_links(sentence: str, **parts: tuple[str, str] | str) -> WordsWithLinks:
    """``sentence`` (translated, with %(name)s placeholders) filled with ``parts``: a (text, URL)
    pair is a link in pages; other words are put in as they are (links of their own included).
    The sentence and every text are escaped, so a name such as ``<b>Villa</b>`` shows as written."""
    text = sentence % {key: part[0] if isinstance(part, tuple) else str(part) for key, part in parts.items()}
    html = {
        key: format_html('<a href="{}">{}</a>', part[1], part[0]) if isinstance(part, tuple) else conditional_escape(part)
        for key, part in parts.items()
    }
    return WordsWithLinks(text, str(conditional_escape(sentence) % html))


def link_taken_error(holder: Connection, *, property: Property) -> ValidationError:
    """The refusal of a link ``holder`` imports already: on ``property`` itself, or on another
    of the account's properties, named with a link to it."""
    portal = holder.portal.display_name
    if holder.property_id == property.pk:
        return ValidationError(
            _("This property already imports this link, in its %(portal)s sync. Edit that sync instead.")
            % {"portal": portal},
            code="duplicate",
        )
    words = words_with_links(
        _("%(property)s already imports this link, in its %(portal)s sync. A portal's calendar link belongs to "
          "one sync: paste the link of this property's own listing, or remove that sync first."),
        property=(holder.property.name, reverse("property-detail", args=[holder.property_id])),
        portal=(portal, reverse("connection-detail", args=[holder.pk])),
    )
    return ValidationError(words, code="link_taken")


def link_warnings(use: LinkUse) -> list[str]:
    """What to tell about a link that may be saved: another account imports it too, or a
    removed sync of this account did (which could then not be restored)."""
    warnings = []
    if use.other_accounts:
        warnings.append(_(
            "Another account of this service imports this link too, maybe the manager you take this "
            "property over from. Both block the same nights: once the hand-over is done, that account "
            "should remove its sync."
        ))
    if use.removed is not None:
        removed = use.removed
        warnings.append(_(
            "The %(portal)s sync of %(property)s, removed on %(day)s, imported this link: with this one "
            "saved, it can no longer be restored."
        ) % {
            "portal": removed.portal.display_name, "property": removed.property.name,
            "day": day_of(removed.archived_at, removed.property.timezone),
        })
    return warnings


def connection_create(
    *,
    user,
    property: Property,
    portal: Portal,
    direction: str,
    import_url: str,
    sync_interval_minutes: int,
    export_summary: str,
) -> Connection:
    """A new calendar sync; its export URL comes with it (syncs.signals). Due to sync at once."""
    connection = Connection(
        property=property, portal=portal, direction=direction, import_url=import_url,
        sync_interval_minutes=sync_interval_minutes, export_summary=export_summary, next_sync_at=now(),
    )
    connection.full_clean()
    with transaction.atomic():
        _lock(property)
        _refuse_taken_link(connection)
        connection.save()
        activity_record(user=user, action=Activity.Action.CONNECTION_CREATED, connection=connection)
    return connection


def connection_edit(
    *,
    user,
    connection: Connection,
    portal: Portal,
    direction: str,
    import_url: str,
    sync_interval_minutes: int,
    export_summary: str,
) -> list[str]:
    """Change a sync's settings; returns the names of the changed fields.

    A new link or portal makes the next sync read the feed from scratch, at once.
    """
    values = {
        "portal": portal, "direction": direction, "import_url": import_url,
        "sync_interval_minutes": sync_interval_minutes, "export_summary": export_summary,
    }
    changed = [field for field in CONNECTION_FIELDS if getattr(connection, field) != values[field]]
    if not changed:
        return []
    candidate = copy.copy(connection)
    for field in changed:
        setattr(candidate, field, values[field])
    candidate.full_clean()
    with transaction.atomic():
        _lock(connection.property)
        _refuse_taken_link(candidate)
        if not Connection.objects.select_for_update().filter(pk=connection.pk).exists():  # one edit at a time
            raise ValidationError(_("This sync was removed a moment ago: restore it from its page to change it."))
        # Through the one settings service: a sync claimed or under way with the old settings is
        # dropped, and a new link or portal is read from scratch, at once.
        connection_settings_update(
            connection_id=connection.pk, values={**{field: values[field] for field in changed}, "updated_at": now()}
        )
        if candidate.exports:
            # update() sends no post_save: a sync that starts exporting needs its URL here.
            export_token_ensure(property=connection.property, connection=connection)
        if "portal" in changed:
            # Which of its stays may be a guest's depends on the portal (syncs.conflicts.may_be_a_stay).
            double_bookings_record(property_ids=[connection.property_id])
        activity_record(
            user=user, action=Activity.Action.CONNECTION_EDITED, connection=connection,
            params={"fields": changed},
        )
    connection.refresh_from_db()
    return changed


def _lock(property: Property) -> None:
    account_links_lock(account_id=property.account_id)


def account_links_lock(*, account_id: int) -> None:
    """Serialise what gives the account's syncs their links (adding, editing, restoring a sync):
    "a link belongs to one sync of the account" is checked under this lock, not by a database
    constraint. Call inside the transaction that writes."""
    Account.objects.select_for_update().filter(pk=account_id).exists()


def _refuse_taken_link(connection: Connection) -> None:
    holder = link_use(
        account_id=connection.property.account_id, import_url=connection.import_url,
        exclude=connection if connection.pk else None,
    ).holder
    if holder is not None:
        raise ValidationError({"import_url": link_taken_error(holder, property=connection.property)})


# --------------------------------------------------------------------------- checking a link now


@dataclass(frozen=True)
class FeedCheck:
    """What a live read of a feed found; nothing of it is stored."""

    events: int
    first_night: date | None
    last_checkout: date | None
    portal_slug: str | None  # recognised from the feed's PRODID
    skipped: int  # events that could not be read (broken ones, not those outside our dates)
    https_works: bool | None  # for an http:// link: whether its https:// variant answers too


class LinkCheckFailed(Exception):
    """The link did not give a readable calendar: ``error`` (a FetchError or a FeedParseError,
    whose codes ``syncs.explain.describe`` words) and, for an http:// link, whether its https://
    variant works (None: not known)."""

    def __init__(self, error: FetchError | FeedParseError, *, https_works: bool | None):
        super().__init__(error.code)
        self.error = error
        self.https_works = https_works


def feed_check(*, url: str, timezone: str, portal: Portal | None, seconds: float = HTTPS_PROBE_SECONDS) -> FeedCheck:
    """Fetch and read a feed as the next sync would, writing nothing, within ``seconds`` in all
    (the https:// probe of an http:// link included). Raises LinkCheckFailed.

    Touches neither the database nor translations: it runs in a live check's own thread
    (``syncs.live_checks``)."""
    expires = time.monotonic() + seconds
    try:
        fetched = fetch_feed(
            url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT, deadline=seconds
        )
    except FetchError as error:
        raise LinkCheckFailed(error, https_works=_https_works_within(url, expires)) from None
    try:
        feed = parse_feed(
            fetched.body,
            timezone=timezone,
            labels=(portal.labels if portal else None) or None,
            horizon_back_days=settings.SYNC_HORIZON_BACK_DAYS,
            horizon_ahead_days=settings.SYNC_HORIZON_AHEAD_DAYS,
            own_uid_domain=settings.EXPORT_UID_DOMAIN,
            deadline=max(expires - time.monotonic(), 0.1),
        )
    except FeedParseError as error:
        raise LinkCheckFailed(error, https_works=None) from None
    return FeedCheck(
        events=len(feed.events),
        first_night=min((event.start for event in feed.events), default=None),
        last_checkout=max((event.end for event in feed.events), default=None),
        portal_slug=feed.portal,
        skipped=sum(1 for skipped in feed.skipped if skipped.reason in INVALID_REASONS),
        https_works=_https_works_within(url, expires),
    )


def _https_works_within(url: str, expires: float) -> bool | None:
    """For an http:// link, whether its https:// variant answers a calendar, if there is time left
    to ask (None: not an http:// link, or not known)."""
    left = min(expires - time.monotonic(), HTTPS_PROBE_SECONDS)
    if not url.startswith("http://") or left < 1:
        return None
    return https_variant_works(
        url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT, deadline=left
    )
