"""Personal API tokens: made (the secret shown once), found by their secret, used, revoked.

A secret is ``cm_`` and 43 characters from ``secrets.token_urlsafe`` (256 bits): the prefix lets
logs (channelmgr.log_masking) and secret scanners recognise it. Only its SHA-256 is stored, as
invitations and export URLs store theirs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from syncs.clean_text import clean
from syncs.models import ApiToken, Membership

PREFIX = "cm_"
# How many characters of a secret a token's list shows, the prefix included.
SHOWN = 7
# last_used_at is written again only when it is older than this (or the address changed): the
# profile page says when a token was last used, not each of its requests.
TOUCH_EVERY = timedelta(minutes=1)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class MadeToken:
    token: ApiToken
    secret: str  # shown once: only its hash is kept


def api_token_create(*, membership: Membership, name: str) -> MadeToken:
    """A new token of the member, in the membership's account, named ``name``."""
    name = " ".join(clean(name).split())[:100]
    if not name:
        raise ValidationError({"name": _("Give the token a name, such as the script that uses it.")})
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user_id=membership.user_id, account_id=membership.account_id, name=name, prefix=secret[:SHOWN],
        secret_hash=secret_hash(secret),
    )
    return MadeToken(token=token, secret=secret)


@dataclass(frozen=True)
class TokenUse:
    """A live token and the membership it acts with now."""

    token: ApiToken
    membership: Membership


def api_token_find(secret: str) -> TokenUse | None:
    """The live token whose secret this is, with its user's membership in its account as it is
    now (a demoted member's token acts with the new role; a removed member's acts no more), or
    None."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = (
        ApiToken.objects.live().filter(secret_hash=secret_hash(secret), user__is_active=True)
        .select_related("user", "account").first()
    )
    if token is None:
        return None
    membership = Membership.objects.filter(user_id=token.user_id, account_id=token.account_id).first()
    if membership is None:
        return None
    membership.user, membership.account = token.user, token.account
    return TokenUse(token=token, membership=membership)


def api_token_touch(*, token: ApiToken, address: str | None, now: datetime | None = None) -> None:
    """Record a use: when, and from which address (written at most every TOUCH_EVERY from one address)."""
    now = now or timezone.now()
    if token.last_used_at and token.last_used_ip == address and now - token.last_used_at < TOUCH_EVERY:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=address)
    token.last_used_at, token.last_used_ip = now, address


def api_token_revoke(*, user, token_id: int | None, now: datetime | None = None) -> ApiToken | None:
    """Revoke one of ``user``'s live tokens (None: no such token of theirs). The next request
    made with it is refused."""
    with transaction.atomic():
        token = ApiToken.objects.live().select_for_update().filter(pk=token_id, user_id=user.pk).first()
        if token is None:
            return None
        token.revoked_at = now or timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_tokens_of(*, user) -> list[ApiToken]:
    """The person's live tokens, in every account, with the role each acts with now."""
    tokens = list(ApiToken.objects.live().filter(user_id=user.pk).select_related("account").order_by("-created_at", "-pk"))
    roles = dict(Membership.objects.filter(user_id=user.pk).values_list("account_id", "role"))
    labels = dict(Membership.Role.choices)
    for token in tokens:
        role = roles.get(token.account_id)
        token.role_words = labels.get(role, _("no longer a member"))
    return tokens
