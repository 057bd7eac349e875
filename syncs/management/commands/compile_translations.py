"""Compile the translation catalogues (locale/*/LC_MESSAGES/*.po) to .mo files with polib.

Django's own compilemessages needs GNU gettext's msgfmt; a fresh machine may have only Python
and make, so `make run`, `make test` and the Docker image compile with this instead. A .mo is
rewritten only when its .po is newer (or the .mo is missing), so a second run costs nothing.

Like `msgfmt --check`, it refuses a catalogue whose plural messages lack a form its header
declares (gettext shows English for a count that needs the missing form) or whose translation
names a placeholder the English does not have (formatting it would fail on the page).
"""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import polib
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def catalogues(locale_dirs: list[Path] | None = None) -> list[Path]:
    """Every .po file under the project's locale folders, in a stable order."""
    dirs = locale_dirs if locale_dirs is not None else [Path(d) for d in settings.LOCALE_PATHS]
    return sorted(po for folder in dirs for po in Path(folder).glob("*/LC_MESSAGES/*.po"))


_PLACEHOLDER = re.compile(r"%\(([a-zA-Z_]\w*)\)[sdifr]")


def plural_rule(catalogue: polib.POFile) -> tuple[int, object]:
    """The number of plural forms the header declares, and its rule (n -> form index).

    Raises ValueError when the header has no usable Plural-Forms."""
    header = catalogue.metadata.get("Plural-Forms", "")
    match = re.fullmatch(r"\s*nplurals\s*=\s*(\d+)\s*;\s*plural\s*=\s*(.+?)\s*;?\s*", header)
    if match is None:
        raise ValueError(f"the header's Plural-Forms cannot be read: {header!r}")
    return int(match.group(1)), gettext.c2py(match.group(2))


def catalogue_problems(catalogue: polib.POFile) -> list[str]:
    """What `msgfmt --check` would refuse in the catalogue's translated entries, in words:
    a plural message without exactly the forms the header declares, a form left empty, a
    placeholder in a translation that the English text does not have."""
    problems: list[str] = []
    nplurals = 0
    if any(entry.msgid_plural for entry in catalogue.translated_entries()):
        try:
            nplurals = plural_rule(catalogue)[0]
        except ValueError as exc:
            return [str(exc)]
    for entry in catalogue.translated_entries():
        english = set(_PLACEHOLDER.findall(entry.msgid + entry.msgid_plural))
        if entry.msgid_plural:
            forms = entry.msgstr_plural
            if sorted(forms) != list(range(nplurals)) or not all(forms.values()):
                problems.append(f"line {entry.linenum}: {entry.msgid_plural!r} has forms {sorted(forms)}, "
                                f"the header declares {nplurals} (0 to {nplurals - 1})")
            translations = list(forms.values())
        else:
            translations = [entry.msgstr]
        for text in translations:
            unknown = set(_PLACEHOLDER.findall(text)) - english
            if unknown:
                problems.append(f"line {entry.linenum}: {entry.msgid!r} is translated with unknown placeholders {sorted(unknown)}")
    return problems


def compile_catalogue(po_path: Path, *, force: bool = False) -> bool:
    """Write the .mo beside ``po_path`` when it is missing or older. Returns whether it wrote it."""
    mo_path = po_path.with_suffix(".mo")
    if not force and mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
        return False
    try:
        catalogue = polib.pofile(str(po_path), wrapwidth=0)
    except (OSError, ValueError) as exc:  # polib raises OSError (IOError) for syntax errors too
        raise CommandError(f"{po_path}: cannot be read as a gettext catalogue: {exc}") from exc
    problems = catalogue_problems(catalogue)
    if problems:
        raise CommandError(f"{po_path}: " + "; ".join(problems))
    # Like msgfmt without --use-fuzzy, polib writes translated entries only: untranslated, fuzzy
    # (a guess nobody checked) and obsolete ones stay out, and English shows instead.
    tmp_path = mo_path.with_name(mo_path.name + ".tmp")
    catalogue.save_as_mofile(str(tmp_path))
    tmp_path.replace(mo_path)  # readers never see a half-written file
    return True


class Command(BaseCommand):
    help = "Compile locale/*/LC_MESSAGES/*.po to .mo with polib (no GNU gettext needed), when the .po is newer."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Compile every catalogue, even if up to date.")

    def handle(self, *args, force: bool = False, **options):
        written = 0
        found = catalogues()
        for po_path in found:
            if compile_catalogue(po_path, force=force):
                written += 1
                if options["verbosity"] >= 2:
                    self.stdout.write(f"compiled {po_path}")
        if options["verbosity"] >= 1:
            self.stdout.write(f"translations: {written} of {len(found)} catalogues compiled, the rest up to date")
