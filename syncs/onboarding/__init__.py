"""Onboarding by file: the CSV of every sync, downloaded, edited in a spreadsheet and uploaded
back, or a new file of syncs to add.

- ``file``: the CSV format, both ways (reading what spreadsheets save; the export).
- ``checking``: each row checked and saved by the pages' own forms and services.
- ``jobs``: the check (a preview, rolled back) and the import (all rows or none), in the
  request or in the worker, and how they ended.
- ``live``: each new link read once by the worker before saving, with a verdict per row.
"""

from __future__ import annotations

# The tasks of these modules must be known to the worker (syncs.registrations imports this package).
from syncs.onboarding import jobs, live  # noqa: F401
from syncs.onboarding.jobs import onboarding_preview

__all__ = ["onboarding_preview"]
