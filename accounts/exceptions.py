"""Domain errors of people, partners, credit lines and family links.

``status`` is the HTTP status the API answers with; ``field`` names the input at fault when
there is one (it becomes the error shape's ``fields``). Messages are ``gettext_lazy`` msgids
(``core.errors.DomainError``).
"""

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
