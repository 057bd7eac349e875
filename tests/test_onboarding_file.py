"""What spreadsheets save, and files that are not what they should be: each read as meant, or
refused with a sentence that says why; never a server error, never half a file."""

from __future__ import annotations

import csv

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from syncs.models import Connection, Membership, OnboardingUpload, Property
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory

pytestmark = pytest.mark.django_db

LINK = "https://www.airbnb.com/calendar/ical/{}.ics?s=x"


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(membership.user)
    return membership


def post(client, data: bytes, *, language: str = "en"):
    return client.post(
        reverse("onboarding"), {"file": SimpleUploadedFile("syncs.csv", data, "text/csv")}, follow=True,
        headers={"accept-language": language},
    )


def words(response) -> str:
    assert response.status_code == 200
    return response.content.decode().replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")


def rows() -> list[dict]:
    return OnboardingUpload.objects.get().rows


# --------------------------------------------------------------------------- encodings


# A typographic apostrophe (U+2019) and the euro sign: where Latin-1 and Windows-1252 differ.
NAME = "Casa D\u2019Ouro \u20ac ção"


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("UTF-8", f"{NAME},Europe/Lisbon,Airbnb,{LINK.format(1)}\r\n".encode()),
        ("UTF-8 with a byte order mark", b"\xef\xbb\xbf" + f"{NAME},Europe/Lisbon,Airbnb,{LINK.format(1)}\r\n".encode()),
        ("UTF-16 LE with its mark, tabs (Excel's Unicode text)",
         b"\xff\xfe" + f"{NAME}\tEurope/Lisbon\tAirbnb\t{LINK.format(1)}\r\n".encode("utf-16-le")),
        ("UTF-16 BE with its mark", b"\xfe\xff" + f"{NAME};Europe/Lisbon;Airbnb;{LINK.format(1)}\n".encode("utf-16-be")),
        ("UTF-16 LE without a mark", f"{NAME},Europe/Lisbon,Airbnb,{LINK.format(1)}\n".encode("utf-16-le")),
        # Windows-1252 by its code chart: 0x92 is U+2019, 0x80 is U+20AC, 0xE7 ç, 0xE3 ã.
        ("Windows-1252", b"Casa D\x92Ouro \x80 \xe7\xe3o;Europe/Lisbon;Airbnb;" + LINK.format(1).encode() + b"\r\n"),
    ],
)
def test_a_file_is_read_in_the_encoding_it_declares_or_that_reads_it(client, manager, encoding, data):
    post(client, data)
    [row] = rows()
    assert row["errors"] == [], encoding
    assert row["property"] == NAME


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_file_of_plain_letters_in_utf16_without_a_mark_is_read_too(client, manager, encoding):
    # Every byte of it is valid UTF-8 as well (its NULs included): read as such, no cell is right.
    post(client, f"Property,Time zone,Portal,Import link\nCasa Azul,Europe/Lisbon,Airbnb,{LINK.format(1)}\n".encode(encoding))
    [row] = rows()
    assert row["errors"] == [] and row["property"] == "Casa Azul" and row["cells"]["url"] == LINK.format(1)


def test_control_characters_are_taken_out_of_every_cell(client, manager):
    data = (
        "Property,Time zone,Portal,Import link\n"
        f"Casa\x1b[31m Azul\u009b,Europe/\x07Lisbon,Air\x01bnb,{LINK.format(1)}\x1b\n"
    ).encode()
    post(client, data)
    [row] = rows()
    assert row["errors"] == [] and row["property"] == "Casa[31m Azul"
    assert row["cells"] == {"property": "Casa[31m Azul", "timezone": "Europe/Lisbon", "portal": "Airbnb", "url": LINK.format(1)}


def test_windows_1252_bytes_it_leaves_undefined_are_not_kept(client, manager):
    post(client, b"Casa\x81 Azul\x9d,Europe/Lisbon,Airbnb," + LINK.format(1).encode() + b"\n\xe9t\xe9,Europe/Lisbon,,"
         + LINK.format(2).encode())
    assert [row["property"] for row in rows()] == ["Casa Azul", "été"]


# --------------------------------------------------------------------------- columns


def test_column_names_in_portuguese_or_spanish_in_any_order_with_or_without_the_export_columns(client, manager):
    old = ConnectionFactory(property=PropertyFactory(account=manager.account, name="Casa Azul"))
    portuguese = (
        "Link de importação;Fuso horário;Alojamento;Id da sincronização;Intervalo (minutos);Estado;URL de exportação\n"
        f"{old.import_url};Europe/Lisbon;Casa Azul;{old.pk};60;Pausada;https://x\n"
    )
    post(client, portuguese.encode(), language="pt")
    [row] = rows()
    assert row["errors"] == [] and row["changes"] == [{"field": "interval", "old": 30, "new": 60}]
    OnboardingUpload.objects.all().delete()
    spanish = (
        "Alojamiento,Zona horaria,Portal,Enlace de importación,Sentido,Activada\n"
        f"Casa Azul,Europe/Lisbon,Airbnb,{LINK.format(9)},Solo importación,no\n"
    )
    post(client, spanish.encode("cp1252"), language="es")
    [row] = rows()
    assert row["errors"] == [] and row["action"] == "add"
    assert row["cells"]["direction"] == "Solo importación" and row["cells"]["enabled"] == "no"


def test_the_export_in_portuguese_is_read_back_by_a_manager_working_in_spanish(client, manager):
    ConnectionFactory(property=PropertyFactory(account=manager.account, name="Casa Azul"), enabled=False,
                      direction="import_only")
    exported = client.get(reverse("exports-csv"), headers={"accept-language": "pt"}).content
    header = exported.decode("utf-8-sig").splitlines()[0]
    assert header == ("Id da sincronização,Alojamento,Fuso horário,Portal,Link de importação,Sentido,Ligada,"
                      "Intervalo (minutos),Estado,URL de exportação")
    assert ",Só importação,não," in exported.decode("utf-8-sig")
    page = words(post(client, exported, language="es"))
    assert [row["action"] for row in rows()] == ["same"]
    assert "Nada que cambiar: el archivo dice lo que su cuenta ya tiene." in page


def test_a_file_in_another_format_is_refused_naming_the_columns_expected(client, manager):
    page = words(post(client, b"Date,Amount,Description\n2026-01-01,12.50,Coffee\n"))
    assert "This is not a file of syncs: its first line reads “Date, Amount, Description”" in page
    assert "Sync id, Property, Time zone, Portal, Import link, Direction, Switched on, Interval (minutes)" in page
    assert not OnboardingUpload.objects.exists()


def test_the_old_export_without_import_links_is_refused_naming_the_missing_column(client, manager):
    page = words(post(client, b"Property,Time zone,Portal,Direction,State,Export URL\nCasa,Europe/Lisbon,Airbnb,Two-way,Working,https://x\n"))
    assert "This is not a file of syncs: it has no “Import link” column." in page
    assert not OnboardingUpload.objects.exists()


def test_a_column_twice_is_refused_and_columns_not_ours_are_ignored_and_said(client, manager):
    page = words(post(client, b"Property,Portal,Canal\nCasa,Airbnb,Vrbo\n"))
    assert "The column “Portal” is there twice (“Portal” and “Canal”): keep one." in page
    page = words(post(client, f"Property,Notes,Time zone,Import link,Owner\nCasa,call Ana,Europe/Lisbon,{LINK.format(1)},Ana\n".encode()))
    assert "Columns that are not ours were ignored: Notes, Owner." in page
    [row] = rows()
    assert row["errors"] == [] and "Notes" not in str(row["cells"])


def test_rows_with_missing_or_extra_cells_say_so(client, manager):
    post(client, f"Property,Time zone,Portal,Import link\nCasa,Europe/Lisbon\nCasa,Europe/Lisbon,Airbnb,{LINK.format(1)},extra\n".encode())
    errors = [row["errors"] for row in rows()]
    assert errors == [
        ["This line has 2 cells, and the first line names 4 columns: give each row every column, empty where there is nothing to say."],
        ["This line has 5 cells, and the first line names 4 columns: a name with a comma or a semicolon in it needs quotes around it."],
    ]


# --------------------------------------------------------------------------- hostile files


def test_a_cell_longer_than_the_csv_limit_is_a_sentence_not_a_server_error(client, manager):
    huge = "x" * (csv.field_size_limit() + 1)
    page = words(post(client, f'Casa,Europe/Lisbon,Airbnb,{LINK.format(1)}\nCasa,Europe/Lisbon,Airbnb,"{huge}"\n'.encode()))
    assert "Line 2 could not be read: a cell runs on for more than 131,072 characters" in page
    assert not OnboardingUpload.objects.exists()


def test_an_unclosed_quote_that_swallows_the_file_is_a_sentence(client, manager):
    lines = [f"Casa {n},Europe/Lisbon,Airbnb,{LINK.format(n)}" for n in range(3000)]
    page = words(post(client, ('"' + "\n".join(lines)).encode()))
    assert "Line 1 could not be read" in page


def test_a_file_of_5_mib_is_refused_whole(client, manager):
    line = f"Casa,Europe/Lisbon,Airbnb,{LINK.format('y' * 200)}\n"
    data = (line * (5 * 1024 * 1024 // len(line) + 1)).encode()
    assert len(data) >= 5 * 1024 * 1024
    page = words(post(client, data))
    assert "The file is larger than 4.0\xa0MB: split it into files of up to 5,000 rows each." in page
    assert not OnboardingUpload.objects.exists() and not Property.objects.exists()


def test_a_file_of_10000_rows_is_refused_whole(client, manager):
    data = "\n".join(f"Casa {n},Europe/Lisbon,Airbnb,{LINK.format(n)}" for n in range(10_000)).encode()
    page = words(post(client, data))
    assert "The file has more than 5,000 rows: split it into files of up to 5,000 rows each. Nothing was read." in page
    assert not OnboardingUpload.objects.exists() and not Property.objects.exists()


def test_a_formula_in_every_cell_is_refused_row_by_row_and_nothing_is_saved(client, manager):
    formulas = ['=HYPERLINK("http://evil.example/x","y")', "+1+1", "-2+3+cmd|' /C calc'!A0", "@SUM(A1:A9)"]
    data = "\n".join(",".join([formula] * 4) for formula in formulas).encode()
    page = words(post(client, data))
    checked = rows()
    assert all(row["errors"] for row in checked)
    assert "Nothing is saved while a row has an error" in page
    upload = OnboardingUpload.objects.get()
    client.post(reverse("onboarding-import", args=[upload.pk]))
    assert not Property.objects.exists() and not Connection.objects.exists()


def test_over_long_fields_get_the_forms_errors(client, manager):
    data = f"{'N' * 250},Europe/Lisbon,Airbnb,{LINK.format(1)}\nCasa,{'Z' * 100},Airbnb,{LINK.format(2)}\n".encode()
    data += f"Casa,Europe/Lisbon,Airbnb,https://www.airbnb.com/{'p' * 2100}.ics\n".encode()
    post(client, data)
    errors = [row["errors"][0] for row in rows()]
    assert "at most 200 characters" in errors[0]
    assert "is not a time zone name" in errors[1]
    assert "longer than 2000 characters" in errors[2]


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        (b"", "The file is empty."),
        (b"   \r\n\r\n", "The file is empty."),
        (b"Property,Time zone,Portal,Import link\n", "The file has no rows of syncs, only its first line."),
        (b"\x00\x01\x02binary\xff\x00", "This is not a CSV file"),
    ],
)
def test_empty_and_binary_files_are_refused_with_a_sentence(client, manager, data, sentence):
    assert sentence in words(post(client, data))


def test_without_a_file_the_page_asks_for_one(client, manager):
    assert "Choose a CSV file first." in words(client.post(reverse("onboarding"), {}))


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("pt", "O ficheiro tem mais de 5.000 linhas: divida-o em ficheiros de até 5.000 linhas cada. Nada foi lido."),
        ("es", "El archivo tiene más de 5\xa0000 filas: divídalo en archivos de hasta 5\xa0000 filas cada uno."),
    ],
)
def test_a_refused_file_is_told_in_the_operators_language(client, manager, language, sentence):
    data = "\n".join(f"Casa {n},Europe/Lisbon,Airbnb,{LINK.format(n)}" for n in range(5001)).encode()
    assert sentence in words(post(client, data, language=language))
