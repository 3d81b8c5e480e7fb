"""Errors the ledger services raise. Each carries a stable ``code`` for the API error shape.

Their messages name internal things (account codes, fen, transaction ids): the API says them
as they are, but pages say what they mean by code (``LimitExceeded`` has a public message of
its own, for the API too).
"""

from django.utils.translation import gettext_lazy as _

from core.errors import DomainError


class LedgerError(DomainError):
    code = "ledger_error"
    status = 409


class InvalidPosting(LedgerError):
    """The request cannot be posted as given (bad amount, too few legs, unbalanced)."""

    code = "invalid_posting"
    status = 400


class CrossLedgerTransfer(InvalidPosting):
    code = "cross_ledger"


class LimitExceeded(LedgerError):
    code = "limit_exceeded"
    public_message = _("the credit line (or its family cap) does not have room for this")

    def __init__(self, account_code: str, available: int, requested: int) -> None:
        self.account_code = account_code
        self.available = available
        self.requested = requested
        super().__init__(
            _("account %(account)s: %(requested)s fen asked, %(available)s fen available"),
            params={"account": account_code, "requested": requested, "available": available},
        )


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            _("idempotency key %(key)s was already used for a different request"),
            params={"key": repr(key)},
        )


class HoldNotPending(LedgerError):
    """``hold_status`` is the hold's (``status`` is the HTTP status, as for every error)."""

    code = "hold_not_pending"

    def __init__(self, hold_id: object, status: str) -> None:
        self.hold_status = status
        super().__init__(
            _("hold %(hold)s is %(status)s, not pending"),
            params={"hold": hold_id, "status": status},
        )


class HoldExpired(HoldNotPending):
    code = "hold_expired"

    def __init__(self, hold_id: object) -> None:
        super().__init__(hold_id, "expired")


class NotReversible(LedgerError):
    code = "not_reversible"


class AlreadyReversed(NotReversible):
    code = "already_reversed"
