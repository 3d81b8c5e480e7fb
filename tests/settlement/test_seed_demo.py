"""``manage.py seed_demo``: what ``make run`` shows on first sight, the same at every start."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import (
    AuditEvent,
    CreditLine,
    FamilyLink,
    Institution,
    Person,
    StaffMember,
    StaffToken,
)
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from settlement.models import Encounter, InsuranceClaim, Receivable
from settlement.reconciliation.models import ReconBatch, ReconItem
from tests.factories import signed_in, sms_signed_in

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", "--force", stdout=out)
    return out.getvalue()


def printed_value(printed: str, marker: str) -> str:
    return next(line.split(marker)[1].strip() for line in printed.splitlines() if marker in line)


def test_seed_demo_is_idempotent_and_prints_working_logins(insurer):
    first = seed()
    counts = (Person.objects.count(), CreditLine.objects.count(), FamilyLink.objects.count())
    stays = Encounter.objects.count()
    again = seed()
    assert (Person.objects.count(), CreditLine.objects.count(), FamilyLink.objects.count()) == (
        counts
    )
    assert counts == (6, 3, 2)
    assert Encounter.objects.count() == stays == 4
    token = printed_value(again, "cashier     API token")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    found = client.get("/api/v1/persons/", {"name": "陈"}).json()
    # The desk lists whom its hospital admitted: 陈小雨, not her mother 陈静 (never admitted).
    assert [p["name"] for p in found["results"]] == ["陈小雨"]
    assert "secret=" in first and "key_id=" in first
    assert AuditEvent.objects.filter(actor="command:seed_demo").exists()
    chain_seal()
    assert verify_ledger().intact


def test_a_restart_keeps_the_demo_tokens_bank_key_and_sessions(insurer, client):
    first = seed()
    assert signed_in(client, "cashier", "demo-pass-2026")
    second = seed()
    for marker in ("cashier     API token", "finance     API token", "key_id=", "secret="):
        assert printed_value(first, marker) == printed_value(second, marker), marker
    # One working token per demo login, and nobody signed out by a new password hash.
    assert StaffToken.objects.filter(revoked_at__isnull=True).count() == 7
    assert client.get("/cashier/").status_code == 200


def test_demo_stays_show_every_state_a_desk_sees(insurer):
    seed()
    by_name = {e.person.name: e for e in Encounter.objects.select_related("person")}
    open_stay = by_name["吴德福"]
    assert open_stay.status == Encounter.Status.OPEN and open_stay.deposit_waived
    assert open_stay.charges.values("service_date").distinct().count() == 5
    settled = by_name["陈小雨"]
    assert settled.status == Encounter.Status.SETTLED
    assert Receivable.objects.get(encounter=settled).status == Receivable.Status.OPEN
    deferred = InsuranceClaim.objects.get(encounter=by_name["黄丽"])
    assert by_name["黄丽"].status == Encounter.Status.SETTLED_INSURANCE_DEFERRED
    assert deferred.status == InsuranceClaim.Status.DEFERRED
    assert deferred.next_attempt_at is not None
    overdue = Receivable.objects.get(encounter=by_name["林海"])
    assert overdue.status == Receivable.Status.OVERDUE
    assert overdue.credit_line.status == CreditLine.Status.FROZEN
    statement = ReconBatch.objects.get(source=ReconBatch.Source.BANK_STATEMENT)
    assert statement.status == ReconBatch.Status.DONE
    assert [item.kind for item in ReconItem.objects.filter(batch=statement)] == [
        "unknown_reference"
    ]
    chain_seal()
    assert verify_ledger().intact


def test_without_the_insurer_the_stays_wait_and_say_so():
    with override_settings(INSURER_URL="http://127.0.0.1:9"):
        printed = seed()
    assert "not made" in printed
    assert not Encounter.objects.exists()
    assert Person.objects.count() == 6


def test_seed_demo_refuses_to_run_without_debug():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo", stdout=StringIO())


def test_demo_logins_open_their_pages(insurer, client):
    seed()
    for username, page in [("cashier", "/cashier/"), ("finance", "/finance/")]:
        assert signed_in(client, username, "demo-pass-2026"), username
        assert client.get(page).status_code == 200, page
        client.logout()
    # The demo patient signs in with the printed mobile number and an SMS code.
    assert sms_signed_in(client, "13800000001")
    assert client.get("/portal/").status_code == 200


def test_demo_has_two_hospitals_and_a_community_centre_each_with_departments_and_a_login(
    insurer,
):
    printed = seed()
    for code in ("XMH1", "XMH2", "XMC1"):
        institution = Institution.objects.get(code=code)
        assert institution.departments.exists(), code
        assert StaffMember.objects.filter(institution=institution).exists(), code
        assert re.search(rf"^  {code} +cashier +\S+ +API token \S+$", printed, re.M), code
    assert Institution.objects.get(code="XMC1").kind == Institution.Kind.COMMUNITY
    token = re.search(r"^  XMH2 +cashier +cashier2 +API token (\S+)$", printed, re.M).group(1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    codes = [d["code"] for d in client.get("/api/v1/departments/").json()["results"]]
    assert codes == ["IM", "OBS", "OPD"]


def test_demo_prints_a_login_for_the_city_platform(insurer):
    printed = seed()
    token = re.search(r"^  city +platform +platform +API token (\S+)$", printed, re.M).group(1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    summary = client.get("/api/v1/platform/summary/").json()
    assert {row["code"] for row in summary["institutions"]} == {"XMH1", "XMH2", "XMC1"}
