"""One migrated test database per parallel run, copied for each process.

In a parallel run (pytest-xdist) each process has a test database of its own. Migrating each
one repeats the same work once per process, at the same moment, on the same cores. Instead the
first process that needs a database migrates a template (the name a run of one process would
use), and every process then copies it (PostgreSQL: CREATE DATABASE ... TEMPLATE; SQLite: a file
copy), through Django's own clone_test_db, which its parallel test runner uses the same way. A
copy is the migrated schema and the data migrations' rows, byte for byte.

The run's folder (shared by its processes) holds a lock, a count of the processes using the
template, and its serialized contents (for tests with serialized_rollback). The template exists
exactly while the file ``database.json`` does: the last process to finish drops both, and a
process that comes later builds them again.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connections

ALIAS = "default"


@contextmanager
def _locked(folder: Path):
    handle = os.open(folder / "database.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _users(folder: Path, change: int) -> int:
    path = folder / "database.users"
    count = (int(path.read_text()) if path.exists() else 0) + change
    path.write_text(str(count))
    return count


def _template_name(connection, folder: Path, worker: str) -> str:
    if connection.vendor == "sqlite":
        return str(folder / "test.sqlite3")
    # pytest-django named this process's database <test name>_<worker>.
    return connection.settings_dict["TEST"]["NAME"].removesuffix(f"_{worker}")


@contextmanager
def _unbounded_statements(connection):
    """Creating, copying and dropping a database wait for a checkpoint, which on a busy machine
    takes longer than the statement timeout a web request gets (settings): these statements
    have none."""
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("options")
    if connection.vendor == "postgresql":
        options["options"] = " ".join(filter(None, [before, "-c statement_timeout=0"]))
    try:
        yield
    finally:
        connection.close()
        if before is None:
            options.pop("options", None)
        else:
            options["options"] = before


def set_up(folder: Path, worker: str, verbosity: int) -> tuple[str, str]:
    """Give this process its copy of the run's template (built first if need be); return the
    database name to restore at the end, and the template's."""
    connection = connections[ALIAS]
    original = connection.settings_dict["NAME"]
    template = _template_name(connection, folder, worker)
    contents = folder / "database.json"
    with _locked(folder), _unbounded_statements(connection):
        if not contents.exists():
            connection.settings_dict["TEST"]["NAME"] = template
            connection.creation.create_test_db(verbosity=verbosity, autoclobber=True, serialize=False)
            contents.write_text(connection.creation.serialize_db_to_string())
        # A copy needs the template without sessions: this process's last one ends here.
        connection.close()
        connection.settings_dict["NAME"] = template
        connection.creation.clone_test_db(suffix=worker, verbosity=verbosity, keepdb=False)
        _users(folder, +1)
    copy = connection.creation.get_test_db_clone_settings(worker)
    connection.settings_dict.update(copy)
    settings.DATABASES[ALIAS]["NAME"] = copy["NAME"]
    connection._test_serialized_contents = contents.read_text()
    return original, template


def tear_down(folder: Path, original: str, template: str, verbosity: int) -> None:
    connection = connections[ALIAS]
    try:
        with _unbounded_statements(connection):
            connection.creation.destroy_test_db(old_database_name=original, verbosity=verbosity)
    finally:
        with _locked(folder), _unbounded_statements(connection):
            if _users(folder, -1) == 0:
                # Django's own step for dropping a test database by name (no public one takes one).
                connection.creation._destroy_test_db(template, verbosity)
                (folder / "database.json").unlink()
