"""schemathesis against the live schema, inside the suite with a few examples per operation
(``make fuzz-api`` runs a few hundred): a real gunicorn on PostgreSQL, an owner's token of one
account; no server error, no answer outside the schema, no undocumented status, and the other
account untouched and unread (tools/fuzz_api.py)."""

from __future__ import annotations

import subprocess

import pytest
from django.conf import settings

from tests.conftest import require
from tests.processes import ROOT, VENV_BIN, child_env, database_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(600)  # migrate, seed, start gunicorn, then about 700 requests
def test_schemathesis_finds_nothing_wrong_with_a_few_examples_per_operation(db):
    require(None if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else "DATABASE_URL does not point at PostgreSQL")
    done = subprocess.run(
        [str(VENV_BIN / "python"), "tools/fuzz_api.py", "--examples", "5", "--seed", "35"],
        cwd=ROOT, env=child_env(DATABASE_URL=database_url()), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "examples per operation" in done.stdout
