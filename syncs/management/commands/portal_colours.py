"""Write the portals' colours (syncs/portals.py LOOKS) into static/css/app.css.

The colours live in one place, portals.py, which Python reads to draw legends and cells; the
stylesheet holds the same rules between two marker comments, rewritten by this command. A test
fails when the two differ, saying to run it.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncs.portals import CSS_BEGIN, CSS_END, portal_css

STYLESHEET = Path(settings.BASE_DIR) / "static" / "css" / "app.css"


def with_portal_css(text: str) -> str:
    """The stylesheet's text with its portal colours section replaced (or appended)."""
    start = text.find(CSS_BEGIN)
    if start == -1:
        return text.rstrip("\n") + "\n" + portal_css()
    end = text.find(CSS_END, start)
    if end == -1:
        raise CommandError(f"{STYLESHEET} has {CSS_BEGIN!r} without {CSS_END!r}")
    after = text[end + len(CSS_END):].lstrip("\n")
    return text[:start] + portal_css() + after


class Command(BaseCommand):
    help = "Write the portals' colours from syncs/portals.py into static/css/app.css."

    def handle(self, *args, **options) -> None:
        text = STYLESHEET.read_text(encoding="utf-8")
        new = with_portal_css(text)
        if new != text:
            STYLESHEET.write_text(new, encoding="utf-8")
            self.stdout.write(f"wrote the portal colours into {STYLESHEET}")
        else:
            self.stdout.write("the portal colours were already up to date")
