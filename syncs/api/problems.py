"""Every API error as an RFC 9457 problem (``application/problem+json``): ``type``, ``title``,
``status``, ``detail`` in the reader's language, and ``code``, one of our error codes (DRF's:
``not_authenticated``, ``permission_denied``, ``not_found``, ``throttled``, ``invalid``...).
A refused input lists its fields' words and codes in ``errors``."""

from __future__ import annotations

from django.core.exceptions import BadRequest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: gettext_lazy("The request is not valid"),
    401: gettext_lazy("Not signed in"),
    403: gettext_lazy("Not allowed"),
    404: gettext_lazy("Not found"),
    405: gettext_lazy("Method not allowed"),
    406: gettext_lazy("Cannot answer in that format"),
    409: gettext_lazy("Conflict"),
    415: gettext_lazy("Send JSON"),
    429: gettext_lazy("Too many requests"),
}


def problem_response(*, status_code: int, code: str, detail: str, errors: dict | None = None, headers=None) -> Response:
    body = {
        "type": f"urn:channelmgr:problem:{code}",
        "title": str(_TITLES.get(status_code, gettext_lazy("Error"))),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_TYPE)


def _field_errors(detail) -> dict:
    """{"field": [{"message": ..., "code": ...}]} from DRF's nested details."""
    if isinstance(detail, dict):
        return {str(field): _messages(value) for field, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value) -> list[dict]:
    if isinstance(value, list):
        return [item for part in value for item in _messages(part)]
    if isinstance(value, dict):
        return [{"message": f"{key}: {item['message']}", "code": item["code"]} for key, v in value.items() for item in _messages(v)]
    return [{"message": str(value), "code": getattr(value, "code", "invalid")}]


def problem_handler(exc, context) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=validation_detail(exc))
    elif isinstance(exc, BadRequest):
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        first = next((items[0]["message"] for items in errors.values() if items), "")
        return problem_response(
            status_code=status.HTTP_400_BAD_REQUEST, code="invalid", detail=first or str(_TITLES[400]()),
            errors=errors, headers=_kept_headers(response),
        )
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = detail.code if hasattr(detail, "code") else "error"
    return problem_response(status_code=response.status_code, code=str(code), detail=str(detail), headers=_kept_headers(response))


def validation_detail(error: DjangoValidationError) -> dict | list:
    """A Django ValidationError (a form's, a service's) as DRF's detail, with each message's code."""
    if hasattr(error, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): [
                exceptions.ErrorDetail(str(message), code=e.code or "invalid") for e in errors for message in e.messages
            ]
            for field, errors in error.error_dict.items()
        }
    return [exceptions.ErrorDetail(str(message), code=e.code or "invalid") for e in error.error_list for message in e.messages]


def _kept_headers(response: Response) -> dict:
    return {name: value for name, value in response.items() if name in ("Retry-After", "WWW-Authenticate", "Allow")}
