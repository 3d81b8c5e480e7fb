from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import AuditEvent, CreditLine, FamilyLink, Person
from ledger.services import chain_seal
from ledger.verification import verify_ledger
from tests.factories import signed_in

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", "--force", stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_prints_working_logins():
    seed()
    counts = (Person.objects.count(), CreditLine.objects.count(), FamilyLink.objects.count())
    printed = seed()
    assert (Person.objects.count(), CreditLine.objects.count(), FamilyLink.objects.count()) == (
        counts
    )
    assert counts == (4, 2, 2)
    token = next(line.split("API token ")[1] for line in printed.splitlines() if "cashier " in line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    found = client.get("/api/v1/persons/", {"name": "陈"}).json()
    assert found["count"] == 2
    assert "secret=" in printed and "key_id=" in printed
    assert AuditEvent.objects.filter(actor="command:seed_demo").exists()
    chain_seal()
    assert verify_ledger().intact


def test_seed_demo_refuses_to_run_without_debug():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo", stdout=StringIO())


def test_demo_logins_open_their_pages(client):
    seed()
    for username, page in [
        ("cashier", "/cashier/"),
        ("finance", "/finance/"),
        ("13800000001", "/portal/"),
    ]:
        assert signed_in(client, username, "demo-pass-2026"), username
        assert client.get(page).status_code == 200, page
        client.logout()
