"""A faster JSON renderer for large answers (a long stay's bill: thousands of lines).

:class:`FastJSONRenderer` writes with orjson what DRF's ``JSONRenderer`` writes with the
standard library, byte for byte: compact separators, UTF-8 rather than ``\\u`` escapes,
U+2028 and U+2029 escaped (as DRF does, for JavaScript), the same escapes of control
characters, quotes and backslashes; dates, times and anything else orjson does not write
itself go through DRF's own encoder. What orjson would write otherwise goes the standard
way: an answer asked for indented (``Accept: application/json; indent=2``) and an integer
past 64 bits. Floats are the exception (orjson writes ``1e16``, the standard library
``1e+16``): a view that answers floats keeps DRF's renderer.

Where :func:`answers_with_fragments` says so, a view may put ``orjson.Fragment`` (JSON written
already) in its answer: a long answer's parts can be written as they are made instead of all
being alive as objects until the end.
"""

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_default = JSONEncoder().default


class FastJSONRenderer(JSONRenderer):
    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None or not self.writes_compact(accepted_media_type, renderer_context):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            text = orjson.dumps(data, default=_default, option=_OPTIONS)
        except orjson.JSONEncodeError:  # an integer past 64 bits, say: the standard way
            return super().render(data, accepted_media_type, renderer_context)
        return text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")

    def writes_compact(
        self, accepted_media_type: str | None, renderer_context: Mapping[str, Any] | None
    ) -> bool:
        """Whether the answer goes out through orjson (compact, not indented): then parts of
        it may be :class:`orjson.Fragment`, JSON written already."""
        return (
            not self.ensure_ascii
            and self.compact
            and self.get_indent(accepted_media_type or "", renderer_context or {}) is None
        )


def answers_with_fragments(request: Request) -> bool:
    """Whether the answer to this request (content negotiation done) may hold orjson
    fragments: it goes out through :class:`FastJSONRenderer`, compact."""
    renderer = getattr(request, "accepted_renderer", None)
    return isinstance(renderer, FastJSONRenderer) and renderer.writes_compact(
        getattr(request, "accepted_media_type", None), None
    )


def fast_json_renderers() -> list[type[BaseRenderer]]:
    """The API's renderers with :class:`FastJSONRenderer` in place of DRF's JSON one."""
    # The setting as DRF hands it out: the classes, imported (the stubs say dotted paths).
    renderers: list[type[BaseRenderer]] = api_settings.DEFAULT_RENDERER_CLASSES  # type: ignore[assignment]
    return [FastJSONRenderer if renderer is JSONRenderer else renderer for renderer in renderers]
