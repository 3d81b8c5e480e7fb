"""The finance desk: deferred insurance claims, receivables aging and daily credit per bank.
Its reconciliation batches and the ledger's checks are the wing's pages
(``settlement.reconciliation.pages``), mounted beside these under ``/finance/``.

Every page is for the finance and admin roles. Reads come from ``settlement.selectors_finance``;
writes go through the services.
"""

from datetime import date
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import staff_place
from core.money import fen_to_yuan

from .. import selectors_finance as reads
from ..services.insurer_claims import claims_due_now
from ..tasks import retry_deferred_claims
from .access import finance_only

BUCKET_LABELS: dict[str, Any] = {
    "current": _("Current"),
    "1-30": _("1–30 days"),
    "31-60": _("31–60 days"),
    "60+": _("Over 60 days"),
}


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
        for claim in reads.deferred_claims(
            where=staff_place(request.user).q("encounter__institution")
        )
    ]
    return render(request, "web/finance/claims.html", {"rows": rows})


@finance_only
@require_POST
def claims_retry_now(request: HttpRequest) -> HttpResponse:
    due = claims_due_now(where=staff_place(request.user).q("encounter__institution"))
    retry_deferred_claims.delay()
    messages.success(
        request, gettext("%(count)d deferred claims are queued for a retry now.") % {"count": due}
    )
    return HttpResponseRedirect(reverse("finance-claims"))


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
    aging = reads.receivables_aging(place=staff_place(request.user))
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
    window, banks = reads.daily_credit(place=staff_place(request.user))
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
    path("claims/", claims, name="finance-claims"),
    path("claims/retry/", claims_retry_now, name="finance-claims-retry"),
    path("receivables/", receivables, name="finance-receivables"),
    path("credit/", credit_daily, name="finance-credit"),
]
