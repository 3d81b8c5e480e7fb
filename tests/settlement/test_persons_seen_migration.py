"""The migration that records, for persons admitted before it, the institutions that saw
them: their staff list them from then on."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import PersonSeen


@pytest.mark.django_db(transaction=True)
def test_persons_admitted_before_are_seen_where_they_were_admitted():
    before = [("settlement", "0013_refund_paid_out"), ("accounts", "0006_person_seen")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Institution = old.get_model("accounts", "Institution")
    Department = old.get_model("accounts", "Department")
    Person = old.get_model("accounts", "Person")
    Encounter = old.get_model("settlement", "Encounter")
    hospitals = [Institution.objects.create(code=f"H{n}", name=f"医院{n}") for n in range(2)]
    wards = [Department.objects.create(institution=h, code="IM", name="内科") for h in hospitals]
    people = [
        Person.objects.create(
            name=name,
            id_number_encrypted="x",
            id_number_hash=f"hash-{name}",
            id_number_masked="3502**********001X",
            birth_date="1980-01-01",
            sex="M",
        )
        for name in ("甲", "乙", "丙")
    ]
    for person, ward in [(people[0], wards[0]), (people[0], wards[0]), (people[1], wards[1])]:
        Encounter.objects.create(
            institution=ward.institution, department=ward, person=person, kind="outpatient"
        )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    seen = sorted(PersonSeen.objects.values_list("person__name", "institution__code"))
    assert seen == [("乙", "H1"), ("甲", "H0")]  # 丙 was never admitted
