"""English, European Portuguese and Spanish: every word a person reads is translatable and
translated, the language follows the browser, can be switched on every page and is remembered
per user, and the emails come in each member's language.

The .po catalogues are compiled in this session (with polib, as `make test` does), so a stale
.mo cannot hide a missing translation, and the compiled catalogue is checked against the .po.
"""

from __future__ import annotations

import gettext
import html
import re
import shutil
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import polib
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import trans_real

from syncs.explain import describe
from syncs.management.commands.compile_translations import (
    catalogue_problems,
    catalogues,
    compile_catalogue,
    plural_rule,
)
from syncs.models import Account, ExportToken, Membership, PauseEpisode
from syncs.notifications import send_pause_notifications
from tests.factories import (
    AccountFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    SyncRunFactory,
)
from tests.test_sign_in import enrol, log_in

BASE_DIR = Path(settings.BASE_DIR)
TEMPLATES_DIR = BASE_DIR / "templates"
TRANSLATED_LANGUAGES = ("pt", "es")


@pytest.fixture(autouse=True)
def _english_after_each_test():
    """A page in Portuguese leaves Portuguese active in this thread: later tests expect English."""
    yield
    translation.deactivate()


# --------------------------------------------------------------------------- the template checker

# Attributes whose values people read (or hear, or see in a tooltip or a copy button's feedback).
VISIBLE_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "data-copied", "data-announce"}
# Names that are the same in every language.
PROPER_NAMES = ("channelmgr", "Google Calendar", "Booking.com", "Airbnb", "Vrbo")
# Attribute values that must stay as they are: Pico's CSS styles nav[aria-label=breadcrumb].
FIXED_ATTRIBUTE_VALUES = {("aria-label", "breadcrumb")}

_COMMENT_BLOCK = re.compile(r"\{%\s*comment\b.*?%\}.*?\{%\s*endcomment\s*%\}", re.DOTALL)
_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_BLOCKTRANSLATE = re.compile(r"\{%\s*blocktrans(?:late)?\b.*?%\}.*?\{%\s*endblocktrans(?:late)?\s*%\}", re.DOTALL)
_TAG = re.compile(r"\{%.*?%\}", re.DOTALL)
_VARIABLE = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"<[!/]?[a-zA-Z][^>]*>")
_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""")
_SEPARATOR = "\x00"


def _has_words(text: str) -> bool:
    for name in PROPER_NAMES:
        text = text.replace(name, " ")
    return any(unicodedata.category(char).startswith("L") for char in text)


def untranslated_text(source: str) -> list[str]:
    """The pieces of visible text of a template that are not inside {% translate %} or
    {% blocktranslate %}: text between HTML tags, and the values of the attributes people read.

    Whitespace, punctuation, digits, arrows and symbols (→ · — ✓ ⚠ …) need no translation, and
    neither do proper names; template variables, tags and comments, scripts and styles are not text.
    """
    text = _COMMENT_BLOCK.sub(" ", source)
    text = _COMMENT.sub(" ", text)
    text = _BLOCKTRANSLATE.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    text = _SCRIPT_OR_STYLE.sub(" ", text)
    text = _HTML_COMMENT.sub(" ", text)
    attribute_values: list[str] = []

    def tag(match: re.Match) -> str:
        element = match.group(0)
        attributes = {
            m.group(1).lower(): next(v for v in m.groups()[1:] if v is not None) for m in _ATTRIBUTE.finditer(element)
        }
        for name, value in attributes.items():
            if name in VISIBLE_ATTRIBUTES and (name, value) not in FIXED_ATTRIBUTE_VALUES:
                attribute_values.append(value)
        # A button made of an <input> shows its value.
        if element.lower().startswith("<input") and attributes.get("type", "").lower() in {"submit", "button", "reset"}:
            attribute_values.append(attributes.get("value", ""))
        return _SEPARATOR

    text = _HTML_TAG.sub(tag, text)
    pieces = [html.unescape(piece) for piece in [*text.split(_SEPARATOR), *attribute_values]]
    return [" ".join(piece.split()) for piece in pieces if _has_words(piece)]


def template_files() -> list[Path]:
    return sorted(path for path in TEMPLATES_DIR.rglob("*") if path.is_file() and path.suffix in {".html", ".txt"})


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("<p>Hello</p>", ["Hello"]),
        ("<p>{% translate 'Hello' %}</p>", []),
        ("<p>{% blocktranslate trimmed with n=x %}\n  Hello {{ n }}\n{% endblocktranslate %} →</p>", []),
        ("Plain text of an email, {{ name }}.", ["Plain text of an email, ."]),
        ('<input type="search" placeholder="Search" aria-label="{% translate \'Search\' %}">', ["Search"]),
        ('<input type="submit" value="Go">', ["Go"]),
        ('<input type="hidden" name="next" value="/somewhere">', []),
        ('<button data-copied="Copied">{% translate "Copy" %}</button>', ["Copied"]),
        ('<img src="x.png" alt="A house">', ["A house"]),
        ('<div class="hello world" hx-vals=\'{"action": "finish"}\'>⚠ — 12 · ✓</div>', []),
        ("<script>var words = 'not for people';</script><style>p { color: red; }</style>", []),
        ("{# Nobody reads this #}{% comment %}nor this{% endcomment %}<!-- nor this -->", []),
        ("<strong>Airbnb</strong>: {% translate 'Calendar' %} · channelmgr", []),
        ("{% if x %}<p>Yes</p>{% else %}<p>{{ y|default:_('no') }}</p>{% endif %}", ["Yes"]),
        ("<p>5&nbsp;min &amp; more</p>", ["5 min & more"]),
    ],
)
def test_the_checker_finds_text_not_marked_for_translation(source, found):
    assert untranslated_text(source) == found


@pytest.mark.parametrize("path", template_files(), ids=lambda p: str(p.relative_to(TEMPLATES_DIR)))
def test_every_template_marks_its_visible_text_for_translation(path):
    assert untranslated_text(path.read_text(encoding="utf-8")) == [], (
        f"{path.relative_to(BASE_DIR)} shows text outside {{% translate %}} / {{% blocktranslate %}}"
    )


def test_the_checker_sees_every_template():
    names = {str(p.relative_to(TEMPLATES_DIR)) for p in template_files()}
    assert {"base.html", "emails/paused.txt", "emails/paused.html", "syncs/includes/fix_step.html"} <= names


# --------------------------------------------------------------------------- the catalogues


def _reload_translations() -> None:
    """Forget the catalogues Django (and Python's gettext) loaded, so the next activation reads
    the fresh .mo files: what Django's autoreloader does when a .mo changes."""
    gettext._translations.clear()
    trans_real._translations = {}
    trans_real._default = None
    trans_real._active = trans_real.Local()


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogues():
    """Compile every .po whose .mo is missing or older, as `make test` does before pytest."""
    compiled = [po for po in catalogues() if compile_catalogue(po)]
    if compiled:
        _reload_translations()
    return compiled


def po_path(language: str) -> Path:
    return BASE_DIR / "locale" / language / "LC_MESSAGES" / "django.po"


def _placeholders(text: str) -> set[str]:
    python = set(re.findall(r"%\([a-zA-Z_]\w*\)[sdif]", text))
    template = {re.sub(r"\s+", "", var) for var in re.findall(r"\{\{.*?\}\}", text)}
    return python | template


def test_there_is_a_catalogue_for_every_language_but_english():
    assert [code for code, _name in settings.LANGUAGES] == ["en", "pt", "es"]
    for language in TRANSLATED_LANGUAGES:
        assert po_path(language).is_file(), f"missing {po_path(language).relative_to(BASE_DIR)}"


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_every_entry_of_the_catalogue_is_translated_and_checked(language):
    catalogue = polib.pofile(str(po_path(language)))
    assert catalogue.metadata.get("Language") == language
    untranslated = [entry.msgid for entry in catalogue.untranslated_entries()]
    fuzzy = [entry.msgid for entry in catalogue.fuzzy_entries()]
    assert untranslated == [], f"{language}: {len(untranslated)} entries have no translation"
    assert fuzzy == [], f"{language}: {len(fuzzy)} entries are marked fuzzy (check them, then remove the flag)"
    assert len(catalogue.translated_entries()) > 300


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_translations_keep_every_placeholder(language):
    problems = []
    for entry in polib.pofile(str(po_path(language))).translated_entries():
        if not entry.msgid_plural:
            if _placeholders(entry.msgstr) != _placeholders(entry.msgid):
                problems.append((entry.msgid, entry.msgstr))
            continue
        allowed = _placeholders(entry.msgid) | _placeholders(entry.msgid_plural)
        for index, msgstr in entry.msgstr_plural.items():
            # Form 0 is for one: like the singular, it may leave the number out ("Possible double booking").
            needed = _placeholders(entry.msgid) if index == 0 else _placeholders(entry.msgid_plural)
            if not needed <= _placeholders(msgstr) <= allowed:
                problems.append((entry.msgid, index, msgstr))
    assert problems == []


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_the_compiled_catalogue_is_the_po_file(language, compiled_catalogues):
    po = po_path(language)
    mo = po.with_suffix(".mo")
    assert mo.is_file(), "compile_translations did not write the .mo"
    assert mo.stat().st_mtime >= po.stat().st_mtime, f"{mo.name} is older than {po.name}"

    def key(entry) -> tuple[str, str]:
        return (entry.msgctxt or "", entry.msgid)

    def value(entry) -> tuple[str, ...]:
        if entry.msgid_plural:
            return tuple(entry.msgstr_plural[i] for i in sorted(entry.msgstr_plural))
        return (entry.msgstr,)

    expected = {key(e): value(e) for e in polib.pofile(str(po)).translated_entries()}
    compiled = {key(e): value(e) for e in polib.mofile(str(mo)) if e.msgid}
    assert compiled == expected, (
        f"{mo.relative_to(BASE_DIR)} does not match its .po: run `manage.py compile_translations --force`"
    )


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt is not installed (the polib check below runs)")
@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_msgfmt_check_accepts_every_catalogue(language):
    result = subprocess.run(
        ["msgfmt", "--check", "-o", "/dev/null", str(po_path(language))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_every_catalogue_passes_the_same_check_without_gettext(language):
    assert catalogue_problems(polib.pofile(str(po_path(language)))) == []


def test_a_plural_message_short_of_a_form_is_refused_as_msgfmt_refuses_it(tmp_path):
    folder = tmp_path / "es" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po = folder / "django.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: es\\n"\n'
        '"Plural-Forms: nplurals=3; plural=n == 1 ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2;\\n"\n\n'
        '#, python-format\nmsgid "%(n)d sync"\nmsgid_plural "%(n)d syncs"\n'
        'msgstr[0] "%(n)d sincronización"\nmsgstr[1] "%(n)d sincronizaciones"\n\n'
        '#, python-format\nmsgid "Hello %(name)s"\nmsgstr "Hola %(nombre)s"\n',
        encoding="utf-8",
    )
    problems = catalogue_problems(polib.pofile(str(po)))
    assert len(problems) == 2
    assert "'%(n)d syncs' has forms [0, 1], the header declares 3" in problems[0]
    assert "unknown placeholders ['nombre']" in problems[1]
    with pytest.raises(CommandError, match="the header declares 3"):
        compile_catalogue(po)
    assert not po.with_suffix(".mo").exists()
    if shutil.which("msgfmt"):
        assert subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(po)], capture_output=True).returncode != 0


# The counts every plural message is rendered at: none, one, two, several, and exact millions
# (Spanish's second form, CLDR's "many").
COUNTS = (0, 1, 2, 5, 1_000_000)


def _plural_entries(language: str) -> list[polib.POEntry]:
    return [e for e in polib.pofile(str(po_path(language))).translated_entries() if e.msgid_plural]


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
@pytest.mark.parametrize("n", COUNTS)
def test_every_plural_message_comes_out_translated_at_every_count(language, n):
    """Rendered as the pages do (ngettext, npgettext with a context), each plural message gives
    the form its catalogue's own header rule picks for n, never the English, with its placeholders."""
    catalogue = polib.pofile(str(po_path(language)))
    _nplurals, rule = plural_rule(catalogue)
    entries = _plural_entries(language)
    assert len(entries) >= 50
    problems = []
    with translation.override(language):
        for entry in entries:
            if entry.msgctxt:
                shown = translation.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, n)
            else:
                shown = translation.ngettext(entry.msgid, entry.msgid_plural, n)
            expected = entry.msgstr_plural[rule(n)]
            if shown in (entry.msgid, entry.msgid_plural) or shown != expected:
                problems.append((entry.msgid_plural, shown))
                continue
            # Form 0 is for one: like the English singular it may leave the number out.
            needed = _placeholders(entry.msgid if n == 1 else entry.msgid_plural)
            if not needed <= _placeholders(shown):
                problems.append((entry.msgid_plural, shown, "lost a placeholder"))
            values = dict.fromkeys(re.findall(r"%\(([a-zA-Z_]\w*)\)[sd]", shown), n)
            shown % values  # formats as the code does, or raises
    assert problems == [], f"{language}, n={n}: {problems[:5]}"


def test_compile_translations_writes_only_what_is_out_of_date(tmp_path):
    folder = tmp_path / "pt" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po = folder / "django.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: pt\\n"\n\n'
        'msgid "Overview"\nmsgstr "Visão geral"\n\n'
        '#, fuzzy\nmsgid "Properties"\nmsgstr "Propriedades?"\n\n'
        'msgid "Untranslated"\nmsgstr ""\n',
        encoding="utf-8",
    )
    assert catalogues([tmp_path]) == [po]
    assert compile_catalogue(po) is True
    assert compile_catalogue(po) is False  # up to date: not written again
    entries = {e.msgid: e.msgstr for e in polib.mofile(str(po.with_suffix(".mo"))) if e.msgid}
    assert entries == {"Overview": "Visão geral"}  # fuzzy and untranslated entries stay out
    assert compile_catalogue(po, force=True) is True


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext's xgettext is not installed")
def test_the_catalogues_hold_every_string_of_the_source(tmp_path):
    """makemessages, run on a copy of the project, finds no string the committed catalogues lack."""
    for name in ("templates", "syncs", "channelmgr"):
        shutil.copytree(BASE_DIR / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    shutil.copy(BASE_DIR / "manage.py", tmp_path / "manage.py")
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "pt", "--no-obsolete", "--verbosity", "0"],
        cwd=tmp_path, check=True, capture_output=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "channelmgr.settings"},
    )
    found = {(e.msgctxt or "", e.msgid) for e in polib.pofile(str(tmp_path / "locale/pt/LC_MESSAGES/django.po"))}
    committed = {(e.msgctxt or "", e.msgid) for e in polib.pofile(str(po_path("pt"))) if not e.obsolete}
    missing = sorted(found - committed)
    assert missing == [], (
        "run `.venv/bin/python manage.py makemessages -l pt -l es --ignore=.venv --ignore=var --ignore=tests "
        f"--ignore=bench`, then translate the new entries: {missing[:5]}"
    )


# --------------------------------------------------------------------------- models and admin


def test_every_field_of_our_models_has_a_translatable_label():
    unlabelled = [
        f"{model.__name__}.{field.name}"
        for model in apps.get_app_config("syncs").get_models()
        for field in model._meta.get_fields()
        if field.concrete and not field.auto_created and not isinstance(field.verbose_name, Promise)
    ]
    assert unlabelled == []
    for model in apps.get_app_config("syncs").get_models():
        assert isinstance(model._meta.verbose_name, Promise), model
        assert isinstance(model._meta.verbose_name_plural, Promise), model


def test_admin_column_descriptions_are_translatable():
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "syncs":
            continue
        for name in model_admin.list_display:
            method = getattr(model_admin, name, None)
            if callable(method) and hasattr(method, "short_description"):
                assert isinstance(method.short_description, Promise), f"{type(model_admin).__name__}.{name}"


@pytest.mark.django_db
def test_the_admin_speaks_portuguese(admin_client):
    ConnectionFactory()
    admin_client.post(reverse("set_language"), {"language": "pt", "next": "/admin/"})
    page = admin_client.get(reverse("admin:syncs_connection_changelist")).content.decode()
    assert "Selecione ligação para modificar" in page  # Django's words with our model's name
    for column in ("Sentido", "Ligada", "Estado", "Falhas seguidas", "Última sincronização bem-sucedida"):
        assert f">{column}<" in page


# --------------------------------------------------------------------------- choosing the language


@pytest.mark.django_db
def test_the_browser_language_is_used_until_the_user_chooses(client):
    assert "Iniciar sessão" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="pt-PT,pt;q=0.9").content.decode()
    assert "Iniciar sesión" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9").content.decode()
    assert "Log in" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").content.decode()


def _switch(client: Client, language: str, next_url: str):
    return client.post(reverse("set_language"), {"language": language, "next": next_url}, follow=True)


@pytest.mark.django_db
def test_switching_language_on_a_page_changes_its_words(operator_client, operator):
    prop = PropertyFactory(account=Account.of_user(operator), name="Casa do Mar")
    page = reverse("property-detail", args=[prop.pk])
    english = operator_client.get(page).content.decode()
    assert "Close nights here" in english and 'lang="en"' in english
    # The selector is on the page, posting to set_language with the way back.
    assert f'action="{reverse("set_language")}"' in english and f'name="next" value="{page}"' in english

    response = _switch(operator_client, "pt", page)
    assert response.redirect_chain[-1][0] == page
    portuguese = response.content.decode()
    assert 'lang="pt"' in portuguese
    assert "Fechar noites aqui" in portuguese and "Close nights here" not in portuguese
    assert "Sincronizações de calendário" in portuguese

    spanish = _switch(operator_client, "es", page).content.decode()
    assert 'lang="es"' in spanish
    assert "Cerrar noches aquí" in spanish and "Fechar noites aqui" not in spanish
    assert "Sincronizaciones de calendario" in spanish


@pytest.mark.django_db
def test_the_choice_is_remembered_for_the_user_in_a_new_session(operator_client, operator):
    _switch(operator_client, "es", reverse("home"))
    assert Membership.objects.get(user=operator).language == "es"
    operator_client.logout()

    elsewhere = Client()  # another browser: no cookie, and a browser asking for English
    elsewhere.force_login(operator)
    page = elsewhere.get(reverse("property-list"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'lang="es"' in page and "Alojamientos" in page

    _switch(elsewhere, "pt", reverse("home"))
    assert Membership.objects.get(user=operator).language == "pt"
    third = Client()
    third.force_login(operator)
    page = third.get(reverse("property-list"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert 'lang="pt"' in page and "Alojamentos" in page


@pytest.mark.django_db
def test_a_refused_or_unknown_choice_is_not_stored(operator, client):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(operator)
    assert csrf_client.post(reverse("set_language"), {"language": "es", "next": "/"}).status_code == 403
    client.force_login(operator)
    client.post(reverse("set_language"), {"language": "de", "next": "/"})
    assert Membership.objects.get(user=operator).language == ""


@pytest.mark.django_db
def test_the_anonymous_choice_is_a_cookie_only(client):
    page = _switch(client, "pt", reverse("login")).content.decode()
    assert 'lang="pt"' in page and "Iniciar sessão" in page
    assert Membership.objects.filter(language="pt").count() == 0


# --------------------------------------------------------------------------- times, dates, words


@pytest.mark.django_db
def test_sync_times_are_shown_in_the_property_zone_and_the_zone_is_named(operator_client, operator):
    prop = PropertyFactory(account=Account.of_user(operator), timezone="America/Sao_Paulo")
    connection = ConnectionFactory(property=prop)
    SyncRunFactory(connection=connection, started_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC))
    _switch(operator_client, "pt", "/")
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    # 12:00 UTC is 09:00 in São Paulo, written the Portuguese way: month names in lower case.
    assert "10 de janeiro, 09:00" in page
    assert "America/Sao_Paulo" in page
    assert "12:00" not in page
    # When the portal last read our calendar: in the same zone, named.
    ExportToken.objects.filter(connection=connection).update(
        last_read_at=datetime(2027, 1, 10, 15, 30, tzinfo=UTC), last_reader="airbnb"
    )
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    assert "última leitura: 10 de janeiro de 2027 às 12:30 (hora de america/sao_paulo)" in page.lower()
    assert "10 de janeiro de 2027" in page and "Janeiro" not in page
    # A month standing as a heading starts with a capital, as any heading does.
    calendar = operator_client.get(reverse("property-detail", args=[prop.pk]) + "?month=2027-01").content.decode()
    assert ">Janeiro de 2027</h2>" in calendar


def test_error_words_are_produced_in_the_reader_language():
    with translation.override("es"):
        spanish = describe("http_4xx", {"status": 404}, portal="Airbnb")
    with translation.override("pt"):
        portuguese = describe("http_4xx", {"status": 404}, portal="Airbnb")
    assert spanish.startswith("Airbnb ha respondido 404: el enlace del calendario ya no existe")
    assert portuguese.startswith("Airbnb respondeu 404: o link do calendário já não existe")
    with translation.override("en"):
        english = describe("http_4xx", {"status": 404}, portal="Airbnb")
    assert english == "Airbnb answered 404: the calendar link no longer exists."


# The sentences that tell what a portal did, for each code that names it.
PORTAL_CODES = {"connect": {}, "timeout": {}, "tls": {}, "http_4xx": {"status": 404}, "http_5xx": {"status": 503},
                "rate_limited": {"status": 429}}
THE_PORTAL = {"en": "The portal", "pt": "O portal", "es": "El portal"}


@pytest.mark.parametrize("language", ["en", *TRANSLATED_LANGUAGES])
def test_a_portal_without_a_name_of_its_own_is_the_portal_in_every_error_sentence(language):
    """"Other" is a portal's label, not a name that answers: its sentences say "the portal"."""
    with translation.override(language):
        other = gettext_module_other()
        for code, params in PORTAL_CODES.items():
            words = describe(code, params, portal=None)
            assert other not in words and "%(" not in words, (code, words)
            assert THE_PORTAL[language].lower() in words.lower(), (code, words)
            assert words[0].isupper(), words
        assert describe("http_4xx", {"status": 404}, portal=None).startswith(f"{THE_PORTAL[language]} ")


def gettext_module_other() -> str:
    return translation.gettext("Other")


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", *TRANSLATED_LANGUAGES])
def test_a_paused_sync_of_the_other_portal_says_the_portal_answered_on_every_page_and_email(
    operator_client, operator, mailoutbox, language
):
    from tests.factories import portal

    account = Account.of_user(operator)
    Membership.objects.filter(user=operator).update(language=language)
    operator.email = "op@example.com"
    operator.save()
    prop = PropertyFactory(account=account, name="Casa Verde")
    connection = ConnectionFactory(
        property=prop, portal=portal("other"), paused_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC),
        pause_reason="http_4xx", pause_params={"status": 404},
    )
    PauseEpisode.objects.create(connection=connection, reason="http_4xx", params={"status": 404},
                                started_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC))
    with translation.override(language):
        other, answered = translation.gettext("Other"), describe("http_4xx", {"status": 404}, portal=None)
    assert answered.startswith(THE_PORTAL[language])
    for url in (reverse("home"), reverse("property-detail", args=[prop.pk]), reverse("connection-detail", args=[connection.pk]),
                reverse("connection-fix-step", args=[connection.pk, "switched_on"])):
        page = html.unescape(operator_client.get(url).content.decode())
        assert answered in page, url
        assert f"{other} answered" not in page and f"{other} respondeu" not in page and f"{other} ha respondido" not in page
    assert send_pause_notifications() >= 1
    (email,) = [e for e in mailoutbox if e.to == ["op@example.com"]]
    assert answered in email.body


ONE = {
    "en": ("The link works: 1 booking or block.", "This line has 1 column;", "wait 1 second,", "1 added, 0 changed, 0 removed.",
           "stops working after 1 hour,", "keeps working for 1 hour."),
    "pt": ("O link funciona: 1 reserva ou bloqueio.", "Esta linha tem 1 coluna;", "aguarde 1 segundo e", "1 adicionado, 0 alterados, 0 removidos.",
           "deixa de funcionar ao fim de 1 hora,", "continua a funcionar durante 1 hora."),
    "es": ("El enlace funciona: 1 reserva o bloqueo.", "Esta línea tiene 1 columna;", "espere 1 segundo y", "1 añadido, 0 cambiados, 0 eliminados.",
           "deja de funcionar al cabo de 1 hora,", "sigue funcionando durante 1 hora."),
}


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", *TRANSLATED_LANGUAGES])
def test_a_count_of_one_reads_as_one_thing_in_every_language(operator_client, operator, settings, language):
    """No "1 events", "1 columns", "wait 1 seconds", "1 añadidos" or "after 1 hours"."""
    from django.utils import timezone

    from syncs.models import LinkCheck
    from syncs.onboarding.file import file_read
    from syncs.onboarding.live import verdict_words
    from syncs.two_factor import wait_words

    settings.EXPORT_ROTATION_GRACE_HOURS = 1
    events, column, seconds, run_counts, rotation_page, rotation_toast = ONE[language]
    with translation.override(language):
        assert verdict_words(LinkCheck(ok=True, events=1), portal="Airbnb") == events
        read = file_read(b"Casa Azul\nCasa Verde,Europe/Lisbon,airbnb,https://example.com/a.ics\n")
        assert column in read.rows[0]["errors"][0]
        assert seconds in wait_words(timezone.now())
    Membership.objects.filter(user=operator).update(language=language)
    connection = ConnectionFactory(property=PropertyFactory(account=Account.of_user(operator)))
    SyncRunFactory(connection=connection, events_added=1, events_updated=0, events_removed=0)
    step = operator_client.get(reverse("connection-fix-step", args=[connection.pk, "resync"])).content.decode()
    assert run_counts in html.unescape(step)
    detail = html.unescape(operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode())
    assert rotation_page in detail
    toast = operator_client.post(reverse("connection-export-rotate", args=[connection.pk]), follow=True)
    assert rotation_toast in html.unescape(toast.content.decode())


# --------------------------------------------------------------------------- emails


@pytest.mark.django_db
def test_a_pause_email_to_a_spanish_speaking_member_comes_in_spanish(mailoutbox, settings):
    settings.SITE_URL = "https://app.example.com"
    account = AccountFactory(name="Sol Rentals")
    MembershipFactory(account=account, user__email="lucia@example.com", language="es")
    MembershipFactory(account=account, user__email="joao@example.com", language="pt")
    MembershipFactory(account=account, user__email="ann@example.com")  # no choice: the site's language
    prop = PropertyFactory(account=account, name="Casa Azul", timezone="Europe/Madrid")
    connection = ConnectionFactory(
        property=prop, paused_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC), pause_reason="http_4xx",
        pause_params={"status": 404},
    )
    PauseEpisode.objects.create(
        connection=connection, reason="http_4xx", params={"status": 404}, started_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
    )
    with translation.override("pt"):  # whatever the task's own language, each email has its reader's
        assert send_pause_notifications() == 3
        assert translation.get_language() == "pt"
    by_reader = {tuple(email.to): email for email in mailoutbox}
    assert set(by_reader) == {("lucia@example.com",), ("joao@example.com",), ("ann@example.com",)}

    spanish = by_reader[("lucia@example.com",)]
    assert spanish.subject == "En pausa: sincronización de Airbnb de Casa Azul"
    (spanish_html, _type), = spanish.alternatives
    for body in (spanish.body, spanish_html):
        assert "Hemos pausado la sincronización del calendario de Airbnb de Casa Azul el 10 de enero de 2027 a las 13:00" in body
        assert "Airbnb ha respondido 404" in body
        assert "lista de comprobación" in body
    assert 'lang="es"' in spanish_html

    portuguese = by_reader[("joao@example.com",)]
    assert portuguese.subject == "Em pausa: sincronização do Airbnb de Casa Azul"
    assert "pausámos a sincronização do calendário do airbnb de casa azul a 10 de janeiro de 2027 às 13:00" in (
        portuguese.body.lower()
    )

    english = by_reader[("ann@example.com",)]
    assert english.subject == "Paused: Airbnb sync of Casa Azul"
    # Each reader's clock, as their pages write it: 13:00 in Spanish and Portuguese, 1 p.m. here.
    assert "We paused the Airbnb calendar sync of Casa Azul on Jan. 10, 2027 at 1 p.m." in english.body


@pytest.mark.django_db
def test_a_notice_in_two_languages_is_sent_once_even_when_the_second_email_fails(mailoutbox, monkeypatch):
    from django.core.mail.backends import locmem

    account = AccountFactory()
    MembershipFactory(account=account, user__email="ann@example.com")
    MembershipFactory(account=account, user__email="lucia@example.com", language="es")
    connection = ConnectionFactory(
        property=PropertyFactory(account=account), paused_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC),
        pause_reason="timeout",
    )
    episode = PauseEpisode.objects.create(connection=connection, reason="timeout")
    real_send = locmem.EmailBackend.send_messages
    calls = []

    def second_fails(self, messages):
        calls.append(messages)
        if len(calls) == 2:
            raise ConnectionResetError("the mail server went away")
        return real_send(self, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", second_fails)
    assert send_pause_notifications() == 1
    assert [email.to for email in mailoutbox] == [["ann@example.com"]]  # the site's language first
    # Ann was told: a retry would tell her twice, so the notice stays claimed.
    episode.refresh_from_db()
    assert episode.notified_at is not None
    assert send_pause_notifications() == 0
    assert len(mailoutbox) == 1


# --------------------------------------------------------------------------- choices and model labels


def _msgid(label) -> str:
    """The catalogue's key of a lazy label: its English words (English has no catalogue)."""
    with translation.override("en"):
        return str(label)


def _labels_people_read() -> dict[str, object]:
    """Every label the pages, emails and admin show from code rather than templates: model and
    field names, every choice of every field, the sync states, the checklist's steps, the portals'
    names that are not proper names."""
    from syncs.portals import CATALOGUE
    from syncs.sync_state import SyncState
    from syncs.troubleshooting import STEPS

    labels: dict[str, object] = {}
    for model in apps.get_app_config("syncs").get_models():
        labels[f"{model.__name__} verbose_name"] = model._meta.verbose_name
        labels[f"{model.__name__} verbose_name_plural"] = model._meta.verbose_name_plural
        for field in model._meta.get_fields():
            if not field.concrete or field.auto_created:
                continue
            labels[f"{model.__name__}.{field.name}"] = field.verbose_name
            for value, label in field.choices or ():
                if field.name != "language":  # languages are named in their own language
                    labels[f"{model.__name__}.{field.name}={value}"] = label
    for state in SyncState:
        labels[f"SyncState.{state.value}"] = state.label
    for step, title in STEPS:
        labels[f"checklist step {step}"] = title
    for portal in CATALOGUE:
        if portal.slug == "other":
            labels["portal other"] = portal.name
    return labels


# Labels that are the same word in every language (technical names, kept as they are).
SAME_IN_EVERY_LANGUAGE = {"ETag", "Last-Modified", "UID", "PRODID markers", "slug"}


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES)
def test_every_choice_and_model_label_is_translated(language):
    catalogue = polib.pofile(str(po_path(language)))
    translated = {entry.msgid for entry in catalogue.translated_entries()}
    missing = sorted(
        f"{where}: {_msgid(label)!r}"
        for where, label in _labels_people_read().items()
        if _msgid(label) not in translated and _msgid(label) not in SAME_IN_EVERY_LANGUAGE
    )
    assert missing == [], f"{language}: labels without a translation: {missing}"


@pytest.mark.django_db
def test_the_portal_list_of_the_form_is_in_the_reader_language(operator_client, operator):
    prop = PropertyFactory(account=Account.of_user(operator))
    _switch(operator_client, "pt", "/")
    page = operator_client.get(reverse("connection-create", args=[prop.pk])).content.decode()
    assert ">Outro</option>" in page and ">Other</option>" not in page
    _switch(operator_client, "es", "/")
    page = operator_client.get(reverse("connection-create", args=[prop.pk])).content.decode()
    assert ">Otro</option>" in page


# --------------------------------------------------------------------------- one rule for the language


def _html_language(response) -> str:
    return re.search(r'<html lang="(\w+)"', response.content.decode()).group(1)


@pytest.fixture
def ana_with_two_factor(client):
    """Ana, with an authenticator app, whose saved language is Spanish."""
    ana = MembershipFactory(user__username="ana", user__email="ana@example.com", language="es").user
    client.force_login(ana)
    enrol(client)
    client.logout()
    return ana


@pytest.mark.django_db
def test_the_code_page_speaks_the_language_chosen_on_the_log_in_page_and_so_does_everything_after(ana_with_two_factor):
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert 'lang="pt"' in _switch(browser, "pt", reverse("login")).content.decode()
    signed = log_in(browser)
    code_page = browser.get(signed["Location"], follow=True)
    assert code_page.redirect_chain[-1][0].startswith(reverse("two-factor-verify"))
    assert _html_language(code_page) == "pt"
    assert "Início de sessão em dois passos" in code_page.content.decode()
    # The newest choice is hers now: on every device, and in her emails.
    assert Membership.objects.get(user=ana_with_two_factor).language == "pt"
    elsewhere = Client(HTTP_ACCEPT_LANGUAGE="es")
    elsewhere.force_login(ana_with_two_factor)
    assert _html_language(elsewhere.get(reverse("two-factor-verify"))) == "pt"


@pytest.mark.django_db
def test_the_code_page_speaks_the_saved_language_when_nothing_was_chosen_before_signing_in(ana_with_two_factor):
    # An English browser, and a language cookie left by a choice made long ago on this browser:
    # the person's saved choice is newer than both.
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    browser.cookies[settings.LANGUAGE_COOKIE_NAME] = "pt"
    assert _html_language(browser.get(reverse("login"))) == "pt"
    code_page = browser.get(log_in(browser)["Location"], follow=True)
    assert _html_language(code_page) == "es"
    assert "Inicio de sesión en dos pasos" in code_page.content.decode()
    assert Membership.objects.get(user=ana_with_two_factor).language == "es"


@pytest.mark.django_db
def test_one_rule_decides_the_language_of_pages_and_emails(rf):
    from syncs.languages import reader_language

    browser_says_pt = rf.get("/", HTTP_ACCEPT_LANGUAGE="pt-PT,pt;q=0.9")
    assert reader_language(chosen="es", request=browser_says_pt) == "es"  # the saved choice first
    assert reader_language(chosen="", request=browser_says_pt) == "pt"  # then the browser's
    assert reader_language(chosen="de", request=browser_says_pt) == "pt"  # a language no longer offered
    assert reader_language(chosen="es") == "es"  # an email: the saved choice,
    assert reader_language(chosen="") == settings.LANGUAGE_CODE == "en"  # else the site's
