from __future__ import annotations

from django import template

from syncs.explain import describe, describe_activity, describe_notice
from syncs.explain import since as time_since
from syncs.fetch import mask_url

register = template.Library()


@register.simple_tag
def run_words(run) -> str:
    """A sync run's outcome in plain words, naming the portal."""
    return describe(run.outcome, run.error_params, portal=run.connection.portal.name)


@register.simple_tag
def run_notices(run) -> list[str]:
    """What the operator should know of a feed a run read all the same (shared UIDs, encoding)."""
    return [describe_notice(notice.get("code", ""), notice.get("params")) for notice in run.notices or []]


@register.simple_tag
def activity_words(entry) -> str:
    """The details of an activity row, in plain words."""
    return describe_activity(entry)


@register.filter
def masked_url(url: str) -> str:
    """An import URL with its secret part hidden (the full one is revealed on request only)."""
    return mask_url(url) if url else ""


@register.filter
def since(moment) -> str:
    """Like Django's timesince, but "less than a minute" where it would say "0 minutes"."""
    return time_since(moment) if moment else ""
