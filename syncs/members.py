"""Accounts and their members: the first owner, invitations, roles, removals, switching.

Every write is one transaction, and the rule that an account always keeps an owner is checked
under a lock on the account's row, so two owners demoting each other at the same moment cannot
leave it with none. Each change is recorded in the account's activity log.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode
from django.utils.translation import gettext as _

from syncs.languages import reader_language
from syncs.models import Account, Activity, ApiToken, Invitation, Membership
from syncs.site_links import site_link

Role = Membership.Role
log = logging.getLogger(__name__)


def _record(*, account: Account, user, action: str, **params) -> Activity:
    return Activity.objects.create(
        account=account, user=user if user is not None and user.is_authenticated else None, action=action,
        params={key: value for key, value in params.items() if value},
    )


def user_activity_record(*, user, action: str, **params) -> None:
    """Record something a person did to their own sign-in (password, two-factor) in every
    account they belong to: each account's owners see who can get in, and how."""
    for membership in Membership.objects.filter(user_id=user.pk).select_related("account"):
        _record(account=membership.account, user=user, action=action, member=user.get_username(), **params)


def account_settings_record(*, account: Account, user, changed: list[str]) -> None:
    """Record a change of the two-factor requirement (the members' sign-in) in the log."""
    if "require_two_factor" in changed:
        action = Activity.Action.TWO_FACTOR_REQUIRED if account.require_two_factor else Activity.Action.TWO_FACTOR_OPTIONAL
        _record(account=account, user=user, action=action)


# --------------------------------------------------------------------------- first run


class FirstPasswordTokens(PasswordResetTokenGenerator):
    """The one-time link where a new account's first owner sets a password.

    Django's reset tokens, under their own salt and lifetime (FIRST_PASSWORD_LINK_HOURS, not
    PASSWORD_RESET_TIMEOUT): setting the password changes what the token is made of, so the
    link works once.
    """

    key_salt = "syncs.members.FirstPasswordTokens"

    def check_token(self, user, token) -> bool:
        if not (user and token):
            return False
        try:
            ts = base36_to_int(token.split("-")[0])
        except ValueError:
            return False
        if not any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return False
        return self._num_seconds(self._now()) - ts <= settings.FIRST_PASSWORD_LINK_HOURS * 3600


first_password_tokens = FirstPasswordTokens()


def first_password_url(user) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    path = reverse("first-password", kwargs={"uidb64": uid, "token": first_password_tokens.make_token(user)})
    return settings.SITE_URL + path


@dataclass(frozen=True)
class CreatedAccount:
    account: Account
    owner: object  # the user
    created_owner: bool  # False: the person already had a sign-in
    link: str  # where the owner sets a password ("" when they have one already)


def account_create(*, name: str, owner_email: str, owner_username: str = "") -> CreatedAccount:
    """Create an account with its first owner, or give the owner a fresh link.

    Run again with the same name and email while the owner has not set a password yet, it
    makes no second account: it gives a new link (the first may have expired).
    """
    name, email = name.strip(), owner_email.strip().lower()
    if not name:
        raise ValidationError(_("Give the account a name."))
    users = get_user_model().objects
    username = (owner_username or email).strip()
    with transaction.atomic():
        owner = users.filter(email__iexact=email).order_by("pk").first()
        if owner is None and users.filter(username=username).exists():
            raise ValidationError(_("The username %(username)s is taken by someone else.") % {"username": username})
        account = Account.objects.filter(name=name, memberships__user=owner, memberships__role=Role.OWNER).first() if owner else None
        if account is None:
            if Account.objects.filter(name=name).exists():
                raise ValidationError(_("An account named %(name)s exists already.") % {"name": name})
            created = owner is None
            if created:
                owner = users.create_user(username=username, email=email, password=None)
            account = Account.objects.create(name=name)
            # A person who works in another account already stays there until they switch.
            Membership.objects.create(
                user=owner, account=account, role=Role.OWNER, is_current=created, **Membership.defaults_for(Role.OWNER)
            )
        else:
            created = False
        needs_link = not owner.has_usable_password()
        return CreatedAccount(
            account=account, owner=owner, created_owner=created, link=first_password_url(owner) if needs_link else ""
        )


# --------------------------------------------------------------------------- the current account


def membership_make_current(*, membership: Membership) -> None:
    """Make this the account its person works in, on every device."""
    with transaction.atomic():
        # Lock the person's memberships: two switches at once leave exactly one current.
        list(Membership.objects.select_for_update().filter(user_id=membership.user_id).values_list("pk"))
        Membership.objects.filter(user_id=membership.user_id, is_current=True).exclude(pk=membership.pk).update(
            is_current=False
        )
        Membership.objects.filter(pk=membership.pk).update(is_current=True)
    membership.is_current = True


def membership_switch(*, user, account_id: int) -> Membership:
    """Switch ``user`` to one of their accounts (404-worthy ``Membership.DoesNotExist`` otherwise)."""
    membership = Membership.objects.select_related("account").get(user_id=user.pk, account_id=account_id)
    membership_make_current(membership=membership)
    Membership.forget_current(user)
    return membership


# --------------------------------------------------------------------------- roles and removals


def _lock_account(account: Account) -> None:
    # Every change of an account's owners takes this lock first, so the "last owner" check below
    # sees the other changes that were made at the same moment.
    Account.objects.select_for_update().filter(pk=account.pk).values_list("pk").get()


def _other_owners(membership: Membership) -> bool:
    return Membership.objects.filter(account_id=membership.account_id, role=Role.OWNER).exclude(pk=membership.pk).exists()


def membership_set_role(*, membership: Membership, role: str, by) -> bool:
    """Change a member's role. Returns whether it changed. An account keeps at least one owner."""
    if role not in Role.values:
        raise ValidationError(_("Choose owner, manager or viewer."))
    with transaction.atomic():
        _lock_account(membership.account)
        membership = Membership.objects.select_related("user", "account").get(pk=membership.pk)
        if membership.role == role:
            return False
        if membership.role == Role.OWNER and not _other_owners(membership):
            raise ValidationError(
                _("%(member)s is the only owner of %(account)s: make someone else an owner first.")
                % {"member": membership.user.get_username(), "account": membership.account.name}
            )
        old_role = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        _record(
            account=membership.account, user=by, action=Activity.Action.ROLE_CHANGED,
            member=membership.user.get_username(), role=role, old_role=old_role,
        )
    return True


def membership_remove(*, membership: Membership, by) -> None:
    """Take a member out of the account. Their open sessions in it end at their next request
    (syncs.auth_middleware). An account keeps at least one owner."""
    with transaction.atomic():
        _lock_account(membership.account)
        membership = Membership.objects.select_related("user", "account").get(pk=membership.pk)
        if membership.role == Role.OWNER and not _other_owners(membership):
            raise ValidationError(
                _("%(member)s is the only owner of %(account)s: make someone else an owner first.")
                % {"member": membership.user.get_username(), "account": membership.account.name}
            )
        membership.delete()
        # Their API tokens in the account stop for good: joining again later does not revive them.
        ApiToken.objects.live().filter(user_id=membership.user_id, account_id=membership.account_id).update(
            revoked_at=timezone.now()
        )
        _record(
            account=membership.account, user=by, action=Activity.Action.MEMBER_REMOVED,
            member=membership.user.get_username(), role=membership.role,
        )


# --------------------------------------------------------------------------- invitations


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_link(invitation: Invitation, now) -> str:
    """A new secret for the invitation (the previous link stops working). Returns the token."""
    token = secrets.token_urlsafe(32)
    invitation.token_hash = _token_hash(token)
    invitation.sent_at = now
    invitation.expires_at = now + timedelta(days=settings.INVITATION_DAYS)
    return token


def invitation_url(token: str) -> str:
    return site_link("invitation-accept", token=token)


def invitation_create(*, account: Account, email: str, role: str, language: str, by) -> tuple[Invitation, bool]:
    """Invite ``email`` into ``account`` with ``role`` and email them the link. Returns the
    invitation and whether the email went out (if not, it can be sent again from the page).

    Inviting an address that has a pending invitation sends that one again, with this role.
    """
    email = email.strip().lower()
    if role not in Role.values:
        raise ValidationError(_("Choose owner, manager or viewer."))
    if Membership.objects.filter(account=account, user__email__iexact=email, user__is_active=True).exists():
        raise ValidationError(_("%(email)s is a member of %(account)s already.") % {"email": email, "account": account.name})
    now = timezone.now()
    with transaction.atomic():
        _lock_account(account)  # two owners inviting one address at once make one invitation
        invitation = Invitation.objects.pending().filter(account=account, email=email).first()
        resent = invitation is not None
        if invitation is None:
            invitation = Invitation(account=account, email=email, invited_by=by, created_at=now)
        invitation.role, invitation.language, invitation.invited_by = role, language, by
        token = _new_link(invitation, now)
        invitation.save()
        _record(
            account=account, user=by,
            action=Activity.Action.INVITATION_RESENT if resent else Activity.Action.MEMBER_INVITED,
            member=email, role=role,
        )
    return invitation, _send(invitation, token)


def invitation_resend(*, invitation: Invitation, by) -> tuple[Invitation, bool]:
    """Send a pending invitation again, with a new link and a new week (the old link dies).
    Returns it and whether the email went out."""
    now = timezone.now()
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().pending().get(pk=invitation.pk)
        token = _new_link(invitation, now)
        invitation.save(update_fields=["token_hash", "sent_at", "expires_at"])
        _record(
            account=invitation.account, user=by, action=Activity.Action.INVITATION_RESENT,
            member=invitation.email, role=invitation.role,
        )
    return invitation, _send(invitation, token)


def _send(invitation: Invitation, token: str) -> bool:
    # After the commit: the link in the email works the moment it arrives.
    try:
        invitation_email(invitation=invitation, token=token).send()
    except Exception as exc:  # whatever the mail backend raised; the page says it was not sent
        log.error("invitation email failed invitation=%s error=%s", invitation.pk, type(exc).__name__)
        return False
    return True


def invitation_revoke(*, invitation: Invitation, by) -> None:
    with transaction.atomic():
        if Invitation.objects.pending().filter(pk=invitation.pk).update(revoked_at=timezone.now()) == 1:
            _record(
                account=invitation.account, user=by, action=Activity.Action.INVITATION_REVOKED,
                member=invitation.email, role=invitation.role,
            )


def invitation_by_token(token: str) -> Invitation | None:
    """The invitation a link names, whatever its state (None for a link that never existed)."""
    if not token or len(token) > 100:
        return None
    return Invitation.objects.select_related("account", "invited_by").filter(token_hash=_token_hash(token)).first()


def invitation_problem(invitation: Invitation | None, now=None) -> str:
    """Why a link cannot be accepted, in words ("" when it can)."""
    if invitation is None:
        return _("This invitation link does not exist. Check that you opened the whole link from the email.")
    if invitation.accepted_at is not None:
        return _("This invitation was accepted already. Log in to work in %(account)s.") % {"account": invitation.account.name}
    if invitation.revoked_at is not None:
        return _("This invitation was withdrawn. Ask an owner of %(account)s to invite you again.") % {
            "account": invitation.account.name
        }
    if invitation.is_expired(now):
        return _("This invitation has expired. Ask an owner of %(account)s to send it again.") % {
            "account": invitation.account.name
        }
    return ""


def invitation_is_for(invitation: Invitation, user) -> bool:
    """Whether ``user`` signs in with the address the invitation was sent to (in any case): an
    invitation is for its address, not for whoever holds the link."""
    return bool(user.email) and user.email.strip().lower() == invitation.email.strip().lower()


def invitation_wrong_person(invitation: Invitation, user) -> str:
    """Why ``user`` may not accept the invitation, in words ("" when they may)."""
    if invitation_is_for(invitation, user):
        return ""
    return _(
        "This invitation was sent to %(email)s, and you are signed in as %(name)s. "
        "Sign out, then sign in or sign up as %(email)s to join %(account)s."
    ) % {"email": invitation.email, "name": user.get_username(), "account": invitation.account.name}


def invitation_accept(*, invitation: Invitation, user) -> Membership:
    """``user`` joins the invitation's account with its role; it becomes their current account.

    Only the person the invitation was sent to may accept it (``invitation_is_for``). Refused
    when the link was used, withdrawn or expired meanwhile (checked under a lock, so a link
    works once even when opened twice at the same moment).
    """
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().select_related("account").get(pk=invitation.pk)
        problem = invitation_problem(invitation) or invitation_wrong_person(invitation, user)
        if problem:
            raise ValidationError(problem)
        if Membership.objects.filter(user_id=user.pk, account_id=invitation.account_id).exists():
            raise ValidationError(
                _("You are a member of %(account)s already.") % {"account": invitation.account.name}
            )
        # A person reads every account in one language: the one they chose, else the invitation's.
        language = (
            Membership.objects.filter(user_id=user.pk).exclude(language="").values_list("language", flat=True).first()
            or invitation.language
        )
        membership = Membership.objects.create(
            user=user, account=invitation.account, role=invitation.role, language=language,
            **Membership.defaults_for(invitation.role),
        )
        membership_make_current(membership=membership)
        invitation.accepted_at, invitation.accepted_by = timezone.now(), user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        _record(
            account=invitation.account, user=user, action=Activity.Action.MEMBER_JOINED,
            member=user.get_username(), role=invitation.role,
            invited_by=invitation.invited_by.get_username() if invitation.invited_by else "",
        )
    Membership.forget_current(user)
    return membership


def role_words(role: str) -> str:
    """What a role may do, in a sentence."""
    return {
        Role.OWNER: _("Everything, including members and the account's settings."),
        Role.MANAGER: _("Properties, syncs, the fix checklist, switches and blocks; not members or settings."),
        Role.VIEWER: _("Sees states, calendars and history; changes nothing and never sees the secret calendar links."),
    }[role]


def invitation_email(*, invitation: Invitation, token: str) -> EmailMultiAlternatives:
    """The invitation, in the language the owner chose for it. It carries the link, nothing else
    secret."""
    with translation.override(reader_language(chosen=invitation.language)):
        context = {
            "account": invitation.account.name,
            "inviter": invitation.invited_by.get_username() if invitation.invited_by else "",
            "role": invitation.get_role_display(),
            "role_words": role_words(invitation.role),
            "link": invitation_url(token),
            "expires_at": invitation.expires_at,
            "days": settings.INVITATION_DAYS,
        }
        subject = _("You are invited to %(account)s on channelmgr") % {"account": invitation.account.name}
        text = render_to_string("emails/invitation.txt", context)
        html = render_to_string("emails/invitation.html", context)
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()), body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[invitation.email],
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(html, "text/html")
    return message
