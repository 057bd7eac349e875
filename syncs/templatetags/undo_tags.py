"""The Undo button of a message that offers one (syncs.views.undo)."""

from __future__ import annotations

from django import template

from syncs.undo import WINDOW
from syncs.views.undo import undo_offered

register = template.Library()


@register.inclusion_tag("syncs/includes/undo_form.html", takes_context=True)
def undo_button(context, message) -> dict:
    """A plain form that posts the undo and comes back to the page the message is shown on
    (for an htmx answer, the page that asked, not the URL that answered)."""
    request = context.get("request")
    back = ""
    if request is not None:
        htmx = getattr(request, "htmx", None)
        back = (htmx.current_url_abs_path or "") if htmx else request.get_full_path()
    return {
        "undo_id": undo_offered(message), "csrf_token": context.get("csrf_token"), "next": back,
        "lifetime": int(WINDOW.total_seconds()),
    }
