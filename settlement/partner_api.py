"""Partner API: receivables, repayments and daily statements, signed by the bank."""

import re
from datetime import date

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.partner_api import SIGNED, PartnerView
from core.api import PAGE, YuanField, page_of
from core.money import fen_to_yuan

from .models import Receivable, Repayment
from .selectors import bank_statement
from .serializers import ReceivableOut, RepaymentOut, StatementOut
from .services.repayments import repayment_apply


def receivable_out(receivable: Receivable) -> dict[str, object]:
    return {
        "id": str(receivable.pk),
        "reference": receivable.reference,
        "credit_line": str(receivable.credit_line_id),
        "encounter": str(receivable.encounter_id),
        "amount": fen_to_yuan(receivable.amount),
        "outstanding": fen_to_yuan(receivable.outstanding),
        "due_date": receivable.due_date.isoformat(),
        "status": receivable.status,
    }


class ReceivablesApi(PartnerView):
    @extend_schema(
        operation_id="partner_receivables_list",
        description=SIGNED,
        parameters=[OpenApiParameter("status", str, enum=Receivable.Status.values), PAGE],
        responses=page_of("ReceivablePage", ReceivableOut),
    )
    def get(self, request: Request) -> Response:
        partner = self.principal(request).partner
        receivables = Receivable.objects.filter(partner=partner).order_by("due_date", "pk")
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Receivable.Status.values:
                raise serializers.ValidationError({"status": ["open, overdue or repaid"]})
            receivables = receivables.filter(status=wanted)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(receivables, request, view=self)
        return paginator.get_paginated_response([receivable_out(r) for r in page or []])


def repayment_out(repayment: Repayment) -> dict[str, object]:
    receivable = repayment.receivable
    return {
        "id": repayment.pk,
        "receivable": str(receivable.pk),
        "amount": fen_to_yuan(repayment.amount),
        "bank_txn_id": repayment.bank_txn_id,
        "paid_at": repayment.paid_at.isoformat(),
        "outstanding": fen_to_yuan(repayment.outstanding_after),
        "receivable_status": repayment.status_after,
    }


class RepaymentsApi(PartnerView):
    may_conflict = True  # the same bank_txn_id with other content
    may_miss = True  # a receivable that is not this bank's

    class RepaymentInput(serializers.Serializer):
        receivable = serializers.UUIDField()
        amount = YuanField(allow_zero=False)
        bank_txn_id = serializers.CharField(max_length=64)
        paid_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="partner_repayments_create",
        description="Idempotent by `bank_txn_id`: a replay returns the first answer; the same "
        "id with other content is a 409; more than the outstanding amount is a 400. " + SIGNED,
        request=RepaymentInput,
        responses={201: RepaymentOut},
    )
    def post(self, request: Request) -> Response:
        partner = self.principal(request).partner
        data = self.RepaymentInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if not Receivable.objects.filter(pk=values["receivable"], partner=partner).exists():
            raise Receivable.DoesNotExist
        repayment, _ = repayment_apply(
            partner=partner,
            receivable_id=str(values["receivable"]),
            amount=values["amount"],
            bank_txn_id=values["bank_txn_id"],
            paid_at=values["paid_at"],
        )
        repayment = Repayment.objects.select_related("receivable").get(pk=repayment.pk)
        return Response(repayment_out(repayment), status=status.HTTP_201_CREATED)


class StatementApi(PartnerView):
    @extend_schema(
        operation_id="partner_statements_read",
        description="The day's draws and reversals for this bank, and their net. " + SIGNED,
        parameters=[OpenApiParameter("day", str, OpenApiParameter.PATH, description="YYYY-MM-DD")],
        responses=StatementOut,
    )
    def get(self, request: Request, day: str) -> Response:
        try:
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day):
                raise ValueError(day)
            parsed = date.fromisoformat(day)
        except ValueError:
            raise serializers.ValidationError({"date": ["YYYY-MM-DD"]}) from None
        return Response(bank_statement(self.principal(request).partner, parsed))
