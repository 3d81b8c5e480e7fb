"""What one settle costs the database, counted: the same statements for 3 charge lines as for
300, and no more than the budget (issue 15: ≤ 40 per settle whatever the number of lines).

The count includes the ledger's prepared calls (they are logged with Django's own queries).
A statement count is exact, unlike a time: it is asserted here; times are ``settle_bench``'s.
"""

from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services.partners import partner_create
from accounts.services.persons import person_create
from settlement.insurer.client import InsurerClient
from settlement.models import Encounter
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import grant_line, make_id_number

BUDGET = 40


def _stay(department, partner, lines: int) -> Encounter:
    person = person_create(
        actor="test", name="结算计数", id_number=make_id_number(date(1970, 5, 17))
    )
    grant_line(partner, person, limit=3_000_000)
    stay = encounter_admit(actor="test", person=person, department=department, kind="inpatient")
    today = timezone.localdate()
    items = [
        ChargeItem(f"C{n % 97}", "检查费", "exam", "ABC"[n % 3], Decimal(1), 100, today)
        for n in range(lines)
    ]
    charges_post(actor="test", encounter_id=stay.pk, items=items, key=f"count:{stay.pk}")
    return stay


def _statements(stay: Encounter, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        encounter_settle(actor="test", encounter_id=stay.pk, client=InsurerClient(url, timeout=5))
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.postgres  # SQLite posts through the ledger's Python path, statement by statement
@pytest.mark.django_db(transaction=True)
def test_a_settle_sends_the_same_few_statements_for_3_lines_as_for_300(department, shared_sim):
    partner, _, _ = partner_create(actor="test", name=f"计数银行 {uuid4().hex[:6]}")
    first, short, long = (_stay(department, partner, n) for n in (3, 3, 300))
    _statements(first, shared_sim.url)  # house accounts are found once per process

    few, many = _statements(short, shared_sim.url), _statements(long, shared_sim.url)

    assert Encounter.objects.get(pk=long.pk).status == Encounter.Status.SETTLED
    assert len(many) == len(few), "\n".join(many)
    assert len(many) <= BUDGET, "\n".join(many)
    assert not any(sql.startswith("SAVEPOINT") for sql in many), "\n".join(many)
