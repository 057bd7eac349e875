# Read by gunicorn from the working directory: `make run`, the Procfile and docker compose.
# Links whose token is the key (export feeds, invitations, first-password and reset links) are
# secrets: the access and error logs mask their tokens (channelmgr/log_masking.py).
from __future__ import annotations

import errno
import os
import socket

logger_class = "channelmgr.log_masking.MaskingGunicornLogger"
accesslog = "-"
# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections
# over them. With the one shared socket, the first worker to wake took every kept-alive client
# and the others idled: bench/export.py saw all 32 of its clients on one of two workers in most
# seconds, and half the throughput. A second server on the same port would share it too, without
# a word: on_starting refuses to start instead.
reuse_port = True


def on_starting(server) -> None:
    """Refuse to start when another server already listens on our address.

    With reuse_port a second gunicorn on the same port would share it without a word, and
    requests would go to one or the other at random (an old version, another database). A test
    bind without SO_REUSEPORT fails only if someone listens there.
    """
    if os.environ.get("GUNICORN_PID") or os.environ.get("LISTEN_FDS"):
        return  # a re-executed master (USR2 upgrade) or systemd's sockets: the address is ours
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue  # a unix socket: gunicorn refuses one in use by itself
        host, port = address
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no server
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                server.log.error("Another server already listens on %s:%s: stop it, or choose another port.", host, port)
                raise SystemExit(1) from None


def when_ready(server) -> None:
    # With reuse_port the workers bind, not the master: gunicorn's own "Listening at:" is empty.
    server.log.info("Workers listen at: %s", ", ".join(_shown(address) for address in server.cfg.address))


def _shown(address) -> str:
    if not isinstance(address, tuple):
        return f"unix:{address}"
    host, port = address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
