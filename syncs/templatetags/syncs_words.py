from __future__ import annotations

from django import template
from django.utils.translation import gettext

from syncs.blocks import TEST_BLOCK_SUMMARY, is_test_block_note
from syncs.engine.fetch import mask_url
from syncs.explain import describe, describe_activity, describe_notice
from syncs.explain import since as time_since
from syncs.roles import viewer_note as viewer_note_words

register = template.Library()


@register.simple_tag
def run_words(run) -> str:
    """A sync run's outcome in plain words, naming the portal."""
    return describe(run.outcome, run.error_params, portal=run.connection.portal.name_in_sentence)


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


@register.filter
def block_note(summary: str) -> str:
    """A block's note as the reader should read it: the checklist's test block in their language
    (it is stored in the words of whoever added it), any other note as written."""
    return gettext(TEST_BLOCK_SUMMARY) if is_test_block_note(summary) else summary


@register.filter
def portal_title(block) -> str:
    """What the portal called an imported block, when it says more than its kind ("Reserved"
    next to "Reserved" says nothing twice)."""
    summary = " ".join((block.summary or "").split())
    # The kinds' values are their English words, the words of most portals' feeds.
    if summary.casefold() in {block.kind.casefold(), str(block.get_kind_display()).casefold()}:
        return ""
    return summary


@register.simple_tag(takes_context=True)
def viewer_note(context) -> str:
    """A viewer's role and who can change things, where a manager has controls ("" otherwise)."""
    return viewer_note_words(context.get("membership"))
