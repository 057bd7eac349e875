"""Keep capability URLs out of logs: the token of every export URL is replaced by "…".

Used by Django's logging (a filter on every handler) and by gunicorn's access log (a logger class).
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger as GunicornLogger

EXPORT_TOKEN_IN_PATH = re.compile(r"(/ical/)[A-Za-z0-9_-]{8,}")


def mask(text: str) -> str:
    return EXPORT_TOKEN_IN_PATH.sub(r"\1…", text)


class MaskSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


class MaskingGunicornLogger(GunicornLogger):
    def atoms(self, resp, req, environ, request_time):
        return {key: mask(value) if isinstance(value, str) else value for key, value in super().atoms(resp, req, environ, request_time).items()}
