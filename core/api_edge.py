"""The edge of the API: what is answered before, or instead of, a view.

Every answer under ``/api/`` is JSON with the error shape, whatever went wrong (API.md § Common
rules): a NUL byte in a path, a query or a header, a body too large or with too many fields, a
malformed id in a path, an unknown path, an unexpected error. Pages keep Django's own answers.
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PREFIX = "/api/"
SERVER_ERROR = "an unexpected error on the server; send a POST again with its Idempotency-Key"

STATUS_CODES = {
    400: ("bad_request", "the request is malformed"),
    401: ("not_authenticated", "credentials are missing or not valid"),
    403: ("permission_denied", "not allowed"),
    404: ("not_found", "not found"),
    405: ("method_not_allowed", "this method is not allowed here"),
    413: ("too_large", "the request body is too large"),
    415: ("unsupported_media_type", "send JSON (or multipart where a file is uploaded)"),
}


class NulByteRefused(BadRequest):
    """A NUL byte where no text may hold one; PostgreSQL could not store or compare it."""


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def error_json(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "fields": {}}}, status=status)


def suspicious_error(exc: Exception) -> tuple[str, str] | None:
    """The code and message of a request Django refused as malformed, or None.

    Shared by the error pages here and the API's exception handler, which sees the same
    exceptions when a view reads the body.
    """
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return "too_large", f"the request body is larger than {limit} bytes"
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return "too_many_fields", (
            f"at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields and "
            f"{settings.DATA_UPLOAD_MAX_NUMBER_FILES} files in one request"
        )
    if isinstance(exc, NulByteRefused):
        return "invalid", str(exc)
    if isinstance(exc, SuspiciousOperation | BadRequest):
        return "bad_request", "the request is malformed"
    return None


class ApiEdgeMiddleware:
    """Refuse NUL bytes in the path, the query and the headers; keep ``/api/`` answers JSON.

    A NUL byte cannot be stored in, or compared with, PostgreSQL text, so one that reached a
    query would be a 500. It is refused here, before any session, login or view runs. Errors
    that Django answers with a page of its own (its debug pages among them) become the error
    shape under ``/api/``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            self.refuse_nul_bytes(request)
        except NulByteRefused as refused:
            if is_api(request):  # answered here: with DEBUG on, Django's answer is a page
                return error_json(400, "invalid", str(refused))
            raise
        response = self.get_response(request)
        if (
            is_api(request)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return self.as_error_shape(response.status_code)
        return response

    @staticmethod
    def refuse_nul_bytes(request: HttpRequest) -> None:
        if "\x00" in request.path_info:
            raise NulByteRefused("a NUL byte is not allowed in a path")
        if b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            raise NulByteRefused("a NUL byte is not allowed in a query")
        for name, value in request.META.items():
            if name.startswith("HTTP_") and isinstance(value, str) and "\x00" in value:
                raise NulByteRefused("a NUL byte is not allowed in a header")

    @staticmethod
    def as_error_shape(status: int) -> JsonResponse:
        if status >= 500:
            return error_json(status, "server_error", SERVER_ERROR)
        code, message = STATUS_CODES.get(status, ("error", "the request was refused"))
        return error_json(status, code, message)


# --- error handlers (config.urls) -------------------------------------------------------------


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.bad_request(request, exception)
    code, message = suspicious_error(exception) or STATUS_CODES[400]
    return error_json(400, code, message)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception)
    return error_json(403, *STATUS_CODES[403])


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.page_not_found(request, exception)
    return error_json(404, *STATUS_CODES[404])


def server_error(request: HttpRequest, *args: Any) -> HttpResponse:
    if not is_api(request):
        return defaults.server_error(request)
    return error_json(500, "server_error", SERVER_ERROR)
