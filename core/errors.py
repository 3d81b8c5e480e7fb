"""The one base of every domain error: a stable ``code``, an HTTP ``status``, a message that
is translated when it is shown, and the input at fault.

The message is a ``gettext_lazy`` msgid in English, with ``%(name)s`` placeholders filled from
``params``: ``str(error.message)`` says it in the active language (a page's), ``str(error)`` in
English (for logs and the API, whose messages are English whatever the request's language).
Pages and the API choose their text by ``code`` and ``field``, never by matching the English.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.functional import lazy
from django.utils.translation import override

if TYPE_CHECKING:  # types only: nothing of django-stubs-ext is needed at run time
    from django_stubs_ext import StrOrPromise


def _interpolated(message: StrOrPromise, params: Mapping[str, Any]) -> str:
    text = str(message)
    return text % params if params else text


# Filled in each time it is shown, so in the language active then.
_interpolated_lazy = lazy(_interpolated, str)


def in_english(text: StrOrPromise) -> str:
    """``text`` (a lazy translation) said in English, the API's and the logs' language."""
    with override("en"):
        return str(text)


class DomainError(Exception):
    """A refusal of a service: bad input (400) or a state that does not allow it (409).

    ``public_message``, when a class sets it, is what people (pages and the API) are told in
    place of ``message``, which then stays for the logs: for errors whose own message names
    internal things (ledger account codes, fen amounts).
    """

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    public_message: ClassVar[StrOrPromise | None] = None

    def __init__(
        self,
        message: StrOrPromise,
        *,
        field: str | None = None,
        params: Mapping[str, Any] | None = None,
        item_field: str | None = None,
    ) -> None:
        self.msgid = message
        self.params = dict(params or {})
        self.field = field
        # The field within ``field`` when that names one item of a list (``items[0]``): what
        # a page that shows the item's fields one by one puts the message on.
        self.item_field = item_field
        super().__init__(message)

    @property
    def message(self) -> StrOrPromise:
        """The error's own message, in the language active when it is turned into text."""
        return _interpolated_lazy(self.msgid, self.params)

    @property
    def public(self) -> StrOrPromise:
        """What a person or a client is told: ``public_message`` if the class has one."""
        return self.public_message if self.public_message is not None else self.message

    def __str__(self) -> str:
        return in_english(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"
