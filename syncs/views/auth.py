"""Signing in and the person's own sign-in: passwords (Django's views and forms, our templates),
the first owner's password, two-factor sign-in, email alerts and the account switcher.

Everything here is about the person, not an account's data: it needs a sign-in, not a role.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from channelmgr.client_ip import client_ip
from syncs import two_factor
from syncs.api.tokens import api_token_create, api_token_revoke, api_tokens_of
from syncs.auth_middleware import user_has_two_factor
from syncs.forms import timezone_names
from syncs.id_inputs import parse_id
from syncs.members import first_password_tokens, membership_switch, user_activity_record
from syncs.models import Activity, Membership, validate_timezone_name
from syncs.password_reset import (
    RESET_CLIENT_WINDOW_SECONDS,
    ResetNotQueued,
    TooManyResetRequests,
    password_reset_request,
    reset_link_hours,
)
from syncs.views.htmx import next_path

RECOVERY_CODES_SESSION = "syncs_recovery_codes"


# --------------------------------------------------------------------------- signing in with a password


class SignInForm(AuthenticationForm):
    """Django's log-in form, where a username longer than any username gets the form's error
    before any password is checked (Django sets the field's max_length after building its
    validators, so it only reaches the HTML)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))


# --------------------------------------------------------------------------- passwords


class PasswordResetView(auth_views.PasswordResetView):
    """Asks for a reset link: the request only counts and queues (syncs.password_reset), the
    worker looks the address up and sends the email."""

    template_name = "registration/password_reset_form.html"

    def form_valid(self, form):
        try:
            password_reset_request(email=form.cleaned_data["email"], client=client_ip(self.request))
        except TooManyResetRequests:
            minutes = RESET_CLIENT_WINDOW_SECONDS // 60
            form.add_error(None, ngettext(
                "Too many requests from your network: try again in %(minutes)d minute.",
                "Too many requests from your network: try again in %(minutes)d minutes.", minutes,
            ) % {"minutes": minutes})
            return self.render_to_response(self.get_context_data(form=form), status=429)
        except ResetNotQueued:
            form.add_error(None, _("The email cannot be sent just now. Try again in a few minutes."))
            return self.render_to_response(self.get_context_data(form=form), status=503)
        return HttpResponseRedirect(self.get_success_url())

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "password_reset_hours": reset_link_hours()}


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"

    def form_valid(self, form):
        response = super().form_valid(form)
        user_activity_record(user=form.user, action=Activity.Action.PASSWORD_RESET)
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"


class FirstPasswordView(auth_views.PasswordResetConfirmView):
    """Where a new account's first owner sets a password (the link `create_account` prints)."""

    token_generator = first_password_tokens
    template_name = "registration/first_password.html"
    success_url = reverse_lazy("login")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if self.user is not None:
            context["accounts"] = [m.account.name for m in self.user.memberships.select_related("account")]
            context["username"] = self.user.get_username()
        return context

    def form_valid(self, form):
        response = super().form_valid(form)
        user_activity_record(user=form.user, action=Activity.Action.PASSWORD_SET)
        messages.success(self.request, _("Your password is set. Log in with it now."))
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("profile")

    def form_valid(self, form):
        # Django keeps this session signed in and ends the person's other sessions.
        response = super().form_valid(form)
        user_activity_record(user=form.user, action=Activity.Action.PASSWORD_CHANGED)
        messages.success(self.request, _("Password changed. Your other sessions were signed out."))
        return response


# --------------------------------------------------------------------------- the person's page


class TimeZoneForm(forms.Form):
    """The zone a person reads times in that belong to no one property (the activity log)."""

    time_zone = forms.CharField(
        label=gettext_lazy("Your time zone"), max_length=64, required=False, validators=[validate_timezone_name],
        widget=forms.TextInput(attrs={"list": "timezone-names", "autocomplete": "off"}),
        help_text=gettext_lazy("Times on the activity page are shown in this zone. Empty: the zone most of the account's properties are in."),
    )

    def clean_time_zone(self) -> str:
        return self.cleaned_data["time_zone"].strip()


class ApiTokenForm(forms.Form):
    """A new API token: its name, and the account it acts in (with the role the person has there)."""

    name = forms.CharField(
        label=gettext_lazy("Name"), max_length=100,
        help_text=gettext_lazy("What uses it, such as “PMS sync” or “monitoring”."),
    )
    account = forms.ModelChoiceField(label=gettext_lazy("Account"), queryset=Membership.objects.none(), empty_label=None)

    def __init__(self, *args, memberships: list[Membership], current: Membership | None, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["account"]
        field.queryset = Membership.objects.filter(pk__in=[m.pk for m in memberships]).select_related("account")
        field.label_from_instance = lambda m: f"{m.account.name} ({m.get_role_display()})"
        if current is not None:
            field.initial = current.pk


@require_http_methods(["GET", "POST"])
@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """Your sign-in: password, two-factor sign-in, your time zone, the accounts you belong to and
    their emails."""
    memberships = list(
        Membership.objects.filter(user_id=request.user.pk).select_related("account").order_by("account__name", "pk")
    )
    current = Membership.current_of(request.user)
    zone_form = TimeZoneForm(initial={"time_zone": current.time_zone if current else ""})
    if request.method == "POST" and request.POST.get("form") == "time_zone":
        zone_form = TimeZoneForm(request.POST)
        if zone_form.is_valid():
            # A person's zone, whichever account they work in.
            Membership.objects.filter(user_id=request.user.pk).update(time_zone=zone_form.cleaned_data["time_zone"])
            messages.success(request, _("Time zone saved."))
            return redirect("profile")
    elif request.method == "POST" and request.POST.get("form") == "api_token_revoke":
        token = api_token_revoke(user=request.user, token_id=parse_id(request.POST.get("token")))
        if token is not None:
            messages.success(request, _("Revoked the API token “%(name)s”: it works no more.") % {"name": token.name})
        return redirect(reverse("profile") + "#api-tokens")
    elif request.method == "POST" and request.POST.get("form") != "api_token_create":
        # Emails are chosen per account on "Your alerts" (syncs.views.alerts).
        return redirect("my-alerts")
    creating = request.method == "POST" and request.POST.get("form") == "api_token_create"
    token_form = ApiTokenForm(request.POST if creating else None, memberships=memberships, current=current)
    made = None
    if creating and token_form.is_valid():
        # Shown once, on this answer only: only its hash is kept.
        made = api_token_create(membership=token_form.cleaned_data["account"], name=token_form.cleaned_data["name"])
    app = two_factor.app_of(request.user)
    return render(
        request,
        "syncs/profile.html",
        {
            "memberships": memberships,
            "app": app,
            "codes_left": two_factor.recovery_codes_left(request.user) if app else 0,
            "requiring": two_factor.accounts_requiring(request.user),
            "zone_form": zone_form,
            "main_zone": current.account.main_time_zone() if current else "",
            "timezone_names": timezone_names(),
            "token_form": token_form,
            "made_token": made,
            "api_tokens": api_tokens_of(user=request.user),
        },
    )


@require_POST
@login_required
def account_switch(request: HttpRequest) -> HttpResponse:
    """Work in another of the person's accounts, on every device (404 for any other account)."""
    try:
        membership = membership_switch(user=request.user, account_id=parse_id(request.POST.get("account")))
    except Membership.DoesNotExist as exc:
        raise Http404 from exc
    messages.info(request, _("You are working in %(account)s now.") % {"account": membership.account.name})
    # Home, not back: the page the person was on belongs to the other account.
    return redirect("home")


# --------------------------------------------------------------------------- two-factor sign-in


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"), max_length=20, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
    )


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(label=gettext_lazy("Your password"), strip=False, widget=forms.PasswordInput)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise ValidationError(_("That is not your password."))
        return password


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: scan the code (or type the key), then type a code it shows."""
    if user_has_two_factor(request.user):
        messages.info(request, _("Two-factor sign-in is on. To use another phone, turn it off and set it up again."))
        return redirect("profile")
    device = two_factor.app_pending(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = two_factor.app_confirm(user=request.user, device=device, code=form.cleaned_data["code"])
        except ValidationError as error:
            form.add_error("code", error)
        else:
            device.refresh_from_db()
            _second_factor_passed(request, device)
            request.session[RECOVERY_CODES_SESSION] = codes
            messages.success(request, _("Two-factor sign-in is on."))
            return redirect(reverse("recovery-codes") + "?" + _next_query(request))
    return render(
        request,
        "syncs/two_factor_setup.html",
        {
            "form": form, "secret": two_factor.app_secret(device), "qr_code": two_factor.app_qr_code(device),
            "next": next_path(request, ""),
        },
    )


def _second_factor_passed(request: HttpRequest, device) -> None:
    """This session passed the second factor: under a new session key, so that a session whose
    key someone else knows (planted in this browser after typing a password) is not the one
    that becomes fully signed in. The old key stops working."""
    request.session.cycle_key()
    otp_login(request, device)


def _next_query(request: HttpRequest) -> str:
    nxt = next_path(request, "")
    return urlencode({"next": nxt}) if nxt else ""


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """The recovery codes, shown once: after the set-up, or when the person asks for new ones,
    which needs the password again (codes sign in without the app: whoever holds a session
    left open must not be able to make their own)."""
    if not user_has_two_factor(request.user):
        return redirect("profile")
    codes = request.session.pop(RECOVERY_CODES_SESSION, None) if request.method == "GET" else None
    form = PasswordConfirmForm(request.POST if request.method == "POST" else None, user=request.user)
    if request.method == "POST" and form.is_valid():
        codes = two_factor.recovery_codes_renew(user=request.user)
        messages.success(request, _("New recovery codes made: the old ones no longer work."))
    if not codes:
        return render(request, "syncs/recovery_codes.html", {"form": form}, status=400 if form.is_bound else 200)
    return render(request, "syncs/recovery_codes.html", {"codes": codes, "next": next_path(request, reverse("profile"))})


@require_http_methods(["GET", "POST"])
@login_required
def two_factor_disable(request: HttpRequest) -> HttpResponse:
    """Turn two-factor sign-in off, after typing the password again."""
    form = PasswordConfirmForm(request.POST or None, user=request.user)
    requiring = two_factor.accounts_requiring(request.user)
    if request.method == "POST" and form.is_valid():
        try:
            two_factor.two_factor_disable(user=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, _("Two-factor sign-in is off."))
        return redirect("profile")
    return render(request, "syncs/two_factor_disable.html", {"form": form, "requiring": requiring})


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """The second step of signing in: a code from the app, or a recovery code."""
    target = next_path(request, reverse(settings.LOGIN_REDIRECT_URL))
    if request.user.is_verified() or not user_has_two_factor(request.user):
        return HttpResponseRedirect(target)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = two_factor.code_verify(user=request.user, code=form.cleaned_data["code"])
        if result.device is not None:
            _second_factor_passed(request, result.device)
            if result.recovery_code:
                left = two_factor.recovery_codes_left(request.user)
                messages.warning(
                    request,
                    ngettext(
                        "You signed in with a recovery code; %(left)s left. Make new ones on your sign-in page if few are left.",
                        "You signed in with a recovery code; %(left)s left. Make new ones on your sign-in page if few are left.",
                        left,
                    )
                    % {"left": left},
                )
            return HttpResponseRedirect(target)
        if result.wait_until:
            words = two_factor.wait_words(result.wait_until)
        elif result.reused:
            words = two_factor.reused_words()
        else:
            words = _("That code did not match. Try the code your app shows now.")
        form.add_error("code", words)
    return render(request, "registration/two_factor_verify.html", {"form": form, "next": target})
