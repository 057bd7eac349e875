from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from syncs.views.auth import SignInForm
from syncs.views.export import export_feed
from syncs.views.metrics import metrics

urlpatterns = [
    # First: portals read these URLs far more often than people open pages, and each pattern
    # tried before the match costs every read.
    path("ical/<str:token>.ics", export_feed, name="export-feed"),
    path("metrics", metrics, name="metrics"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=SignInForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("syncs.api.urls")),
    path("", include("syncs.urls")),
]
