"""The answers of the reconciliation API, field by field, for the OpenAPI schema.

The answers themselves are built by ``api.batch_out`` and ``api.item_out``; these serializers
describe them exactly, and ``tests/test_schema_contract.py`` holds every answer to them.
"""

from rest_framework import serializers

from ..serializers import _money
from .models import ReconBatch, ReconItem


class BatchRefOut(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ReconBatch.Status.choices)


class StatementUploadOut(serializers.Serializer):
    batch = BatchRefOut()
    duplicate = serializers.BooleanField(help_text="the same file was uploaded before")


class ReconItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ReconItem.Kind.choices)
    reference = serializers.CharField(allow_blank=True)
    bank_txn_id = serializers.CharField(allow_blank=True)
    line = serializers.IntegerField(allow_null=True, help_text="the statement line")
    amount = _money(allow_null=True)
    expected = _money(allow_null=True)
    detail = serializers.CharField(allow_blank=True)
    resolved = serializers.BooleanField()
    resolution_comment = serializers.CharField(allow_blank=True)
    adjustment_transaction = serializers.UUIDField(allow_null=True)


class PeriodOut(serializers.Serializer):
    start = serializers.DateField(allow_null=True)
    end = serializers.DateField(allow_null=True)


class ProgressOut(serializers.Serializer):
    done = serializers.IntegerField(min_value=0)
    total = serializers.IntegerField(min_value=0)


class BatchOut(serializers.Serializer):
    id = serializers.UUIDField()
    source = serializers.ChoiceField(
        # type: ignore[assignment]  # a declared field
        choices=ReconBatch.Source.choices
    )
    bank = serializers.CharField(allow_null=True)
    institution = serializers.CharField(allow_null=True, help_text="institution code")
    file_name = serializers.CharField(allow_blank=True)
    period = PeriodOut()
    status = serializers.ChoiceField(choices=ReconBatch.Status.choices)
    progress = ProgressOut()
    matched = serializers.IntegerField(min_value=0)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="lines per kind")
    totals = serializers.DictField(child=_money(), help_text="amount per kind")
    exceptions_count = serializers.IntegerField(allow_null=True, help_text="once done")
    exceptions = ReconItemOut(many=True)
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
