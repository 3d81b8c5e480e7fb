"""The city credit-score platform (白鹭分 in Xiamen): the answer, the errors, the adapter and a
simulator.

The wire (API.md § Credit-score provider): ``POST {CREDIT_SCORE_URL}/score`` with
``{"id_number_hash", "name", "consent_id", "purpose": "credit_medical"}``, answered
``{"score", "level", "as_of"}``, or HTTP 404 when the citizen has no score. Only ``client``
(the adapter) and ``simulator`` know that shape.

This module and ``simulator`` import nothing from Django, so the simulator runs as a plain
``python -m accounts.credit_score.simulator`` too; ``client`` is the Django side.
"""

from dataclasses import dataclass
from datetime import date

PURPOSE = "credit_medical"
# The partner API takes scores up to this; a provider's larger number is not a score.
MAX_SCORE = 10_000


@dataclass(frozen=True)
class Score:
    """A citizen's score as the platform gave it: ``level`` is the platform's own band name,
    ``as_of`` the day the score was computed (platforms recompute monthly)."""

    score: int
    level: str
    as_of: date


class CreditScoreError(Exception):
    """A score that could not be had."""


class CreditScoreUnavailable(CreditScoreError):
    """The platform could not be reached or gave no usable answer: try again later."""


class CreditScoreRejected(CreditScoreError):
    """The platform refused the request (an HTTP 4xx other than 404: a consent it does not
    accept, say): asking again the same way will not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
