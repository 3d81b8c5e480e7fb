"""The city platform's page: every institution and bank at a glance (role ``platform``)."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.money import fen_to_yuan

from ..selectors_platform import InstitutionFigures, platform_summary
from .access import platform_only
from .labels import INSTITUTION_KIND, label

CHART_WIDTH, BAR_HEIGHT, LABEL_WIDTH = 640, 22, 200


def _drawn_chart(rows: list[InstitutionFigures]) -> dict[str, Any]:
    """Horizontal bars of what each institution's patients drew on credit, the repaid part
    and the overdue part drawn over it, inside a ``CHART_WIDTH`` wide SVG."""
    top = max((row.drawn for row in rows), default=0) or 1
    room = CHART_WIDTH - LABEL_WIDTH - 90

    def width(fen: int) -> int:
        return round(fen * room / top)

    bars = [
        {
            "code": row.code,
            "label": row.name,
            "y": index * (BAR_HEIGHT + 8),
            "drawn": width(row.drawn),
            "repaid": width(row.repaid),
            "overdue": width(row.overdue),
            "amount": fen_to_yuan(row.drawn),
        }
        for index, row in enumerate(rows)
    ]
    return {
        "bars": bars,
        "width": CHART_WIDTH,
        "height": max(len(bars), 1) * (BAR_HEIGHT + 8),
        "bar_height": BAR_HEIGHT,
        "left": LABEL_WIDTH,
    }


@platform_only
@require_GET
def platform_home(request: HttpRequest) -> HttpResponse:
    summary = platform_summary()
    institutions = [
        {
            "row": row,
            "kind": label(INSTITUTION_KIND, row.kind),
            "limit_total": fen_to_yuan(row.limit_total),
            "settled_today": fen_to_yuan(row.settled_today),
            "drawn": fen_to_yuan(row.drawn),
            "repaid": fen_to_yuan(row.repaid),
            "overdue": fen_to_yuan(row.overdue),
        }
        for row in summary.institutions
    ]
    banks = [
        {
            "row": row,
            "limit_total": fen_to_yuan(row.limit_total),
            "drawn": fen_to_yuan(row.drawn),
            "repaid": fen_to_yuan(row.repaid),
            "overdue": fen_to_yuan(row.overdue),
        }
        for row in summary.banks
    ]
    context = {
        "day": summary.day,
        "institutions": institutions,
        "banks": banks,
        "chart": _drawn_chart([row for row in summary.institutions if row.drawn]),
    }
    return render(request, "web/platform/home.html", context)
