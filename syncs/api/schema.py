"""The schema's error answers: every operation documents the problems it may answer with
(RFC 9457, ``application/problem+json``), so that a client, and schemathesis, know them."""

from __future__ import annotations

import copy

PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Our error code: invalid, not_authenticated, authentication_failed, "
                 "permission_denied, not_found, throttled, parse_error, unsupported_media_type, switched_off..."},
        "errors": {
            "type": "object",
            "description": "For an invalid request: each field's messages, with their codes.",
            "additionalProperties": {
                "type": "array",
                "items": {"type": "object", "properties": {"message": {"type": "string"}, "code": {"type": "string"}}},
            },
        },
    },
    "required": ["type", "title", "status", "detail", "code"],
}

_WORDS = {
    "400": "The request is not valid: see errors.",
    "401": "No token, or a token that is not valid or was revoked.",
    "403": "The token's role does not allow this (viewers read only).",
    "404": "No such row in the token's account.",
    "406": "Only JSON is answered.",
    "409": "The state of the row does not allow this now.",
    "415": "Only JSON is read.",
    "429": "Too many requests: wait as many seconds as Retry-After says.",
}


def problem_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    reference = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            # 404 on every route: a path's id, a row named in the body, an unknown cursor.
            codes = ["400", "401", "403", "404", "406", "429"]
            if method in ("post", "put", "patch"):
                codes.append("415")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": _WORDS[code], "content": copy.deepcopy(reference)})
            # Answered by gunicorn before the application: no problem document.
            responses.setdefault("414", {"description": "The request line (path and query) is longer than the server reads."})
            if "409" in responses:
                responses["409"] = {"description": _WORDS["409"], "content": copy.deepcopy(reference)}
    return result
