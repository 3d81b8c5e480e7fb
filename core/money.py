"""Money: yuan text ⇄ integer fen, the one place where either way is done.

Amounts are integer fen (分) in the database and in the services; they are yuan (元) text only
where they leave or enter the product: the API, the desks' forms, bank statement files, the
deposit table file, the insurer's wire format and the CSV export. :func:`fen_to_yuan` writes
that text and :func:`yuan_to_fen` reads it, exactly, through ``Decimal`` and never a float.

What text is an amount depends on where it comes from; each :class:`Shape` below is one such
place. Every shape refuses a plus sign, an exponent (``"1e3"``), underscores (``"1_000"``),
``NaN``/``Infinity``, digits other than ASCII 0-9 and anything that is not a ``str``; they differ
in the whitespace around the text, the sign, how many digits and how many decimal places.

This module imports nothing from Django or from the apps: the insurer simulator uses it as a
plain Python program too.
"""

import re
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, Rounded

__all__ = [
    "API",
    "CAMT053",
    "STATEMENT",
    "WIRE",
    "FractionOfFen",
    "NotYuan",
    "Shape",
    "TooLarge",
    "TooManyPlaces",
    "WHOLE",
    "fen_to_yuan",
    "yuan_to_fen",
]

# Moving the decimal point two places is exact at any length; the traps say so if not.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Rounded])
_PLAIN = re.compile(r"(-?)([0-9]+)\.([0-9]+)")
_PLACES = {1: "one", 2: "two"}


class NotYuan(ValueError):
    """The text is not an amount in yuan of the shape asked for."""

    def __init__(self, text: object, places: int = 2) -> None:
        if places:
            shape = f"yuan with at most {_PLACES.get(places, places)} places"
        else:
            shape = "whole yuan"
        super().__init__(f"not an amount in {shape}: {text!r}")
        self.text = text


class TooManyPlaces(NotYuan):
    """A plain decimal amount with more decimal places than the shape allows (``"12.345"``)."""


class TooLarge(NotYuan):
    """An amount of the shape's form whose size is at or past the shape's ``below``."""

    def __init__(self, text: object, places: int = 2, *, negative: bool = False) -> None:
        ValueError.__init__(self, f"too large an amount in yuan: {text!r}")
        self.text = text
        self.negative = negative


class FractionOfFen(NotYuan):
    """An amount within the shape's places that is not a whole number of fen (``"12.301"``).

    Only a shape of more than two places (camt.053's five) can meet one.
    """

    def __init__(self, text: object, places: int = 2) -> None:
        ValueError.__init__(self, f"not a whole number of fen: {text!r}")
        self.text = text


@dataclass(frozen=True)
class Shape:
    """How yuan text looks where it comes from.

    ``strip``: whitespace around the text is dropped first (``str.strip``), as a person may type
    it; otherwise it makes the text no amount. ``signed``: a leading ``-`` is allowed (whether a
    negative amount or zero is then welcome is the caller's rule). ``digits``: at most this many
    digits before the point, leading zeros counted; ``None`` for any number (then ``below``
    bounds the value). ``places``: at most this many after the point, at least one if there is
    a point, and no point at all for 0; past the second place they must be zeros. ``below``:
    amounts of this many fen or more, either side of zero, are refused as :class:`TooLarge`
    before they are turned into an ``int`` (which takes seconds for a million digits).
    """

    strip: bool = False
    signed: bool = True
    digits: int | None = None
    places: int = 2
    below: int | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.digits is None and self.below is None:
            raise ValueError("a shape without digits needs below: long text would be slow")
        sign = "-?" if self.signed else ""
        whole = "+" if self.digits is None else f"{{1,{self.digits}}}"
        point = rf"(?:\.[0-9]{{1,{self.places}}})?" if self.places else ""
        pattern = re.compile(rf"{sign}[0-9]{whole}{point}")
        object.__setattr__(self, "pattern", pattern)

    def refusal(self, text: str) -> NotYuan:
        """Why ``text``, which this shape does not match, is refused."""
        plain = _PLAIN.fullmatch(text)
        if (
            plain is not None
            and (self.signed or not plain[1])
            and (self.digits is None or len(plain[2]) <= self.digits)
        ):
            return TooManyPlaces(text, self.places)
        return NotYuan(text, self.places)


# What a person types into the API, a form or the deposit table file: spaces around it are
# dropped, any number of digits (leading zeros too), two places at most, under 10^13 yuan.
API = Shape(strip=True, below=10**15)
# The insurer's wire format: exactly the string, up to 13 digits before the point.
WIRE = Shape(digits=13)
# The CSV and daily bank statement files: exactly the field, up to 15 digits.
STATEMENT = Shape(digits=15)
# camt.053's Amt: no sign (CdtDbtInd carries it), up to 15 digits and the schema's five places.
CAMT053 = Shape(signed=False, digits=15, places=5)
# Whole yuan typed on a command line (a partner's credit tiers): as API, without a point.
WHOLE = Shape(strip=True, places=0, below=10**15)


def yuan_to_fen(text: object, shape: Shape = API) -> int:
    """``"1234.50"`` → ``123450``, exactly, for text of the given shape.

    Raises :class:`NotYuan` (a ``ValueError``) for anything else, and of its kinds
    :class:`TooManyPlaces` for a plain decimal amount with more places than the shape allows,
    :class:`TooLarge` for one at or past the shape's ``below`` and :class:`FractionOfFen` for
    one with a part of a fen.
    """
    if not isinstance(text, str):
        raise NotYuan(text, shape.places)
    if shape.strip:
        text = text.strip()
    if shape.pattern.fullmatch(text) is None:
        raise shape.refusal(text)
    fen = Decimal(text).scaleb(2, _EXACT)
    if shape.below is not None and fen.copy_abs() >= shape.below:
        raise TooLarge(text, shape.places, negative=fen < 0)
    if shape.places > 2 and fen != fen.to_integral_value(context=_EXACT):
        raise FractionOfFen(text, shape.places)
    return int(fen)


def fen_to_yuan(fen: int, *, symbol: str = "") -> str:
    """``123450`` → ``"1234.50"``; ``-5`` → ``"-0.05"``; with ``symbol="¥"``, ``"-¥0.05"``.

    The one way yuan are written: the API, the pages, the wire format, files and the CSV export.
    """
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{symbol}{whole}.{cents:02d}"
