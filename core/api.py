"""What every API here shares: request bodies, the schema, money fields, idempotent POSTs.

The error shape and its handler are ``core.api_errors``; the edge that keeps every answer
under ``/api/`` JSON is ``core.api_edge``.
"""

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.http import QueryDict
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import exceptions, parsers, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import Conflict, ErrorOut, InProgress
from core.idempotency import KeyReused, StillRunning, run_once
from core.money import API, NotYuan, TooLarge, fen_to_yuan, yuan_to_fen

# --- request bodies ---------------------------------------------------------------------------

MAX_JSON_DEPTH = 32


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what would fail later as a 500: nesting deeper than
    ``MAX_JSON_DEPTH`` (the decoder's own RecursionError included) and a lone surrogate escape
    such as ``"\\ud800"``, which is no text PostgreSQL or UTF-8 can hold."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH}") from None
        _check_json(data)
        return data


def _check_json(data: Any) -> None:
    stack = [(data, 0)]
    while stack:  # iterative: the point is not to recurse as deep as the client nests
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise exceptions.ParseError("a string holds a lone surrogate, not text") from None
            continue
        if isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH}")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


# --- the schema -------------------------------------------------------------------------------


ERROR_ANSWERS = {
    400: "Bad input: a field (named in `fields`), a missing Idempotency-Key, a body that is not "
    "JSON, too large, nested too deep or with too many fields, a NUL byte.",
    401: "No credentials, or credentials that are not valid.",
    403: "The caller's role may not do this.",
    404: "No such object, or one the caller may not see; a malformed id; a page past the end.",
    409: "A state conflict: already done, not allowed in this state, an Idempotency-Key reused "
    "with another request, or a collision with a concurrent request (code `retry`).",
    415: "A file upload sent without a multipart/form-data body it can read.",
}

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200},
    OpenApiParameter.HEADER,
    required=True,
    description="1 to 200 characters, new for each new request. A replay with the same key "
    "returns the first answer and changes nothing; the key with another request is a 409.",
)
PAGE = OpenApiParameter(
    "page", {"type": "integer", "minimum": 1}, description="page number, from 1 (50 a page)"
)


_pages: dict[str, type[serializers.Serializer]] = {}


def page_of(name: str, child: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The schema of a page of ``child`` (``count, next, previous, results``), named ``name``."""
    if name not in _pages:
        _pages[name] = type(
            name,
            (serializers.Serializer,),
            {
                "__doc__": f"A page of {child.__name__}: ?page=N, 50 a page.",
                "count": serializers.IntegerField(min_value=0),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": child(many=True),
            },
        )
    return _pages[name]


class ApiSchema(AutoSchema):
    """The schema of an API view: every error answer it can give, and exact answer objects.

    Every operation can be malformed (400) and needs credentials (401); views that check a
    role refuse others (403); an id in the path, a page number, or an id in the body of a
    view that says ``may_miss`` can name nothing (404); a POST with an Idempotency-Key, or
    one whose view says ``may_conflict``, can conflict (409); an upload (multipart) sent as
    something else is refused (415). Answer objects list every field
    they have and no others (``additionalProperties: false``), so a field added to an answer
    but not to its serializer fails tests/test_schema_contract.py.
    """

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        bodies = super()._get_response_bodies(direction)
        statuses = [400, 401]
        if getattr(self.view, "checks_roles", True):
            statuses.append(403)
        named = {getattr(p, "name", None) for p in self.get_override_parameters()}
        if "{" in self.path or "page" in named or getattr(self.view, "may_miss", False):
            statuses.append(404)
        if "Idempotency-Key" in named or getattr(self.view, "may_conflict", False):
            statuses.append(409)
        parsers = getattr(self.view, "parser_classes", [])
        if self.method == "POST" and any(p.media_type == "multipart/form-data" for p in parsers):
            statuses.append(415)  # an upload whose body is not one it can read
        for code in statuses:
            answer = OpenApiResponse(ErrorOut, description=ERROR_ANSWERS[code])
            bodies.setdefault(str(code), self._get_response_for_code(answer, str(code)))
        return bodies

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "response":
            schema["additionalProperties"] = False
        return schema


class ApiView(APIView):
    """The base of every API view here: JSON parsed with the limits above, the schema above.

    ``checks_roles``: whether a caller can be refused for its role (a 403); ``may_miss``:
    whether an id in the body can name nothing (a 404); ``may_conflict``: whether a call can
    meet a state conflict (a 409) without an Idempotency-Key.
    """

    parser_classes = [JSONParser, parsers.FormParser, parsers.MultiPartParser]
    schema = ApiSchema()
    checks_roles = True
    may_miss = False
    may_conflict = False


# --- money at the edge ------------------------------------------------------------------------


@extend_schema_field({"type": "string", "pattern": r"^-?\d+(\.\d{1,2})?$", "example": "1234.50"})
class YuanField(serializers.Field):
    """A yuan amount as a decimal string with at most two places, held as integer fen.

    A JSON number is refused (it may have been a float on the way), as is a negative amount
    unless ``allow_negative``.
    """

    default_error_messages = {
        "invalid": 'an amount in yuan as a string with up to two decimals, such as "1234.50"',
        "negative": "the amount cannot be negative",
        "zero": "the amount must be more than zero",
        "too_large": "the amount is too large",
    }

    def __init__(
        self, *, allow_negative: bool = False, allow_zero: bool = True, **kwargs: Any
    ) -> None:
        self.allow_negative = allow_negative
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        try:
            fen = yuan_to_fen(data, API)
        except TooLarge as e:
            self.fail("negative" if e.negative and not self.allow_negative else "too_large")
        except NotYuan:
            self.fail("invalid")
        if fen < 0 and not self.allow_negative:
            self.fail("negative")
        if fen == 0 and not self.allow_zero:
            self.fail("zero")
        return fen

    def to_representation(self, value: int) -> str:
        return fen_to_yuan(value)


# --- idempotent POSTs -------------------------------------------------------------------------


def required_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise exceptions.ValidationError(
            {"Idempotency-Key": ["this call moves money or state: send an Idempotency-Key"]}
        )
    if len(key) > 200:
        raise exceptions.ValidationError({"Idempotency-Key": ["at most 200 characters"]})
    return key


def request_fingerprint(request: Request) -> str:
    """A hash of the method, path and parsed body (uploaded files by their content)."""

    def plain(value: Any) -> Any:
        if isinstance(value, UploadedFile):
            digest = hashlib.sha256()
            for chunk in value.chunks():
                digest.update(chunk)
            value.seek(0)
            return f"file:{digest.hexdigest()}"
        if isinstance(value, QueryDict):
            return {key: [plain(v) for v in value.getlist(key)] for key in sorted(value)}
        if isinstance(value, dict):
            return {str(key): plain(v) for key, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    body = json.dumps(plain(request.data), sort_keys=True, default=str, ensure_ascii=False)
    parts = [request.method or "", request.get_full_path(), body]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def service_key(request: Request) -> str:
    """The caller's Idempotency-Key as a service's own key, per staff user or partner."""
    return f"api:{request.user.pk if request.user else 'anon'}:{required_key(request)}"


def idempotent(request: Request, scope: str, handler: Callable[[], Response]) -> Response:
    """Run ``handler`` once per ``Idempotency-Key``: a replay gets the first response back.

    The handler calls one service, which owns its transaction; the key is claimed before it
    and the response remembered after (``core.idempotency.run_once``). A duplicate sent while
    the first runs waits for its answer (up to ``IN_FLIGHT_WAIT``), then replays it or gets a
    409 ``in_progress`` to send it again later. The same key with another method, path or body
    is a 409. A handler that fails frees the key. The key is required: a client retrying a
    lost answer without one would move the money twice.
    """
    key = required_key(request)
    try:
        return run_once(
            scope=scope,
            key=key,
            fingerprint=request_fingerprint(request),
            work=handler,
            remember=lambda response: (response.status_code, response.data),
            replay=lambda status_code, body: Response(body, status=status_code),
        )
    except KeyReused:
        raise Conflict("this Idempotency-Key was used for a different request") from None
    except StillRunning:
        raise InProgress() from None
