"""The diagnosis deposit table: CSV import and its use at admission."""

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.services.institutions import department_ensure, institution_ensure
from settlement.models import DiagnosisDeposit
from settlement.services.encounters import deposit_for

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "deposit_table.csv"


@pytest.fixture
def department():
    institution = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    return department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=100_000
    )


def load(path: Path) -> str:
    out = StringIO()
    call_command("import_deposit_table", str(path), institution="XMH1", stdout=out)
    return out.getvalue().strip()


def test_import_then_reimport_is_idempotent(department):
    assert load(SAMPLE) == "created=3 updated=0 unchanged=0"
    assert load(SAMPLE) == "created=0 updated=0 unchanged=3"
    row = DiagnosisDeposit.objects.get(diagnosis_code="I63.9")
    assert (row.name, row.amount) == ("脑梗死", 520_050)


def test_admission_deposit_comes_from_the_table_else_the_department(department):
    load(SAMPLE)
    assert deposit_for(department=department, kind="inpatient", diagnosis_code="K35.8") == 260_000
    assert deposit_for(department=department, kind="inpatient", diagnosis_code="Z99") == 100_000
    assert deposit_for(department=department, kind="inpatient", diagnosis_code="") == 100_000
    assert deposit_for(department=department, kind="outpatient", diagnosis_code="K35.8") == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("code,amount\nJ18,1.00\n", "header"),
        ("diagnosis_code,name,amount\nA01,ok,10.00\nJ18,x,12.345\n", "line 3"),
        ("diagnosis_code,name,amount\nA01,ok,10.00\nJ18,x,-1\n", "line 3"),
        ("diagnosis_code,name,amount\nJ18,x,10\nJ18,y,11\n", "twice"),
        ("diagnosis_code,name,amount\n", "no rows"),
    ],
)
def test_a_bad_file_is_refused_whole(department, tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(CommandError, match=message):
        load(bad)
    assert DiagnosisDeposit.objects.count() == 0


def test_a_row_added_in_the_admin_is_kept_as_admission_reads_it(department, client):
    from django.contrib.auth import get_user_model

    from accounts.models import AuditEvent

    admin = get_user_model().objects.create_superuser("root", password="admin-password-1")
    client.force_login(admin)
    added = client.post(
        "/admin/settlement/diagnosisdeposit/add/",
        {
            "institution": department.institution_id,
            "diagnosis_code": " k35.8 ",
            "name": "急性阑尾炎",
            "amount": "260000",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    row = DiagnosisDeposit.objects.get()
    assert row.diagnosis_code == "K35.8"
    assert deposit_for(department=department, kind="inpatient", diagnosis_code="K35.8") == 260_000
    assert AuditEvent.objects.filter(action="deposit_table.add", actor=f"admin:{admin.pk}")

    changed = client.post(
        f"/admin/settlement/diagnosisdeposit/{row.pk}/change/",
        {
            "institution": department.institution_id,
            "diagnosis_code": "K35.8",
            "name": "急性阑尾炎",
            "amount": "0",
        },
    )
    assert changed.status_code == 200  # the form again, with the error
    row.refresh_from_db()
    assert row.amount == 260_000
    twice = client.post(
        "/admin/settlement/diagnosisdeposit/add/",
        {"institution": department.institution_id, "diagnosis_code": "k35.8", "amount": "1"},
    )
    assert twice.status_code == 200
    assert DiagnosisDeposit.objects.count() == 1


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("12.345", "line 2: amount must be positive yuan, two places"),
        ("1.2300", "line 2: amount must be positive yuan, two places"),
        ("-1", "line 2: amount must be positive yuan, two places"),
        ("0.00", "line 2: amount must be positive yuan, two places"),
        ("abc", "line 2: amount 'abc' is not yuan"),
        ("", "line 2: amount '' is not yuan"),
        # Decimal() took all but Infinity (refused as not two places) before core.money.
        ("1e3", "line 2: amount '1e3' is not yuan"),
        ("1_000", "line 2: amount '1_000' is not yuan"),
        ("+5", "line 2: amount '+5' is not yuan"),
        ("Infinity", "line 2: amount 'Infinity' is not yuan"),
        ("１２", "line 2: amount '１２' is not yuan"),
        ("1" * 40, "is not yuan"),  # was rounded to 28 digits
    ],
)
def test_an_amount_is_plain_positive_yuan(department, tmp_path, amount, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"diagnosis_code,name,amount\nJ18,x,{amount}\n", encoding="utf-8")
    with pytest.raises(CommandError, match=re.escape(message)):
        load(bad)


def test_spaces_around_an_amount_are_dropped(department, tmp_path):
    sample = tmp_path / "spaced.csv"
    sample.write_text("diagnosis_code,name,amount\nJ18,x, 12.50 \n", encoding="utf-8")
    load(sample)
    assert DiagnosisDeposit.objects.get(diagnosis_code="J18").amount == 1250


def test_a_departments_default_deposit_is_set_through_its_service(department):
    from accounts.exceptions import InvalidInput
    from accounts.models import AuditEvent

    changed = department_ensure(
        actor="finance-1",
        institution=department.institution,
        code=department.code,
        name=department.name,
        default_deposit=150_000,
    )
    assert changed.pk == department.pk and changed.default_deposit == 150_000
    assert AuditEvent.objects.filter(action="department.update", actor="finance-1").exists()
    assert deposit_for(department=changed, kind="inpatient", diagnosis_code="") == 150_000
    for bad in (-1, True):
        with pytest.raises(InvalidInput):
            department_ensure(
                actor="x",
                institution=department.institution,
                code=department.code,
                name=department.name,
                default_deposit=bad,
            )
    # Naming a department again leaves its deposit as it is.
    again = department_ensure(
        actor="x", institution=department.institution, code=department.code, name="内科二"
    )
    assert (again.name, again.default_deposit) == ("内科二", 150_000)
    # Ensuring what is already so writes no audit row (seed_demo does it at every start).
    rows = AuditEvent.objects.count()
    department_ensure(
        actor="x",
        institution=department.institution,
        code=department.code,
        name="内科二",
        default_deposit=150_000,
    )
    assert AuditEvent.objects.count() == rows


def test_a_row_is_changed_only_through_its_own_institution(department):
    from settlement.exceptions import SettlementInputError
    from settlement.services.deposit_table import deposit_row_save

    theirs = department.institution
    mine = institution_ensure(actor="test", code="XMH8", name="厦门市第八医院")
    row = deposit_row_save(
        actor="test", institution=theirs, diagnosis_code="K35.8", name="阑尾炎", amount=300_000
    )
    with pytest.raises(SettlementInputError, match="not in this institution's table"):
        deposit_row_save(
            actor="test",
            institution=mine,
            diagnosis_code="K35.8",
            name="阑尾炎",
            amount=1,
            row_id=row.pk,
        )
    row.refresh_from_db()
    assert (row.institution, row.amount) == (theirs, 300_000)
