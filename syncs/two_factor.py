"""Two-factor sign-in with django-otp: an authenticator app (TOTP) and one-time recovery codes.

A person has at most one confirmed app (a ``TOTPDevice``) and one set of recovery codes (a
``StaticDevice`` whose tokens are deleted as they are used). An app counts once the person
typed a code it showed: until then the device is unconfirmed and signs nobody in. Wrong codes
slow the next try down (django-otp's throttling: 1, 2, 4, 8... seconds per device).
"""

from __future__ import annotations

import re
import time
from base64 import b32encode
from dataclasses import dataclass
from datetime import datetime, timedelta

import segno
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_otp.models import MAX_THROTTLE_DELAY_SECONDS
from django_otp.oath import TOTP
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
    replaced. Returns the new recovery codes (shown once).

    Tries are counted and slowed down as at sign-in (``_attempt_counted``)."""
    device = TOTPDevice.objects.get(pk=device.pk, user_id=user.pk, confirmed=False)
    code = _digits(code)
    wait_until = _attempt_counted(device)
    if wait_until is not None:
        raise ValidationError(wait_words(wait_until))
    if not (_is_app_code(code) and _app_code_check(device, code) == _MATCHED):
        raise ValidationError(
            _("That code did not match. Check that the phone's clock is right and type the code the app shows now.")
        )
    with transaction.atomic():
        # Confirmed once, even when the same code is sent twice at the same moment.
        if TOTPDevice.objects.filter(pk=device.pk, confirmed=False).update(confirmed=True) != 1:
            raise ValidationError(_("Two-factor sign-in is on already."))
        TOTPDevice.objects.filter(user_id=user.pk).exclude(pk=device.pk).delete()
        codes = _codes_new(user)
        user_activity_record(user=user, action=Activity.Action.TWO_FACTOR_ENABLED)
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
    reused: bool = False  # refused: the app's code of a moment already used to sign in


def _digits(code: str) -> str:
    return re.sub(r"\s", "", code or "")


def _is_app_code(code: str) -> bool:
    return code.isascii() and code.isdigit()


def code_verify(*, user, code: str) -> Verified:
    """Check a code from the app (6 digits) or a recovery code against the person's devices."""
    code = _digits(code).replace("-", "")
    if _is_app_code(code):
        devices = list(TOTPDevice.objects.filter(user_id=user.pk, confirmed=True))
    else:
        code = code.lower()
        devices = list(StaticDevice.objects.filter(user_id=user.pk, confirmed=True))
    for device in devices:
        wait_until = _attempt_counted(device)
        if wait_until is not None:
            return Verified(device=None, wait_until=wait_until)
        if isinstance(device, TOTPDevice):
            outcome = _app_code_check(device, code)
            if outcome == _REUSED:
                return Verified(device=None, reused=True)
        else:
            outcome = _recovery_code_check(device, code)
        if outcome == _MATCHED:
            device.refresh_from_db()
            recovery = isinstance(device, StaticDevice)
            if recovery:
                user_activity_record(user=user, action=Activity.Action.RECOVERY_CODE_USED)
            return Verified(device=device, recovery_code=recovery)
    return Verified(device=None)


_MATCHED, _REUSED, _WRONG = "matched", "reused", "wrong"


def _attempt_counted(device: TOTPDevice | StaticDevice) -> datetime | None:
    """Count this try as a wrong code before the code is looked at, and say whether the code may
    be looked at (None) or until when the person must wait (django-otp's delays: 1, 2, 4...
    seconds after 1, 2, 3... wrong codes in a row).

    Taken and counted under the device row's lock, in a transaction of its own that commits
    before the check: tries sent at the same moment each see the ones before them, so 8 guesses
    in parallel count 8 and only the first is checked. A code that matches clears the count.
    """
    model = type(device)
    now = timezone.now()
    with transaction.atomic():
        locked = model.objects.select_for_update().get(pk=device.pk)
        allowed, details = locked.verify_is_allowed()
        model.objects.filter(pk=device.pk).update(
            throttling_failure_count=F("throttling_failure_count") + 1, throttling_failure_timestamp=now
        )
    if allowed:
        return None
    failures = (details or {}).get("failure_count", locked.throttling_failure_count) + 1
    return now + timedelta(seconds=min(locked.get_throttle_factor() * 2 ** (failures - 1), MAX_THROTTLE_DELAY_SECONDS))


def _app_code_check(device: TOTPDevice, code: str) -> str:
    """Whether ``code`` is the app's code now (within the device's tolerance), was one already
    used to sign in (a code works once: django-otp's ``last_t``), or is wrong."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time()
        if totp.verify(int(code), device.tolerance, device.last_t + 1):
            device.last_t = totp.t()
            if getattr(settings, "OTP_TOTP_SYNC", True):
                device.drift = totp.drift
            device.throttle_reset(commit=False)
            device.set_last_used_timestamp(commit=False)
            device.save()
            return _MATCHED
        # Right for the moment, but that moment's code signed someone in already.
        return _REUSED if totp.verify(int(code), device.tolerance) else _WRONG


def _recovery_code_check(device: StaticDevice, code: str) -> str:
    with transaction.atomic():
        device = StaticDevice.objects.select_for_update().get(pk=device.pk)
        match = device.token_set.filter(token=code).first()
        if match is None:
            return _WRONG
        match.delete()
        device.throttle_reset(commit=False)
        device.set_last_used_timestamp(commit=False)
        device.save()
        return _MATCHED


def wait_words(until: datetime) -> str:
    seconds = max(1, int((until - timezone.now()).total_seconds()) + 1)
    return ngettext(
        "Too many wrong codes: wait %(seconds)s second, then try again.",
        "Too many wrong codes: wait %(seconds)s seconds, then try again.",
        seconds,
    ) % {"seconds": seconds}


def reused_words() -> str:
    return _("This code was used already: wait for the next one.")
