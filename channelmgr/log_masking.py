"""Keep secrets out of every log: the token of each capability URL is replaced by "…".

Capability URLs are links whose token is the key: export feeds (``/ical/<token>.ics``),
invitations (``/invitations/<token>/``), the first owner's password link
(``/accounts/welcome/<uid>/<token>/``) and password resets (``/accounts/reset/<uid>/<token>/``),
``?token=`` style query parameters, ``Bearer`` credentials, and our API tokens (``cm_…``) anywhere. The
patterns match them wherever they appear: a request line, a ``Referer``, a ``next=`` parameter
(with its slashes percent-encoded or not), a message of our own.

One filter (``MaskSecretsFilter``) serves every log: Django's handlers (settings.LOGGING, which
Celery's worker logs through too) and gunicorn's access and error logs (``MaskingGunicornLogger``,
named in gunicorn.conf.py).
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger as GunicornLogger

MASK = "…"
# A slash, as it is or percent-encoded (in a next= parameter, a Referer's query).
_SLASH = r"(?:/|%2[Ff])"
# What a token is made of: base64url, hex, Django's reset tokens (with "-").
_TOKEN = r"[A-Za-z0-9_-]{8,}"

SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Export feeds: /ical/<token>.ics
    re.compile(rf"({_SLASH}ical{_SLASH}){_TOKEN}"),
    # Invitations: /invitations/<token>/ (the owners' /invitations/<id>/resend/ have short ids).
    re.compile(rf"({_SLASH}invitations{_SLASH}){_TOKEN}"),
    # Password resets and first passwords: /accounts/reset|welcome/<uid>/<token>/. Django's
    # own next step, /accounts/reset/<uid>/set-password/, carries no secret and stays readable.
    re.compile(rf"({_SLASH}accounts{_SLASH}(?:reset|welcome){_SLASH}[A-Za-z0-9_-]+{_SLASH})(?!set-password\b){_TOKEN}"),
    # Tokens in query strings, for API tokens and signed links to come.
    re.compile(r"([?&;](?:token|access_token|api_key|apikey|key|secret|signature|sig)=)[^&;#\s\"']+", re.IGNORECASE),
    # Credentials in headers a log format may show.
    re.compile(r"(\b(?:Bearer|Token)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # Our API tokens (syncs.api.tokens) wherever they appear, their recognisable prefix kept.
    re.compile(r"(\bcm_)[A-Za-z0-9_-]{20,}"),
)


def mask(text: str) -> str:
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(rf"\1{MASK}", text)
    return text


class MaskSecretsFilter(logging.Filter):
    """Rewrites a record whose message holds a secret, before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            # A traceback's exception may quote a path (a resolver's, a redirect's): formatted
            # here, masked, and kept where formatters look for it first.
            record.exc_text = mask(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


class MaskingGunicornLogger(GunicornLogger):
    """gunicorn's logger with every access-log field masked (the request line, the Referer, any
    header a format names) and the filter on its error log (which may quote a request line)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, MaskSecretsFilter) for f in log.filters):
                log.addFilter(MaskSecretsFilter())

    def atoms(self, resp, req, environ, request_time):
        return {key: mask(value) if isinstance(value, str) else value for key, value in super().atoms(resp, req, environ, request_time).items()}
