from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channelmgr.settings")

application = get_wsgi_application()

# What is loaded now (Django, the apps, their models and, through the URL patterns, every view)
# lives as long as the process. Frozen, it is left out of the garbage collector's full passes,
# which would otherwise walk all of it again each time a page builds many objects (the states
# of thousands of syncs): a pause in that page, and in every request the thread shares a
# process with.
get_resolver().url_patterns  # noqa: B018 (imports every view now rather than on the first request)
gc.collect()
gc.freeze()
