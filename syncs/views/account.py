from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from syncs.forms import timezone_names
from syncs.models import Account, Membership


class AccountSettingsForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["auto_resume"]


class MembershipSettingsForm(forms.ModelForm):
    """The user's own settings: the zone they read account-wide times in (the activity log)."""

    class Meta:
        model = Membership
        fields = ["time_zone"]
        widgets = {"time_zone": forms.TextInput(attrs={"list": "timezone-names", "autocomplete": "off"})}

    def clean_time_zone(self) -> str:
        return self.cleaned_data["time_zone"].strip()


@require_http_methods(["GET", "POST"])
@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    """The account's settings (whether paused syncs resume by themselves) and the user's own (the
    time zone of the activity log)."""
    account = Account.of_user(request.user)
    if account is None:
        raise PermissionDenied
    data = request.POST if request.method == "POST" else None
    # Bound on every POST: unticking the only box sends an empty (falsy) POST.
    form = AccountSettingsForm(data, instance=account)
    own = MembershipSettingsForm(data, instance=request.user.membership)
    if request.method == "POST" and form.is_valid() and own.is_valid():
        with transaction.atomic():  # both or neither
            form.save()
            own.save()
        messages.success(request, _("Settings saved."))
        return redirect("account-settings")
    return render(
        request,
        "syncs/account_settings.html",
        {
            "account": account, "form": form, "own": own, "timezone_names": timezone_names(),
            "main_zone": account.main_time_zone(),
        },
    )
