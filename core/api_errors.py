"""The API's error shape and the one DRF exception handler that maps every error to it.

Errors are ``{"error": {"code", "message", "fields"}}`` with 400, 401, 403, 404 or 409. A
domain error (``core.errors.DomainError``) gives its own ``status``, ``code`` and ``field``;
its message is said in English whatever the request's language: clients branch on ``code``.
"""

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import OperationalError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.api_edge import suspicious_error
from core.errors import DomainError, in_english

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "the request conflicts with the current state"


class InProgress(Conflict):
    default_code = "in_progress"
    default_detail = (
        "a request with this Idempotency-Key is still being handled; send it again later"
    )


RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def error_response(
    status_code: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> Response:
    return Response(
        {"error": {"code": code, "message": message, "fields": fields or {}}},
        status=status_code,
    )


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def domain_error_response(exc: DomainError) -> Response:
    """A domain error's answer: its status and code, its (public) message in English."""
    if exc.public_message is not None:  # its own message names internal things: log it
        logger.info("%s refused: %s", exc.code, exc)
    message = in_english(exc.public)
    fields = {exc.field: [message]} if exc.field else {}
    return error_response(exc.status, exc.code, message, fields)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map every error to the one error shape; domain errors get their own status and code."""
    malformed = suspicious_error(exc)
    if malformed is not None:  # a body too large or with too many fields, read by the view
        return error_response(400, *malformed)
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if (
        isinstance(exc, OperationalError)
        and getattr(getattr(exc, "__cause__", None), "sqlstate", None) in RETRYABLE_SQLSTATES
    ):
        # PostgreSQL chose this request to break a deadlock or a serialisation conflict; its
        # transaction was rolled back whole, so the client can simply send it again.
        return error_response(
            409, "retry", "the request collided with another one and changed nothing; retry it"
        )
    if isinstance(exc, Http404 | exceptions.NotFound | ObjectDoesNotExist):
        return error_response(404, "not_found", "not found")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(detail) if isinstance(detail, dict) else {}
        message = "some fields are not valid" if fields else "; ".join(_flatten(detail or []))
        body = {"error": {"code": "invalid", "message": message, "fields": fields}}
    else:
        code = getattr(exc, "default_code", "error")
        body = {"error": {"code": code, "message": str(detail or exc), "fields": {}}}
    response.data = body
    return response


class ErrorDetailOut(serializers.Serializer):
    code = serializers.CharField(help_text="stable; clients branch on it, never on `message`")
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # declared, not Serializer.fields
        help_text="the input at fault: field name to messages (nested for lists and objects)"
    )


class ErrorOut(serializers.Serializer):
    """Every error answer: 400, 401, 403, 404, 409."""

    error = ErrorDetailOut()
