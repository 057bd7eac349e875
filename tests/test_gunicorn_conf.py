"""gunicorn.conf.py: with a socket per worker (reuse_port), a second server on our port must be
refused, not silently share the port with us. And the WSGI application, as gunicorn's workers
load it, freezes what it loaded (gc)."""

from __future__ import annotations

import contextlib
import runpy
import socket
import subprocess
from types import SimpleNamespace
from unittest import mock

from tests.processes import ROOT, VENV_BIN, child_env

HOOKS = runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@contextlib.contextmanager
def listener_sharing_its_port():
    """A server listening the way our workers do: SO_REUSEPORT, on a port of its own."""
    with socket.socket() as listening:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield listening.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_for(port: int) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(address=[("127.0.0.1", port)]), log=mock.Mock())


def test_gunicorn_refuses_to_start_on_a_port_another_server_listens_on():
    with listener_sharing_its_port() as port:
        started = subprocess.run(
            [str(VENV_BIN / "gunicorn"), "channelmgr.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT, env=child_env(DEMO_MODE="1"), capture_output=True, text=True, timeout=30,
        )
    assert started.returncode == 1
    assert f"Another server already listens on 127.0.0.1:{port}" in started.stderr


def test_the_start_check_lets_a_free_port_through_and_the_ready_line_says_where_we_listen():
    server = server_for(free_port())
    HOOKS["on_starting"](server)
    HOOKS["when_ready"](server)
    server.log.error.assert_not_called()
    port = server.cfg.address[0][1]
    server.log.info.assert_called_once_with("Workers listen at: %s", f"http://127.0.0.1:{port}")


def test_the_start_check_stands_aside_for_a_master_that_inherits_its_sockets(monkeypatch):
    monkeypatch.setenv("GUNICORN_PID", "12345")  # a USR2 upgrade: the old master holds the port
    with listener_sharing_its_port() as port:
        HOOKS["on_starting"](server_for(port))  # no SystemExit


def test_the_web_process_keeps_what_it_loaded_out_of_the_collectors_passes(tmp_path):
    """Loading the WSGI application imports every view and freezes what is loaded: the
    collector's full passes, which big pages set off, then walk only the requests' objects."""
    check = (
        "import gc\n"
        "import channelmgr.wsgi\n"
        "from django.urls import resolve\n"
        "view = resolve('/').func\n"
        "tracked = gc.get_objects()\n"
        "assert gc.get_freeze_count() > 10000, gc.get_freeze_count()\n"
        "assert not any(o is view for o in tracked), 'the views are not frozen'\n"
        "fresh = [[]]\n"
        "assert any(o is fresh for o in gc.get_objects()), 'new objects must still be collected'\n"
        "print('frozen', gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=child_env(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="channelmgr.settings"),
    )
    assert done.returncode == 0 and "frozen" in done.stdout, done.stderr[-2000:]
