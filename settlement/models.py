"""Encounters, deposits, charges, the insurer, settlements, receipts, refunds, repayments, outbox.

Every amount is integer fen and every movement of money is posted through ``ledger.services``;
these rows describe what happened and point at the ledger transactions that record it.
"""

import uuid

import pgtrigger
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import CreditLine, Department, FamilyLink, Institution, Partner, Person
from core.jsontext import TextKeepingEncoder


class Channel(models.TextChoices):
    CASH = "cash", "cash"
    CARD = "card", "bank card"
    UNIONPAY = "unionpay", "UnionPay"
    ALIPAY = "alipay", "Alipay"
    WECHAT = "wechat", "WeChat Pay"


class DiagnosisDeposit(models.Model):
    """单病种平均个人支付水平: the inpatient deposit for a diagnosis at an institution (fen)."""

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="+")
    diagnosis_code = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True)
    amount = models.BigIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "diagnosis_code"], name="diagnosis_deposit_unique"
            ),
            models.CheckConstraint(name="diagnosis_deposit_positive", condition=Q(amount__gt=0)),
        ]

    def __str__(self) -> str:
        return f"{self.diagnosis_code} {self.amount}"


class Encounter(models.Model):
    class Kind(models.TextChoices):
        INPATIENT = "inpatient", "inpatient"
        OUTPATIENT = "outpatient", "outpatient"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        SETTLING = "settling", "settling"
        SETTLED = "settled", "settled"
        SETTLED_INSURANCE_DEFERRED = "settled_insurance_deferred", "settled, insurance deferred"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="+")
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="encounters")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    diagnosis_code = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.OPEN)
    deposit_required = models.BigIntegerField(default=0)
    deposit_waived = models.BooleanField(default=False)
    funding_line = models.ForeignKey(
        CreditLine, null=True, blank=True, on_delete=models.PROTECT, related_name="encounters"
    )
    funding_link = models.ForeignKey(
        FamilyLink, null=True, blank=True, on_delete=models.PROTECT, related_name="encounters"
    )
    # The holds reserving the waived deposit on the line and on the family link's cap.
    line_hold_id = models.UUIDField(null=True, blank=True)
    cap_hold_id = models.UUIDField(null=True, blank=True)
    admitted_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    # The caller's idempotency key, namespaced per caller: an admission sent again is the
    # same encounter. None for admissions made without one.
    admission_key = models.CharField(max_length=250, null=True, blank=True, unique=True)

    class Meta:
        indexes = [models.Index(fields=["person", "admitted_at"], name="encounter_person")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class Deposit(models.Model):
    """A deposit paid through a channel and held as a liability until settlement."""

    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="deposits")
    amount = models.BigIntegerField()
    channel = models.CharField(max_length=10, choices=Channel.choices)
    paid_at = models.DateTimeField(default=timezone.now)
    transaction_id = models.UUIDField()

    class Meta:
        constraints = [models.CheckConstraint(name="deposit_positive", condition=Q(amount__gt=0))]

    def __str__(self) -> str:
        return f"deposit {self.amount} {self.channel}"


class Charge(models.Model):
    """A charge line; a reversal (冲红) is a new negative line pointing at the one it reverses."""

    class InsuranceClass(models.TextChoices):
        A = "A", "甲 (A)"
        B = "B", "乙 (B)"
        C = "C", "丙 (C)"

    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="charges")
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=32)
    insurance_class = models.CharField(max_length=1, choices=InsuranceClass.choices)
    quantity = models.DecimalField(max_digits=12, decimal_places=3)
    unit_price = models.BigIntegerField()
    amount = models.BigIntegerField()
    service_date = models.DateField()
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    reason = models.CharField(max_length=200, blank=True)
    transaction_id = models.UUIDField()
    posted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["encounter", "service_date"], name="charge_day")]
        triggers = [
            pgtrigger.Protect(
                name="charge_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.amount}"


class InsuranceClaim(models.Model):
    """The insurer's part of one encounter's settlement, and its retries while deferred."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DEFERRED = "deferred", "deferred"
        SETTLED = "settled", "settled"
        FAILED = "failed", "failed"

    encounter = models.OneToOneField(Encounter, on_delete=models.PROTECT, related_name="claim")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    medfee_sumamt = models.BigIntegerField(default=0)
    insurance_fund = models.BigIntegerField(default=0)
    personal_account = models.BigIntegerField(default=0)
    self_pay = models.BigIntegerField(default=0)
    setl_id = models.CharField(max_length=64, blank=True)
    # A settle sent without a known outcome: resolved by query or reversal before any other.
    settle_msgid = models.CharField(max_length=64, blank=True)
    settle_infno = models.CharField(max_length=8, blank=True)
    # When the insurer's settlement was confirmed here: the day it is reconciled under.
    insurer_settled_at = models.DateTimeField(null=True, blank=True)
    # Who is talking to the insurer about this claim right now, until when.
    lease_until = models.DateTimeField(null=True, blank=True)
    # The key of the settle request that began settling (namespaced per caller): that request
    # sent again gets the settlement, even one a recovery finished for it.
    settle_key = models.CharField(max_length=250, blank=True, default="")
    reverted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="claim_due")]

    def __str__(self) -> str:
        return f"claim {self.encounter_id} {self.status}"


class InsurerCall(models.Model):
    """One call to the insurer: written before it is sent and completed with the answer.

    ``outcome`` ``unknown`` means the request may have reached the insurer without an answer
    coming back; such a settle must be queried or reversed before anything else is sent.
    """

    class Outcome(models.TextChoices):
        SENT = "sent", "sent, no answer yet"
        OK = "ok", "ok"
        REJECTED = "rejected", "rejected by the insurer"
        UNAVAILABLE = "unavailable", "insurer unavailable"
        UNKNOWN = "unknown", "outcome unknown"

    msgid = models.CharField(max_length=64, unique=True)
    infno = models.CharField(max_length=8)
    mdtrt_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The request as it was sent (see the adapter for what a pre-settle leaves out).
    request = models.JSONField(encoder=TextKeepingEncoder)
    response = models.JSONField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.SENT)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.infno} {self.msgid} {self.outcome}"


class Settlement(models.Model):
    """How an encounter's bill was paid, as it stands now (after any reversal to the insurer)."""

    class FundedBy(models.TextChoices):
        CREDIT = "credit", "credit"
        DEPOSIT = "deposit", "deposit"
        CHANNEL = "channel", "channel"

    encounter = models.OneToOneField(Encounter, on_delete=models.PROTECT, related_name="settlement")
    total = models.BigIntegerField()
    insurance_fund = models.BigIntegerField()
    personal_account = models.BigIntegerField()
    self_pay = models.BigIntegerField()
    paid_by_deposit = models.BigIntegerField(default=0)
    paid_by_credit = models.BigIntegerField(default=0)
    paid_by_channel = models.BigIntegerField(default=0)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    funded_by = models.CharField(max_length=8, choices=FundedBy.choices)
    due_date = models.DateField(null=True, blank=True)
    receipt_no = models.CharField(max_length=32)
    settled_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"settlement {self.encounter_id}"


class Receipt(models.Model):
    """An e-receipt (电子票据). A re-issue supersedes the earlier one with a new number."""

    receipt_no = models.CharField(max_length=32, unique=True)
    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="receipts")
    version = models.PositiveSmallIntegerField(default=1)
    content = models.JSONField()
    verification_code = models.CharField(max_length=16)
    issued_at = models.DateTimeField(default=timezone.now)
    superseded_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )

    def __str__(self) -> str:
        return self.receipt_no


class Receivable(models.Model):
    """What a patient owes a bank for one credit draw; repaid to the bank, due after grace."""

    class Status(models.TextChoices):
        OPEN = "open", "open"
        OVERDUE = "overdue", "overdue"
        REPAID = "repaid", "repaid"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reference = models.CharField(max_length=40, unique=True)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="receivables")
    credit_line = models.ForeignKey(
        CreditLine, on_delete=models.PROTECT, related_name="receivables"
    )
    encounter = models.OneToOneField(Encounter, on_delete=models.PROTECT, related_name="receivable")
    amount = models.BigIntegerField()
    outstanding = models.BigIntegerField()
    due_date = models.DateField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="receivable_outstanding_range",
                condition=Q(outstanding__gte=0, outstanding__lte=models.F("amount")),
            )
        ]
        indexes = [models.Index(fields=["status", "due_date"], name="receivable_due")]

    def __str__(self) -> str:
        return self.reference


class CreditMovement(models.Model):
    """A draw on a credit line or its reversal to the insurer: the lines of a bank statement."""

    class Kind(models.TextChoices):
        DRAW = "draw", "draw"
        REVERSAL = "reversal", "reversal"

    reference = models.CharField(max_length=40, unique=True)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    # The encounter's institution, kept here too: a statement uploaded by an institution's
    # finance is matched against its own items only, in one scan of this table.
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    receivable = models.ForeignKey(Receivable, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.BigIntegerField()  # positive for a draw, negative for a reversal
    business_date = models.DateField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.reference


class Repayment(models.Model):
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    receivable = models.ForeignKey(Receivable, on_delete=models.PROTECT, related_name="repayments")
    amount = models.BigIntegerField()
    bank_txn_id = models.CharField(max_length=64)
    paid_at = models.DateTimeField()
    fingerprint = models.CharField(max_length=64)
    # The receivable as this repayment left it, so a replay answers exactly as the first time.
    outstanding_after = models.BigIntegerField(default=0)
    status_after = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "bank_txn_id"], name="repayment_once"),
            models.CheckConstraint(name="repayment_positive", condition=Q(amount__gt=0)),
        ]

    def __str__(self) -> str:
        return self.bank_txn_id


class Refund(models.Model):
    """Money owed back to a patient: leftover deposit, or a self-pay later covered by insurance."""

    class Reason(models.TextChoices):
        DEPOSIT_LEFTOVER = "deposit_leftover", "deposit left over"
        INSURANCE_REVERSAL = "insurance_reversal", "insurer paid after all"

    class Status(models.TextChoices):
        OWED = "owed", "owed"
        PAID = "paid", "paid"

    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    channel = models.CharField(max_length=10, choices=Channel.choices)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    status = models.CharField(max_length=5, choices=Status.choices)
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)
    # A refund owed and paid out later (``settlement.services.refunds.refund_pay``): the
    # payment's reference (the channel's transaction number), who paid it, the caller's key of
    # the request that paid it, and its ledger posting.
    reference = models.CharField(max_length=64, blank=True, default="")
    paid_by = models.CharField(max_length=200, blank=True, default="")
    pay_key = models.CharField(max_length=250, blank=True, default="")
    transaction_id = models.UUIDField(null=True, blank=True)

    def __str__(self) -> str:
        return f"refund {self.amount} {self.status}"


class OutboxEvent(models.Model):
    """A webhook to a bank, written in the transaction of the change it reports."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_due",
                condition=Q(delivered_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
