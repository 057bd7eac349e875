"""gunicorn config of the export benchmark, given with -c instead of the repository's gunicorn.conf.py.

The same masking logger as production; the access log is off unless bench/export.py passes
--access-logfile (its --access-log switch), so that a log line per request does not hide what the
views cost. Either way the baseline and the export are served with the same logging.
"""

from __future__ import annotations

logger_class = "channelmgr.log_masking.MaskingGunicornLogger"
accesslog = None
# gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl by default: one path for every
# gunicorn of the user, which a benchmark must not take over from a server someone else runs.
control_socket_disable = True
# As gunicorn.conf.py: one listening socket per worker, connections spread by the kernel.
reuse_port = True
