"""Names as people look for them and list them: one rule to search by, one to sort by.

Searching ignores case and accents: "atico", "ÁTICO" and "Ático" find one another. The rule is
``folded``, applied in Python to the name when it is saved (``FoldedField``: a column kept next
to the name) and to what the person typed, so that the database only compares two folded
strings: the same results on SQLite and PostgreSQL, whatever their collations and extensions.

Sorting follows the reader's language (``sort_key``), in the manner of the Unicode Collation
Algorithm's three levels for the Latin script: letters first, whatever their case and accents
("Ático" before "Villa", "casa" next to "Casa"); then unaccented before accented; then lower
case before upper case. Spanish orders "ñ" as a letter of its own after "n" ("Nube" before
"Ñandú"); English and Portuguese order it as an "n" with an accent. No maintained ICU binding
installs from PyPI on Python 3.11 without compiling ICU (PyICU and icupy ship no wheels; icu4py
has no collator), so the rule is written here, in one place. Lists of a few rows sort in Python
(``by_name``); the account's properties are ordered by the database, on ``order_key``: the same
key as bytes kept next to the name (``OrderKeyField``, one column per rule), which every database
compares byte by byte, as Python compares the key.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from django.db import models
from django.db.models import Q

# Latin letters that Unicode does not decompose into a base letter and an accent.
_BASE_LETTERS = str.maketrans({
    "ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "\u0131": "i", "ħ": "h", "ŧ": "t",
})
# After every "n" in Spanish: sorts "ñ" after "nz" and before "o" (a letter of its own).
_AFTER_N = "\U0010ffff"
_TILDE = "\u0303"


def folded(text: str) -> str:
    """``text`` without case or accents, its spaces collapsed: what a search compares."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_BASE_LETTERS))
    return " ".join("".join(char for char in decomposed if not unicodedata.combining(char)).split())


@lru_cache(maxsize=50_000)
def sort_key(text: str, language: str) -> tuple[str, str, str]:
    """A key that orders names as a reader of ``language`` ("en", "pt", "es", ...) expects:
    letters, then accents, then case (see the module's docstring)."""
    spaced = " ".join(text.split())
    letters = unicodedata.normalize("NFD", spaced)
    if language.split("-")[0] == "es":
        letters = letters.replace("n" + _TILDE, "n" + _AFTER_N).replace("N" + _TILDE, "N" + _AFTER_N)
    primary = folded(letters)  # the marker is no accent: folding keeps it
    # Accents: "atico" before "ático" (a combining mark sorts after every letter).
    secondary = unicodedata.normalize("NFD", spaced.casefold())
    # Case: lower before upper, "casa" before "Casa".
    tertiary = spaced.swapcase()
    return primary, secondary, tertiary


class FoldedField(models.CharField):
    """A column that holds ``folded`` of another field of the row, set whenever the row is
    written by the ORM (save, create, bulk_create): never typed in, never out of date."""

    def __init__(self, *args, source: str = "", **kwargs):
        self.source = source
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def pre_save(self, model_instance, add: bool) -> str:
        value = folded(getattr(model_instance, self.source) or "")[: self.max_length]
        setattr(model_instance, self.attname, value)
        return value


# Between the levels of an order key: below every byte of an encoded level (see ``order_key``).
_LEVEL_END = b"\x00\x00"


def order_key(text: str, language: str) -> bytes:
    """``sort_key`` as bytes that compare, byte by byte, as the key's tuple compares: each level in
    UTF-8 (whose byte order is the order of code points, Python's), a NUL in it written as
    NUL 01, each level ended by two NULs, so that a level that is the start of another sorts first."""
    return b"".join(
        level.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\x01") + _LEVEL_END
        for level in sort_key(text, language)
    )


class OrderKeyField(models.BinaryField):
    """A column that holds ``order_key`` of another field of the row in one language's order, set
    whenever the row is written by the ORM (save, create, bulk_create): the database sorts on it."""

    def __init__(self, *args, source: str = "", language: str = "en", **kwargs):
        self.source, self.language = source, language
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"], kwargs["language"] = self.source, self.language
        return name, path, args, kwargs

    def pre_save(self, model_instance, add: bool) -> bytes:
        value = order_key(getattr(model_instance, self.source) or "", self.language)
        setattr(model_instance, self.attname, value)
        return value


def order_field(language: str) -> str:
    """The column of Property keys that orders names as a reader of ``language`` expects: Spanish
    has its own ("ñ" is a letter), the other languages share the English one (``sort_key``)."""
    return "name_order_es" if language.split("-")[0] == "es" else "name_order"


def by_name(rows: Iterable[tuple[int, str]], language: str) -> list[tuple[int, str]]:
    """(id, name) rows, their names in the reader's order (ties by id: a stable order for paging)."""
    return sorted(rows, key=lambda row: (sort_key(row[1], language), row[0]))


def name_matches(search: str, *, path: str = "") -> Q:
    """A filter on the properties (``path``: the way from the rows to their property, as
    "property__") whose name contains ``search``, ignoring case and accents."""
    return Q(**{f"{path}name_key__contains": folded(search)})
