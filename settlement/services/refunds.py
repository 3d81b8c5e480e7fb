"""Refunds owed to patients, paid out at the desk.

A refund is owed when a deferred insurance claim settles after the patient paid the self-pay
at the window (``funding.share_return_post``): the ledger then holds the money in the
institution's refunds payable. Paying it out moves it from there to the clearing account of the
channel it goes back through, once.
"""

import unicodedata

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.services.audit import audit_record
from ledger import services as ledger

from ..exceptions import RefundNotOwed, SettlementInputError
from ..models import Channel, Refund
from . import house

MAX_REFERENCE = 64


def refund_reference_clean(reference: str | None) -> str:
    """The payment's reference (the channel's transaction number): 1 to 64 characters, with
    no control character, surrounding spaces dropped."""
    reference = reference.strip() if isinstance(reference, str) else ""
    if not reference or len(reference) > MAX_REFERENCE:
        raise SettlementInputError(
            _("a reference of 1 to %(most)s characters is needed"),
            field="reference",
            params={"most": MAX_REFERENCE},
        )
    if any(unicodedata.category(c).startswith("C") for c in reference):
        raise SettlementInputError(
            _("a reference cannot hold control characters"), field="reference"
        )
    return reference


@transaction.atomic(durable=True)
def refund_pay(
    *, actor: str, refund_id: int, channel: str | None = None, reference: str, key: str
) -> Refund:
    """Pay out a refund owed, through ``channel`` (by default the one the patient paid by).

    Debits refunds payable and credits the channel's clearing account under a ledger key of
    the refund's own, so it is paid at most once: a refund not owed any more is refused
    (``RefundNotOwed``, a 409), except to the request with the same ``key`` that paid it (its
    answer lost), which gets the paid refund back.
    """
    if channel is not None and channel not in Channel.values:
        raise SettlementInputError(_("unknown payment channel"), field="channel")
    reference = refund_reference_clean(reference)
    if not key or len(key) > 250:
        raise SettlementInputError(_("an idempotency key of 1 to 250 characters is needed"))
    refund = (
        Refund.objects.select_for_update(of=("self",))
        .select_related("encounter__institution")
        .get(pk=refund_id)
    )
    if refund.status != Refund.Status.OWED:
        if refund.pay_key == key:
            return refund
        raise RefundNotOwed(_("this refund is not owed: it was paid out already"))
    channel = channel or refund.channel
    encounter = refund.encounter
    txn = ledger.transfer(
        key=f"refund:{refund.pk}:pay",
        debit=house.refunds_payable(encounter.institution),
        credit=house.clearing(encounter.institution, channel),
        amount=refund.amount,
        reference=f"encounter:{encounter.pk}",
        description=f"refund {refund.pk} paid out by {channel}",
    )
    original = refund.channel
    refund.status = Refund.Status.PAID
    refund.channel = channel
    refund.reference = reference
    refund.paid_at = timezone.now()
    refund.paid_by = actor
    refund.pay_key = key
    refund.transaction_id = txn.pk
    refund.save(
        update_fields=[
            "status",
            "channel",
            "reference",
            "paid_at",
            "paid_by",
            "pay_key",
            "transaction_id",
        ]
    )
    audit_record(
        actor=actor,
        action="refund.pay",
        obj=refund,
        changes={
            "amount": refund.amount,
            "channel": channel,
            "original_channel": original,
            "reference": reference,
            "encounter": str(encounter.pk),
        },
    )
    return refund
