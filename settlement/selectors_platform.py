"""Reads behind the city platform's view: per institution what its desks settled today, the
claims the insurer still owes and what its patients drew on credit; per bank what it has lent
out and got back. Amounts are integer fen.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import CreditLine, Institution, Partner, PersonSeen

from .models import InsuranceClaim, Receivable, Repayment, Settlement
from .selectors_finance import DISPLAY_ZONE


@dataclass(frozen=True)
class InstitutionFigures:
    code: str
    name: str
    kind: str
    enrolled: int
    lines: int
    limit_total: int
    settlements_today: int
    settled_today: int
    deferred_claims: int
    drawn: int
    repaid: int
    overdue: int


@dataclass(frozen=True)
class BankFigures:
    name: str
    enrolled: int
    lines: int
    limit_total: int
    drawn: int
    repaid: int
    overdue: int


@dataclass(frozen=True)
class PlatformSummary:
    day: date
    institutions: list[InstitutionFigures]
    banks: list[BankFigures]


def _overdue(today: date, prefix: str = "") -> Q:
    """Owed past its due date, whether or not the nightly task has marked it yet."""
    return Q(**{f"{prefix}outstanding__gt": 0}) & (
        Q(**{f"{prefix}status": Receivable.Status.OVERDUE})
        | Q(**{f"{prefix}status": Receivable.Status.OPEN, f"{prefix}due_date__lt": today})
    )


def platform_summary(*, today: date | None = None) -> PlatformSummary:
    """Every institution and bank, busiest first, in a fixed number of queries."""
    today = today or timezone.localdate()
    start = datetime.combine(today, time.min, tzinfo=DISPLAY_ZONE)
    day = Q(settled_at__gte=start, settled_at__lt=start + timedelta(days=1))

    settled = {
        row["encounter__institution"]: row
        for row in Settlement.objects.filter(day)
        .values("encounter__institution")
        .annotate(n=Count("pk"), total=Sum("total"))
    }
    deferred = dict(
        InsuranceClaim.objects.filter(status=InsuranceClaim.Status.DEFERRED)
        .values("encounter__institution")
        .annotate(n=Count("pk"))
        .values_list("encounter__institution", "n")
    )
    credit = {
        row["encounter__institution"]: row
        for row in Receivable.objects.values("encounter__institution").annotate(
            drawn=Sum("amount"), overdue=Sum("outstanding", filter=_overdue(today))
        )
    }
    # Enrolled here: the persons the institution has seen (PersonSeen) who hold an open line.
    open_line = Q(
        person__credit_lines__status__in=[CreditLine.Status.ACTIVE, CreditLine.Status.FROZEN]
    )
    enrolled = {
        row["institution"]: row
        for row in PersonSeen.objects.values("institution").annotate(
            enrolled=Count("person", filter=open_line, distinct=True),
            lines=Count("person__credit_lines", filter=open_line),
            limit_total=Sum("person__credit_lines__limit", filter=open_line),
        )
    }
    repaid = dict(
        Repayment.objects.values("receivable__encounter__institution")
        .annotate(total=Sum("amount"))
        .values_list("receivable__encounter__institution", "total")
    )
    institutions = [
        InstitutionFigures(
            code=institution.code,
            name=institution.name,
            kind=institution.kind,
            enrolled=enrolled.get(institution.pk, {}).get("enrolled", 0),
            lines=enrolled.get(institution.pk, {}).get("lines", 0),
            limit_total=enrolled.get(institution.pk, {}).get("limit_total") or 0,
            settlements_today=settled.get(institution.pk, {}).get("n", 0),
            settled_today=settled.get(institution.pk, {}).get("total") or 0,
            deferred_claims=deferred.get(institution.pk, 0),
            drawn=credit.get(institution.pk, {}).get("drawn") or 0,
            repaid=repaid.get(institution.pk) or 0,
            overdue=credit.get(institution.pk, {}).get("overdue") or 0,
        )
        for institution in Institution.objects.order_by("code")
    ]

    open_lines = Q(credit_lines__status__in=[CreditLine.Status.ACTIVE, CreditLine.Status.FROZEN])
    lines = {
        row["pk"]: row
        for row in Partner.objects.values("pk").annotate(
            enrolled=Count("credit_lines__person", filter=open_lines, distinct=True),
            lines=Count("credit_lines", filter=open_lines),
            limit_total=Sum("credit_lines__limit", filter=open_lines),
        )
    }
    lent = {
        row["partner"]: row
        for row in Receivable.objects.values("partner").annotate(
            drawn=Sum("amount"), overdue=Sum("outstanding", filter=_overdue(today))
        )
    }
    got_back = dict(
        Repayment.objects.values("partner")
        .annotate(total=Sum("amount"))
        .values_list("partner", "total")
    )
    banks = [
        BankFigures(
            name=partner.name,
            enrolled=lines.get(partner.pk, {}).get("enrolled", 0),
            lines=lines.get(partner.pk, {}).get("lines", 0),
            limit_total=lines.get(partner.pk, {}).get("limit_total") or 0,
            drawn=lent.get(partner.pk, {}).get("drawn") or 0,
            repaid=got_back.get(partner.pk) or 0,
            overdue=lent.get(partner.pk, {}).get("overdue") or 0,
        )
        for partner in Partner.objects.order_by("name")
    ]
    institutions.sort(key=lambda i: (-i.drawn, -i.settlements_today, i.code))
    return PlatformSummary(day=today, institutions=institutions, banks=banks)
