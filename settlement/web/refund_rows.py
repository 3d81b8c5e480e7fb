"""A refund as the pages show it: the desk's refunds page, the encounter page, the receipt and
the patient's portal say the same things about it, in the page's language."""

from collections.abc import Iterable
from typing import Any

from core.money import fen_to_yuan
from settlement.models import Refund

from . import labels


def refund_row(refund: Refund) -> dict[str, Any]:
    """Amount, channel, reason and status with their labels, when it was owed and paid."""
    return {
        "pk": refund.pk,
        "amount": fen_to_yuan(refund.amount),
        "channel": refund.channel,
        "channel_label": labels.label(labels.CHANNEL, refund.channel),
        "reason": refund.reason,
        "reason_label": labels.label(labels.REFUND_REASON, refund.reason),
        "status": refund.status,
        "status_label": labels.label(labels.REFUND_STATUS, refund.status),
        "owed": refund.status == Refund.Status.OWED,
        "created_at": refund.created_at,
        "paid_at": refund.paid_at,
        "reference": refund.reference,
    }


def refund_rows(refunds: Iterable[Refund]) -> list[dict[str, Any]]:
    return [refund_row(refund) for refund in refunds]
