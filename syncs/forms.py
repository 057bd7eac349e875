"""The add/edit forms: a property, and a calendar sync made from a link pasted from a portal.

Forms clean and check; the writes are in ``syncs.editing``. Every query goes through
``for_user`` or through a property that did, so a form never sees another account's rows; the
one exception, ``editing.link_use``, learns only whether another account imports a link.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import F
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from syncs.editing import (
    FeedCheck,
    LinkCheckFailed,
    feed_check,
    link_taken_error,
    link_use,
    link_warnings,
    property_name_taken_error,
    words_with_links,
)
from syncs.engine.fetch import FetchError, validate_url
from syncs.explain import day_of, describe
from syncs.export_tokens import is_our_export
from syncs.live_checks import CheckBusy, live_check_run
from syncs.models import Connection, Portal, Property
from syncs.portals import portal_for_host

DEFAULT_TIMEZONE = "Europe/Lisbon"
DEFAULT_EXPORT_SUMMARY = "Not available"
MAX_URL_LENGTH = Connection._meta.get_field("import_url").max_length
# Our export URLs end in /ical/<token>.ics (syncs.urls, "export-feed").
# Characters that copy-paste brings along and nobody sees: zero-width spaces, joiners, BOM, soft hyphen.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_HAS_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class ServiceErrorsMixin:
    """Show a service's ValidationError next to the field it names (the rest at the top)."""

    def add_service_errors(self, error: ValidationError) -> None:
        errors = error.error_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.error_list}
        for field, messages in errors.items():
            self.add_error(field if field in self.fields else None, messages)


# --------------------------------------------------------------------------- properties


@functools.cache
def timezone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.cache
def _timezones_by_folded_name() -> dict[str, str]:
    return {_fold_zone(name): name for name in timezone_names()}


def _fold_zone(name: str) -> str:
    return "_".join(name.split()).casefold()


def default_timezone(*, user) -> str:
    """The zone of the account's latest property: an operator's flats are usually in one place."""
    latest = Property.objects.for_user(user).order_by("-created_at", "-pk").values_list("timezone", flat=True)
    return latest.first() or DEFAULT_TIMEZONE


class PropertyForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"), max_length=200,
        help_text=gettext_lazy("What you call this flat or house. Each name is used once in your account."),
    )
    timezone = forms.CharField(
        label=gettext_lazy("Time zone"), max_length=64,
        help_text=gettext_lazy(
            "Where the property is, e.g. Europe/Lisbon. Portal times are turned into nights in this zone."
        ),
        widget=forms.TextInput(attrs={"list": "timezone-names", "autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, user, instance: Property | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.instance = instance
        if instance is not None:
            self.initial.update(name=instance.name, timezone=instance.timezone)
        elif not self.is_bound and "timezone" not in self.initial:
            # Shown in the empty form only: a submitted one has its own zone (one query less).
            self.initial["timezone"] = default_timezone(user=user)

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        # Case-insensitive: "casa azul" next to "Casa Azul" is a typo, not a second flat. A
        # removed property keeps its name until it is deleted for good: it may come back.
        same = Property.all_objects.for_user(self.user).filter(name__iexact=name)
        if self.instance is not None:
            same = same.exclude(pk=self.instance.pk)
        taken = same.order_by(F("archived_at").asc(nulls_first=True)).first()  # a live one first
        if taken is not None and taken.archived_at is not None:
            raise ValidationError(words_with_links(
                _("%(name)s is the name of a property removed on %(day)s. Restore it from %(page)s, or choose "
                  "another name."),
                name=taken.name, day=day_of(taken.archived_at, taken.timezone),
                page=(_("its page"), reverse("property-detail", args=[taken.pk])),
            ), code="duplicate")
        if taken is not None:
            raise property_name_taken_error(name)
        return name

    def clean_timezone(self) -> str:
        value = self.cleaned_data["timezone"]
        # "europe/lisbon" or "America/New York" mean a zone we know: store its exact spelling.
        name = _timezones_by_folded_name().get(_fold_zone(value))
        if name is None:
            raise ValidationError(
                _("“%(value)s” is not a time zone name. Choose one from the list, such as Europe/Lisbon."),
                code="invalid", params={"value": value},
            )
        return name

    def property_values(self) -> dict:
        return {"name": self.cleaned_data["name"], "timezone": self.cleaned_data["timezone"]}


# --------------------------------------------------------------------------- calendar links


def tidy_link(value: str) -> str:
    """The link as the operator meant it: without the spaces, line breaks and invisible characters
    that copy-paste adds, without the <...> or quotes of an e-mail, and with https:// when the
    scheme was left out."""
    text = "".join(value.translate(_INVISIBLE).split()).strip("<>\"'")
    if text and "://" not in text and not _HAS_SCHEME.match(text):
        text = "https://" + text
    return text


def link_error(error: FetchError, *, portal: str | None = None) -> ValidationError:
    """describe()'s sentence for a refused or failed link, with what exactly to fix when we know."""
    sentence = describe(error.code, error.params, portal=portal)
    if error.code == "invalid_url":
        hint = _invalid_link_hint(error.params)
        if hint:
            sentence = f"{sentence} {hint}"
    return ValidationError(sentence, code=error.code)


def _invalid_link_hint(params: dict) -> str:
    reason = params.get("reason")
    hints = {
        "credentials": lambda: _("It contains a user name or password: portal calendar links never need one."),
        "scheme": lambda: _("It starts with “%(scheme)s:”; calendar links start with https://, http:// or webcal://.")
        % {"scheme": params.get("scheme", "")},
        "port": lambda: _("It names port %(port)s; portals publish calendars on the usual web ports.")
        % {"port": params.get("port", "")},
        "single_label_host": lambda: _("“%(host)s” is not a full internet address.") % {"host": params.get("host", "")},
        "characters": lambda: _("It contains characters a link cannot have. Copy it again from the portal."),
        "host": lambda: _("It has no server name. Copy it again from the portal."),
        "syntax": lambda: _("Copy it again from the portal."),
    }
    hint = hints.get(reason)
    return hint() if hint else ""


def recognised_portal(url: str, portals: Mapping[str, Portal] | None = None) -> Portal | None:
    """The portal whose feeds live on the link's host (portals.py), if we know it; looked up in
    ``portals`` (by slug) when the caller has read them already."""
    info = portal_for_host(urlsplit(url).hostname)
    if info is None:
        return None
    if portals is not None:
        return portals.get(info.slug)
    return Portal.objects.filter(slug=info.slug).first()


class PortalChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Portal) -> str:
        return obj.display_name


class ConnectionForm(ServiceErrorsMixin, forms.Form):
    import_url = forms.CharField(
        label=gettext_lazy("The portal's calendar link"), required=False, strip=True,
        help_text=gettext_lazy(
            "Paste the portal's calendar link (iCal); it usually ends in .ics. "
            "Leave it empty only for an export-only sync."
        ),
        widget=forms.TextInput(
            attrs={"inputmode": "url", "autocomplete": "off", "spellcheck": "false",
                   "placeholder": "https://…/calendar.ics"}
        ),
    )
    portal = PortalChoiceField(
        label=gettext_lazy("Portal"), queryset=Portal.objects.all(), required=False,
        empty_label=gettext_lazy("Recognise it from the link"),
        help_text=gettext_lazy("We recognise Airbnb, Booking.com, Vrbo and other portals from the link."),
    )
    direction = forms.ChoiceField(
        label=gettext_lazy("Direction"), choices=Connection.Direction.choices,
        initial=Connection.Direction.TWO_WAY, widget=forms.RadioSelect,
        help_text=gettext_lazy(
            "Two-way: we read the portal's calendar and the portal reads ours. Import only: we only "
            "read theirs. Export only: the portal only reads ours, and no link is needed here."
        ),
    )
    sync_interval_minutes = forms.IntegerField(
        label=gettext_lazy("Read the portal's calendar every (minutes)"), min_value=5, max_value=24 * 60,
        help_text=gettext_lazy("At least 5 minutes. Most channel managers read every 15 to 60 minutes."),
    )
    export_summary = forms.CharField(
        label=gettext_lazy("Title of the taken nights in our calendar"), max_length=100,
        initial=DEFAULT_EXPORT_SUMMARY,
        help_text=gettext_lazy("What the portal sees on nights taken elsewhere. Never guest details."),
    )
    check_now = forms.BooleanField(
        label=gettext_lazy("Check the link now before saving"), required=False, initial=True,
        help_text=gettext_lazy("We read the calendar once and tell you what we found. Nothing is saved if it fails."),
    )

    def __init__(
        self, *args, user, property: Property, instance: Connection | None = None,
        portals: Mapping[str, Portal] | None = None, **kwargs,
    ):
        """``portals``: every portal by slug, from a caller that checks many rows (onboarding)."""
        super().__init__(*args, **kwargs)
        self.user = user
        self.portals = portals
        self.property = property
        self.instance = instance
        self.feed_check: FeedCheck | None = None
        self.portal_recognised = False
        # Worth saying, not refusing (LinkUse): shown with the form, and after saving.
        self.warnings: list[str] = []
        self.fields["sync_interval_minutes"].initial = settings.SYNC_DEFAULT_INTERVAL_MINUTES
        if instance is not None:
            self.initial.update(
                import_url=instance.import_url, portal=instance.portal_id, direction=instance.direction,
                sync_interval_minutes=instance.sync_interval_minutes, export_summary=instance.export_summary,
            )

    # ----- fields

    def clean_import_url(self) -> str:
        typed = self.cleaned_data["import_url"]
        url = tidy_link(typed)
        if not url:
            return ""
        if len(typed.split()) > 1 and not _HAS_SCHEME.match(typed.strip()) and "/" not in typed:
            # Words, not a link broken over lines: say so about what was typed, as typed.
            raise ValidationError(
                _("“%(typed)s” is not a link. Paste the calendar link the portal gives you; it starts with https://."),
                code="not_a_link", params={"typed": " ".join(typed.split())[:100]},
            )
        # Before validation: our own URL may well be on a port or host validation refuses.
        if is_our_export(url):
            raise ValidationError(
                _("This is the calendar we publish for this property: paste it into the portal, not here. "
                  "Here goes the link the portal gives you."),
                code="own_export",
            )
        try:
            url = validate_url(
                url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, allow_any_port=settings.FETCH_ALLOW_LOOPBACK
            )
        except FetchError as exc:
            raise link_error(exc) from None
        if len(url) > MAX_URL_LENGTH:
            raise ValidationError(
                _("This link is longer than %(limit)s characters: it is not a portal's calendar link."),
                code="too_long", params={"limit": MAX_URL_LENGTH},
            )
        return url

    def clean_export_summary(self) -> str:
        # One line: the title becomes an iCal SUMMARY.
        return " ".join(self.cleaned_data["export_summary"].split())

    # ----- the whole form

    def clean(self) -> dict:
        data = super().clean()
        url_ok = not self.has_error("import_url")
        url = data.get("import_url", "") if url_ok else ""
        direction = data.get("direction")
        if url_ok and not url and direction and direction != Connection.Direction.EXPORT_ONLY:
            self.add_error(
                "import_url", _("Paste the portal's calendar link, or make the sync export-only.")
            )
        use = link_use(account_id=self.property.account_id, import_url=url, exclude=self.instance)
        if use.holder is not None:
            # One problem, one error: the link is the other sync's; whether we recognise its
            # address says nothing more.
            self.add_error("import_url", link_taken_error(use.holder, property=self.property))
        else:
            self.warnings = link_warnings(use)
            self._settle_portal(data, url=url, url_ok=url_ok)
        if not self.errors and data.get("check_now") and url and direction != Connection.Direction.EXPORT_ONLY:
            self._check_link(url, data["portal"])
        return data

    def _settle_portal(self, data: dict, *, url: str, url_ok: bool) -> None:
        """Fill the portal from the link's host, or refuse a portal the link contradicts."""
        if self.has_error("portal"):
            return
        chosen = data.get("portal")
        recognised = recognised_portal(url, self.portals) if url else None
        if chosen is None and recognised is not None:
            data["portal"] = recognised
            self.portal_recognised = True
        elif chosen is None and url_ok:
            self.add_error(
                "portal",
                _("We do not recognise this link's address: choose the portal it comes from.") if url
                else _("Choose the portal this sync is for."),
            )
        elif chosen is not None and recognised is not None and chosen != recognised:
            self.add_error(
                "portal",
                ValidationError(
                    _("This looks like a link from %(recognised)s, but you chose %(chosen)s. "
                      "Choose %(recognised)s, or paste the link %(chosen)s gives you."),
                    code="portal_mismatch", params={"recognised": recognised.display_name, "chosen": chosen.display_name},
                ),
            )

    def _check_link(self, url: str, portal: Portal) -> None:
        """Read the feed live, within a live check's limits; a failure is a form error, so
        nothing gets saved."""
        try:
            self.feed_check = live_check_run(
                user=self.user,
                work=lambda seconds: feed_check(url=url, timezone=self.property.timezone, portal=portal, seconds=seconds),
            )
        except CheckBusy as busy:
            self.add_error("import_url", ValidationError(busy.message, code="busy"))
        except FetchError as exc:  # the check as a whole ran out of time
            self.add_error("import_url", link_error(exc, portal=portal.name_in_sentence))
        except LinkCheckFailed as failed:
            error = failed.error
            if isinstance(error, FetchError):
                words = link_error(error, portal=portal.name_in_sentence).message
            else:
                words = describe(error.code, portal=portal.name_in_sentence)
            if failed.https_works:
                words += " " + _("Its https:// version works: add an “s” after http and save again.")
            self.add_error("import_url", ValidationError(words, code=error.code))

    # ----- for the views

    @property
    def plain_http(self) -> bool:
        return self.cleaned_data.get("import_url", "").startswith("http://")

    def connection_values(self) -> dict:
        data = self.cleaned_data
        return {
            "portal": data["portal"], "direction": data["direction"], "import_url": data["import_url"],
            "sync_interval_minutes": data["sync_interval_minutes"], "export_summary": data["export_summary"],
        }
