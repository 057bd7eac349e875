from __future__ import annotations

from django import template

from syncs.explain import describe

register = template.Library()


@register.simple_tag
def run_words(run) -> str:
    """A sync run's outcome in plain words, naming the portal."""
    return describe(run.outcome, run.error_params, portal=run.connection.portal.name)


@register.simple_tag
def pause_words(connection) -> str:
    """Why a connection is paused (or last failed), in plain words."""
    code = connection.pause_reason or connection.last_error_code
    params = connection.pause_params if connection.pause_reason else connection.last_error_params
    return describe(code, params, portal=connection.portal.name) if code else ""
