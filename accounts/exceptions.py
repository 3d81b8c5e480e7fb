"""Domain errors of people, partners, credit lines and family links.

``status`` is the HTTP status the API answers with; ``field`` names the input at fault when
there is one (it becomes the error shape's ``fields``). Messages are ``gettext_lazy`` msgids
(``core.errors.DomainError``).
"""

from django.utils.translation import gettext_lazy as _

from core.errors import DomainError


class AccountsError(DomainError):
    code = "accounts_error"
    status = 400


class InvalidInput(AccountsError):
    code = "invalid"


class PersonExists(AccountsError):
    code = "person_exists"
    status = 409


class FamilyRuleViolated(AccountsError):
    """A family-link rule does not hold; ``field`` says which input breaks it."""

    code = "family_rule"


class CreditLineStateError(AccountsError):
    code = "credit_line_state"
    status = 409


class NoTierForScore(AccountsError):
    code = "no_tier"


# --- patients' sign-in by SMS code ------------------------------------------------------------


class TooManyCodes(AccountsError):
    """A code asked for too soon after the last one, or beyond the day's allowance; the
    caller may ask again after ``retry_after`` seconds."""

    code = "too_many_codes"
    status = 429

    def __init__(self, *, retry_after: int, daily: bool) -> None:
        self.retry_after = retry_after
        if daily:
            super().__init__(
                _("ten codes a day at most for one number: ask again in %(seconds)s seconds"),
                field="phone",
                params={"seconds": retry_after},
            )
        else:
            super().__init__(
                _("one code a minute for one number: ask again in %(seconds)s seconds"),
                field="phone",
                params={"seconds": retry_after},
            )


class WrongCode(AccountsError):
    """The code does not match; ``tries_left`` more are allowed (none: it is void now)."""

    code = "wrong_code"


class CodeNotValid(AccountsError):
    """No code to check: none was sent to this number, or it expired, was used or voided."""

    code = "code_not_valid"


class RegistrationNeeded(AccountsError):
    """The number is on nobody yet: a name and ID number register its owner."""

    code = "registration_needed"


class IdentityMismatch(AccountsError):
    """The name given is not that of the ID number's holder."""

    code = "identity_mismatch"


class PhoneElsewhere(AccountsError):
    """The ID number's holder has another mobile number; it is changed at a cashier's desk."""

    code = "phone_elsewhere"
    status = 409
