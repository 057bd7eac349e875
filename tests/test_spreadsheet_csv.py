"""Every CSV we write is safe to open in a spreadsheet, and reads back to the same text."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncs.spreadsheet_csv import cell_read, cell_written, rows_written


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("=1+1", "'=1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("+34 600 000 000", "'+34 600 000 000"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=x", "''=x"),
        ("Beach Loft", "Beach Loft"),
        ("O'Brien's flat", "O'Brien's flat"),
        ("", ""),
    ],
)
def test_a_cell_that_a_spreadsheet_would_run_is_written_as_text(name, written):
    # The OWASP rule, as the reference: a leading apostrophe before =, +, -, @, tab or CR.
    assert cell_written(name) == written
    assert cell_read(written) == name


@given(st.text())
def test_any_text_survives_the_round_trip_through_a_csv_file(text):
    data = rows_written([[text, "x"]])
    [[cell, other]] = list(csv.reader(io.StringIO(data, newline="")))
    assert other == "x"
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert cell_read(cell) == text
