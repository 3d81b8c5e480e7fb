"""Rules about an encounter that both its services (which enforce them) and its reads (which
show what a desk may still do) need: each says why something is refused, or ``None``."""

from .models import Charge, Encounter, InsuranceClaim


def bill_change_refusal(encounter: Encounter) -> str | None:
    """Why the encounter's bill can no longer change, or None while it can."""
    if encounter.status != Encounter.Status.OPEN:
        return f"the encounter is {encounter.status}, not open"
    if InsuranceClaim.objects.filter(encounter=encounter).exclude(setl_id="").exists():
        # An earlier settle got as far as the insurer; its bill must not change now.
        return (
            "the insurer has already settled this bill: finish the settlement (with a payment"
            " channel if credit does not cover it) before changing charges"
        )
    return None


def reversal_refusal(charge: Charge, *, already_reversed: bool) -> str | None:
    """Why this charge line cannot be reversed (whatever the encounter), or None."""
    if charge.reverses_id is not None:
        return "a reversing line cannot itself be reversed"
    if already_reversed:
        return "this charge line is already reversed"
    return None
