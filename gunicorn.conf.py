# Read by gunicorn from the working directory: `make run`, the Procfile and docker compose.
# Export URLs are secrets: the access log masks their tokens.
from __future__ import annotations

logger_class = "channelmgr.log_masking.MaskingGunicornLogger"
accesslog = "-"
# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections
# over them. With the one shared socket, the first worker to wake took every kept-alive client
# and the others idled: bench/export.py saw all 32 of its clients on one of two workers in most
# seconds, and half the throughput. (A second gunicorn started by the same user on the same port
# shares it instead of failing with "address in use".)
reuse_port = True
