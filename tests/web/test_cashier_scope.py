"""A cashier's desk shows its own institution's visits: another's encounter and receipt pages
are a 404, its visits are not on the desk's list, and its patients are found by ID number
(a patient may arrive anywhere) but not listed by name."""

from uuid import uuid4

import pytest
from django.test import Client, override_settings

from accounts.selectors import person_id_number
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.staff import staff_create
from settlement.models import Receipt
from settlement.services.encounters import charges_post, encounter_admit
from settlement.services.settle import encounter_settle
from tests.factories import charge_item
from tests.settlement.conftest import Simulator

pytestmark = pytest.mark.django_db


@pytest.fixture
def insurer(tmp_path):
    simulator = Simulator(tmp_path / "insurer-sim.json", tmp_path / "insurer-sim.log")
    simulator.start()
    with override_settings(INSURER_URL=simulator.url, INSURER_TIMEOUT_SECONDS=3):
        yield simulator
    simulator.stop()


@pytest.fixture
def visits(insurer, make_person):
    """At XMH1: a settled visit of 林一 and an open one of 林二; XMH2 has none."""
    first = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    second = institution_ensure(actor="test", code="XMH2", name="厦门市第二医院")
    ward = department_ensure(actor="test", institution=first, code="IM", name="内科")
    department_ensure(actor="test", institution=second, code="IM", name="内科")
    settled_person, open_person = make_person("林一"), make_person("林二")
    settled = encounter_admit(
        actor="test", person=settled_person, department=ward, kind="outpatient"
    )
    charges_post(
        actor="test", encounter_id=settled.pk, items=[charge_item(20_000)], key=uuid4().hex
    )
    encounter_settle(actor="test", encounter_id=settled.pk, channel="cash")
    still_open = encounter_admit(
        actor="test", person=open_person, department=ward, kind="outpatient"
    )
    return first, second, settled, still_open


def desk(username: str, institution) -> Client:
    user, _ = staff_create(actor="test", username=username, role="cashier", institution=institution)
    client = Client()
    client.force_login(user)
    return client


def test_another_institutions_visits_are_not_on_this_desk(visits):
    first, second, settled, still_open = visits
    theirs, ours = desk("c-xmh2", second), desk("c-xmh1", first)
    for encounter in (settled, still_open):
        assert theirs.get(f"/cashier/encounters/{encounter.pk}/").status_code == 404
        assert ours.get(f"/cashier/encounters/{encounter.pk}/").status_code == 200
    assert theirs.get(f"/cashier/encounters/{settled.pk}/receipt/").status_code == 404
    assert ours.get(f"/cashier/encounters/{settled.pk}/receipt/").status_code == 200
    assert str(still_open.pk) not in theirs.get("/cashier/").content.decode()
    assert str(still_open.pk) in ours.get("/cashier/").content.decode()
    assert Receipt.objects.filter(encounter=settled).exists()


def test_a_patient_is_found_by_id_number_anywhere_but_listed_by_name_only_where_seen(visits):
    first, second, settled, _ = visits
    theirs, ours = desk("c-xmh2", second), desk("c-xmh1", first)
    number = person_id_number(settled.person)
    by_number = theirs.get("/cashier/", {"q": number})
    assert by_number.context["people"] == [settled.person]
    assert theirs.get("/cashier/", {"q": "林"}).context["people"] == []
    assert {p.name for p in ours.get("/cashier/", {"q": "林"}).context["people"]} == {
        "林一",
        "林二",
    }
    person_page = theirs.get(f"/cashier/persons/{settled.person.pk}/")
    assert person_page.status_code == 200
    assert str(settled.pk) not in person_page.content.decode()  # not their visit to show
