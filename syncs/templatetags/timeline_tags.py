from __future__ import annotations

from django import template
from django.utils import formats
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

register = template.Library()


@register.simple_tag(takes_context=True)
def timeline_nights(context, row) -> SafeString:
    """A row's night cells. Built here rather than by template loops: a page has thousands of
    cells, and this is most of its rendering time. Classes: ``night portal-<slug>`` per taken
    night (``night here`` for nights made here), ``conflict`` on a possible double booking."""
    double, handled = _("possible double booking"), _("double booking marked handled")
    # Every row has the page's nights: each date is written in words once per page.
    dates = context.render_context.setdefault("timeline_dates", {})
    cells = []
    for night in row.nights:
        classes = "tl-night weekend" if night.weekend else "tl-night"
        if night.conflict:
            classes += " conflict"
        elif night.handled:
            classes += " conflict-handled"
        if not night.portals:
            cells.append(f'<td class="{classes}"></td>')
            continue
        extra = " conflict" if night.conflict else ""
        spans = "".join(
            f'<span class="night {"here" if slug == "here" else "portal-" + conditional_escape(slug)}{extra}" '
            f'title="{conditional_escape(name)}"></span>'
            for slug, name in night.portals
        )
        said = ", ".join(conditional_escape(name) for _slug, name in night.portals)
        if night.conflict:
            said += f" — {double}"
        elif night.handled:
            said += f" — {handled}"
        day = dates.get(night.day)
        if day is None:
            day = dates[night.day] = formats.date_format(night.day, "DATE_FORMAT")
        cells.append(f'<td class="{classes}">{spans}<span class="visually-hidden">{day}: {said}</span></td>')
    return mark_safe("".join(cells))  # every value above is escaped
