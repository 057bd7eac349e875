from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from syncs.auth_middleware import user_has_two_factor
from syncs.members import account_settings_record
from syncs.models import Account
from syncs.roles import Role, membership_of, owner_note, role_required


class AccountSettingsForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ["auto_resume", "require_two_factor"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_require_two_factor(self) -> bool:
        required = self.cleaned_data["require_two_factor"]
        # The owner who requires it goes first: they would otherwise lock themselves out of this
        # page until they set it up, in the middle of changing a setting.
        if required and not self.instance.require_two_factor and not user_has_two_factor(self.user):
            raise forms.ValidationError(_("Set up two-factor sign-in for yourself first (on your sign-in page)."))
        return required


@require_safe
@login_required
@role_required(Role.MANAGER)
def account_settings(request: HttpRequest) -> HttpResponse:
    """The account's settings: whether paused syncs resume by themselves and whether every member
    must sign in with two-factor sign-in (owners change them, managers read them), and where
    each member's email alerts and the account's webhooks are set."""
    account = Account.of_user(request.user)
    return _settings_page(request, AccountSettingsForm(instance=account, user=request.user))


@require_POST
@login_required
@role_required(Role.OWNER)
def account_settings_save(request: HttpRequest) -> HttpResponse:
    account = Account.of_user(request.user)
    if account is None:
        raise PermissionDenied
    # Bound on every POST: unticking the only box sends an empty (falsy) POST.
    form = AccountSettingsForm(request.POST, instance=account, user=request.user)
    if not form.is_valid():
        return _settings_page(request, form)
    form.save()
    account_settings_record(account=account, user=request.user, changed=form.changed_data)
    messages.success(request, _("Settings saved."))
    return redirect("account-settings")


def _settings_page(request: HttpRequest, form: AccountSettingsForm) -> HttpResponse:
    return render(request, "syncs/account_settings.html", {
        "account": form.instance, "form": form, "owner_note": owner_note(membership_of(request)),
    })
