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


class ScoreUnavailable(AccountsError):
    """The credit-score platform could not be asked (down, timing out, or refusing the request):
    nothing was recorded, and the same request may be sent again later."""

    code = "score_unavailable"
    status = 503


class EnrolmentStateError(AccountsError):
    code = "enrolment_state"
    status = 409


class AlreadyEnrolled(EnrolmentStateError):
    """The person already holds an open line with this bank."""

    code = "already_enrolled"


class ApplicationPending(EnrolmentStateError):
    """The person's enrolment with this bank waits for the bank's answer."""

    code = "application_pending"
