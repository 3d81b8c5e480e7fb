"""The finance desk: reconciliation batches and their exceptions, deferred insurance claims,
the ledger's trial balance and checks, receivables aging and daily credit per bank.

Every page is for the finance and admin roles. Reads come from ``settlement.selectors_finance``
and the reconciliation API's output helpers; writes go through the services.
"""

import codecs
import itertools
from collections.abc import Iterator
from datetime import date
from typing import Any, cast
from uuid import UUID

from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils.text import capfirst
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import DomainError
from core.money import fen_to_yuan
from ledger.selectors import trial_balance

from .. import selectors_finance as reads
from ..exceptions import EncounterStateError, SettlementInputError
from ..models import ReconBatch, ReconItem
from ..recon_api import BatchExportApi, batch_out
from ..services.reconciliation import item_resolve, ledger_check_queue, statement_batch_create
from ..services.settle import claims_due_now
from ..tasks import retry_deferred_claims
from . import labels
from .access import role_required
from .finance_forms import ResolveForm, StatementUploadForm

finance_only = role_required("finance", "admin")
EXCEL_BOM = codecs.BOM_UTF8  # EF BB BF

# The statement parser's messages without values, which a refused upload's error carries as
# its detail (settlement.services.reconciliation): in the catalog so the page says them too.
PARSER_MESSAGES = (
    gettext_noop("the file is empty"),
    gettext_noop("the CSV file is empty"),
    gettext_noop("the daily file is empty"),
    gettext_noop("the file is UTF-16; statement files must be UTF-8"),
)

KIND_LABELS = labels.RECON_KIND
STATUS_LABELS = labels.RECON_STATUS
SOURCE_LABELS = labels.RECON_SOURCE
LEDGER_LABELS: dict[str, Any] = {"money": _("Money ledger"), "credit": _("Credit ledger")}
BUCKET_LABELS: dict[str, Any] = {
    "current": _("Current"),
    "1-30": _("1–30 days"),
    "31-60": _("31–60 days"),
    "60+": _("Over 60 days"),
}


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.pk}:{request.user.get_username()}"


def _said(error: DomainError) -> str:
    """A service error's message in the page's language."""
    return capfirst(str(error.message))


def _batch_view(batch: ReconBatch) -> dict[str, Any]:
    out = batch_out(batch)
    out["status_label"] = STATUS_LABELS.get(batch.status, batch.status)
    out["source_label"] = SOURCE_LABELS.get(batch.source, batch.source)
    out["finished"] = batch.status in (ReconBatch.Status.DONE, ReconBatch.Status.FAILED)
    total = batch.progress_total or 0
    out["percent"] = (
        100 if out["finished"] else (batch.progress_done * 100 // total if total else 0)
    )
    # Only what this kind of batch can find (and anything it found all the same).
    kinds = labels.RECON_KINDS_BY_SOURCE.get(batch.source, tuple(KIND_LABELS))
    kinds += tuple(k for k in KIND_LABELS if k not in kinds and batch.counts.get(k))
    out["count_rows"] = [
        {
            "kind": kind,
            "label": labels.label(KIND_LABELS, kind),
            "count": batch.counts.get(kind, 0),
            "total": out["totals"].get(kind, "0.00"),
        }
        for kind in kinds
    ]
    # A ledger check's problems carry no amounts.
    out["has_amounts"] = batch.source != ReconBatch.Source.LEDGER
    return out


# --- batches ----------------------------------------------------------------------------------


@finance_only
@require_http_methods(["GET", "POST"])
def batches(request: HttpRequest) -> HttpResponse:
    """The desk's front page: upload a bank statement; recent batches."""
    form = StatementUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            batch, created = statement_batch_create(
                actor=_actor(request),
                partner=form.cleaned_data["bank"],
                stream=upload,
                file_name=upload.name or "statement",
            )
        except SettlementInputError as error:
            reason = _said(error)
            form.add_error("file", gettext("The file was refused: %(reason)s") % {"reason": reason})
        else:
            if not created:
                messages.info(request, _("This file was uploaded before; here is its batch."))
            return HttpResponseRedirect(reverse("finance-batch", args=[batch.pk]))
    rows = [
        {
            "batch": batch,
            "status_label": STATUS_LABELS.get(batch.status, batch.status),
            "source_label": SOURCE_LABELS.get(batch.source, batch.source),
            "matched": batch.counts.get(ReconItem.Kind.MATCHED, 0),
            "exceptions": sum(
                n
                for kind, n in batch.counts.items()
                if kind not in (ReconItem.Kind.MATCHED, ReconItem.Kind.COVERED)
            ),
        }
        for batch in reads.recon_batches()
    ]
    return render(request, "web/finance/batches.html", {"form": form, "rows": rows})


def _batch_page(
    request: HttpRequest,
    batch: ReconBatch,
    *,
    failed_item: int | None = None,
    failed_form: ResolveForm | None = None,
) -> HttpResponse:
    view = _batch_view(batch)
    exceptions = []
    for item in view["exceptions"]:
        if item["id"] == failed_item and failed_form is not None:
            form = failed_form
        else:
            form = ResolveForm(auto_id=f"id_item{item['id']}_%s")
        exceptions.append(
            {**item, "kind_label": KIND_LABELS.get(item["kind"], item["kind"]), "form": form}
        )
    context = {"batch": view, "exceptions": exceptions, "batch_id": batch.pk}
    return render(request, "web/finance/batch.html", context)


@finance_only
@require_GET
def batch_detail(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = get_object_or_404(ReconBatch.objects.select_related("partner"), pk=batch_id)
    return _batch_page(request, batch)


@finance_only
@require_GET
def batch_progress(request: HttpRequest, batch_id: UUID) -> JsonResponse:
    """What the batch page polls while the batch runs."""
    batch = get_object_or_404(ReconBatch, pk=batch_id)
    view = _batch_view(batch)
    return JsonResponse(
        {
            "id": str(batch.pk),
            "status": batch.status,
            "status_label": str(view["status_label"]),
            "finished": view["finished"],
            "percent": view["percent"],
            "progress": view["progress"],
            "counts": batch.counts,
            "error": batch.error,
        }
    )


@finance_only
@require_GET
def batch_export(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    """The batch's lines as CSV, the same file the API exports, for a person to open in Excel.

    The file starts with a UTF-8 byte order mark: without one Excel reads a CSV in the
    system's ANSI code page (GBK on a Chinese Windows) and garbles every Chinese comment and
    name. The API's export stays without it, as programs read that one.
    """
    get_object_or_404(ReconBatch, pk=batch_id)
    # The API view's handler does no authentication of its own; the role is checked above.
    response = BatchExportApi().get(cast(Any, request), batch_id)
    rows = cast(Iterator[bytes], response.streaming_content)  # a sync view's generator
    response.streaming_content = itertools.chain([EXCEL_BOM], rows)
    # (``role_required`` is typed for HttpResponse; the streamed file is its sibling type.)
    return cast(HttpResponse, response)


@finance_only
@require_POST
def item_resolve_page(request: HttpRequest, batch_id: UUID, item_id: int) -> HttpResponse:
    batch = get_object_or_404(ReconBatch.objects.select_related("partner"), pk=batch_id)
    get_object_or_404(ReconItem, pk=item_id, batch=batch)
    form = ResolveForm(request.POST, auto_id=f"id_item{item_id}_%s")
    if form.is_valid():
        try:
            item_resolve(
                actor=_actor(request),
                item_id=item_id,
                comment=form.cleaned_data["comment"],
                adjust=form.adjust_fen(),
            )
        except SettlementInputError as error:
            field = error.field if error.field in form.fields else None
            form.add_error(field, _said(error))
        except EncounterStateError as error:
            form.add_error(None, _said(error))
        else:
            messages.success(request, _("The exception is resolved."))
            return HttpResponseRedirect(
                reverse("finance-batch", args=[batch.pk]) + f"#item-{item_id}"
            )
    # 200, as for any form shown again with its errors (a 400 reads as a failed load).
    return _batch_page(request, batch, failed_item=item_id, failed_form=form)


# --- deferred insurance claims ----------------------------------------------------------------


@finance_only
@require_GET
def claims(request: HttpRequest) -> HttpResponse:
    rows = [
        {
            "claim": claim,
            "patient": claim.encounter.person.name,
            "institution": claim.encounter.institution.code,
            "self_pay": fen_to_yuan(claim.self_pay),
            "insurer_share": fen_to_yuan(claim.insurance_fund + claim.personal_account),
            "total": fen_to_yuan(claim.medfee_sumamt),
        }
        for claim in reads.deferred_claims()
    ]
    return render(request, "web/finance/claims.html", {"rows": rows})


@finance_only
@require_POST
def claims_retry_now(request: HttpRequest) -> HttpResponse:
    due = claims_due_now()
    retry_deferred_claims.delay()
    messages.success(
        request, gettext("%(count)d deferred claims are queued for a retry now.") % {"count": due}
    )
    return HttpResponseRedirect(reverse("finance-claims"))


# --- the ledger -------------------------------------------------------------------------------


@finance_only
@require_GET
def ledger_page(request: HttpRequest) -> HttpResponse:
    rows = [
        {
            "row": row,
            "label": LEDGER_LABELS.get(row.ledger, row.ledger),
            "debits": fen_to_yuan(row.debits_posted),
            "credits": fen_to_yuan(row.credits_posted),
            "difference": fen_to_yuan(row.difference),
            "debits_pending": fen_to_yuan(row.debits_pending),
            "credits_pending": fen_to_yuan(row.credits_pending),
        }
        for row in trial_balance()
    ]
    check = reads.latest_ledger_check()
    context = {
        "rows": rows,
        "check": check,
        "check_status": STATUS_LABELS.get(check.status, check.status) if check else None,
        "check_problems": check.counts.get(ReconItem.Kind.PROBLEM, 0) if check else None,
    }
    return render(request, "web/finance/ledger.html", context)


@finance_only
@require_POST
def ledger_verify(request: HttpRequest) -> HttpResponse:
    """Queue the ledger's checks (every transaction, balance and the hash chain) for a worker
    and show their batch, which follows the run to its end."""
    batch, queued = ledger_check_queue(actor=_actor(request))
    if queued:
        messages.success(request, _("The ledger check is queued; this page follows it."))
    else:
        messages.info(request, _("A ledger check is already under way; this page follows it."))
    return HttpResponseRedirect(reverse("finance-batch", args=[batch.pk]))


# --- receivables aging ------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT = 640, 220


def _aging_chart(totals: dict[str, int]) -> list[dict[str, Any]]:
    """Bars of the aging chart: x, y, width and height inside a 640×220 SVG."""
    top = max(totals.values(), default=0) or 1
    slot = CHART_WIDTH // len(reads.AGING_BUCKETS)
    bars = []
    for index, bucket in enumerate(reads.AGING_BUCKETS):
        height = round(totals[bucket] * (CHART_HEIGHT - 50) / top)
        bars.append(
            {
                "x": index * slot + slot // 4,
                "width": slot // 2,
                "y": CHART_HEIGHT - 25 - height,
                "height": height,
                "label": BUCKET_LABELS[bucket],
                "label_x": index * slot + slot // 2,
                "amount": fen_to_yuan(totals[bucket]),
                "bucket": bucket,
                "overdue": bucket != "current",
            }
        )
    return bars


@finance_only
@require_GET
def receivables(request: HttpRequest) -> HttpResponse:
    aging = reads.receivables_aging()
    rows = [
        {
            "bank": row.bank,
            "cells": [
                {"amount": fen_to_yuan(row.buckets[b]), "count": row.counts[b]}
                for b in reads.AGING_BUCKETS
            ],
            "total": fen_to_yuan(row.total),
        }
        for row in aging.rows
    ]
    context = {
        "as_of": aging.as_of,
        "buckets": [BUCKET_LABELS[b] for b in reads.AGING_BUCKETS],
        "rows": rows,
        "totals": [
            {"amount": fen_to_yuan(aging.totals.buckets[b]), "count": aging.totals.counts[b]}
            for b in reads.AGING_BUCKETS
        ],
        "grand_total": fen_to_yuan(aging.totals.total),
        "bars": _aging_chart(aging.totals.buckets),
        "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT, "base": CHART_HEIGHT - 25},
    }
    return render(request, "web/finance/receivables.html", context)


# --- daily credit per bank --------------------------------------------------------------------


def _daily_chart(window: list[date], drawn: dict[date, int], repaid: dict[date, int]) -> dict:
    """Paired bars per day (drawn, repaid) inside a 640×180 SVG."""
    width, height, base = CHART_WIDTH, 180, 160
    top = max([*drawn.values(), *repaid.values(), 0]) or 1
    slot = width / len(window)
    bars = []
    for index, day in enumerate(window):
        for offset, (kind, amount) in enumerate((("drawn", drawn[day]), ("repaid", repaid[day]))):
            size = round(amount * (base - 10) / top)
            bars.append(
                {
                    "x": round(index * slot + 1 + offset * (slot - 2) / 2, 1),
                    "width": round((slot - 2) / 2, 1),
                    "y": base - size,
                    "height": size,
                    "kind": kind,
                    "title": f"{day.isoformat()} {fen_to_yuan(amount)}",
                }
            )
    ticks = [
        {"x": round(index * slot + slot / 2, 1), "label": day.strftime("%m-%d")}
        for index, day in enumerate(window)
        if index % 5 == 0 or index == len(window) - 1
    ]
    return {"width": width, "height": height, "base": base, "bars": bars, "ticks": ticks}


@finance_only
@require_GET
def credit_daily(request: HttpRequest) -> HttpResponse:
    window, banks = reads.daily_credit()
    charts = []
    for bank in banks:
        days = [
            {
                "day": day,
                "drawn": fen_to_yuan(bank.drawn[day]),
                "repaid": fen_to_yuan(bank.repaid[day]),
            }
            for day in reversed(window)
            if bank.drawn[day] or bank.repaid[day]
        ]
        charts.append(
            {
                "bank": bank.bank,
                "total_drawn": fen_to_yuan(bank.total_drawn),
                "total_repaid": fen_to_yuan(bank.total_repaid),
                "chart": _daily_chart(window, bank.drawn, bank.repaid),
                "days": days,
            }
        )
    context = {"first": window[0], "last": window[-1], "charts": charts}
    return render(request, "web/finance/credit.html", context)


urlpatterns: list[URLPattern] = [
    path("", batches, name="finance-home"),
    path("batches/<uuid:batch_id>/", batch_detail, name="finance-batch"),
    path("batches/<uuid:batch_id>/progress.json", batch_progress, name="finance-batch-progress"),
    path("batches/<uuid:batch_id>/export.csv", batch_export, name="finance-batch-export"),
    path(
        "batches/<uuid:batch_id>/items/<int:item_id>/resolve/",
        item_resolve_page,
        name="finance-item-resolve",
    ),
    path("claims/", claims, name="finance-claims"),
    path("claims/retry/", claims_retry_now, name="finance-claims-retry"),
    path("ledger/", ledger_page, name="finance-ledger"),
    path("ledger/verify/", ledger_verify, name="finance-ledger-verify"),
    path("receivables/", receivables, name="finance-receivables"),
    path("credit/", credit_daily, name="finance-credit"),
]
