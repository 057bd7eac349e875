"""CSV that a spreadsheet opens as text: every CSV the product writes goes through here.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and a tab
or a carriage return at the start can hide one (OWASP, "CSV Injection"). Names come from
operators and feeds, so a property named ``=1+1`` or ``-2+3+cmd|' /C calc'!A0`` must reach the
spreadsheet as those characters. Such a cell is written with a leading apostrophe, which
spreadsheets show as text and do not display; reading a file back takes that one apostrophe
off again, so a name survives the round trip unchanged.

A cell that already starts with apostrophes before one of those characters gets one more, and
loses one when read: ``'=x`` is written ``''=x`` and read back as ``'=x``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

_FORMULA_START = "=+-@\t\r"
_NEEDS_QUOTE = re.compile(r"'*[=+\-@\t\r]")
_QUOTED = re.compile(r"'+[=+\-@\t\r]")


def cell_written(value: object) -> str:
    """The text of one cell as written to a CSV: formulas disarmed."""
    text = "" if value is None else str(value)
    return "'" + text if _NEEDS_QUOTE.match(text) else text


def cell_read(text: str) -> str:
    """One cell as read from a CSV that may have been written by ``cell_written``."""
    return text[1:] if _QUOTED.match(text) else text


def rows_written(rows: Iterable[Iterable[object]]) -> str:
    """Rows as CSV text (Excel's dialect: commas, CRLF), every cell through ``cell_written``."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([cell_written(value) for value in row])
    return out.getvalue()
