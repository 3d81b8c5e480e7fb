"""The diagnosis deposit table (单病种平均个人支付水平) finance maintains."""

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from accounts.models import Institution
from accounts.services.audit import audit_record

from ..exceptions import SettlementInputError
from ..models import DiagnosisDeposit

COLUMNS = ("diagnosis_code", "name", "amount")


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


def _parse_amount(text: str, line: int) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise SettlementInputError(f"line {line}: amount {text!r} is not yuan") from None
    exponent = value.as_tuple().exponent
    if not value.is_finite() or not isinstance(exponent, int) or exponent < -2 or value <= 0:
        raise SettlementInputError(f"line {line}: amount must be positive yuan, two places")
    return int(value * 100)


@transaction.atomic
def deposit_table_import(*, actor: str, institution: Institution, text: str) -> ImportResult:
    """Load ``diagnosis_code,name,amount`` rows (amount in yuan) for an institution.

    All or nothing: any bad row refuses the whole file, naming its line. Codes not in the file
    are kept.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None or tuple(f.strip() for f in reader.fieldnames) != COLUMNS:
        raise SettlementInputError(f"the header must be {','.join(COLUMNS)}")
    rows: dict[str, tuple[str, int]] = {}
    for number, row in enumerate(reader, start=2):
        code = (row.get("diagnosis_code") or "").strip().upper()
        if not code or len(code) > 32:
            raise SettlementInputError(f"line {number}: a diagnosis code of 1 to 32 characters")
        if code in rows:
            raise SettlementInputError(f"line {number}: {code} appears twice")
        rows[code] = (
            (row.get("name") or "").strip()[:200],
            _parse_amount(row["amount"] or "", number),
        )
    if not rows:
        raise SettlementInputError("the file has no rows")
    created = updated = unchanged = 0
    existing = {
        d.diagnosis_code: d for d in DiagnosisDeposit.objects.filter(institution=institution)
    }
    for code, (name, amount) in rows.items():
        current = existing.get(code)
        if current is None:
            DiagnosisDeposit.objects.create(
                institution=institution, diagnosis_code=code, name=name, amount=amount
            )
            created += 1
        elif (current.name, current.amount) != (name, amount):
            current.name, current.amount, current.updated_at = name, amount, timezone.now()
            current.save(update_fields=["name", "amount", "updated_at"])
            updated += 1
        else:
            unchanged += 1
    audit_record(
        actor=actor,
        action="deposit_table.import",
        obj=institution,
        changes={"created": created, "updated": updated, "unchanged": unchanged},
    )
    return ImportResult(created, updated, unchanged)
