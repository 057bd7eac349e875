"""Two-factor sign-in with django-otp: an authenticator app (TOTP) and one-time recovery codes.

A person has at most one confirmed app (a ``TOTPDevice``) and one set of recovery codes (a
``StaticDevice`` whose tokens are deleted as they are used). An app counts once the person
typed a code it showed: until then the device is unconfirmed and signs nobody in. Wrong codes
slow the next try down (django-otp's throttling: 1, 2, 4, 8... seconds per device).
"""

from __future__ import annotations

import re
from base64 import b32encode
from dataclasses import dataclass
from datetime import datetime

import segno
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_otp import verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from syncs.members import user_activity_record
from syncs.models import Activity, Membership

RECOVERY_CODES = 10
APP_NAME = "authenticator app"
CODES_NAME = "recovery codes"


def app_of(user) -> TOTPDevice | None:
    """The person's confirmed authenticator app, if any."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).first()


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user_id=user.pk, device__confirmed=True).count()


def accounts_requiring(user) -> list[str]:
    """Names of the person's accounts that require two-factor sign-in."""
    return list(
        Membership.objects.filter(user_id=user.pk, account__require_two_factor=True).values_list("account__name", flat=True)
    )


# --------------------------------------------------------------------------- setting up


def app_pending(user) -> TOTPDevice:
    """The unconfirmed app being set up (a new secret the first time; the same one on reload,
    so a code from an app that scanned it a minute ago still works)."""
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_NAME, confirmed=False)


def app_secret(device: TOTPDevice) -> str:
    """The secret as people type it into an app: base32, in groups of four."""
    key = b32encode(device.bin_key).decode()
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def app_qr_code(device: TOTPDevice) -> str:
    """The app's set-up link as a QR code, an SVG data URI (our CSP allows data: images)."""
    return segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2)


def _codes_new(user) -> list[str]:
    StaticDevice.objects.filter(user_id=user.pk).delete()
    device = StaticDevice.objects.create(user=user, name=CODES_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def app_confirm(*, user, device: TOTPDevice, code: str) -> list[str]:
    """Confirm the app with a code it shows; the person's previous app and recovery codes are
    replaced. Returns the new recovery codes (shown once)."""
    codes: list[str] = []
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user_id=user.pk, confirmed=False)
        # A wrong code is counted (throttling) in this transaction too: it commits either way.
        if device.verify_token(_digits(code)):
            TOTPDevice.objects.filter(user_id=user.pk).exclude(pk=device.pk).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _codes_new(user)
            user_activity_record(user=user, action=Activity.Action.TWO_FACTOR_ENABLED)
    if not codes:
        raise ValidationError(
            _("That code did not match. Check that the phone's clock is right and type the code the app shows now.")
        )
    Membership.forget_current(user)
    return codes


def recovery_codes_renew(*, user) -> list[str]:
    """New recovery codes; the old ones stop working."""
    with transaction.atomic():
        codes = _codes_new(user)
        user_activity_record(user=user, action=Activity.Action.RECOVERY_CODES_RENEWED)
    return codes


def two_factor_disable(*, user) -> None:
    """Remove the app and the recovery codes, unless an account of the person requires them."""
    requiring = accounts_requiring(user)
    if requiring:
        raise ValidationError(
            _("%(accounts)s requires two-factor sign-in: it stays on while you are a member.")
            % {"accounts": ", ".join(requiring)}
        )
    with transaction.atomic():
        TOTPDevice.objects.filter(user_id=user.pk).delete()
        StaticDevice.objects.filter(user_id=user.pk).delete()
        user_activity_record(user=user, action=Activity.Action.TWO_FACTOR_DISABLED)
    Membership.forget_current(user)


# --------------------------------------------------------------------------- signing in


@dataclass(frozen=True)
class Verified:
    device: TOTPDevice | StaticDevice | None  # None: refused
    wait_until: datetime | None = None  # refused because of too many wrong codes, until then
    recovery_code: bool = False


def _digits(code: str) -> str:
    return re.sub(r"\s", "", code or "")


def code_verify(*, user, code: str) -> Verified:
    """Check a code from the app (6 digits) or a recovery code against the person's devices."""
    code = _digits(code).replace("-", "")
    if code.isdigit():
        devices = list(TOTPDevice.objects.filter(user_id=user.pk, confirmed=True))
    else:
        code = code.lower()
        devices = list(StaticDevice.objects.filter(user_id=user.pk, confirmed=True))
    for device in devices:
        allowed, details = device.verify_is_allowed()
        if not allowed:
            return Verified(device=None, wait_until=(details or {}).get("locked_until"))
        matched = verify_token(user, device.persistent_id, code)
        if matched is not None:
            recovery = isinstance(matched, StaticDevice)
            if recovery:
                user_activity_record(user=user, action=Activity.Action.RECOVERY_CODE_USED)
            return Verified(device=matched, recovery_code=recovery)
    return Verified(device=None)


def wait_words(until: datetime) -> str:
    seconds = max(1, int((until - timezone.now()).total_seconds()) + 1)
    return ngettext(
        "Too many wrong codes: wait %(seconds)s second, then try again.",
        "Too many wrong codes: wait %(seconds)s seconds, then try again.",
        seconds,
    ) % {"seconds": seconds}
