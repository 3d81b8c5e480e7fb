"""Each institution's money stays its own: two hospitals settling with one bank for one
patient post to no money-ledger account in common (the credit ledger, the bank's and the
patient's, is the platform's)."""

from uuid import uuid4

import pytest

from accounts.services.institutions import department_ensure, institution_ensure
from ledger.models import Entry
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.services.encounters import charges_post, deposit_pay, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import charge_item, grant_line

pytestmark = pytest.mark.django_db


def ward(code: str, name: str):
    institution = institution_ensure(actor="test", code=code, name=name)
    return department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=100_000
    )


def stay(person, department, *, deposit: int | None = None) -> set[str]:
    """Admit, (pay a deposit,) charge and settle; the money-ledger accounts it posted to."""
    encounter = encounter_admit(
        actor="test", person=person, department=department, kind="inpatient"
    )
    if deposit:
        deposit_pay(
            actor="test", encounter_id=encounter.pk, amount=deposit, channel="cash", key=uuid4().hex
        )
    items = [charge_item(30_000, category=category) for category in ("bed", "drug")]
    charges_post(actor="test", encounter_id=encounter.pk, items=items, key=uuid4().hex)
    encounter_settle(actor="test", encounter_id=encounter.pk, channel="cash")
    return set(
        Entry.objects.filter(
            transaction__reference=f"encounter:{encounter.pk}", account__ledger="money"
        ).values_list("account__code", flat=True)
    )


def test_two_hospitals_share_no_money_account(insurer, make_person, make_partner):
    first, second = ward("XMH1", "厦门市第一医院"), ward("XMH2", "厦门市第二医院")
    patient = make_person()
    grant_line(make_partner("厦门银行")[0], patient)

    at_first = stay(patient, first)
    at_second = stay(patient, second, deposit=150_000)

    assert at_first and at_second
    assert not at_first & at_second
    for codes, institution in ((at_first, first.institution), (at_second, second.institution)):
        for code in codes:
            assert code.startswith((f"money:inst:{institution.pk}:", "money:enc:")), code
    chain_seal()
    assert verify_ledger().intact
