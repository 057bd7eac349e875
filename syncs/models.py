"""The domain: accounts, portals, properties, their iCal connections, blocked nights and runs.

Dates are nights: a block covers ``start_date`` up to, not including, ``end_date``.
Error and pause reasons are stored as codes with parameters, and turned into words (in the
reader's language) only when shown.
"""

from __future__ import annotations

import builtins
import functools
import uuid
import zoneinfo
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.timezone import now
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from syncs.collation import FoldedField, OrderKeyField


@functools.cache
def _timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone_name(value: str) -> None:
    # Looked up among the names the system knows, never opened as a file: ZoneInfo() on a
    # 1,000-character name fails with "file name too long" (OSError), not as an unknown zone.
    if value not in _timezone_names():
        shown = value if len(value) <= 64 else value[:64] + "…"
        raise ValidationError(_("“%(value)s” is not a time zone name such as Europe/Lisbon."), params={"value": shown})


class AccountScopedQuerySet(models.QuerySet):
    """Rows visible to one operator: the only way a page or task reads account data.

    Subclasses name the path from the row to its account in ``account_path``.
    """

    account_path = "account"

    def for_account(self, account: Account | None) -> AccountScopedQuerySet:
        if account is None:
            return self.none()
        return self.filter(**{self.account_path: account})

    def for_user(self, user) -> AccountScopedQuerySet:
        return self.for_account(Account.of_user(user))


# A removed property or sync can be restored for this many days; then ``prune`` deletes it.
RESTORE_DAYS = 30


class LiveManager(models.Manager):
    """The rows in use: a removed (archived) property or sync is not among them.

    The default manager of the models that can be removed, so that every list, count, tile,
    export, email and task, and every relation read from them (``property.connections``), sees
    live rows only, without saying so. ``all_objects`` reads the removed ones too: for their own
    pages (history stays readable), restore, prune. Joins are not managers: a query reaching a
    removable row through a join (an annotation, ``Block.source``) filters on ``archived_at``
    itself. A property is removed together with its syncs (``syncs.removal``), so a live sync
    always belongs to a live property.
    """

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(archived_at__isnull=True)


class Account(models.Model):
    name = models.CharField(_("name"), max_length=200)
    auto_resume = models.BooleanField(
        _("resume paused syncs by themselves"), default=False,
        help_text=_("When the background check finds a paused sync's feed working again, switch it back on."),
    )
    require_two_factor = models.BooleanField(
        _("require two-factor sign-in"), default=False,
        help_text=_("Every member signs in with a code from an authenticator app too; members without one set it up at their next sign-in."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def main_time_zone(self) -> str:
        """The zone most of the account's properties are in (the site's zone when it has none).

        Counting them costs as many rows as the account has properties, and pages read it on
        every request: it is kept in the cache, and dropped (``main_time_zone_changed``) where a
        property is made, removed, restored, deleted or moves to another zone."""
        key = _main_zone_key(self.pk)
        zone = cache.get(key)
        if zone is None:
            zones = (
                self.properties.order_by().values("timezone").annotate(n=models.Count("pk")).order_by("-n", "timezone")
            )
            zone = next((row["timezone"] for row in zones[:1]), settings.TIME_ZONE)
            cache.set(key, zone, MAIN_ZONE_KEPT_SECONDS)
        return zone

    @staticmethod
    def main_time_zone_changed(account_id: int) -> None:
        """One of the account's properties was made, removed, restored, deleted or changed its zone.
        Dropped again at the commit: a page read between the two would have kept the old one."""
        key = _main_zone_key(account_id)
        cache.delete(key)
        transaction.on_commit(lambda: cache.delete(key))

    @staticmethod
    def of_user(user) -> Account | None:
        """The account a signed-in user works in now: their current membership's (None for
        anonymous users and users who belong to no account)."""
        membership = Membership.current_of(user)
        return membership.account if membership else None


# A bound on a kept main zone that a write outside the services missed (the admin's bulk edits).
MAIN_ZONE_KEPT_SECONDS = 600


def _main_zone_key(account_id: int) -> str:
    return f"account-main-zone:{account_id}"


# Cached on the user object for the rest of its life (a request's user lives for one request).
_CURRENT_MEMBERSHIP = "_current_membership"


class EmailAlerts(models.TextChoices):
    ALL = "all", _("About all properties")
    ASSIGNED = "assigned", _("Only about properties assigned to me")
    NONE = "none", _("None")


class Membership(models.Model):
    """A person's place in one account, with their role there. A person may belong to several
    accounts; one of them is their current one (``is_current``), where every page works."""

    class Role(models.TextChoices):
        # Ranked: each role may do everything the ones below it may (syncs.roles).
        OWNER = "owner", _("Owner")
        MANAGER = "manager", _("Manager")
        VIEWER = "viewer", _("Viewer")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("account"))
    # Least privilege by default: a membership made without saying the role can change nothing.
    role = models.CharField(_("role"), max_length=10, choices=Role, default=Role.VIEWER)
    # The account the person works in, whatever the device or session; none set means the oldest.
    is_current = models.BooleanField(_("current account"), default=False)
    # Which pause, reminder and restore emails this person gets (syncs.notifications), and whether
    # as they happen or in one daily digest (syncs.digests).
    email_alerts = models.CharField(
        _("emails about paused syncs"), max_length=10, choices=EmailAlerts, default=EmailAlerts.ALL,
        help_text=_("Emails when a sync pauses, a daily reminder while it stays paused, and one when it works again."),
    )
    email_digest = models.BooleanField(
        _("one daily digest instead"), default=False,
        help_text=_("One email a day with what is paused or failing and what happened, instead of one email per pause."),
    )
    digest_sent_at = models.DateTimeField(_("last digest sent at"), null=True, blank=True)
    # "Only properties assigned to me": the properties this member looks after.
    assigned_properties = models.ManyToManyField(
        "Property", blank=True, related_name="assigned_memberships", verbose_name=_("assigned properties"),
    )
    # Set when the user picks a language in the top bar (syncs.middleware); blank: not chosen.
    language = models.CharField(
        _("language"), max_length=10, blank=True, choices=settings.LANGUAGES,
        help_text=_("Pages and emails in this language. Empty: pages follow the browser, emails the site's language."),
    )
    # The zone in which the user reads times that belong to no one property (the activity log).
    time_zone = models.CharField(
        _("time zone"), max_length=64, blank=True, validators=[validate_timezone_name],
        help_text=_("Times on the activity page are shown in this zone. Empty: the zone most of the account's properties are in."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # While one of the user's live link checks runs (syncs.live_checks): one at a time per user.
    live_check_until = models.DateTimeField(_("link check running until"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="one_membership_per_user_and_account"),
            models.UniqueConstraint(fields=["user"], condition=Q(is_current=True), name="one_current_membership_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.account} ({self.role})"

    @staticmethod
    def current_of(user) -> Membership | None:
        """The membership a signed-in user works in now (replaces the one-account ``user.membership``).

        With its account, and two facts the pages and the sign-in need on every request, read in
        the same query: ``two_factor`` (the person has a confirmed authenticator app) and
        ``accounts_count`` (how many accounts they belong to). Cached on the user object;
        ``forget_current`` drops the cache after a change.
        """
        if user is None or not user.is_authenticated:
            return None
        cached = getattr(user, _CURRENT_MEMBERSHIP, False)
        if cached is not False:
            return cached
        from django_otp.plugins.otp_totp.models import TOTPDevice

        count = (
            Membership.objects.filter(user_id=OuterRef("user_id")).order_by().values("user_id")
            .annotate(n=models.Count("pk")).values("n")[:1]
        )
        membership = (
            Membership.objects.filter(user_id=user.pk)
            .select_related("account")
            .annotate(
                two_factor=Exists(TOTPDevice.objects.filter(user_id=OuterRef("user_id"), confirmed=True)),
                accounts_count=Subquery(count),
            )
            .order_by("-is_current", "created_at", "pk")
            .first()
        )
        setattr(user, _CURRENT_MEMBERSHIP, membership)
        return membership

    @staticmethod
    def forget_current(user) -> None:
        """Drop the cached current membership, so the next ``current_of`` reads it again."""
        if user is not None and hasattr(user, _CURRENT_MEMBERSHIP):
            delattr(user, _CURRENT_MEMBERSHIP)

    @staticmethod
    def work_in(user, membership: Membership) -> None:
        """Make ``membership`` the one ``current_of(user)`` answers for this user object: a
        request made with an API token works in the token's account, whichever account the
        person works in on the pages."""
        setattr(user, _CURRENT_MEMBERSHIP, membership)

    @staticmethod
    def defaults_for(role: str) -> dict:
        """What a new membership of this role starts with: owners and managers are emailed about
        paused syncs, viewers only if they opt in."""
        return {"email_alerts": EmailAlerts.NONE if role == Membership.Role.VIEWER else EmailAlerts.ALL}

    def allows(self, role: str) -> bool:
        """Whether this membership's role may do what ``role`` may."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def can_manage(self) -> bool:
        return self.allows(self.Role.MANAGER)

    @property
    def is_owner(self) -> bool:
        return self.allows(self.Role.OWNER)

    def reading_time_zone(self) -> str:
        """The zone this user reads account-wide times in: their own choice, else the account's main one."""
        return self.time_zone or self.account.main_time_zone()


ROLE_RANK = {Membership.Role.VIEWER: 0, Membership.Role.MANAGER: 1, Membership.Role.OWNER: 2}


class InvitationQuerySet(AccountScopedQuerySet):
    account_path = "account"

    def pending(self) -> InvitationQuerySet:
        """Neither accepted nor revoked (an expired one is still pending: it can be sent again)."""
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True)


class Invitation(models.Model):
    """An owner's invitation of a person, by email, into an account with a role.

    The link in the email carries a random token; only its SHA-256 is stored. It works once,
    until ``expires_at``; sending it again makes a new token (the old link stops working).
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("account"))
    email = models.EmailField(_("email"))
    role = models.CharField(_("role"), max_length=10, choices=Membership.Role, default=Membership.Role.VIEWER)
    language = models.CharField(_("language of the email"), max_length=10, blank=True, choices=settings.LANGUAGES)
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("invited by"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), default=timezone.now)
    expires_at = models.DateTimeField(_("link works until"))
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("accepted by"),
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-sent_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "email"], condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_pending_invitation_per_account_and_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.account} ({self.role})"

    def is_expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())


class BlockKind(models.TextChoices):
    RESERVED = "reserved", _("Reserved")
    BLOCKED = "blocked", _("Blocked")
    TENTATIVE = "tentative", _("Tentative")


# The portal of syncs with no portal of their own (syncs.portals: "Other").
GENERIC_PORTAL_SLUG = "other"


class Portal(models.Model):
    """A booking channel and what we know about its feeds (seeded from syncs.portals)."""

    slug = models.SlugField(_("slug"), unique=True)
    name = models.CharField(_("name"), max_length=100)
    host_patterns = models.JSONField(_("feed host patterns"), default=list, blank=True)
    prodid_markers = models.JSONField(_("PRODID markers"), default=list, blank=True)
    labels = models.JSONField(
        _("labels"), default=dict, blank=True, help_text=_("Summary prefixes meaning reserved, blocked or tentative.")
    )
    pickup_delay_min_minutes = models.PositiveIntegerField(_("typical pick-up delay, from (minutes)"), null=True, blank=True)
    pickup_delay_max_minutes = models.PositiveIntegerField(_("typical pick-up delay, to (minutes)"), null=True, blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("portal")
        verbose_name_plural = _("portals")
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name_in_words(self.name)

    @staticmethod
    def name_in_words(name: str) -> str:
        """A portal's name in the reader's language: proper names stay, "Other" is translated."""
        return gettext(name)

    @property
    def name_in_sentence(self) -> str | None:
        """The name a sentence that tells what the portal did gives it, or None for the portal
        called "Other", which has no name of its own: such sentences then say "the portal"
        ("The portal answered 404", never "Other answered 404")."""
        return None if self.slug == GENERIC_PORTAL_SLUG else self.display_name


class PropertyQuerySet(AccountScopedQuerySet):
    account_path = "account"


class Removable(models.Model):
    """Removed by an operator: archived, restorable for RESTORE_DAYS, then pruned (syncs.removal)."""

    archived_at = models.DateTimeField(_("removed at"), null=True, blank=True, editable=False)
    archived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False,
        verbose_name=_("removed by"),
    )

    class Meta:
        abstract = True

    @property
    def restorable_until(self) -> datetime | None:
        return self.archived_at + timedelta(days=RESTORE_DAYS) if self.archived_at else None


def today_in(zone: str) -> date:
    """Today in a time zone given by its name."""
    return timezone.localdate(timezone=zoneinfo.ZoneInfo(zone))


class Property(Removable):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="properties", verbose_name=_("account"))
    name = models.CharField(_("name"), max_length=200)
    # The name without case or accents (syncs.collation), what searches compare: kept by the ORM.
    name_key = FoldedField(_("name, as searched"), max_length=400, source="name", default="")
    # The name's place in a list, in each language's order (syncs.collation): kept by the ORM.
    name_order = OrderKeyField(_("name, as ordered"), source="name", language="en", default=b"")
    name_order_es = OrderKeyField(_("name, as ordered in Spanish"), source="name", language="es", default=b"")
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone_name],
        help_text=_("The property's IANA time zone; feed times are turned into nights in this zone."),
    )
    # Bumped in the same transaction as any change to the property's blocks: export caches are
    # keyed by it, so the next portal request sees the change at once.
    calendar_version = models.PositiveBigIntegerField(_("calendar version"), default=1)
    calendar_changed_at = models.DateTimeField(_("calendar changed at"), default=now)  # `timezone` is a field here
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = LiveManager.from_queryset(PropertyQuerySet)()
    all_objects = PropertyQuerySet.as_manager()

    class Meta:
        verbose_name = _("property")
        verbose_name_plural = _("properties")
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="property_name_unique_in_account")]

    def __str__(self) -> str:
        return self.name

    def local_today(self) -> date:
        """Today in the property's own time zone: nights are counted in it."""
        return today_in(self.timezone)


class SyncState(models.TextChoices):
    """The state of one sync, decided by ``syncs.sync_state.classify`` and stored on its row."""

    WORKING = "working", _("Working")
    FAILING = "failing", _("Failing, retrying")
    PAUSED = "paused", _("Paused by errors")
    CHECKING = "checking", _("Switched on, checking…")
    HELD = "held", _("Removals held")
    NOT_READING = "not_reading", _("Portal not reading our calendar")
    STALE = "stale", _("Stale")
    WAITING = "waiting", _("Waiting for its first sync")
    SWITCHED_OFF = "switched_off", _("Switched off")


class ConnectionQuerySet(AccountScopedQuerySet):
    account_path = "property__account"

    def due(self, now=None) -> ConnectionQuerySet:
        """Connections the dispatcher should sync now: switched on, not paused, importing, due."""
        now = now or timezone.now()
        return self.runnable().filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))

    def runnable(self) -> ConnectionQuerySet:
        """Connections the dispatcher syncs in their turn: switched on, not paused, importing."""
        return self.filter(enabled=True, paused_at__isnull=True).exclude(direction=Connection.Direction.EXPORT_ONLY)


class Connection(Removable):
    """One iCal sync between a property and a portal, with the operator's on/off switch."""

    class Direction(models.TextChoices):
        TWO_WAY = "two_way", _("Two-way")
        IMPORT_ONLY = "import_only", _("Import only")
        EXPORT_ONLY = "export_only", _("Export only")

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="connections", verbose_name=_("property"))
    portal = models.ForeignKey(Portal, on_delete=models.PROTECT, related_name="connections", verbose_name=_("portal"))
    direction = models.CharField(_("direction"), max_length=20, choices=Direction, default=Direction.TWO_WAY)
    # A capability URL: whoever has it can read the portal's calendar. Never logged in full.
    import_url = models.CharField(_("import URL"), max_length=2000, blank=True)
    enabled = models.BooleanField(_("switched on"), default=True)

    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)
    pause_reason = models.CharField(_("pause reason"), max_length=40, blank=True)
    pause_params = models.JSONField(_("pause details"), default=dict, blank=True)
    # Set when a paused sync is switched back on: its pause episode stays open, and the sync is
    # "switched on, checking" until its next fetch ends the episode or pauses it again.
    checking_since = models.DateTimeField(_("switched back on, checking since"), null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    last_error_code = models.CharField(_("last error"), max_length=40, blank=True)
    last_error_params = models.JSONField(_("last error details"), default=dict, blank=True)

    # Set by "Sync now"; the worker (or, if the broker is down, the next dispatcher pass) clears it.
    sync_requested_at = models.DateTimeField(_("sync requested at"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last successful sync"), null=True, blank=True)
    next_sync_at = models.DateTimeField(_("next sync due"), null=True, blank=True, db_index=True)
    sync_interval_minutes = models.PositiveIntegerField(
        _("sync every (minutes)"), default=30, validators=[MinValueValidator(5)]
    )

    # What our export says for each taken night: no guest data ever leaves.
    export_summary = models.CharField(
        _("exported event title"), max_length=100, default="Not available",
        help_text=_("The title portals see on nights taken elsewhere. Never includes guest details."),
    )

    # HTTP validators kept exactly as the portal sent them, and a fingerprint of the last body,
    # so that an unchanged feed costs no parse and no writes.
    etag = models.CharField(_("ETag"), max_length=500, blank=True)
    last_modified = models.CharField(_("Last-Modified"), max_length=100, blank=True)
    body_fingerprint = models.CharField(_("body fingerprint"), max_length=64, blank=True)

    # Shrink guard: removals held back because the feed suddenly lost many future blocks.
    # They apply when the same answer (held_answer) comes again 30 minutes after held_since,
    # or when the operator accepts that answer (held_accepted_answer).
    held_answer = models.CharField(_("held answer"), max_length=64, blank=True)
    held_since = models.DateTimeField(_("removals held since"), null=True, blank=True)
    held_removals = models.PositiveIntegerField(_("removals held"), default=0)
    held_accepted_answer = models.CharField(_("accepted answer"), max_length=64, blank=True)

    # While paused by errors, a quiet background probe keeps reading the feed (with back-off) and
    # marks when it works again, so the overview can say "ready to resume".
    probe_next_at = models.DateTimeField(_("next background check"), null=True, blank=True)
    probe_failures = models.PositiveIntegerField(_("background checks failed"), default=0)
    ready_to_resume_at = models.DateTimeField(_("feed works again since"), null=True, blank=True)

    # For an http:// import URL that failed: whether the https:// variant answered (None: not tried).
    https_works = models.BooleanField(_("https variant works"), null=True, blank=True)

    # One worker at a time: a worker owns the connection until lease_until.
    lease_holder = models.CharField(_("lease holder"), max_length=100, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    # Moves on with every change to what a sync reads or how it reads it (syncs.sync_settings):
    # a sync records its result only if the version it read is still the row's, so a poll that
    # read the old settings can never write over the change.
    settings_version = models.PositiveBigIntegerField(_("settings version"), default=0, editable=False)

    # The sync's state as ``syncs.sync_state.state_record`` last decided it, on every write to
    # what the rules read, and since when; state_since is null until it was first decided.
    # state_changes_at: the earliest moment at which the state could change by time alone (never
    # later than that moment; null when only a write can change it): the sweep decides again the
    # rows whose moment has come. A new row is due at once, so that one made by a path that did
    # not decide its state is decided by the next sweep.
    state = models.CharField(_("state"), max_length=20, choices=SyncState, default=SyncState.WAITING, editable=False)
    state_since = models.DateTimeField(_("in this state since"), null=True, blank=True, editable=False)
    state_changes_at = models.DateTimeField(
        _("state decided again at"), null=True, blank=True, default=now, db_index=True, editable=False
    )

    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = LiveManager.from_queryset(ConnectionQuerySet)()
    all_objects = ConnectionQuerySet.as_manager()

    class Meta:
        verbose_name = _("connection")
        verbose_name_plural = _("connections")
        ordering = ["property__name", "portal__position", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(direction="export_only") | ~Q(import_url=""), name="connection_import_url_when_importing"
            ),
            models.CheckConstraint(condition=Q(sync_interval_minutes__gte=5), name="connection_interval_at_least_5"),
        ]
        indexes = [
            # An account's live syncs by state (its counts, a filter by state): the account's
            # properties, then each property's syncs in one state, read from the index alone.
            models.Index(
                fields=["property", "state"], condition=Q(archived_at__isnull=True), name="connection_live_property_state"
            ),
            # The live syncs in some states (those that need attention: a few among many working
            # ones), with their property to find the account's among them.
            models.Index(
                fields=["state", "property"], condition=Q(archived_at__isnull=True), name="connection_live_state_property"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.property} · {self.portal}"

    def clean(self) -> None:
        if self.direction != self.Direction.EXPORT_ONLY and not self.import_url.strip():
            raise ValidationError({"import_url": _("Paste the portal's calendar link, or make the sync export-only.")})

    @builtins.property  # the field named `property` hides the builtin here
    def imports(self) -> bool:
        return self.direction != self.Direction.EXPORT_ONLY

    @builtins.property  # the field named `property` hides the builtin here
    def exports(self) -> bool:
        return self.direction != self.Direction.IMPORT_ONLY

    @builtins.property  # the field named `property` hides the builtin here
    def sync_interval(self) -> timedelta:
        return timedelta(minutes=self.sync_interval_minutes)


class BlockQuerySet(AccountScopedQuerySet):
    account_path = "property__account"

    def current(self) -> BlockQuerySet:
        """The nights taken now: blocks not removed, made here or brought by a live sync (a
        removed sync's blocks stay, for its restore, but take no night). Blocks made here on a
        removed property are read only through that property, which no list reaches."""
        return self.filter(Q(source__isnull=True) | Q(source__archived_at__isnull=True), removed_at__isnull=True)


def _new_block_uid() -> str:
    return uuid.uuid4().hex


class Block(models.Model):
    """Nights that are not available: start_date up to, not including, end_date."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="blocks", verbose_name=_("property"))
    # Null for blocks made here (manual blocks and direct bookings).
    source = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="blocks", verbose_name=_("source")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=BlockKind, default=BlockKind.BLOCKED)
    start_date = models.DateField(_("first night"))
    end_date = models.DateField(_("check-out day"))
    uid = models.CharField(_("UID"), max_length=500, default=_new_block_uid)
    recurrence_id = models.CharField(_("occurrence"), max_length=40, blank=True)
    # For the operator's eyes only; never exported.
    summary = models.CharField(_("summary"), max_length=255, blank=True)
    # Names the feed text this imported block was read from (``syncs.engine.parse.event_texts``): when the
    # feed sends that text again, the block's fields are its reading and it is not parsed again.
    # Written with the fields, always: a digest never outlives the reading it names.
    text_digest = models.CharField(_("text digest"), max_length=32, blank=True, editable=False)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)
    removed_at = models.DateTimeField(_("removed at"), null=True, blank=True)
    removed_by_run = models.ForeignKey(
        "SyncRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="removed_blocks",
        verbose_name=_("removed by sync run"),
    )

    objects = BlockQuerySet.as_manager()

    class Meta:
        verbose_name = _("block")
        verbose_name_plural = _("blocks")
        ordering = ["start_date", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(end_date__gt=models.F("start_date")), name="block_ends_after_start"),
            models.UniqueConstraint(
                fields=["source", "uid", "recurrence_id"],
                condition=Q(removed_at__isnull=True, source__isnull=False),
                name="block_uid_unique_per_source",
            ),
        ]
        indexes = [
            models.Index(fields=["property", "start_date"], name="block_property_start"),
            # The double-booking search (syncs.conflicts._clashing_rows) reads the current stays
            # of some properties in the order of their first nights: in this index's order.
            models.Index(
                fields=["property", "start_date", "end_date", "source", "kind"],
                condition=Q(removed_at__isnull=True), name="block_current_span",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.property}: {self.start_date} → {self.end_date} ({self.kind})"

    @builtins.property  # the field named `property` hides the builtin here
    def nights(self) -> int:
        return (self.end_date - self.start_date).days


class BlockChange(models.Model):
    """What one run did to one block: the history behind "updated in place" and undo."""

    class Action(models.TextChoices):
        ADDED = "added", _("Added")
        UPDATED = "updated", _("Changed")
        REMOVED = "removed", _("Removed")

    block = models.ForeignKey(Block, on_delete=models.CASCADE, related_name="changes", verbose_name=_("block"))
    run = models.ForeignKey("SyncRun", on_delete=models.CASCADE, related_name="block_changes", verbose_name=_("sync run"))
    action = models.CharField(_("action"), max_length=10, choices=Action)
    old_start_date = models.DateField(_("previous first night"), null=True, blank=True)
    old_end_date = models.DateField(_("previous check-out day"), null=True, blank=True)
    old_kind = models.CharField(_("previous kind"), max_length=20, blank=True)
    new_start_date = models.DateField(_("first night"), null=True, blank=True)
    new_end_date = models.DateField(_("check-out day"), null=True, blank=True)
    new_kind = models.CharField(_("kind"), max_length=20, blank=True)

    class Meta:
        verbose_name = _("block change")
        verbose_name_plural = _("block changes")
        ordering = ["run", "pk"]

    def __str__(self) -> str:
        return f"{self.action} {self.block_id} in run {self.run_id}"


class PauseEpisodeQuerySet(AccountScopedQuerySet):
    account_path = "connection__property__account"

    def open(self) -> PauseEpisodeQuerySet:
        return self.filter(ended_at__isnull=True)


class PauseEpisode(models.Model):
    """One automatic pause, from the failure that caused it to the sync that worked again.

    The operator is told once per episode, not once per failed fetch.
    """

    connection = models.ForeignKey(
        "Connection", on_delete=models.CASCADE, related_name="pause_episodes", verbose_name=_("connection")
    )
    started_at = models.DateTimeField(_("paused at"), default=timezone.now)
    ended_at = models.DateTimeField(_("resumed at"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=40)
    params = models.JSONField(_("details"), default=dict, blank=True)
    ended_by = models.CharField(_("ended by"), max_length=20, blank=True)
    notified_at = models.DateTimeField(_("operator told at"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("last reminder at"), null=True, blank=True)
    restored_notified_at = models.DateTimeField(_("told of the restore at"), null=True, blank=True)
    # Who switched the paused sync back on ("operator", "probe"); the episode ends only when a
    # fetch after that works. A failed check records when, and the sync is paused again.
    resume_requested_by = models.CharField(_("switched back on by"), max_length=20, blank=True)
    resume_failed_at = models.DateTimeField(_("check after switching on failed at"), null=True, blank=True)

    objects = PauseEpisodeQuerySet.as_manager()

    class Meta:
        verbose_name = _("pause episode")
        verbose_name_plural = _("pause episodes")
        ordering = ["-started_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection"], condition=Q(ended_at__isnull=True), name="one_open_pause_episode_per_connection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.connection} paused {self.started_at:%Y-%m-%d %H:%M} ({self.reason})"


class SyncRunQuerySet(AccountScopedQuerySet):
    account_path = "connection__property__account"


class SyncRun(models.Model):
    """One attempt to import a connection's feed, with its outcome and what it changed."""

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        MANUAL = "manual", _("Sync now")
        WIZARD = "wizard", _("Fix checklist")

    # No index of its own: syncrun_connection_started starts with it and serves every look-up,
    # and each poll inserts a run (one index less to write).
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="runs", verbose_name=_("connection"), db_index=False
    )
    trigger = models.CharField(_("trigger"), max_length=20, choices=Trigger, default=Trigger.SCHEDULED)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=40, blank=True)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    bytes_received = models.PositiveIntegerField(_("bytes received"), default=0)
    events_seen = models.PositiveIntegerField(_("events seen"), default=0)
    events_added = models.PositiveIntegerField(_("added"), default=0)
    events_updated = models.PositiveIntegerField(_("updated"), default=0)
    events_removed = models.PositiveIntegerField(_("removed"), default=0)
    events_invalid = models.PositiveIntegerField(_("invalid"), default=0)
    error_code = models.CharField(_("error"), max_length=40, blank=True)
    error_params = models.JSONField(_("error details"), default=dict, blank=True)
    removals_held = models.BooleanField(_("removals held"), default=False)
    events_held = models.PositiveIntegerField(_("removals held back"), default=0)
    # What the operator should know about a feed read all the same (events sharing a UID, text
    # not in UTF-8...): the parser's ``ParsedFeed.notices`` as [{"code": ..., "params": {...}}].
    # A database default too: workers of the previous version insert runs without it.
    notices = models.JSONField(_("notices"), default=list, db_default=[], blank=True)

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("sync run")
        verbose_name_plural = _("sync runs")
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["connection", "-started_at"], name="syncrun_connection_started")]

    def __str__(self) -> str:
        return f"{self.connection} @ {self.started_at:%Y-%m-%d %H:%M} {self.outcome}"

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None


class ExportTokenQuerySet(AccountScopedQuerySet):
    account_path = "property__account"

    def serving(self, now=None) -> ExportTokenQuerySet:
        """Tokens whose URL still answers: the current ones, and rotated ones within their grace."""
        now = now or timezone.now()
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ExportToken(models.Model):
    """The secret part of an export URL: one current token per exporting connection, and one for
    the property-wide calendar (connection null).

    Only the token's SHA-256 is stored for look-ups; the token itself is derived from ``nonce``
    with the server's EXPORT_TOKEN_KEY, so the operator can copy the URL again while a copy of
    the database alone reveals no URL. Rotating sets ``expires_at`` on the old token (grace).
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="export_tokens", verbose_name=_("property"))
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="export_tokens",
        verbose_name=_("connection"),
    )
    nonce = models.CharField(_("nonce"), max_length=32, unique=True)
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("stops working at"), null=True, blank=True)
    last_read_at = models.DateTimeField(_("last read"), null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(_("last answer"), null=True, blank=True)
    last_user_agent = models.CharField(_("last reader's software"), max_length=300, blank=True)
    last_reader = models.CharField(_("last reader"), max_length=20, blank=True)

    objects = ExportTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("export URL")
        verbose_name_plural = _("export URLs")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["property", "connection"], condition=Q(expires_at__isnull=True, connection__isnull=False),
                name="one_current_export_token_per_connection",
            ),
            models.UniqueConstraint(
                fields=["property"], condition=Q(expires_at__isnull=True, connection__isnull=True),
                name="one_current_property_wide_export_token",
            ),
        ]

    def __str__(self) -> str:
        target = self.connection.portal.display_name if self.connection_id else _("all portals")
        return f"{self.property} → {target}"


class ExportReadDay(models.Model):
    """How often one reader fetched one export URL on one day: bounded, one row per reader a day."""

    token = models.ForeignKey(ExportToken, on_delete=models.CASCADE, related_name="read_days", verbose_name=_("export URL"))
    day = models.DateField(_("day"))
    reader = models.CharField(_("reader"), max_length=20)
    count = models.PositiveIntegerField(_("requests"), default=0)

    class Meta:
        verbose_name = _("export reads per day")
        verbose_name_plural = _("export reads per day")
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["token", "day", "reader"], name="one_read_row_per_token_day_reader")]

    def __str__(self) -> str:
        return f"{self.token_id} {self.day} {self.reader}: {self.count}"


class ActivityQuerySet(AccountScopedQuerySet):
    account_path = "account"


class Activity(models.Model):
    """Who did what to which sync, and when: kept per account, shown on pages and in the admin."""

    class Action(models.TextChoices):
        SWITCHED_ON = "switched_on", _("switched the sync on")
        SWITCHED_OFF = "switched_off", _("switched the sync off")
        SYNC_REQUESTED = "sync_requested", _("pressed Sync now")
        HELD_ACCEPTED = "held_accepted", _("accepted the held removals")
        EXPORT_ROTATED = "export_rotated", _("issued a new export URL")
        CONNECTION_CREATED = "connection_created", _("added the sync")
        CONNECTION_EDITED = "connection_edited", _("edited the sync")
        CONNECTION_REMOVED = "connection_removed", _("removed the sync")
        CONNECTION_RESTORED = "connection_restored", _("restored the sync")
        PROPERTY_CREATED = "property_created", _("added the property")
        PROPERTY_EDITED = "property_edited", _("edited the property")
        PROPERTY_REMOVED = "property_removed", _("removed the property")
        PROPERTY_RESTORED = "property_restored", _("restored the property")
        # By ``prune``, RESTORE_DAYS after the removal: the entry names what went (``params``),
        # since the rows it was about, and their own entries, are gone.
        REMOVED_DELETED = "removed_deleted", _("deleted for good what was removed")
        BLOCK_ADDED = "block_added", _("closed nights")
        BLOCK_REMOVED = "block_removed", _("opened nights")
        TEST_BLOCK_ADDED = "test_block_added", _("added a test block")
        TEST_BLOCK_REMOVED = "test_block_removed", _("removed the test block")
        # Written by the engine and the notifier, with no user: the log says "automatically".
        PAUSED = "paused", _("paused the sync")
        RESUMED = "resumed", _("resumed the sync")
        PAUSE_EMAIL_SENT = "pause_email_sent", _("emailed that the sync is paused")
        REMINDER_SENT = "reminder_sent", _("emailed a reminder that the sync is still paused")
        RESTORED_EMAIL_SENT = "restored_email_sent", _("emailed that the sync works again")

        # Members and sign-in (syncs.members, syncs.views.auth): ``params`` names the member.
        MEMBER_INVITED = "member_invited", _("invited a member")
        INVITATION_RESENT = "invitation_resent", _("sent an invitation again")
        INVITATION_REVOKED = "invitation_revoked", _("revoked an invitation")
        MEMBER_JOINED = "member_joined", _("joined the account")
        ROLE_CHANGED = "role_changed", _("changed a member's role")
        MEMBER_REMOVED = "member_removed", _("removed a member")
        PASSWORD_SET = "password_set", _("set their first password")
        PASSWORD_RESET = "password_reset", _("reset their password by email")
        PASSWORD_CHANGED = "password_changed", _("changed their password")
        TWO_FACTOR_ENABLED = "two_factor_enabled", _("turned on two-factor sign-in")
        TWO_FACTOR_DISABLED = "two_factor_disabled", _("turned off two-factor sign-in")
        RECOVERY_CODES_RENEWED = "recovery_codes_renewed", _("made new recovery codes")
        RECOVERY_CODE_USED = "recovery_code_used", _("signed in with a recovery code")
        TWO_FACTOR_REQUIRED = "two_factor_required", _("required two-factor sign-in for every member")
        TWO_FACTOR_OPTIONAL = "two_factor_optional", _("made two-factor sign-in optional")

        # Operating at scale (syncs.bulk, syncs.conflicts, syncs.webhooks, syncs.onboarding):
        # one entry for many syncs, ``params["count"]`` says how many.
        BULK_SWITCHED_OFF = "bulk_switched_off", _("switched several syncs off at once")
        BULK_SWITCHED_ON = "bulk_switched_on", _("switched several syncs on at once")
        BULK_SYNC_REQUESTED = "bulk_sync_requested", _("pressed Sync now for several syncs at once")
        BULK_HELD_ACCEPTED = "bulk_held_accepted", _("accepted the held removals of several syncs at once")
        BULK_REMOVED = "bulk_removed", _("removed several syncs at once")
        PROPERTIES_ASSIGNED = "properties_assigned", _("assigned properties to a member")
        PROPERTIES_UNASSIGNED = "properties_unassigned", _("took properties away from a member")
        DOUBLE_BOOKING_HANDLED = "double_booking_handled", _("marked a double booking as handled")
        DOUBLE_BOOKING_BACK = "double_booking_back", _("showed a handled double booking again: a stay changed")
        WEBHOOK_ADDED = "webhook_added", _("added a webhook")
        WEBHOOK_REMOVED = "webhook_removed", _("removed a webhook")
        SYNCS_IMPORTED = "syncs_imported", _("saved syncs from a file")
        # Undo (syncs.undo): ``params["count"]`` syncs put back, ``params["left"]`` changed since and left alone.
        SWITCH_OFF_UNDONE = "switch_off_undone", _("undid a switch-off")

    # What the system does by itself: such rows have no user.
    AUTOMATIC = frozenset({
        Action.PAUSED, Action.RESUMED, Action.PAUSE_EMAIL_SENT, Action.REMINDER_SENT, Action.RESTORED_EMAIL_SENT,
        Action.DOUBLE_BOOKING_BACK, Action.REMOVED_DELETED,
    })

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="activity", verbose_name=_("account"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("user")
    )
    property = models.ForeignKey(
        Property, on_delete=models.CASCADE, null=True, blank=True, related_name="activity", verbose_name=_("property")
    )
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="activity",
        verbose_name=_("connection"),
    )
    action = models.CharField(_("action"), max_length=30, choices=Action)
    params = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    objects = ActivityQuerySet.as_manager()

    class Meta:
        verbose_name = _("activity")
        verbose_name_plural = _("activity")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.user} {self.action} {self.created_at:%Y-%m-%d %H:%M}"

    @builtins.property  # the field named `property` hides the builtin here
    def automatic(self) -> bool:
        """Done by the system by itself (the background check switching a sync back on included)."""
        return self.action in self.AUTOMATIC or bool(self.params.get("automatic"))

    @builtins.property  # the field named `property` hides the builtin here
    def member_words(self) -> str:
        """Whom a members or sign-in entry is about, with the role: "ana (Viewer)",
        "ana: Manager → Viewer"; "" for the other entries."""
        member = self.params.get("member", "")
        if not member:
            return ""
        labels = dict(Membership.Role.choices)
        role, old_role = self.params.get("role", ""), self.params.get("old_role", "")
        if role and old_role:
            return f"{member}: {labels.get(old_role, old_role)} → {labels.get(role, role)}"
        return f"{member} ({labels.get(role, role)})" if role else member


class ChecklistStep(models.Model):
    """The latest result of one step of a connection's fix checklist: who checked, when, what."""

    class Status(models.TextChoices):
        PASSED = "passed", _("OK")
        FAILED = "failed", _("Needs fixing")
        NEEDS_YOU = "needs_you", _("Needs you")
        WAITING = "waiting", _("Waiting")
        INFO = "info", _("For your information")

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="checklist_steps", verbose_name=_("connection")
    )
    step = models.CharField(_("step"), max_length=30)
    status = models.CharField(_("result"), max_length=20, choices=Status)
    data = models.JSONField(_("details"), default=dict, blank=True)
    checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, verbose_name=_("checked by")
    )
    checked_at = models.DateTimeField(_("checked at"), default=timezone.now)

    class Meta:
        verbose_name = _("checklist step")
        verbose_name_plural = _("checklist steps")
        constraints = [models.UniqueConstraint(fields=["connection", "step"], name="one_result_per_checklist_step")]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.step}: {self.status}"


# --------------------------------------------------------------------------- operating at scale


class BulkAction(models.Model):
    """One operator action on many syncs at once (syncs.bulk): what, on which syncs, by whom;
    the progress page reads the syncs' states from it while they run."""

    class Kind(models.TextChoices):
        SWITCH_OFF = "switch_off", _("Switch off")
        SWITCH_ON = "switch_on", _("Switch on")
        SYNC_NOW = "sync_now", _("Sync now")
        ACCEPT_HELD = "accept_held", _("Accept held removals")
        REMOVE = "remove", _("Remove")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="bulk_actions", verbose_name=_("account"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("user")
    )
    kind = models.CharField(_("action"), max_length=20, choices=Kind)
    connection_ids = models.JSONField(_("syncs"), default=list)
    # The syncs whose result is awaited (a sync asked for, a check after switching on).
    awaited_ids = models.JSONField(_("syncs awaited"), default=list)
    # Accepting held removals: the answer each sync held when the operator accepted (id -> answer).
    held_answers = models.JSONField(_("held answers accepted"), default=dict)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("bulk action")
        verbose_name_plural = _("bulk actions")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind}: {len(self.connection_ids)}"


class Undo(models.Model):
    """What an operator's action took out of service, kept so that "Undo" can put it back as it
    was, once (syncs.undo). Each sync is kept with the settings version the action left on it:
    a sync whose version moved on since was changed again by someone, and is left as it is."""

    class Kind(models.TextChoices):
        SWITCH_OFF = "switch_off", _("Switch off")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", verbose_name=_("account"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("user")
    )
    kind = models.CharField(_("action"), max_length=20, choices=Kind)
    # {"<connection id>": the settings version the action left on it}
    versions = models.JSONField(_("syncs"), default=dict)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    undone_at = models.DateTimeField(_("undone at"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("undone by"),
    )

    class Meta:
        verbose_name = _("undo")
        verbose_name_plural = _("undos")

    def __str__(self) -> str:
        return f"{self.kind}: {len(self.versions)}"


class Job(models.Model):
    """An operator's action that a worker finishes ("Sync now", the check of a sync switched back
    on, accepting held removals), written in the action's own transaction before its message is
    handed to the broker (syncs.jobs). Handed out again until a worker has run it; run once."""

    task = models.CharField(_("task"), max_length=200)
    args = models.JSONField(_("arguments"), default=list)
    # At most one job waiting to start per key (e.g. "sync:12"): a second press adds nothing.
    key = models.CharField(_("key"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # When the sweeper hands the job out (again) unless it has finished: a while after it was
    # last sent, or when the worker that started it stops holding it.
    resend_at = models.DateTimeField(_("send again at"))
    sends = models.PositiveIntegerField(_("times sent again"), default=0)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    # The message (Celery task id) running it, until lease_until.
    holder = models.CharField(_("held by"), max_length=100, blank=True)
    lease_until = models.DateTimeField(_("held until"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        indexes = [
            models.Index(fields=["resend_at"], condition=Q(finished_at__isnull=True), name="job_unfinished_resend"),
            models.Index(fields=["key"], condition=Q(finished_at__isnull=True), name="job_unfinished_key"),
        ]

    def __str__(self) -> str:
        return f"{self.task}{self.args}"


class DoubleBookingQuerySet(AccountScopedQuerySet):
    account_path = "property__account"


class DoubleBooking(models.Model):
    """A possible double booking as last seen (syncs.conflicts): which stays clash, whether an
    operator marked it handled, and whether the webhooks were told.

    ``key`` names the clashing stays (their block ids), ``fingerprint`` also what they say (dates,
    kinds, sources). A mark holds only while the fingerprint it was made on is the current one:
    when either stay changes, the mark is dropped and the double booking needs attention again.
    """

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="double_bookings", verbose_name=_("property"))
    key = models.CharField(_("stays"), max_length=64)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    # The nights that clash (syncs.conflicts.clash_of), not the stays' own dates.
    start_date = models.DateField(_("first night that clashes"))
    end_date = models.DateField(_("last night that clashes"))
    sources = models.JSONField(_("sources"), default=list)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    handled_fingerprint = models.CharField(_("handled as"), max_length=64, blank=True)
    handled_at = models.DateTimeField(_("marked handled at"), null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("marked handled by"),
    )
    note = models.TextField(_("note"), blank=True, max_length=2000)
    alerted_fingerprint = models.CharField(_("webhooks told about"), max_length=64, blank=True)
    # Whether these stays clash now, as syncs.conflicts last found them: set in the transaction
    # that changed the property's blocks (syncs.blocks.property_calendar_changed), and by the
    # worker's scan every minute (days passing). Pages read the current rows, not the blocks.
    current = models.BooleanField(_("current"), default=True, db_default=True)

    objects = DoubleBookingQuerySet.as_manager()

    class Meta:
        verbose_name = _("double booking")
        verbose_name_plural = _("double bookings")
        constraints = [models.UniqueConstraint(fields=["property", "key"], name="one_double_booking_per_stays")]
        indexes = [models.Index(fields=["property"], condition=models.Q(current=True), name="current_double_bookings")]

    def __str__(self) -> str:
        return f"{self.property}: {self.start_date} → {self.end_date}"


class WebhookQuerySet(AccountScopedQuerySet):
    account_path = "account"


class Webhook(models.Model):
    """An account's webhook: a URL told about pauses, restores, reminders, double bookings and
    portals that stopped reading our calendar, signed with a secret (syncs.webhooks).

    The secret is derived from ``secret_nonce`` with the server's key, as export tokens are: it is
    shown once, when made, and a copy of the database alone does not reveal it.
    """

    class Event(models.TextChoices):
        PAUSED = "paused", _("A sync paused")
        REMINDER = "reminder", _("A sync is still paused (daily)")
        RESTORED = "restored", _("A sync works again")
        DOUBLE_BOOKING = "double_booking", _("A possible double booking")
        NOT_READING = "not_reading", _("A portal stopped reading our calendar")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="webhooks", verbose_name=_("account"))
    url = models.CharField(_("URL"), max_length=2000)
    events = models.JSONField(_("events"), default=list)
    slack_text = models.BooleanField(
        _("add a text field (Slack, Mattermost, Teams)"), default=False,
        help_text=_("Chat tools that accept incoming webhooks show the field “text” as the message."),
    )
    secret_nonce = models.CharField(_("secret nonce"), max_length=32)
    enabled = models.BooleanField(_("on"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("created by")
    )

    objects = WebhookQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.account}: webhook {self.pk}"


class WebhookDeliveryQuerySet(AccountScopedQuerySet):
    account_path = "webhook__account"


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one webhook, with every attempt's answer: the log the
    operator reads on the alerts page."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Sending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        DROPPED = "dropped", _("Not sent: no longer true")

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("webhook"))
    event = models.CharField(_("event"), max_length=20)
    test = models.BooleanField(_("test"), default=False)
    # The sync the event is about: checked again before each attempt (an event no longer true is dropped).
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("connection")
    )
    payload = models.JSONField(_("payload"), default=dict)
    status = models.CharField(_("status"), max_length=10, choices=Status, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    # The attempts' claims (syncs.webhooks): when the last one began, which decides whose turn it
    # is among accounts, and, while one is in flight, when its claim lapses (a worker lost in
    # the middle of one gives its slot back then).
    claimed_at = models.DateTimeField(_("last attempt began"), null=True, blank=True)
    sending_until = models.DateTimeField(_("being sent until"), null=True, blank=True)
    # Each attempt: {"at": ISO time, "status": HTTP status or null, "error": code}.
    log = models.JSONField(_("attempts log"), default=list)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due"),
            models.Index(fields=["claimed_at"], name="webhookdelivery_claimed"),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} {self.event} {self.status}"


class StateChange(models.Model):
    """One change of a sync's state, recorded once, by ``syncs.sync_state.state_record`` as it
    writes the new state: what the webhooks, the metrics and the digests read transitions from."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="state_changes", verbose_name=_("connection")
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", verbose_name=_("account"))
    from_state = models.CharField(_("previous state"), max_length=20, choices=SyncState)
    to_state = models.CharField(_("new state"), max_length=20, choices=SyncState)
    at = models.DateTimeField(_("when"), default=timezone.now)
    # The "portal not reading" webhook's claim: each change into not_reading is told once.
    webhooks_told_at = models.DateTimeField(_("webhooks told at"), null=True, blank=True)

    class Meta:
        verbose_name = _("change of state")
        verbose_name_plural = _("changes of state")
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["account", "at"], name="statechange_account_at"),
            models.Index(fields=["connection", "at"], name="statechange_connection_at"),
            models.Index(fields=["at"], name="statechange_at"),
            models.Index(
                fields=["account"], condition=Q(to_state="not_reading", webhooks_told_at__isnull=True),
                name="statechange_not_reading_untold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.from_state} → {self.to_state} @ {self.at}"


class OnboardingUpload(models.Model):
    """A CSV of syncs to add or change (syncs.onboarding): its rows as read and as checked, kept
    between the preview and the import; and the job (check or import) a worker may be running on
    it, so that the page that polls always learns how it ended."""

    class Stage(models.TextChoices):
        CHECKING = "checking", _("being checked")
        CHECKED = "checked", _("checked")
        IMPORTING = "importing", _("being saved")
        IMPORTED = "imported", _("saved")

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="onboarding_uploads", verbose_name=_("account"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("user")
    )
    filename = models.CharField(_("file name"), max_length=200, blank=True)
    # The uploader's language: a worker words the rows' errors in it.
    language = models.CharField(_("language"), max_length=10, blank=True)
    # [{"line", "cells": {column: text}, "errors": [words], "action", "changes", ...}] (syncs.onboarding.checking)
    rows = models.JSONField(_("rows"), default=list)
    # What the file as a whole said (columns ignored...), in the uploader's language.
    notices = models.JSONField(_("notices"), default=list, blank=True)
    stage = models.CharField(_("stage"), max_length=10, choices=Stage, default=Stage.CHECKED)
    # A job handed to the worker: each new one has the next attempt number, and a task of an
    # older attempt does nothing (syncs.onboarding.jobs).
    job_attempt = models.PositiveIntegerField(_("attempt"), default=0)
    job_queued_at = models.DateTimeField(_("job asked at"), null=True, blank=True)
    job_started_at = models.DateTimeField(_("job started at"), null=True, blank=True)
    job_beat_at = models.DateTimeField(_("job last progress"), null=True, blank=True)
    rows_checked = models.PositiveIntegerField(_("rows checked"), default=0)
    # The account's syncs that are not in the file (nothing changes for them).
    untouched = models.PositiveIntegerField(_("syncs not in the file"), default=0)
    # How the last job ended: {"added": n, "changed": n} after an import, {"failed": "check"}...
    outcome = models.JSONField(_("outcome"), default=dict, blank=True)
    live_requested_at = models.DateTimeField(_("live check asked at"), null=True, blank=True)
    imported_at = models.DateTimeField(_("imported at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("sync file")
        verbose_name_plural = _("sync files")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.account}: {self.filename}"


class LinkCheck(models.Model):
    """What one live read of a portal link found (syncs.onboarding.live), reused for a while so
    that pressing "check the links" again does not fetch every link again. ``key`` names the link
    (as ``fetch.link_identity`` reads it), the zone and the portal, hashed: no link is stored here."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", verbose_name=_("account"))
    key = models.CharField(_("link"), max_length=64)
    ok = models.BooleanField(_("works"), default=False)
    events = models.PositiveIntegerField(_("events"), default=0)
    code = models.CharField(_("error"), max_length=40, blank=True)
    params = models.JSONField(_("error details"), default=dict, blank=True)
    https_works = models.BooleanField(_("https variant works"), null=True, blank=True)
    checked_at = models.DateTimeField(_("checked at"), default=timezone.now)

    class Meta:
        verbose_name = _("link check")
        verbose_name_plural = _("link checks")
        indexes = [models.Index(fields=["account", "key", "checked_at"], name="linkcheck_account_key")]

    def __str__(self) -> str:
        return f"{self.key[:8]} {'ok' if self.ok else self.code}"


class ApiTokenQuerySet(AccountScopedQuerySet):
    account_path = "account"

    def live(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A personal API token (syncs.api.tokens): acts as its user, in its account, with the role the
    user has there at the moment of each request. Only the SHA-256 of the secret is stored; the
    secret is shown once, when the token is made."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("account"))
    name = models.CharField(_("name"), max_length=100)
    # The first characters of the secret ("cm_AbCd"), enough to tell tokens apart in a list.
    prefix = models.CharField(_("begins with"), max_length=16, editable=False)
    secret_hash = models.CharField(_("secret hash"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(_("last used from"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
