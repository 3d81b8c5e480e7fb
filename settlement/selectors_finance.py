"""Reads behind the finance desk: receivables aging, daily credit per bank, deferred claims.

Amounts are integer fen; the pages turn them into yuan.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Partner
from accounts.selectors import StaffPlace

from .models import CreditMovement, InsuranceClaim, Receivable, Repayment

DISPLAY_ZONE = ZoneInfo("Asia/Shanghai")
AGING_BUCKETS = ("current", "1-30", "31-60", "60+")


# --- receivables aging ------------------------------------------------------------------------


@dataclass
class AgingRow:
    """One bank's outstanding receivables by days past the due date (fen)."""

    partner_id: int | None
    bank: str
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGING_BUCKETS, 0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGING_BUCKETS, 0))

    @property
    def total(self) -> int:
        return sum(self.buckets.values())


@dataclass
class Aging:
    rows: list[AgingRow]
    totals: AgingRow
    as_of: date


def _bucket_filters(today: date) -> dict[str, Q]:
    """Not yet past due is ``current``; then 1–30, 31–60 and over 60 days past due."""
    return {
        "current": Q(due_date__gte=today),
        "1-30": Q(due_date__lt=today, due_date__gte=today - timedelta(days=30)),
        "31-60": Q(
            due_date__lt=today - timedelta(days=30), due_date__gte=today - timedelta(days=60)
        ),
        "60+": Q(due_date__lt=today - timedelta(days=60)),
    }


def _mine(place: StaffPlace | None, path: str) -> Q:
    """The rows of ``place``'s institution (every one's when no place is given)."""
    return Q() if place is None else place.q(path)


def receivables_aging(*, today: date | None = None, place: StaffPlace | None = None) -> Aging:
    """Open and overdue receivables with something outstanding, per bank and aging bucket, at
    ``place``'s institution."""
    today = today or timezone.localdate()
    filters = _bucket_filters(today)
    annotations: dict[str, Sum] = {}
    for index, bucket in enumerate(AGING_BUCKETS):
        annotations[f"amount_{index}"] = Sum("outstanding", filter=filters[bucket])
    rows = (
        Receivable.objects.filter(
            _mine(place, "encounter__institution"),
            status__in=[Receivable.Status.OPEN, Receivable.Status.OVERDUE],
            outstanding__gt=0,
        )
        .values("partner_id", "partner__name")
        .annotate(**annotations)
        .order_by("partner__name")
    )
    counts = _aging_counts(today, _mine(place, "encounter__institution"))
    result = []
    totals = AgingRow(partner_id=None, bank="")
    for row in rows:
        line = AgingRow(partner_id=row["partner_id"], bank=row["partner__name"])
        for index, bucket in enumerate(AGING_BUCKETS):
            amount = int(row[f"amount_{index}"] or 0)
            line.buckets[bucket] = amount
            line.counts[bucket] = counts.get((row["partner_id"], bucket), 0)
            totals.buckets[bucket] += amount
            totals.counts[bucket] += line.counts[bucket]
        result.append(line)
    return Aging(rows=result, totals=totals, as_of=today)


def _aging_counts(today: date, mine: Q) -> dict[tuple[int, str], int]:
    found: dict[tuple[int, str], int] = {}
    base = Receivable.objects.filter(
        mine, status__in=[Receivable.Status.OPEN, Receivable.Status.OVERDUE], outstanding__gt=0
    )
    for bucket, condition in _bucket_filters(today).items():
        for partner_id, n in (
            base.filter(condition)
            .values("partner_id")
            .annotate(n=Count("pk"))
            .values_list("partner_id", "n")
        ):
            found[(partner_id, bucket)] = n
    return found


# --- daily credit drawn and repaid ------------------------------------------------------------


@dataclass
class BankDays:
    """One bank's credit drawn and repaid per day over the window (fen), oldest day first."""

    partner_id: int
    bank: str
    drawn: dict[date, int]
    repaid: dict[date, int]

    @property
    def total_drawn(self) -> int:
        return sum(self.drawn.values())

    @property
    def total_repaid(self) -> int:
        return sum(self.repaid.values())


def daily_credit(
    *, days: int = 30, today: date | None = None, place: StaffPlace | None = None
) -> tuple[list[date], list[BankDays]]:
    """Credit drawn (draws by business date) and repaid (repayments by their Shanghai date) per
    bank per day for the last ``days`` days, today included, at ``place``'s institution."""
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    window = [first + timedelta(days=offset) for offset in range(days)]
    drawn = (
        CreditMovement.objects.filter(
            _mine(place, "institution"),
            kind=CreditMovement.Kind.DRAW,
            business_date__gte=first,
            business_date__lte=today,
        )
        .values("partner_id", "business_date")
        .annotate(total=Sum("amount"))
        .values_list("partner_id", "business_date", "total")
    )
    start = datetime.combine(first, time.min, tzinfo=DISPLAY_ZONE)
    end = datetime.combine(today, time.min, tzinfo=DISPLAY_ZONE) + timedelta(days=1)
    repaid = (
        Repayment.objects.filter(
            _mine(place, "receivable__encounter__institution"), paid_at__gte=start, paid_at__lt=end
        )
        .annotate(day=TruncDate("paid_at", tzinfo=DISPLAY_ZONE))
        .values("partner_id", "day")
        .annotate(total=Sum("amount"))
        .values_list("partner_id", "day", "total")
    )
    by_bank: dict[int, BankDays] = {}

    def bank(partner_id: int) -> BankDays:
        if partner_id not in by_bank:
            by_bank[partner_id] = BankDays(
                partner_id=partner_id,
                bank="",
                drawn=dict.fromkeys(window, 0),
                repaid=dict.fromkeys(window, 0),
            )
        return by_bank[partner_id]

    for partner_id, day, total in drawn:
        bank(partner_id).drawn[day] += int(total or 0)
    for partner_id, day, total in repaid:
        if day in bank(partner_id).repaid:
            bank(partner_id).repaid[day] += int(total or 0)
    names = dict(Partner.objects.filter(pk__in=by_bank).values_list("pk", "name"))
    for partner_id, row in by_bank.items():
        row.bank = names.get(partner_id, str(partner_id))
    return window, sorted(by_bank.values(), key=lambda row: row.bank)


# --- lists ------------------------------------------------------------------------------------


def deferred_claims(*, where: Q | None = None, limit: int = 500) -> QuerySet[InsuranceClaim]:
    """Claims settled as self-pay while the insurer was down (those ``where`` says), oldest
    next attempt first."""
    return (
        InsuranceClaim.objects.filter(where or Q(), status=InsuranceClaim.Status.DEFERRED)
        .select_related("encounter__person", "encounter__institution")
        .order_by("next_attempt_at", "pk")[:limit]
    )
