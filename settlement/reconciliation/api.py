"""Finance API: bank statement uploads, reconciliation batches and their exceptions."""

import csv
import heapq
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import StaffTokenAuthentication, roles, staff_actor
from accounts.selectors import staff_place
from core.api import IDEMPOTENCY_KEY, ApiView, YuanField, idempotent
from core.money import fen_to_yuan

from .batches import item_resolve, partner_named, statement_batch_create
from .matching import statement_matched_lines
from .models import ReconBatch, ReconItem
from .selectors import batches_seen, institution_for_upload, items_seen
from .serializers import BatchOut, ReconItemOut, StatementUploadOut

# The city platform's operators reconcile too, at any institution.
FINANCE = roles("finance", "admin", "platform")
EXCEPTIONS_SHOWN = 1000


class FinanceView(ApiView):
    authentication_classes = [StaffTokenAuthentication]
    permission_classes = [FINANCE]


def _cell(text: str) -> str:
    """Text from a bank or a user as a CSV cell a spreadsheet shows, never runs as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def item_out(item: ReconItem) -> dict[str, Any]:
    return {
        "id": item.pk,
        "kind": item.kind,
        "reference": item.reference,
        "bank_txn_id": item.external_id,
        "line": item.position or None,
        "amount": fen_to_yuan(item.amount) if item.amount is not None else None,
        "expected": fen_to_yuan(item.expected) if item.expected is not None else None,
        "detail": item.detail,
        "resolved": item.resolved_at is not None,
        "resolution_comment": item.resolution_comment,
        "adjustment_transaction": str(item.adjustment_transaction_id or "") or None,
    }


def batch_out(batch: ReconBatch, *, limit: int = EXCEPTIONS_SHOWN) -> dict[str, Any]:
    exceptions = batch.items.exclude(
        kind__in=[ReconItem.Kind.MATCHED, ReconItem.Kind.COVERED]
    ).order_by("kind", "position", "pk")
    return {
        "id": str(batch.pk),
        "source": batch.source,
        "bank": batch.partner.name if batch.partner else None,
        "institution": batch.institution.code if batch.institution else None,
        "file_name": batch.file_name,
        "period": {
            "start": batch.period_start.isoformat() if batch.period_start else None,
            "end": batch.period_end.isoformat() if batch.period_end else None,
        },
        "status": batch.status,
        "progress": {"done": batch.progress_done, "total": batch.progress_total},
        "matched": batch.counts.get(ReconItem.Kind.MATCHED, 0),
        "counts": batch.counts,
        "totals": {kind: fen_to_yuan(amount) for kind, amount in batch.totals.items()},
        "exceptions_count": exceptions.count() if batch.status == "done" else None,
        "exceptions": [item_out(item) for item in exceptions[:limit]],
        "error": batch.error,
        "created_at": batch.created_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
    }


@extend_schema_field({"type": "string", "format": "binary"})
class UploadedFileField(serializers.FileField):
    """A file part of a multipart body (drf-spectacular calls a plain FileField a URI unless
    request and answer components are split)."""


class BankStatementUploadApi(FinanceView):
    parser_classes = [MultiPartParser, FormParser]

    class StatementUpload(serializers.Serializer):
        bank = serializers.CharField(max_length=100, help_text="partner id or name")
        institution = serializers.CharField(
            max_length=32,
            required=False,
            allow_blank=True,
            help_text="whose statement (institution code): the uploader's own by default; "
            "the platform's operators must name one",
        )
        file = UploadedFileField()

    @extend_schema(
        operation_id="reconciliation_statement_upload",
        description="Upload a bank statement (CSV, camt.053 XML or the daily file) of the "
        "uploader's institution: its lines are matched against that institution's draws and "
        "reversals only. The file is checked whole first; a bad file, or one larger than "
        "RECON_UPLOAD_MAX_MB (1 GiB by default), is a 400 and creates no batch. The same file "
        "again returns its existing batch.",
        request={"multipart/form-data": StatementUpload},
        responses={202: StatementUploadOut},
    )
    def post(self, request: Request) -> Response:
        data = self.StatementUpload(data=request.data)
        data.is_valid(raise_exception=True)
        bank = data.validated_data["bank"].strip()
        partner = partner_named(bank)
        if partner is None:
            raise serializers.ValidationError({"bank": ["no such bank partner"]})
        institution = institution_for_upload(
            staff_place(request.user), data.validated_data.get("institution", "").strip()
        )
        if institution is None:
            raise serializers.ValidationError(
                {"institution": ["name the institution whose statement this is (its code)"]}
            )
        upload = data.validated_data["file"]
        batch, created = statement_batch_create(
            actor=staff_actor(request),
            institution=institution,
            partner=partner,
            stream=upload,
            file_name=upload.name,
        )
        return Response(
            {"batch": {"id": str(batch.pk), "status": batch.status}, "duplicate": not created},
            status=status.HTTP_202_ACCEPTED,
        )


class BatchDetailApi(FinanceView):
    @extend_schema(
        operation_id="reconciliation_batch_read",
        parameters=[OpenApiParameter("limit", int, description="exceptions shown (≤ 1000)")],
        responses=BatchOut,
    )
    def get(self, request: Request, batch_id: UUID) -> Response:
        batch = (
            batches_seen(staff_place(request.user))
            .select_related("partner", "institution")
            .get(pk=batch_id)
        )
        try:
            limit = min(int(request.query_params.get("limit", EXCEPTIONS_SHOWN)), 1000)
        except ValueError:
            raise serializers.ValidationError({"limit": ["a whole number"]}) from None
        return Response(batch_out(batch, limit=max(limit, 0)))


class _Echo:
    def write(self, value: str) -> str:
        return value


def _results(batch: ReconBatch) -> Iterator[ReconItem]:
    """Every result of a batch by kind, then line; a statement's matched item lines (recorded
    only as paid items) are read again from its file."""
    for kind in sorted(ReconItem.Kind.values):
        ordered = batch.items.filter(kind=kind).order_by("position", "reference", "pk")
        items: Iterator[ReconItem] = ordered.iterator(chunk_size=5000)
        if kind == ReconItem.Kind.MATCHED:
            items = heapq.merge(items, statement_matched_lines(batch), key=lambda i: i.position)
        yield from items


class BatchExportApi(FinanceView):
    @extend_schema(operation_id="reconciliation_batch_export", responses={(200, "text/csv"): str})
    def get(self, request: Request, batch_id: UUID) -> StreamingHttpResponse:
        batch = batches_seen(staff_place(request.user)).get(pk=batch_id)
        writer = csv.writer(_Echo())
        columns = ["kind", "line", "reference", "bank_txn_id", "amount", "expected", "detail"]
        columns += ["resolved_at", "resolved_by", "resolution_comment"]

        def rows() -> Iterator[str]:
            yield writer.writerow(columns)
            for item in _results(batch):
                yield writer.writerow(
                    [
                        item.kind,
                        item.position or "",
                        _cell(item.reference),
                        _cell(item.external_id),
                        fen_to_yuan(item.amount) if item.amount is not None else "",
                        fen_to_yuan(item.expected) if item.expected is not None else "",
                        _cell(item.detail),
                        item.resolved_at.isoformat() if item.resolved_at else "",
                        _cell(item.resolved_by),
                        _cell(item.resolution_comment),
                    ]
                )

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="recon-{batch.pk}.csv"'
        return response


class ItemResolveApi(FinanceView):
    may_conflict = True  # resolved already, or not an exception

    class Resolution(serializers.Serializer):
        comment = serializers.CharField(max_length=2000)
        adjust = YuanField(
            required=False,
            allow_null=True,
            allow_negative=True,
            allow_zero=False,
            help_text="move this much off (positive) or back onto (negative) the bank receivable",
        )

    @extend_schema(
        operation_id="reconciliation_item_resolve",
        description="Resolve an exception with a comment, and optionally an adjustment posted "
        "to the bank receivable; 409 when it is resolved already. A replay with the same "
        "Idempotency-Key returns the first answer and posts nothing.",
        parameters=[IDEMPOTENCY_KEY],
        request=Resolution,
        responses=ReconItemOut,
    )
    def post(self, request: Request, item_id: int) -> Response:
        items_seen(staff_place(request.user)).get(pk=item_id)
        data = self.Resolution(data=request.data)
        data.is_valid(raise_exception=True)

        def resolve() -> Response:
            item = item_resolve(
                actor=staff_actor(request),
                item_id=item_id,
                comment=data.validated_data["comment"],
                adjust=data.validated_data.get("adjust"),
            )
            return Response(item_out(item))

        return idempotent(request, f"staff:{request.user.pk}", resolve)
