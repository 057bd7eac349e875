from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from syncs.models import Account
from syncs.selectors import property_list_with_connections


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The landing page after login: the account's properties and their syncs."""
    return render(
        request,
        "syncs/home.html",
        {"account": Account.of_user(request.user), "properties": property_list_with_connections(user=request.user)},
    )
