"""The form body of the OAuth 2.0 endpoints, read by the rules of RFC 6749 section 3.2.

``POST /api/token`` and ``POST /api/token/revoke`` answer every problem with an RFC 6749
section 5.2 body. FastAPI's ``Form`` parameters cannot: a value over its ``max_length`` gets
FastAPI's 422 body, a JSON body reads as an empty form, and of a repeated parameter the last
one silently wins. So these endpoints read their body here and describe it to OpenAPI with
:func:`form_body`.

The rules: the body is ``application/x-www-form-urlencoded`` in UTF-8; a parameter sent
without a value counts as omitted; a parameter sent more than once is refused; parameters
the endpoint does not know are ignored; each value has a length limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# Far more than any client sends; parsing stops here (the body is at most 64 KiB anyway).
MAX_PARAMETERS = 100


class InvalidRequest(ValueError):
    """The body breaks a rule of RFC 6749 section 3.2; the message is the
    ``error_description`` (ASCII, never a value from the request)."""


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    max_length: int
    required: bool = False


async def read_form(request: Request, fields: Sequence[FormField]) -> dict[str, str]:
    """The non-empty values of ``fields`` in the body of ``request``, by name. Fields that
    only some requests need (``username`` for one grant type) are the caller's to check."""
    body = await request.body()
    values = _parse(request, body, fields) if body else {}
    for field in fields:
        if field.required and field.name not in values:
            raise InvalidRequest(f"{field.name} is required")
    return values


def _parse(request: Request, body: bytes, fields: Sequence[FormField]) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise InvalidRequest(
            f"the body must be {FORM_MEDIA_TYPE} (RFC 6749), not {_kind(media_type)}"
        )
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except ValueError as unreadable:  # bad UTF-8, too many parameters
        raise InvalidRequest(f"the body is not a UTF-8 {FORM_MEDIA_TYPE} form") from unreadable
    known = {field.name: field for field in fields}
    values: dict[str, str] = {}
    for name, value in pairs:
        field = known.get(name)
        if field is None or not value:
            continue
        if name in values:
            raise InvalidRequest(f"{name} must not be sent more than once")
        if len(value) > field.max_length:
            raise InvalidRequest(f"{name} is longer than {field.max_length} characters")
        values[name] = value
    return values


def _kind(media_type: str) -> str:
    """How to name what came instead, without echoing arbitrary header text."""
    if media_type == "application/json" or media_type.endswith("+json"):
        return "JSON"
    if media_type == "multipart/form-data":
        return "multipart/form-data"
    return "another media type" if media_type else "a body without a Content-Type"


def form_body(fields: Sequence[FormField]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` that :func:`read_form` reads."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            field.name: {"type": "string", "maxLength": field.max_length} for field in fields
        },
    }
    required = [field.name for field in fields if field.required]
    if required:
        schema["required"] = required
    return {"required": True, "content": {FORM_MEDIA_TYPE: {"schema": schema}}}
