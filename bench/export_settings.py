"""Settings of the export benchmark's gunicorn: the project's own, plus a bench-only urlconf.

Everything else (database, cache, middleware, logging) stays exactly what production reads from
the environment, so the baseline view and the export pay the same framework costs.
"""

from __future__ import annotations

from channelmgr.settings import *  # noqa: F403

ROOT_URLCONF = "bench.export_urls"
