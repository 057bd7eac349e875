from __future__ import annotations

from django import template

from syncs.conflicts import conflict_fingerprint, conflict_key

register = template.Library()


@register.simple_tag
def conflict_names(conflict) -> dict:
    """What names a double booking as the page shows it (syncs.conflicts)."""
    return {"key": conflict_key(conflict), "fingerprint": conflict_fingerprint(conflict)}
