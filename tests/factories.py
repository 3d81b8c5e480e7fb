"""Fixtures for people, staff clients and signed partner clients, shared by every test app.

Loaded as a plugin by ``tests/conftest.py``.
"""

import itertools
import json
import secrets
import time
from datetime import date
from typing import Any

import pytest
from rest_framework.test import APIClient
from stdnum.cn import ric

from accounts import signing
from accounts.services.partners import partner_create
from accounts.services.persons import person_create
from accounts.services.staff import staff_create

_sequence = itertools.count(1)


def make_id_number(birth: date, *, female: bool = False, region: str = "350203") -> str:
    """A valid 18-character resident ID number born on ``birth`` (unique per call)."""
    seq = next(_sequence) % 500
    code = seq * 2 + (0 if female else 1)  # odd: male, even: female
    base = f"{region}{birth:%Y%m%d}{code:03d}"
    return base + ric.calc_check_digit(base + "0")  # it expects a placeholder check digit


@pytest.fixture
def id_number():
    return make_id_number


@pytest.fixture
def make_person():
    def make(name: str = "张三", birth: date = date(1980, 5, 17), **kwargs: Any):
        return person_create(actor="test", name=name, id_number=make_id_number(birth), **kwargs)

    return make


@pytest.fixture
def staff_client():
    """``staff_client("cashier")``: an API client authenticated with a new token in that role."""

    def make(role: str = "cashier") -> APIClient:
        _, token = staff_create(actor="test", username=f"{role}-{next(_sequence)}", role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return make


class SignedClient:
    """Signs each request as API.md says; ``tamper`` hooks let tests break one part."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id, self.secret = key_id, secret
        self.client = APIClient()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        secret: str | None = None,
        key_id: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
        sent_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ):
        raw = b"" if body is None else json.dumps(body).encode()
        timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(12)
        signature = signing.sign(secret or self.secret, method, path, timestamp_text, nonce, raw)
        extra = {
            "HTTP_X_PARTNER_KEY": key_id or self.key_id,
            "HTTP_X_TIMESTAMP": timestamp_text,
            "HTTP_X_NONCE": nonce,
            "HTTP_X_SIGNATURE": signature,
        }
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        payload = raw if sent_body is None else sent_body
        return self.client.generic(method, path, payload, content_type="application/json", **extra)

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any):
        return self.request("POST", path, body, **kwargs)


@pytest.fixture
def make_partner():
    """``make_partner("厦门银行")`` → (partner, SignedClient)."""

    def make(name: str | None = None, **kwargs: Any):
        partner, key, secret = partner_create(
            actor="test", name=name or f"bank-{next(_sequence)}", **kwargs
        )
        return partner, SignedClient(key.key_id, secret)

    return make
