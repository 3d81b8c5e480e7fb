"""Domain errors of admission, charges, settlement and repayment.

They reuse ``AccountsError`` so the one API error handler maps them (``status``, ``field``).
"""

from accounts.exceptions import AccountsError


class SettlementInputError(AccountsError):
    code = "invalid"


class EncounterStateError(AccountsError):
    """The encounter is not in a state that allows this (e.g. already settled)."""

    code = "encounter_state"
    status = 409


class AlreadySettled(EncounterStateError):
    code = "already_settled"


class SelfPayNotCovered(EncounterStateError):
    code = "self_pay_not_covered"


class RepaymentConflict(AccountsError):
    code = "repayment_conflict"
    status = 409


class RefundNotOwed(AccountsError):
    """The refund is not owed any more (it was paid out already)."""

    code = "refund_not_owed"
    status = 409
