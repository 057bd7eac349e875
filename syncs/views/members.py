"""The Members page (owners only) and the page where an invited person joins."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_otp.plugins.otp_totp.models import TOTPDevice

from syncs import members
from syncs.models import Invitation, Membership
from syncs.roles import Role, role_check, role_required


class InviteForm(forms.Form):
    email = forms.EmailField(label=gettext_lazy("Email"))
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices, initial=Role.VIEWER)
    language = forms.ChoiceField(label=gettext_lazy("Language of the email"), choices=settings.LANGUAGES)


def _members_page(request: HttpRequest, invite_form: InviteForm, status: int = 200) -> HttpResponse:
    account = role_check(request, Role.OWNER).account
    team = (
        Membership.objects.filter(account=account)
        .select_related("user")
        .annotate(two_factor=Exists(TOTPDevice.objects.filter(user_id=OuterRef("user_id"), confirmed=True)))
        .order_by("user__username")
    )
    return render(
        request,
        "syncs/members.html",
        {
            "account": account,
            "team": team,
            "invitations": Invitation.objects.for_account(account).pending().select_related("invited_by"),
            "form": invite_form,
            "roles": [(value, label, members.role_words(value)) for value, label in Role.choices],
            "now": timezone.now(),
            "invitation_days": settings.INVITATION_DAYS,
        },
        status=status,
    )


@require_safe
@login_required
@role_required(Role.OWNER)
def member_list(request: HttpRequest) -> HttpResponse:
    return _members_page(request, InviteForm(initial={"language": translation.get_language()}))


@require_POST
@login_required
@role_required(Role.OWNER)
def member_invite(request: HttpRequest) -> HttpResponse:
    account = role_check(request, Role.OWNER).account
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation, sent = members.invitation_create(account=account, by=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error("email", error)
        else:
            _say_sent(request, invitation, sent)
            return redirect("members")
    return _members_page(request, form, status=400)


def _say_sent(request: HttpRequest, invitation: Invitation, sent: bool) -> None:
    if sent:
        messages.success(
            request,
            ngettext(
                "Invitation sent to %(email)s. The link works once, for %(days)s day.",
                "Invitation sent to %(email)s. The link works once, for %(days)s days.",
                settings.INVITATION_DAYS,
            )
            % {"email": invitation.email, "days": settings.INVITATION_DAYS},
        )
    else:
        messages.error(
            request,
            _("The invitation to %(email)s is saved, but the email could not be sent. Try “Send again” in a while.")
            % {"email": invitation.email},
        )


def _member(request: HttpRequest, membership_id: int) -> Membership:
    account = role_check(request, Role.OWNER).account
    return get_object_or_404(Membership.objects.select_related("user", "account"), pk=membership_id, account=account)


def _invitation(request: HttpRequest, invitation_id: int) -> Invitation:
    account = role_check(request, Role.OWNER).account
    return get_object_or_404(Invitation.objects.for_account(account).pending().select_related("account"), pk=invitation_id)


@require_POST
@login_required
@role_required(Role.OWNER)
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _member(request, membership_id)
    role = request.POST.get("role", "")
    try:
        changed = members.membership_set_role(membership=membership, role=role, by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if changed:
            messages.success(
                request,
                _("%(member)s is now %(role)s.") % {"member": membership.user.get_username(), "role": Role(role).label},
            )
    return redirect("members")


@require_POST
@login_required
@role_required(Role.OWNER)
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _member(request, membership_id)
    try:
        members.membership_remove(membership=membership, by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            _("%(member)s was removed from %(account)s and signed out of it.")
            % {"member": membership.user.get_username(), "account": membership.account.name},
        )
    return redirect("members")


@require_POST
@login_required
@role_required(Role.OWNER)
def invitation_resend(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation, sent = members.invitation_resend(invitation=_invitation(request, invitation_id), by=request.user)
    _say_sent(request, invitation, sent)
    return redirect("members")


@require_POST
@login_required
@role_required(Role.OWNER)
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = _invitation(request, invitation_id)
    members.invitation_revoke(invitation=invitation, by=request.user)
    messages.success(request, _("Invitation to %(email)s withdrawn: its link no longer works.") % {"email": invitation.email})
    return redirect("members")


# --------------------------------------------------------------------------- joining


class JoinForm(UserCreationForm):
    """A new person's sign-in, made from an invitation: the email is the invitation's."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Join an account from an invitation's link: signed in, with one button; otherwise by
    choosing a username and a password (or by logging in first, for a person who has a sign-in)."""
    invitation = members.invitation_by_token(token)
    problem = members.invitation_problem(invitation)
    if problem:
        return render(request, "syncs/invitation.html", {"problem": problem}, status=404 if invitation is None else 410)
    user = request.user if request.user.is_authenticated else None
    # Signed in as someone else: told so, with a way to sign out and come back; never joined.
    wrong_person = members.invitation_wrong_person(invitation, user) if user is not None else ""
    email_taken = get_user_model().objects.filter(email__iexact=invitation.email, is_active=True).exists()
    form = None
    if user is None and not email_taken:
        form = JoinForm(request.POST if request.method == "POST" else None, initial={"username": invitation.email})
        form.instance.email = invitation.email  # the password validators compare the password with it
    if request.method == "POST":
        if user is None and form is not None and form.is_valid():
            try:
                with transaction.atomic():
                    user = form.save()
                    members.invitation_accept(invitation=invitation, user=user)
            except ValidationError as error:
                return render(request, "syncs/invitation.html", {"problem": " ".join(error.messages)}, status=410)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return _welcome(request, invitation)
        if user is not None and not wrong_person:
            try:
                members.invitation_accept(invitation=invitation, user=user)
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
                return redirect("home")
            return _welcome(request, invitation)
    return render(
        request,
        "syncs/invitation.html",
        {
            "invitation": invitation, "form": form, "email_taken": email_taken, "wrong_person": wrong_person,
            "role_words": members.role_words(invitation.role),
        },
        status=403 if wrong_person and request.method == "POST" else 200,
    )


def _welcome(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    messages.success(
        request,
        _("Welcome to %(account)s. Your role: %(role)s.") % {"account": invitation.account.name, "role": invitation.get_role_display()},
    )
    return redirect("home")
