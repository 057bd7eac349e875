"""Password resets by email: asked for on the web, sent by the worker.

The request does the same work whatever the address: it counts the request (per client and
per address, in the shared cache: ``syncs.rate_limits``) and hands the address to the worker.
Only the worker looks the address up and, when it belongs to a sign-in, sends the link, in the
member's language. So neither the answer, nor its timing, nor how many requests it takes says
whether an address has a sign-in; and a slow mail server never holds a web request.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.utils import translation

from syncs.db_connections import database_idle
from syncs.languages import chosen_language, reader_language
from syncs.rate_limits import digest, rate_limit_give_back, rate_limit_take

log = logging.getLogger(__name__)

# At most one email per address this often: the form must not become a way to flood an inbox.
RESET_EMAIL_EVERY_SECONDS = 120
# At most this many requests per client (its address, syncs' client_ip) in each window: the
# form must not become a way to probe or flood many addresses.
RESET_REQUESTS_PER_CLIENT = 5
RESET_CLIENT_WINDOW_SECONDS = 15 * 60

EMAIL_TEMPLATES = {
    "subject_template_name": "emails/password_reset_subject.txt",
    "email_template_name": "emails/password_reset.txt",
    "html_email_template_name": "emails/password_reset.html",
}


class TooManyResetRequests(Exception):
    """This client asked for too many reset emails lately."""


class ResetNotQueued(Exception):
    """The worker's queue could not take the request (the broker is down)."""


def reset_link_hours() -> int:
    return settings.PASSWORD_RESET_TIMEOUT // 3600


def password_reset_request(*, email: str, client: str) -> None:
    """Ask for a reset link to be sent to ``email``. Raises ``TooManyResetRequests`` when the
    client is over its limit and ``ResetNotQueued`` when the shared cache or the worker's queue
    is out of reach; otherwise the link is on its way if the address has a sign-in (and was not
    sent one in the last RESET_EMAIL_EVERY_SECONDS)."""
    address = f"password-reset:address:{digest(email.strip().lower())}"
    try:
        if not rate_limit_take(
            f"password-reset:client:{client}", limit=RESET_REQUESTS_PER_CLIENT, seconds=RESET_CLIENT_WINDOW_SECONDS
        ):
            raise TooManyResetRequests
        if not rate_limit_take(address, limit=1, seconds=RESET_EMAIL_EVERY_SECONDS):
            return  # the email of a moment ago is on its way
    except TooManyResetRequests:
        raise
    except Exception as exc:  # the cache (Redis, or the database) did not answer
        log.warning("password reset not counted: %s", type(exc).__name__)
        raise ResetNotQueued from exc
    try:
        password_reset_send.apply_async((email,))
    except Exception as exc:  # whatever the broker raised: say so, and let the person try again
        rate_limit_give_back(address, limit=1, seconds=RESET_EMAIL_EVERY_SECONDS)
        log.warning("password reset not queued: %s", type(exc).__name__)
        raise ResetNotQueued from exc


class MemberPasswordResetForm(PasswordResetForm):
    """Django's reset form as the worker uses it: the email goes out in the member's language,
    with the site's own address (never a Host header's)."""

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email,
                  html_email_template_name=None):
        with translation.override(reader_language(chosen=chosen_language(context["user"]))):
            database_idle()  # a mail server that hangs holds this thread, never a database connection
            super().send_mail(
                subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name
            )


@shared_task(ignore_result=True)
def password_reset_send(email: str) -> None:
    """The worker's half: send the link to every active sign-in with this address (none, for
    an address nobody uses)."""
    form = MemberPasswordResetForm({"email": email})
    if not form.is_valid():
        return
    form.save(
        domain_override=settings.SITE_HOST,
        use_https=settings.SITE_URL.startswith("https://"),
        extra_email_context={"site_url": settings.SITE_URL, "hours": reset_link_hours()},
        **EMAIL_TEMPLATES,
    )
