from __future__ import annotations

from django import template

from syncs.explain import describe
from syncs.explain import since as time_since
from syncs.fetch import mask_url

register = template.Library()


@register.simple_tag
def run_words(run) -> str:
    """A sync run's outcome in plain words, naming the portal."""
    return describe(run.outcome, run.error_params, portal=run.connection.portal.name)


@register.simple_tag
def pause_words(connection) -> str:
    """Why a connection is paused (or last failed), in plain words."""
    code = connection.pause_reason or connection.last_error_code
    params = connection.pause_params if connection.pause_reason else connection.last_error_params
    return describe(code, params, portal=connection.portal.name) if code else ""


@register.filter
def masked_url(url: str) -> str:
    """An import URL with its secret part hidden (the full one is revealed on request only)."""
    return mask_url(url) if url else ""


@register.filter
def since(moment) -> str:
    """Like Django's timesince, but "less than a minute" where it would say "0 minutes"."""
    return time_since(moment) if moment else ""
