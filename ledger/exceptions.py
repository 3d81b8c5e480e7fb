"""Errors the ledger services raise. Each carries a stable ``code`` for the API error shape."""


class LedgerError(Exception):
    code = "ledger_error"


class InvalidPosting(LedgerError):
    """The request cannot be posted as given (bad amount, too few legs, unbalanced)."""

    code = "invalid_posting"


class CrossLedgerTransfer(InvalidPosting):
    code = "cross_ledger"


class LimitExceeded(LedgerError):
    code = "limit_exceeded"

    def __init__(self, account_code: str, available: int, requested: int) -> None:
        self.account_code = account_code
        self.available = available
        self.requested = requested
        super().__init__(
            f"account {account_code}: {requested} fen asked, {available} fen available"
        )


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used for a different request")


class HoldNotPending(LedgerError):
    code = "hold_not_pending"

    def __init__(self, hold_id: object, status: str) -> None:
        self.status = status
        super().__init__(f"hold {hold_id} is {status}, not pending")


class HoldExpired(HoldNotPending):
    code = "hold_expired"

    def __init__(self, hold_id: object) -> None:
        super().__init__(hold_id, "expired")


class NotReversible(LedgerError):
    code = "not_reversible"


class AlreadyReversed(NotReversible):
    code = "already_reversed"
