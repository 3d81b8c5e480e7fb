"""The finance desk's reconciliation pages: bank statement uploads, batches and their
exceptions, and the ledger's trial balance with its checks.

The pages are the finance and admin roles', each seeing its own institution's batches; the
city platform's operators see every institution's batches, and they alone the ledger's trial
balance and checks, which cover the whole city's ledger. Reads come from ``.selectors`` and the
reconciliation API's output helpers; writes go through the services. ``settlement.web.finance``
includes ``urlpatterns`` under ``/finance/``.
"""

import codecs
import itertools
from collections.abc import Iterator
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
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.selectors import staff_institution, staff_place
from core.errors import DomainError
from core.money import fen_to_yuan
from ledger.selectors import trial_balance

from ..exceptions import EncounterStateError, SettlementInputError
from ..web.access import finance_only, page_actor, platform_only, reconcilers
from ..web.labels import label
from . import selectors as reads
from .api import BatchExportApi, batch_out
from .batches import item_resolve, ledger_check_queue, statement_batch_create
from .forms import ResolveForm, StatementUploadForm
from .labels import RECON_KIND, RECON_KINDS_BY_SOURCE, RECON_SOURCE, RECON_STATUS, detail_label
from .models import ReconBatch, ReconItem

EXCEL_BOM = codecs.BOM_UTF8  # EF BB BF

KIND_LABELS = RECON_KIND
STATUS_LABELS = RECON_STATUS
SOURCE_LABELS = RECON_SOURCE
LEDGER_LABELS: dict[str, Any] = {"money": _("Money ledger"), "credit": _("Credit ledger")}


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
    kinds = RECON_KINDS_BY_SOURCE.get(batch.source, tuple(KIND_LABELS))
    kinds += tuple(k for k in KIND_LABELS if k not in kinds and batch.counts.get(k))
    out["count_rows"] = [
        {
            "kind": kind,
            "label": label(KIND_LABELS, kind),
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
    institution = staff_institution(request.user)
    if request.method == "POST" and form.is_valid() and institution is None:
        form.add_error(None, _("You work at no institution: a statement needs one."))
    elif request.method == "POST" and form.is_valid() and institution is not None:
        upload = form.cleaned_data["file"]
        try:
            batch, created = statement_batch_create(
                actor=page_actor(request),
                institution=institution,
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
        for batch in reads.recon_batches(staff_place(request.user))
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
            {
                **item,
                "kind_label": KIND_LABELS.get(item["kind"], item["kind"]),
                "detail_label": detail_label(item["detail"]),
                "form": form,
            }
        )
    context = {
        "batch": view,
        "exceptions": exceptions,
        "batch_id": batch.pk,
        # The platform's operators see a batch among their own pages, not the finance desk's.
        "base_template": "web/platform/_base.html"
        if staff_place(request.user).everywhere
        else "web/finance/_base.html",
    }
    return render(request, "web/finance/batch.html", context)


def _batch_seen(request: HttpRequest, batch_id: UUID) -> ReconBatch:
    """The batch if the signed-in user may see it (another institution's: 404)."""
    seen = reads.batches_seen(staff_place(request.user)).select_related("partner")
    return get_object_or_404(seen, pk=batch_id)


@reconcilers
@require_GET
def batch_detail(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    batch = _batch_seen(request, batch_id)
    return _batch_page(request, batch)


@reconcilers
@require_GET
def batch_progress(request: HttpRequest, batch_id: UUID) -> JsonResponse:
    """What the batch page polls while the batch runs."""
    batch = _batch_seen(request, batch_id)
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


@reconcilers
@require_GET
def batch_export(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    """The batch's lines as CSV, the same file the API exports, for a person to open in Excel.

    The file starts with a UTF-8 byte order mark: without one Excel reads a CSV in the
    system's ANSI code page (GBK on a Chinese Windows) and garbles every Chinese comment and
    name. The API's export stays without it, as programs read that one.
    """
    _batch_seen(request, batch_id)
    # The API view's handler does no authentication of its own; the role is checked above,
    # and it reads the batch among those the user may see.
    response = BatchExportApi().get(cast(Any, request), batch_id)
    rows = cast(Iterator[bytes], response.streaming_content)  # a sync view's generator
    response.streaming_content = itertools.chain([EXCEL_BOM], rows)
    # (``role_required`` is typed for HttpResponse; the streamed file is its sibling type.)
    return cast(HttpResponse, response)


@reconcilers
@require_POST
def item_resolve_page(request: HttpRequest, batch_id: UUID, item_id: int) -> HttpResponse:
    batch = _batch_seen(request, batch_id)
    get_object_or_404(ReconItem, pk=item_id, batch=batch)
    form = ResolveForm(request.POST, auto_id=f"id_item{item_id}_%s")
    if form.is_valid():
        try:
            item_resolve(
                actor=page_actor(request),
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


# --- the ledger -------------------------------------------------------------------------------


@platform_only
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


@platform_only
@require_POST
def ledger_verify(request: HttpRequest) -> HttpResponse:
    """Queue the ledger's checks (every transaction, balance and the hash chain) for a worker
    and show their batch, which follows the run to its end."""
    batch, queued = ledger_check_queue(actor=page_actor(request))
    if queued:
        messages.success(request, _("The ledger check is queued; this page follows it."))
    else:
        messages.info(request, _("A ledger check is already under way; this page follows it."))
    return HttpResponseRedirect(reverse("finance-batch", args=[batch.pk]))


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
    path("ledger/", ledger_page, name="finance-ledger"),
    path("ledger/verify/", ledger_verify, name="finance-ledger-verify"),
]
