"""Shared fixtures.

When CI sets REQUIRE_SERVICES=1, a missing PostgreSQL or Redis is a failure, never a skip:
the session stops at once, saying which service is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone, translation

from tests import databases

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
# The moment the clock of most tests starts at (see ``clock``): the feeds of those tests are
# written for the days after it.
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


def _redis_problem() -> str | None:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return "REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at REDIS_URL does not answer: {exc}"
    return None


def _postgres_problem() -> str | None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "DATABASE_URL does not point at PostgreSQL"
    import psycopg

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
            dbname="postgres", connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at DATABASE_URL does not answer: {exc}"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE_SERVICES:
        return
    problems = [p for p in (_postgres_problem(), _redis_problem()) if p]
    if problems:
        pytest.exit("REQUIRE_SERVICES=1 but: " + "; ".join(problems), returncode=1)


def require(problem: str | None) -> None:
    """Skip a test whose service is missing, or fail it when CI asked for the service."""
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def redis_url() -> str:
    require(_redis_problem())
    return os.environ["REDIS_URL"]


@pytest.fixture
def postgres() -> None:
    require(_postgres_problem())


_LOOPBACK_PREFIXES = ("127.", "::1", "0:0:0:0:0:0:0:1")
_real_connect = socket.socket.connect


def _loopback_only_connect(sock: socket.socket, address, *args):
    """Tests never leave the machine: refuse any connection that is not to the loopback."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith(_LOOPBACK_PREFIXES):
        raise ConnectionRefusedError(f"test tried to connect off the machine, to {address[0]}")
    return _real_connect(sock, address, *args)


_real_getaddrinfo = socket.getaddrinfo


def _local_names_only(host, *args, **kwargs):
    """No DNS query leaves the machine either: only loopback names and IP literals resolve."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in {"localhost", "localhost.localdomain"} and not _is_ip_literal(name):
        raise socket.gaierror(socket.EAI_NONAME, f"test tried to resolve {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _is_ip_literal(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def _never_leave_the_machine(monkeypatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only_connect)
    monkeypatch.setattr(socket, "getaddrinfo", _local_names_only)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory) -> None:
    """On SQLite the test database is a file in WAL mode, as `make run`'s is, not memory: an
    in-memory test database is one connection shared by the live server's threads, and a page
    that loads several parts at once (the checklist's steps) then fails with "database table is
    locked", as it never does on a file or on PostgreSQL."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        name = tmp_path_factory.mktemp("database") / "test.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(name)
        # `make mutation` runs the tests once per mutant: it migrates one database first and each
        # run starts from a copy of it (with --reuse-db), instead of migrating a new one each time.
        template = os.environ.get("MUTATION_TEST_DATABASE")
        if template:
            shutil.copyfile(template, name)
    else:
        # A test's commits need not reach the disk before it goes on: a crash of the database
        # server loses the test database anyway. Other sessions see a commit as soon as it is made.
        options = database.setdefault("OPTIONS", {})
        options["options"] = " ".join(filter(None, [options.get("options"), "-c synchronous_commit=off"]))


@pytest.fixture(scope="session")
def django_db_setup(
    request, django_test_environment, django_db_blocker, django_db_keepdb, django_db_use_migrations,
    django_db_modify_db_settings,
):
    """In a parallel run, the test databases are copies of one migrated once (tests/databases.py).
    With --reuse-db or --no-migrations, and in a run of one process, pytest-django's own."""
    folder = _run_folder(request.config)
    if folder is None or django_db_keepdb or not django_db_use_migrations:
        yield request.getfixturevalue("django_db_setup")
        return
    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        original, template = databases.set_up(folder, request.config.workerinput["workerid"], verbosity)
    yield
    with django_db_blocker.unblock():
        databases.tear_down(folder, original, template, verbosity)


@pytest.fixture(scope="session", autouse=True)
def _emptied_by_delete():
    """A test that commits (``django_db(transaction=True)``) ends with every table emptied
    (Django's flush). On PostgreSQL the flush is one TRUNCATE of every table, which makes each
    table and index anew on disk, however few rows the test left; here each table is emptied
    with DELETE instead, in one transaction: the same empty tables, at a small part of the
    cost. The foreign keys Django makes on PostgreSQL are checked at the commit (DEFERRABLE
    INITIALLY DEFERRED), so the order of the tables does not matter. A flush that restarts the
    sequences (``reset_sequences``) is left to TRUNCATE ... RESTART IDENTITY."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return [f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(table))};" for table in tables]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        yield


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """A parallel run hands each test out on its own, in the order below, except a browser
    module's tests: those go to one process, one after the other, as in a run of one process,
    where the module's Chromium (``browser``) serves them all; a process that ran them among
    other tests would start Chromium again at each change of module. (pytest-xdist's own groups,
    ``--dist loadgroup``, do nothing under pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class BrowserModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.startswith("tests/browser/") else nodeid

    return BrowserModulesTogether(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order a parallel run hands tests out in (pytest-xdist, in this order): pytest-django's
    order kept (the tests in a rolled-back transaction, then the tests that commit, whose end
    empties the tables those before them read, then the tests without a database); within each,
    the tests that start real processes or a browser first, so that the longest are not left for
    the end while the other processes have nothing left to do; and the tests that measure alone
    (``run_alone``) last of all, when the others have ended anyway, instead of stopping every
    process while the tests running there end."""

    # A browser module is handed out whole (``pytest_xdist_make_scheduler``): the modules of
    # most tests, the longest, first.
    module_sizes = Counter(item.path for item in items)

    def turn(item: pytest.Item) -> tuple[bool, int, bool, int]:
        return (
            "run_alone" in getattr(item, "fixturenames", ()),
            _database_use(item),
            item.get_closest_marker("slow") is None,
            -module_sizes[item.path] if item.path.parent.name == "browser" else 0,
        )

    items.sort(key=turn)


def _database_use(item: pytest.Item) -> int:
    """0: in a transaction rolled back; 1: commits (its end empties every table); 2: none."""
    fixtures = getattr(item, "fixturenames", ())
    marker = item.get_closest_marker("django_db")
    if {"transactional_db", "live_server"} & set(fixtures) or (
        marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences") or marker.args[:1] == (True,))
    ):
        return 1
    return 0 if marker or "db" in fixtures else 2


# In a parallel run (pytest-xdist), a test that compares timings measured side by side within
# itself (a p95 alone, then beside another account's load) measures while no other test runs:
# a neighbour's burst of load between its measures would decide it. Every other test holds the
# run's lock shared for its whole run (fixtures too); the measuring part of such a test holds it
# exclusively, through the ``run_alone`` fixture. A second lock, the turnstile, lets no test start
# while the exclusive one waits, so that it is not starved by tests that keep starting.


def _run_folder(config: pytest.Config) -> Path | None:
    """The folder of the parallel run, shared by its processes; None in a run of one process."""
    if not hasattr(config, "workerinput"):
        return None
    return Path(config.option.basetemp).parent  # xdist gives each worker <the run's>/popen-gwN


def _lock(path: Path, mode: int) -> int:
    handle = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(handle, mode)
    return handle


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """Each test holds the run's lock shared (see above), taken before pytest-timeout starts its
    clock: waiting for a ``run_alone`` measure is no part of a test's time."""
    folder = _run_folder(item.config)
    if folder is None or "run_alone" in getattr(item, "fixturenames", ()):
        return (yield)
    turnstile = _lock(folder / "tests.turnstile", fcntl.LOCK_EX)
    try:
        tests = _lock(folder / "tests.lock", fcntl.LOCK_SH)
    finally:
        os.close(turnstile)
    try:
        return (yield)
    finally:
        os.close(tests)


@contextlib.contextmanager
def _exclusive(folder: Path):
    turnstile = _lock(folder / "tests.turnstile", fcntl.LOCK_EX)
    try:
        tests = _lock(folder / "tests.lock", fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(tests)
    finally:
        os.close(turnstile)


@pytest.fixture
def run_alone(request):
    """``with run_alone(): ...``: what the block measures, it measures while no other test of a
    parallel run runs (see above). In a run of one process, every test runs alone already."""
    folder = _run_folder(request.config)
    if folder is None:
        return contextlib.nullcontext
    return lambda: _exclusive(folder)


@pytest.fixture(scope="session", autouse=True)
def _metrics_folder_of_our_own(tmp_path_factory):
    """The worker counters (prometheus-client's multiprocess files) of this test process, and of
    the processes it starts, go to a folder of its own: the /metrics tests compare counts before
    and after a sync, which a parallel test process (pytest-xdist) counting its own syncs in a
    shared folder (settings: VAR_DIR/metrics) would change. The files are made at the first
    count, after this."""
    before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path_factory.mktemp("metrics"))
    yield
    if before is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = before


@pytest.fixture(autouse=True)
def _stored_states_hold(request):
    """After each test that used the database, every live sync's stored state is what the rules
    say at the test's clock, unless the sweep is due to decide it again: a write path that forgot
    to decide the state again fails the test that took it."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if not uses_db:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # torn down after this check
    if "clock" in request.fixturenames:
        request.getfixturevalue("clock")  # likewise: the check reads the test's clock
    yield
    # A test that travelled forward and came back ends before its own last decision: its clock is
    # the latest moment a state was decided, never earlier.
    from django.db.models import Max

    from syncs.models import Connection
    from tests.states import states_not_as_stored  # the database is set up only now

    latest = Connection.all_objects.aggregate(latest=Max("state_since"))["latest"]
    now = max(timezone.now(), latest) if latest else timezone.now()
    assert states_not_as_stored(now) == [], "(sync, stored state, state now): a write did not decide it"


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language: a page asked for in Portuguese leaves Portuguese
    active in the thread (LocaleMiddleware never deactivates it), and in a parallel run the test
    that comes next in the same process is any test."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fast_hashing_and_plain_static(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """Caches and the export-read buffer live in the process: clear them so tests stay apart.

    Tests use a cache of their own process, which needs no database and is never the broker's
    Redis: the shared cache a deployment uses (Redis, or a database table) is checked by the
    tests that ask for it (test_password_reset.py, test_settings.py)."""
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    from syncs import export_reads
    from syncs.engine import fetch

    cache.clear()
    export_reads._pending.clear()
    fetch.SLOTS = fetch.HostSlots()  # what portal hosts asked of us
    yield
    cache.clear()
    export_reads._pending.clear()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def operator(db):
    from tests.factories import MembershipFactory

    return MembershipFactory().user


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """Portals played on 127.0.0.1: "localhost" may resolve to ::1 first, and the fetcher pins
    the first address it resolves."""
    return ("127.0.0.1", 0)


@pytest.fixture
def clock():
    """Time that starts at NOW and runs on; a test moves it with ``clock.shift(...)``. Ask for it
    before logging a client in, or the session expires when the clock moves."""
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def portal_server(httpserver, settings):
    """A portal played by a real HTTP server on 127.0.0.1: the fetcher may go there only when
    loopback is allowed, as it is here."""
    settings.FETCH_ALLOW_LOOPBACK = True
    return httpserver


@pytest.fixture
def feed_url(portal_server) -> str:
    """The link of an Airbnb feed with one stay, two nights from today, on ``portal_server``."""
    from tests import feeds

    today = timezone.localdate()
    portal_server.expect_request("/feed.ics").respond_with_data(
        feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=5))), content_type="text/calendar"
    )
    return portal_server.url_for("/feed.ics")
