"""JSON stored as the text that was sent, without encoding it again.

A ``JSONField(encoder=TextKeepingEncoder)`` given an :class:`EncodedJson` stores that text as
it is (PostgreSQL still parses it into ``jsonb``); any other value is encoded as usual. Read
back, the field gives the parsed value, as always.
"""

import json
from typing import Any


class EncodedJson(str):
    """A JSON document already encoded, to be stored as this text."""

    __slots__ = ()


class TextKeepingEncoder(json.JSONEncoder):
    def encode(self, o: Any) -> str:
        if isinstance(o, EncodedJson):
            return str(o)
        return super().encode(o)
