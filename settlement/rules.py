"""Rules about an encounter that both its services (which enforce them) and its reads (which
show what a desk may still do) need: each returns the error to raise, or ``None``."""

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from .exceptions import EncounterStateError
from .models import Charge, Encounter, InsuranceClaim

# An encounter's status as its errors say it: the code in English, a word in Chinese.
STATUS_WORDS: dict[str, object] = {
    Encounter.Status.OPEN: pgettext_lazy("encounter status", "open"),
    Encounter.Status.SETTLING: pgettext_lazy("encounter status", "settling"),
    Encounter.Status.SETTLED: pgettext_lazy("encounter status", "settled"),
    Encounter.Status.SETTLED_INSURANCE_DEFERRED: pgettext_lazy(
        "encounter status", "settled_insurance_deferred"
    ),
}


def status_word(status: str) -> object:
    return STATUS_WORDS.get(status, status)


def bill_change_refusal(encounter: Encounter) -> EncounterStateError | None:
    """Why the encounter's bill can no longer change (the error to raise), or None."""
    if encounter.status != Encounter.Status.OPEN:
        return EncounterStateError(
            _("the encounter is %(status)s, not open"),
            params={"status": status_word(encounter.status)},
        )
    if InsuranceClaim.objects.filter(encounter=encounter).exclude(setl_id="").exists():
        # An earlier settle got as far as the insurer; its bill must not change now.
        return EncounterStateError(
            _(
                "the insurer has already settled this bill: finish the settlement (with a payment"
                " channel if credit does not cover it) before changing charges"
            )
        )
    return None


def reversal_refusal(charge: Charge, *, already_reversed: bool) -> EncounterStateError | None:
    """Why this charge line cannot be reversed, whatever the encounter (the error), or None."""
    return line_reversal_refusal(
        is_reversal=charge.reverses_id is not None, already_reversed=already_reversed
    )


def line_reversal_refusal(
    *, is_reversal: bool, already_reversed: bool
) -> EncounterStateError | None:
    """:func:`reversal_refusal` for a line known by what it is rather than as a ``Charge``
    (a bill reads its lines as plain rows)."""
    if is_reversal:
        return EncounterStateError(_("a reversing line cannot itself be reversed"))
    if already_reversed:
        return EncounterStateError(_("this charge line is already reversed"))
    return None
