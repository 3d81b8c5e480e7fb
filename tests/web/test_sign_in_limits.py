"""Password guessing on the sign-in page: five wrong passwords for one login from one address
lock that login there for a while; other logins and other addresses are not affected."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client

from accounts.services.staff import patient_login_create, staff_create
from tests.factories import signed_in

pytestmark = pytest.mark.django_db

PASSWORD = "right-pass-2026"


def staff(username: str, role: str = "cashier") -> None:
    user, _ = staff_create(actor="test", username=username, role=role)
    user.set_password(PASSWORD)
    user.save()


def attempt(client: Client, username: str, password: str, address: str = "10.0.0.7"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_wrong_passwords_lock_the_login_from_that_address_for_a_while():
    staff("cashier1")
    client = Client()
    for _ in range(4):
        assert attempt(client, "cashier1", "guess").status_code == 200  # "wrong password"
    locked = attempt(client, "cashier1", "guess")
    assert locked.status_code == 429
    assert "15 分钟后再试" in locked.content.decode()
    # Locked now even with the right password, from that address...
    assert attempt(client, "cashier1", PASSWORD).status_code == 429
    # ...but not from another machine, and the lock is the login's, not the address's.
    assert attempt(Client(), "cashier1", PASSWORD, address="10.0.0.8").status_code == 302
    # The cool-off passes: the login works again from the first address.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )
    assert attempt(Client(), "cashier1", PASSWORD).status_code == 302


def test_a_success_clears_the_count():
    staff("finance1", "finance")
    client = Client()
    for _ in range(4):
        attempt(client, "finance1", "guess")
    assert attempt(client, "finance1", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert attempt(client, "finance1", "guess").status_code == 200
    assert attempt(client, "finance1", PASSWORD).status_code == 302


def test_a_mobile_number_is_one_login_however_it_is_spaced(make_person):
    person = make_person("病人", phone="13800000009")
    patient_login_create(actor="test", person=person, password=PASSWORD)
    client = Client()
    for typed in ("13800000009", "138 0000 0009", "138-0000-0009", " 13800000009", "1380000 0009"):
        attempt(client, typed, "guess")
    assert attempt(client, "13800000009", PASSWORD).status_code == 429
    assert signed_in(Client(REMOTE_ADDR="10.0.0.9"), "138 0000 0009", PASSWORD)
