"""The answers of the settlement APIs, field by field, for the OpenAPI schema.

The answers themselves are built by the selectors and views (``encounter_out``,
``encounter_bill``, ``settlement_out``, ...); these serializers describe them
exactly, and ``tests/test_schema_contract.py`` holds every answer to them.
"""

from rest_framework import serializers

from core.api import YuanField

from .models import (
    Channel,
    Charge,
    CreditMovement,
    Encounter,
    InsuranceClaim,
    Receivable,
    Refund,
    Settlement,
)


def _money(**kwargs: object) -> YuanField:
    return YuanField(allow_negative=True, **kwargs)  # type: ignore[arg-type]


# --- encounters -------------------------------------------------------------------------------


class DepositSummaryOut(serializers.Serializer):
    required = _money()  # type: ignore[assignment]  # a declared field
    waived = serializers.BooleanField()
    paid = _money()


class FundingLineOut(serializers.Serializer):
    id = serializers.UUIDField()
    holder = serializers.IntegerField(help_text="the person whose credit line it is")
    via_family_link = serializers.IntegerField(allow_null=True)


class EncounterOut(serializers.Serializer):
    id = serializers.UUIDField()
    person = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Encounter.Kind.choices)
    department = serializers.IntegerField()
    diagnosis_code = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Encounter.Status.choices)
    deposit = DepositSummaryOut()
    funding_line = FundingLineOut(allow_null=True)
    admitted_at = serializers.DateTimeField()


class DepositOut(serializers.Serializer):
    id = serializers.IntegerField()
    encounter = serializers.UUIDField()
    amount = _money()
    channel = serializers.ChoiceField(choices=Channel.choices)
    paid_at = serializers.DateTimeField()


class ChargeOut(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    insurance_class = serializers.ChoiceField(choices=Charge.InsuranceClass.choices)
    quantity = serializers.RegexField(
        r"^-?[0-9]+(\.[0-9]+)?$", help_text="plain decimal notation; negative on a reversal"
    )
    unit_price = _money()
    amount = _money(help_text="negative on a reversing line")
    service_date = serializers.DateField()
    reverses = serializers.IntegerField(allow_null=True, help_text="the line this one reverses")
    reason = serializers.CharField(allow_blank=True)


class ChargesOut(serializers.Serializer):
    charges = ChargeOut(many=True)
    total = _money()


class PaidByOut(serializers.Serializer):
    deposit = _money()
    credit = _money()
    channel = _money()


class SettlementOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=Encounter.Status.choices)
    total = _money()
    insurance_fund = _money()
    personal_account = _money()
    self_pay = _money()
    funded_by = serializers.ChoiceField(choices=Settlement.FundedBy.choices)
    paid_by = PaidByOut()
    due_date = serializers.DateField(allow_null=True, help_text="when a credit line paid")
    receipt_no = serializers.CharField()


class BillItemOut(ChargeOut):
    reversed = serializers.BooleanField()
    reversible = serializers.BooleanField()


class BillDayOut(serializers.Serializer):
    date = serializers.DateField()
    items = BillItemOut(many=True)
    subtotal = _money()


class BillOut(serializers.Serializer):
    encounter = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Encounter.Status.choices)
    total = _money()
    days = BillDayOut(many=True)
    paid = _money()
    outstanding = _money()
    settlement = SettlementOut(allow_null=True, help_text="the settle answer as it stands now")


class ReceiptOut(serializers.Serializer):
    receipt_no = serializers.CharField()
    version = serializers.IntegerField(min_value=1)
    issued_at = serializers.DateTimeField()
    superseded_by = serializers.CharField(allow_null=True)
    verification_code = serializers.CharField()
    encounter = serializers.UUIDField()
    institution = serializers.CharField()
    patient = serializers.CharField()
    total = _money()
    insurance_fund = _money()
    personal_account = _money()
    self_pay = _money()
    paid_by_deposit = _money()
    paid_by_credit = _money()
    paid_by_channel = _money()
    funded_by = serializers.ChoiceField(choices=Settlement.FundedBy.choices)
    due_date = serializers.DateField(allow_null=True)
    verified = serializers.BooleanField(
        required=False, help_text="only with ?code=: whether the code is this receipt's"
    )


class ClaimOut(serializers.Serializer):
    id = serializers.IntegerField()
    encounter = serializers.UUIDField()
    status = serializers.ChoiceField(choices=InsuranceClaim.Status.choices)
    attempts = serializers.IntegerField(min_value=0)
    last_error = serializers.CharField(allow_blank=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    insurance_fund = _money()
    personal_account = _money()
    self_pay = _money()
    reverted_at = serializers.DateTimeField(allow_null=True)


class ClaimsRetryOut(serializers.Serializer):
    queued = serializers.BooleanField()
    deferred = serializers.IntegerField(min_value=0, help_text="deferred claims due now")


class RefundOut(serializers.Serializer):
    id = serializers.IntegerField()
    encounter = serializers.UUIDField()
    person = serializers.IntegerField(help_text="the patient the refund is owed to")
    amount = _money()
    reason = serializers.ChoiceField(choices=Refund.Reason.choices)
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    created_at = serializers.DateTimeField()


# --- the partner API --------------------------------------------------------------------------


class ReceivableOut(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    credit_line = serializers.UUIDField()
    encounter = serializers.UUIDField()
    amount = _money()
    outstanding = _money()
    due_date = serializers.DateField()
    status = serializers.ChoiceField(choices=Receivable.Status.choices)


class RepaymentOut(serializers.Serializer):
    id = serializers.IntegerField()
    receivable = serializers.UUIDField()
    amount = _money()
    bank_txn_id = serializers.CharField()
    paid_at = serializers.DateTimeField()
    outstanding = _money(help_text="left on the receivable after this repayment")
    receivable_status = serializers.ChoiceField(choices=Receivable.Status.choices)


class StatementItemOut(serializers.Serializer):
    reference = serializers.CharField()
    kind = serializers.ChoiceField(choices=CreditMovement.Kind.choices)
    amount = _money(help_text="positive for a draw, negative for a reversal")


class StatementOut(serializers.Serializer):
    reference = serializers.CharField(help_text="the reference of the day's net transfer")
    date = serializers.DateField()
    net_amount = _money()
    items = StatementItemOut(many=True)
