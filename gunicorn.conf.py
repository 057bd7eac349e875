# Read by gunicorn from the working directory: `make run`, the Procfile and docker compose.
# Export URLs are secrets: the access log masks their tokens.
from __future__ import annotations

logger_class = "channelmgr.log_masking.MaskingGunicornLogger"
accesslog = "-"
