"""Receipts (电子票据) with a verification code a patient can check."""

import hashlib
import hmac
import secrets
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..models import Encounter, Receipt, Settlement


def verification_code(receipt_no: str, content: dict[str, Any]) -> str:
    """HMAC of the receipt's number and amounts under a key derived from the secret key."""
    key = hmac.new(settings.SECRET_KEY.encode(), b"receipt-verification", hashlib.sha256).digest()
    message = "|".join(
        [
            receipt_no,
            str(content["encounter"]),
            str(content["total"]),
            str(content["insurance_fund"]),
            str(content["personal_account"]),
            str(content["self_pay"]),
        ]
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:12].upper()


def receipt_verify(receipt: Receipt, code: str) -> bool:
    expected = verification_code(receipt.receipt_no, receipt.content)
    given = (code or "").strip().upper()
    # As bytes: compare_digest refuses a str with anything but ASCII in it (a TypeError).
    return hmac.compare_digest(expected.encode(), given.encode())


def _new_number(encounter: Encounter) -> str:
    while True:
        number = (
            f"{encounter.institution.code}{timezone.localdate():%Y%m%d}"
            f"{secrets.randbelow(10**6):06d}"
        )
        if not Receipt.objects.filter(receipt_no=number).exists():
            return number


def receipt_issue(*, settlement: Settlement, first: bool = False) -> Receipt:
    """Issue a receipt for the settlement as it stands; a re-issue supersedes the current one.

    Call inside the transaction that changes the settlement; ``first`` when it is being made
    (a settlement is made once per encounter, so no receipt is there to supersede).
    """
    encounter = settlement.encounter
    previous = (
        None
        if first
        else Receipt.objects.select_for_update()
        .filter(encounter=encounter, superseded_by__isnull=True)
        .first()
    )
    number = _new_number(encounter)
    content = {
        "encounter": str(encounter.pk),
        "institution": encounter.institution.name,
        "patient": encounter.person.name,
        "total": settlement.total,
        "insurance_fund": settlement.insurance_fund,
        "personal_account": settlement.personal_account,
        "self_pay": settlement.self_pay,
        "paid_by_deposit": settlement.paid_by_deposit,
        "paid_by_credit": settlement.paid_by_credit,
        "paid_by_channel": settlement.paid_by_channel,
        "funded_by": settlement.funded_by,
        "due_date": settlement.due_date.isoformat() if settlement.due_date else None,
    }
    receipt = Receipt.objects.create(
        receipt_no=number,
        encounter=encounter,
        version=(previous.version + 1) if previous else 1,
        content=content,
        verification_code=verification_code(number, content),
    )
    if previous is not None:
        previous.superseded_by = receipt
        previous.save(update_fields=["superseded_by"])
    settlement.receipt_no = number
    return receipt
