"""The CSV of syncs, both ways: the export an operator downloads is the file they upload.

One row per sync. The columns (``COLUMNS``) have a name in each of the site's languages and may
come in any order; "State" and "Export URL" are written for the operator and ignored when read.
A file without a first line of names is the original format: property, time zone, portal,
import link.

Reading accepts what spreadsheets save: the encoding the file declares with a byte order mark
or, without one, the first of UTF-8, UTF-16 (a file that is half NUL bytes) and Windows-1252
that decodes it (Latin-1 only for the five bytes Windows-1252 leaves undefined, which are
control characters and removed); commas, semicolons (Portugal's and Spain's spreadsheets) or
tabs (Excel's "Unicode text"). Control characters are removed from every cell, and the
apostrophe that ``syncs.spreadsheet_csv`` puts before a cell a spreadsheet would run is taken
off again. Whatever is wrong with the file as a whole is a sentence in ``problems``, and then no
row is read: a file is checked whole or not at all.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils import formats, translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext_lazy

from syncs.clean_text import clean
from syncs.export_tokens import export_token_ensure, export_url
from syncs.models import Account, Connection
from syncs.spreadsheet_csv import cell_read, rows_written
from syncs.sync_state import connection_statuses

MAX_BYTES = 4 * 1024 * 1024  # 5,000 long rows in UTF-16, with room to spare
MAX_ROWS = 5000


@dataclass(frozen=True)
class Column:
    key: str
    label: Promise
    # Other names the column goes by (compared folded: no case, accents or punctuation).
    aliases: tuple[str, ...] = ()
    read_only: bool = False


COLUMNS = (
    Column("id", gettext_lazy("Sync id"), ("id", "sync", "sync number")),
    Column("property", gettext_lazy("Property"),
           ("name", "property name", "flat", "house", "nome", "nombre", "propriedade", "propiedad")),
    Column("timezone", gettext_lazy("Time zone"), ("timezone", "tz", "zone", "zona")),
    Column("portal", gettext_lazy("Portal"), ("channel", "canal", "site")),
    Column("url", gettext_lazy("Import link"),
           ("import url", "link", "url", "ical", "ical link", "ical url", "calendar link", "feed", "ligacao",
            "ligacao de importacao", "url de importacao", "enlace", "url de importacion")),
    Column("direction", gettext_lazy("Direction"), ("direccion", "direcao", "sentido")),
    Column("enabled", gettext_lazy("Switched on"), ("on", "on off", "enabled", "active", "switch")),
    Column("interval", gettext_lazy("Interval (minutes)"), ("interval", "minutes", "sync interval", "every")),
    Column("state", gettext_lazy("State"), ("status",), read_only=True),
    Column("export_url", gettext_lazy("Export URL"), ("export link", "export"), read_only=True),
)
BY_KEY = {column.key: column for column in COLUMNS}
# The original format, without a first line of names.
LEGACY = ("property", "timezone", "portal", "url")

YES = pgettext_lazy("a sync switched on, in the CSV", "yes")
NO = pgettext_lazy("a sync switched off, in the CSV", "no")
_YES_WORDS = ("yes", "y", "on", "true", "1", "x", "sim", "si", "ligada", "ligado", "activada", "activado", "activa")
_NO_WORDS = ("no", "n", "off", "false", "0", "nao", "desligada", "desligado", "desactivada", "desactivado", "inactiva")
_DIRECTION_WORDS = {
    Connection.Direction.TWO_WAY: ("two way", "both", "2 way", "ambos", "ambas"),
    Connection.Direction.IMPORT_ONLY: ("import", "importar", "so importar", "solo importar"),
    Connection.Direction.EXPORT_ONLY: ("export", "exportar", "so exportar", "solo exportar"),
}
_ZIP = b"PK\x03\x04"  # .xlsx and .ods files are zip archives
_LINK = re.compile(r"://|^www\.", re.IGNORECASE)


def folded(text: str) -> str:
    """A name as compared: no case, accents, punctuation or extra spaces ("Fuso horário" ->
    "fuso horario", "Interval (minutes)" -> "interval minutes")."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def in_every_language(words: Promise | str) -> set[str]:
    """``words`` (a lazy translation) in each of the site's languages, folded."""
    found = set()
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            found.add(folded(str(words)))
    return found


@functools.cache
def _header_words() -> dict[str, str]:
    words: dict[str, str] = {}
    for column in COLUMNS:
        for word in {*in_every_language(column.label), *map(folded, column.aliases)}:
            words.setdefault(word, column.key)
    return words


@functools.cache
def _value_words() -> dict[str, dict[str, object]]:
    """What the cells of the direction and on/off columns may say, in any of the languages."""
    directions: dict[str, object] = {}
    for value, label in Connection.Direction.choices:
        for word in {folded(value), *in_every_language(label), *map(folded, _DIRECTION_WORDS[value])}:
            directions[word] = value
    switch: dict[str, object] = {}
    for word in {*in_every_language(YES), *map(folded, _YES_WORDS)}:
        switch[word] = True
    for word in {*in_every_language(NO), *map(folded, _NO_WORDS)}:
        switch[word] = False
    return {"direction": directions, "enabled": switch}


def direction_of(cell: str) -> str | None:
    return _value_words()["direction"].get(folded(cell))


def switch_of(cell: str) -> bool | None:
    return _value_words()["enabled"].get(folded(cell))


def column_names(*, read_only: bool) -> str:
    """The columns' names in the reader's language, for a sentence: "Sync id, Property, ..."."""
    return ", ".join(str(column.label) for column in COLUMNS if column.read_only == read_only)


# --------------------------------------------------------------------------- reading


@dataclass
class FileRead:
    rows: list[dict] = field(default_factory=list)  # {"line", "cells": {column key: text}, "read_errors", "errors"}
    problems: list[str] = field(default_factory=list)  # the file cannot be used: no rows
    notices: list[str] = field(default_factory=list)  # read all the same
    columns: tuple[str, ...] = ()  # the keys of the columns read


def file_read(data: bytes) -> FileRead:
    """The rows of an uploaded file, or why it cannot be read."""
    if len(data) > MAX_BYTES:
        return _refused(
            _("The file is larger than %(size)s: split it into files of up to %(rows)s rows each.")
            % {"size": filesizeformat(MAX_BYTES), "rows": _number(MAX_ROWS)}
        )
    if not data.strip():
        return _refused(_("The file is empty."))
    text = decoded(data)
    if data.startswith(_ZIP) or "\x00" in text:
        return _refused(_("This is not a CSV file: save the spreadsheet as CSV (“Save as” or “Download as”) and upload that."))
    lines = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    read = FileRead()
    header: list[str | None] | None = None
    line = 1
    try:
        for raw in lines:
            cells = [cell_read(clean(cell).strip()) for cell in raw]
            start, line = line, lines.line_num + 1
            if not any(cells):
                continue
            if header is None and not read.rows and not read.columns:
                header, problem = _header(cells, read)
                if problem:
                    return _refused(problem)
                if header is not None:
                    continue
                read.columns = LEGACY
            if len(read.rows) >= MAX_ROWS:
                return _refused(
                    _("The file has more than %(rows)s rows: split it into files of up to %(rows)s rows each. Nothing was read.")
                    % {"rows": _number(MAX_ROWS)}
                )
            read.rows.append(_row(start, cells, header))
    except csv.Error:
        return _refused(
            _("Line %(line)s could not be read: a cell runs on for more than %(limit)s characters, usually a quote "
              "that is never closed. Check the file around that line.")
            % {"line": line, "limit": _number(csv.field_size_limit())}
        )
    if not read.rows:
        return _refused(_("The file has no rows of syncs, only its first line."))
    return read


def _number(n: int) -> str:
    """A count in the reader's way of writing numbers: 5,000 / 5\xa0000 / 5.000."""
    return formats.number_format(n, force_grouping=True)


def _refused(problem: str) -> FileRead:
    return FileRead(problems=[problem])


def decoded(data: bytes) -> str:
    """The file's text: the encoding its byte order mark declares, else UTF-16 when its bytes
    are laid out so, else the first of UTF-8 and Windows-1252 that reads it."""
    for mark, encoding in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(mark):
            try:
                return data[len(mark):].decode(encoding)
            except UnicodeDecodeError:
                break  # a mark the rest of the file belies: read it as if it had none
    # UTF-16 without a mark first: its NUL bytes are valid UTF-8 too, and a CSV has none.
    utf16 = _utf16_without_mark(data)
    if utf16:
        try:
            return data.decode(utf16)
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: those bytes are read as
    # Latin-1 (control characters, removed with the others).
    return data.decode("cp1252", errors="surrogateescape").translate(_ESCAPED_BYTES)


_ESCAPED_BYTES = {0xDC00 + byte: byte for byte in range(0x80, 0x100)}


def _utf16_without_mark(data: bytes) -> str | None:
    """UTF-16 written without a byte order mark: text of the Latin alphabet has a NUL byte in
    every other place."""
    sample = data[:2000]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > len(sample) * 0.4 and even == 0:
        return "utf-16-le"
    if even > len(sample) * 0.4 and odd == 0:
        return "utf-16-be"
    return None


def _delimiter(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: first.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _header(cells: list[str], read: FileRead) -> tuple[list[str | None] | None, str]:
    """The column of each cell of a first line of names (None: not a first line of names), or
    the file's problem."""
    words = _header_words()
    keys = [words.get(folded(cell)) if cell else None for cell in cells]
    has_link = any(_LINK.search(cell) for cell in cells)
    if has_link or (not any(keys) and len([cell for cell in cells if cell]) < 2):
        return None, ""  # a first row of syncs, in the original format
    if not any(keys):
        return None, _not_our_columns(_("its first line reads “%(line)s”") % {"line": ", ".join(c for c in cells if c)[:200]})
    seen: dict[str, str] = {}
    for cell, key in zip(cells, keys, strict=True):
        if key is not None and key in seen:
            return None, _("The column “%(name)s” is there twice (“%(first)s” and “%(second)s”): keep one.") % {
                "name": BY_KEY[key].label, "first": seen[key], "second": cell,
            }
        if key is not None:
            seen[key] = cell
    if "id" not in seen:
        missing = [BY_KEY[key].label for key in ("property", "url") if key not in seen]
        if missing:
            return None, _not_our_columns(
                _("it has no “%(column)s” column") % {"column": "”, “".join(str(name) for name in missing)}
            )
    ignored = [cell for cell, key in zip(cells, keys, strict=True) if cell and key is None]
    if ignored:
        read.notices.append(
            _("Columns that are not ours were ignored: %(names)s.") % {"names": ", ".join(ignored)[:300]}
        )
    header = [key if key is not None and not BY_KEY[key].read_only else None for key in keys]
    read.columns = tuple(key for key in header if key)
    return header, ""


def _not_our_columns(what: str) -> str:
    return _(
        "This is not a file of syncs: %(what)s. Its first line must name its columns, in any order: "
        "%(columns)s (the export's %(read_only)s are ignored). A file without that line has 4 columns: "
        "property, time zone, portal, import link."
    ) % {"what": what, "columns": column_names(read_only=False), "read_only": column_names(read_only=True)}


def _row(line: int, cells: list[str], header: list[str | None] | None) -> dict:
    row: dict = {"line": line, "cells": {}, "read_errors": []}
    if header is None:
        row["cells"] = dict(zip(LEGACY, [*cells, "", "", "", ""][:4], strict=True))
        filled = len([cell for cell in cells if cell])
        if filled < 2 or any(cells[4:]):
            row["read_errors"].append(ngettext(
                "This line has %(n)d column; each line needs 4: property name, time zone, portal, import link.",
                "This line has %(n)d columns; each line needs 4: property name, time zone, portal, import link.",
                filled,
            ) % {"n": filled})
        row["errors"] = list(row["read_errors"])
        return row
    for key, cell in zip(header, cells, strict=False):
        if key is not None:
            row["cells"][key] = cell
    needed = max((index + 1 for index, key in enumerate(header) if key), default=0)
    if any(cells[len(header):]):
        row["read_errors"].append(ngettext(
            "This line has %(n)d cell, and the first line names %(columns)d columns: a name with a comma or a "
            "semicolon in it needs quotes around it.",
            "This line has %(n)d cells, and the first line names %(columns)d columns: a name with a comma or a "
            "semicolon in it needs quotes around it.",
            len(cells),
        ) % {"n": len(cells), "columns": len(header)})
    elif len(cells) < needed:
        row["read_errors"].append(ngettext(
            "This line has %(n)d cell, and the first line names %(columns)d columns: give each row every column, "
            "empty where there is nothing to say.",
            "This line has %(n)d cells, and the first line names %(columns)d columns: give each row every column, "
            "empty where there is nothing to say.",
            len(cells),
        ) % {"n": len(cells), "columns": len(header)})
    row["errors"] = list(row["read_errors"])
    return row


# --------------------------------------------------------------------------- writing


def export_rows(*, account: Account) -> list[list[object]]:
    """Every sync of the account, in the columns the upload reads, with its state and export URL
    (managers and owners only: import links and export URLs are secrets)."""
    connections = list(
        Connection.objects.for_account(account).select_related("property", "portal")
        .order_by("property__name", "property__pk", "portal__position", "pk")
    )
    statuses = connection_statuses(connections)
    rows: list[list[object]] = [[column.label for column in COLUMNS]]
    for connection in connections:
        url = export_url(export_token_ensure(property=connection.property, connection=connection)) if connection.exports else ""
        rows.append([
            connection.pk, connection.property.name, connection.property.timezone, connection.portal.display_name,
            connection.import_url, connection.get_direction_display(), YES if connection.enabled else NO,
            connection.sync_interval_minutes, statuses[connection.pk].label, url,
        ])
    return rows


def export_text(*, account: Account) -> str:
    """The export as CSV text (every cell through ``syncs.spreadsheet_csv``)."""
    return rows_written(export_rows(account=account))
