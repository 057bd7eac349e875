"""Control characters out of text that others wrote: feeds, forms and query strings.

A NUL or another control character means nothing in a name, a note or a UID, breaks what
displays it, and PostgreSQL refuses a NUL in a text column (a ``DataError`` that used to end a
sync without a record, or a page with a 500). Tabs and line breaks are text, and stay.
"""

from __future__ import annotations

import re

# C0 controls but tab, LF and CR; DEL; the C1 controls (U+0080 to U+009F).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def without_control_characters(text: str) -> tuple[str, int]:
    """The text without control characters, and how many were removed."""
    return _CONTROL.subn("", text)


def clean(text: str) -> str:
    """The text without control characters."""
    return _CONTROL.sub("", text)


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None
