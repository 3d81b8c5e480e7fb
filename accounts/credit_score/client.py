"""The adapter to the city credit-score platform (API.md § Credit-score provider).

:meth:`CreditScoreClient.score` returns the citizen's :class:`~accounts.credit_score.Score`,
``None`` when the platform has none for them (HTTP 404), or raises
:class:`~accounts.credit_score.CreditScoreUnavailable` (refused connection, timeout, HTTP 5xx,
408 or 429, an answer that does not parse) or
:class:`~accounts.credit_score.CreditScoreRejected` (another 4xx). Asking changes nothing at
the platform, so any failure may simply be retried.

Only the standard library is used, and proxies from the environment are ignored, as for the
insurer. The name sent is personal data: nothing here logs it.
"""

import hashlib
import hmac
import json
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.credit_score import (
    MAX_SCORE,
    PURPOSE,
    CreditScoreError,
    CreditScoreRejected,
    CreditScoreUnavailable,
    Score,
)
from core.http import NoAnswer, NotSent, opener, post_json

__all__ = [
    "CreditScoreClient",
    "citizen_hash",
    "CreditScoreError",
    "CreditScoreRejected",
    "CreditScoreUnavailable",
    "Score",
]


def citizen_hash(id_number: str) -> str:
    """The ``id_number_hash`` the platform is asked with: lowercase hex HMAC-SHA256 of the
    normalised 18-character ID number, keyed with ``CREDIT_SCORE_ID_KEY``, a key agreed with
    the city platform.

    The platform holds the same numbers and the same key, so it computes the same hash and
    matches the citizen, while nobody who reads the requests learns the number. Not our own
    lookup hash (``accounts.crypto``): its key is ours alone and changes when
    ``FIELD_ENCRYPTION_KEY`` is rotated, and the platform needs a value stable for years. Not
    a plain SHA-256: ID numbers are few enough (region, birth date, three digits) to be
    found again from an unkeyed hash by trying them all.
    """
    key = settings.CREDIT_SCORE_ID_KEY.encode()
    return hmac.new(key, id_number.strip().upper().encode(), hashlib.sha256).hexdigest()


class CreditScoreClient:
    """Asks the platform at ``base_url`` (``settings.CREDIT_SCORE_URL``) for scores.

    ``timeout`` (``settings.CREDIT_SCORE_TIMEOUT_SECONDS``, 5 s) bounds connecting and each
    wait for data.
    """

    def __init__(self, base_url: str | None = None, timeout: float | None = None) -> None:
        url = base_url if base_url is not None else settings.CREDIT_SCORE_URL
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ImproperlyConfigured(f"CREDIT_SCORE_URL must be an http(s) URL, not {url!r}")
        self.base_url = url.rstrip("/")
        self.timeout = float(
            timeout if timeout is not None else settings.CREDIT_SCORE_TIMEOUT_SECONDS
        )
        self._opener = opener()

    def score(self, *, id_number_hash: str, name: str, consent_id: str) -> Score | None:
        """The score of the citizen ``id_number_hash`` names, read under ``consent_id``.

        ``None``: the platform knows no score for them.
        """
        for field, value in (
            ("id_number_hash", id_number_hash),
            ("name", name),
            ("consent_id", consent_id),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{field} is required")
        body = {
            "id_number_hash": id_number_hash,
            "name": name,
            "consent_id": consent_id,
            "purpose": PURPOSE,
        }
        status, answer = self._post(body)
        if status == 404:
            return None
        if status >= 500 or status in (408, 429):
            raise CreditScoreUnavailable(f"HTTP {status}")
        if 400 <= status < 500:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise CreditScoreRejected(status, str(error or ""))
        if not 200 <= status < 300 or not isinstance(answer, dict):
            raise CreditScoreUnavailable(f"HTTP {status}, not a JSON object")
        try:
            return _score(answer)
        except (KeyError, TypeError, ValueError) as e:
            raise CreditScoreUnavailable(f"answer not understood: {e}") from e

    def _post(self, body: dict[str, str]) -> tuple[int, Any]:
        try:
            status, raw = post_json(
                self._opener, f"{self.base_url}/score", body, timeout=self.timeout
            )
        except NotSent as e:
            raise CreditScoreUnavailable(f"not reached: {e}") from e
        except NoAnswer as e:
            raise CreditScoreUnavailable(f"no answer: {e}") from e
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None


def _score(answer: dict[str, Any]) -> Score:
    score, level, as_of = answer["score"], answer["level"], answer["as_of"]
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= MAX_SCORE:
        raise ValueError(f"score is not a whole number from 0 to {MAX_SCORE}")
    if not isinstance(level, str) or not level:
        raise ValueError("level is not a name")
    if not isinstance(as_of, str) or len(as_of) != 10:
        raise ValueError("as_of is not a date YYYY-MM-DD")
    return Score(score=score, level=level, as_of=date.fromisoformat(as_of))
