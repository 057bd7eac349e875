"""The WSGI application, in a process that never leaves the machine: what the fuzzer's server
(tools/fuzz_api.py) runs, so that a link the fuzzer makes up ("check it now") is never fetched
from the internet. The same guards as every test's (tests/conftest.py)."""

from __future__ import annotations

import socket

from tests.conftest import _local_names_only, _loopback_only_connect

socket.socket.connect = _loopback_only_connect
socket.getaddrinfo = _local_names_only

from channelmgr.wsgi import application  # noqa: E402

__all__ = ["application"]
