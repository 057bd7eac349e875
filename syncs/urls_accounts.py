"""Sign-in, the person's own page, and the account's members."""

from __future__ import annotations

from django.urls import path

from syncs.views import auth, members

urlpatterns = [
    path("accounts/password/reset/", auth.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password/reset/sent/", auth.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("accounts/reset/<uidb64>/<token>/", auth.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("accounts/reset/done/", auth.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("accounts/password/change/", auth.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/welcome/<uidb64>/<token>/", auth.FirstPasswordView.as_view(), name="first-password"),
    path("accounts/two-factor/", auth.two_factor_verify, name="two-factor-verify"),
    path("accounts/switch/", auth.account_switch, name="account-switch"),
    path("me/", auth.profile, name="profile"),
    path("me/two-factor/", auth.two_factor_setup, name="two-factor-setup"),
    path("me/two-factor/codes/", auth.recovery_codes, name="recovery-codes"),
    path("me/two-factor/off/", auth.two_factor_disable, name="two-factor-disable"),
    path("members/", members.member_list, name="members"),
    path("members/invite/", members.member_invite, name="member-invite"),
    path("members/<int:membership_id>/role/", members.member_role, name="member-role"),
    path("members/<int:membership_id>/remove/", members.member_remove, name="member-remove"),
    path("invitations/<int:invitation_id>/resend/", members.invitation_resend, name="invitation-resend"),
    path("invitations/<int:invitation_id>/revoke/", members.invitation_revoke, name="invitation-revoke"),
    path("invitations/<str:token>/", members.invitation_accept, name="invitation-accept"),
]
