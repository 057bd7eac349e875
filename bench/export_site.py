"""The project's settings, with bench/export_urls.py as the urlconf (for bench/export.py)."""

from __future__ import annotations

from channelmgr.settings import *  # noqa: F403

ROOT_URLCONF = "bench.export_urls"
