from __future__ import annotations

from django import template

from syncs.conflicts import Clash, conflict_fingerprint, conflict_key
from syncs.explain import clash_words

register = template.Library()


@register.simple_tag
def conflict_names(conflict) -> dict:
    """What names a double booking as the page shows it (syncs.conflicts)."""
    return {"key": conflict_key(conflict), "fingerprint": conflict_fingerprint(conflict)}


@register.filter
def nights(clash: Clash) -> str:
    """The nights that clash, in words: "2 nights, 12 December to 13 December 2026"."""
    return clash_words(clash)
