"""The diagnosis deposit table (单病种平均个人支付水平) finance maintains."""

import csv
import io
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Institution
from accounts.services.audit import audit_record
from core.money import API, NotYuan, TooManyPlaces, yuan_to_fen

from ..exceptions import SettlementInputError
from ..models import DiagnosisDeposit

COLUMNS = ("diagnosis_code", "name", "amount")


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


def diagnosis_code_clean(text: str) -> str:
    """A diagnosis code as the table keeps it (``j18.9 `` → ``J18.9``); empty when unusable."""
    code = text.strip().upper()
    return code if 0 < len(code) <= 32 else ""


def _parse_amount(text: str, line: int) -> int:
    """Yuan as the API reads them: spaces around dropped; no exponent, plus sign or ``_``."""
    not_two_places = SettlementInputError(
        _("line %(line)s: amount must be positive yuan, two places"), params={"line": line}
    )
    try:
        fen = yuan_to_fen(text, API)
    except TooManyPlaces:
        raise not_two_places from None
    except NotYuan:
        raise SettlementInputError(
            _("line %(line)s: amount %(amount)s is not yuan"),
            params={"line": line, "amount": repr(text)},
        ) from None
    if fen <= 0:
        raise not_two_places
    return fen


@transaction.atomic(durable=True)
def deposit_table_import(*, actor: str, institution: Institution, text: str) -> ImportResult:
    """Load ``diagnosis_code,name,amount`` rows (amount in yuan) for an institution.

    All or nothing: any bad row refuses the whole file, naming its line. Codes not in the file
    are kept.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None or tuple(f.strip() for f in reader.fieldnames) != COLUMNS:
        raise SettlementInputError(
            _("the header must be %(header)s"), params={"header": ",".join(COLUMNS)}
        )
    rows: dict[str, tuple[str, int]] = {}
    for number, row in enumerate(reader, start=2):
        code = diagnosis_code_clean(row.get("diagnosis_code") or "")
        if not code:
            raise SettlementInputError(
                _("line %(line)s: a diagnosis code of 1 to 32 characters"),
                params={"line": number},
            )
        if code in rows:
            raise SettlementInputError(
                _("line %(line)s: %(code)s appears twice"),
                params={"line": number, "code": code},
            )
        rows[code] = (
            (row.get("name") or "").strip()[:200],
            _parse_amount(row["amount"] or "", number),
        )
    if not rows:
        raise SettlementInputError(_("the file has no rows"))
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


@transaction.atomic(durable=True)
def deposit_row_save(
    *,
    actor: str,
    institution: Institution,
    diagnosis_code: str,
    name: str,
    amount: int,
    row_id: int | None = None,
) -> DiagnosisDeposit:
    """Add a row to an institution's table, or change its row ``row_id``: one row at a time,
    as the admin and the finance desk edit it, with the code kept as the import and admission
    read it. Another institution's row is refused."""
    code = diagnosis_code_clean(diagnosis_code)
    if not code:
        raise SettlementInputError(
            _("a diagnosis code of 1 to 32 characters"), field="diagnosis_code"
        )
    if amount <= 0:
        raise SettlementInputError(_("the deposit must be more than zero"), field="amount")
    if (
        row_id is not None
        and not DiagnosisDeposit.objects.filter(pk=row_id, institution=institution).exists()
    ):
        # A row stays its institution's: nobody edits (or moves) another's table from theirs.
        raise SettlementInputError(_("that row is not in this institution's table"))
    others = DiagnosisDeposit.objects.filter(institution=institution, diagnosis_code=code)
    if row_id is not None:
        others = others.exclude(pk=row_id)
    if others.exists():
        raise SettlementInputError(
            _("%(code)s is in the table already"), field="diagnosis_code", params={"code": code}
        )
    try:
        # The unique code per institution decides between two saves at the same moment.
        with transaction.atomic():
            if row_id is None:
                row = DiagnosisDeposit(institution=institution)
            else:
                row = DiagnosisDeposit.objects.select_for_update().get(
                    pk=row_id, institution=institution
                )
                row.updated_at = timezone.now()
            row.diagnosis_code, row.name, row.amount = code, name.strip()[:200], amount
            row.save()
    except IntegrityError:
        raise SettlementInputError(
            _("%(code)s is in the table already"), field="diagnosis_code", params={"code": code}
        ) from None
    audit_record(
        actor=actor,
        action="deposit_table.add" if row_id is None else "deposit_table.change",
        obj=row,
        changes={"diagnosis_code": code, "amount": amount},
    )
    return row
