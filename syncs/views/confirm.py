"""Asking first, for actions that cannot be undone: what follows, in plain words.

On the page, the action's button opens a ``<details class="confirm">`` holding the words and the
real form (``syncs/includes/confirm_details.html``): two steps, with or without JavaScript. The
form says ``confirmed=1``; a post without it (a page from before, a script) is not done but
answered with the same question on a page of its own (``syncs/confirm.html``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@dataclass(frozen=True)
class Confirmation:
    title: str
    sentences: list[str] = field(default_factory=list)
    button: str = ""


def confirmed(request: HttpRequest) -> bool:
    return request.method == "POST" and request.POST.get("confirmed") == "1"


def confirmation_page(request: HttpRequest, confirmation: Confirmation, *, action: str, cancel: str) -> HttpResponse:
    return render(
        request, "syncs/confirm.html",
        {"confirmation": confirmation, "action": action, "cancel": cancel, "next": request.POST.get("next", "")},
    )
