from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from syncs.models import Account


class AccountSettingsForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["auto_resume"]


@require_http_methods(["GET", "POST"])
@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    """The account's settings: today, whether paused syncs resume by themselves."""
    account = Account.of_user(request.user)
    if account is None:
        raise PermissionDenied
    # Bound on every POST: unticking the only box sends an empty (falsy) POST.
    form = AccountSettingsForm(request.POST if request.method == "POST" else None, instance=account)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Settings saved."))
        return redirect("account-settings")
    return render(request, "syncs/account_settings.html", {"account": account, "form": form})
