"""Password guessing on the staff sign-in page: five wrong passwords for one login from one
address lock that login there for a while; other logins and other addresses are not affected.
(Patients' wrong SMS codes are locked the same way: tests/web/test_portal_sms_sign_in.py.)"""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client

from accounts.services.staff import staff_create
from tests.factories import home_institution

pytestmark = pytest.mark.django_db

PASSWORD = "right-pass-2026"


def staff(username: str, role: str = "cashier") -> None:
    user, _ = staff_create(
        actor="test", institution=home_institution(), username=username, role=role
    )
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


def test_behind_a_trusted_proxy_the_clients_own_address_counts(settings):
    settings.TRUSTED_PROXIES = frozenset({"10.0.0.1"})
    staff("cashier5")

    def via_proxy(password: str, client_address: str):
        return Client().post(
            "/login/",
            {"username": "cashier5", "password": password},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"{client_address}, 10.0.0.1",
        )

    for _ in range(5):
        via_proxy("guess", "203.0.113.9")
    assert via_proxy(PASSWORD, "203.0.113.9").status_code == 429
    assert via_proxy(PASSWORD, "198.51.100.4").status_code == 302  # the cashier's own machine
    # A forwarded header from anyone but the proxy is not believed.
    spoofed = Client().post(
        "/login/",
        {"username": "cashier5", "password": PASSWORD},
        REMOTE_ADDR="203.0.113.9",
        HTTP_X_FORWARDED_FOR="198.51.100.4",
    )
    assert spoofed.status_code == 429
