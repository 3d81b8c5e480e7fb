"""The finance desk edits its institution's diagnosis deposit table through its services."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import AuditEvent
from accounts.services.institutions import institution_ensure
from accounts.services.staff import staff_create
from settlement.models import DiagnosisDeposit
from settlement.services.deposit_table import deposit_row_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def hospitals():
    return (
        institution_ensure(actor="test", code="XMH1", name="厦门市第一医院"),
        institution_ensure(actor="test", code="XMH2", name="厦门市第二医院"),
    )


def finance_at(institution) -> Client:
    user, _ = staff_create(
        actor="test", username=f"fin-{institution.code}", role="finance", institution=institution
    )
    client = Client()
    client.force_login(user)
    return client


def test_finance_adds_and_changes_a_row_of_its_own_table(hospitals):
    first, second = hospitals
    client = finance_at(first)
    added = client.post(
        "/finance/deposits/",
        {"action": "row", "diagnosis_code": "j18.9", "name": "肺炎", "amount": "1800.00"},
    )
    assert added.status_code == 302
    row = DiagnosisDeposit.objects.get(institution=first)
    assert (row.diagnosis_code, row.amount) == ("J18.9", 180_000)  # kept as admission reads it

    changed = client.post(
        "/finance/deposits/",
        {
            "action": "row",
            "row": row.pk,
            "diagnosis_code": "J18.9",
            "name": "肺炎",
            "amount": "2000",
        },
    )
    assert changed.status_code == 302
    row.refresh_from_db()
    assert row.amount == 200_000
    assert AuditEvent.objects.filter(action__startswith="deposit_table").count() == 2
    page = client.get("/finance/deposits/").content.decode()
    assert "J18.9" in page and "2000.00" in page and "厦门市第一医院" in page


def test_another_institutions_row_is_not_changed_from_here(hospitals):
    first, second = hospitals
    theirs = deposit_row_save(
        actor="test", institution=second, diagnosis_code="K35.8", name="阑尾炎", amount=300_000
    )
    answer = finance_at(first).post(
        "/finance/deposits/",
        {"action": "row", "row": theirs.pk, "diagnosis_code": "K35.8", "name": "x", "amount": "1"},
    )
    assert answer.status_code == 200
    assert "不在本机构的预交金表中" in answer.content.decode()
    theirs.refresh_from_db()
    assert theirs.amount == 300_000 and theirs.institution == second


@pytest.mark.parametrize(
    "fields, field, said",
    [
        ({"diagnosis_code": "J18.9", "amount": "0"}, "amount", "0.01"),
        ({"diagnosis_code": "J18.9", "amount": "12.345"}, "amount", ""),
        ({"diagnosis_code": "   ", "amount": "100"}, "diagnosis_code", ""),
    ],
)
def test_a_bad_row_is_said_on_its_field_and_nothing_is_saved(hospitals, fields, field, said):
    answer = finance_at(hospitals[0]).post("/finance/deposits/", {"action": "row", **fields})
    assert answer.status_code == 200
    errors = answer.context["row_form"].errors
    assert field in errors, errors
    assert said in " ".join(errors[field])
    assert not DiagnosisDeposit.objects.exists()


def test_a_table_file_is_loaded_whole_or_not_at_all(hospitals):
    first, _ = hospitals
    client = finance_at(first)
    good = "diagnosis_code,name,amount\nJ18.9,肺炎,1800.00\nI63.9,脑梗死,3000.00\n".encode()
    loaded = client.post(
        "/finance/deposits/",
        {"action": "import", "file": SimpleUploadedFile("t.csv", good)},
        follow=True,
    )
    assert "2" in loaded.content.decode()
    assert DiagnosisDeposit.objects.filter(institution=first).count() == 2

    bad = "diagnosis_code,name,amount\nK35.8,阑尾炎,2500.00\nX1,坏行,abc\n".encode()
    refused = client.post(
        "/finance/deposits/", {"action": "import", "file": SimpleUploadedFile("b.csv", bad)}
    )
    assert refused.status_code == 200
    assert refused.context["upload"].errors["file"]
    assert DiagnosisDeposit.objects.filter(institution=first).count() == 2
    not_utf8 = client.post(
        "/finance/deposits/",
        {"action": "import", "file": SimpleUploadedFile("g.csv", "代码".encode("gb18030"))},
    )
    assert not_utf8.context["upload"].errors["file"]


def test_a_cashier_cannot_edit_the_table(hospitals):
    user, _ = staff_create(actor="test", username="c1", role="cashier", institution=hospitals[0])
    client = Client()
    client.force_login(user)
    assert client.get("/finance/deposits/").status_code == 403
