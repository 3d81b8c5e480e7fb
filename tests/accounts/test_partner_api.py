"""The signed partner API over HTTP: signatures, ownership, grants, status, idempotency."""

import itertools
import json
import math
import secrets
import uuid
from datetime import date, timedelta

import pytest
from django.utils import timezone
from stdnum.cn import ric

from accounts import signing
from accounts.models import AuditEvent, CreditLine, PartnerKey, Person
from accounts.services.credit_lines import partner_pool
from accounts.services.partners import partner_key_issue, partner_key_revoke
from core.models import IdempotentRequest
from core.money import fen_to_yuan
from ledger import services as ledger
from ledger.models import Hold, Transaction
from ledger.selectors import account_balance

pytestmark = pytest.mark.django_db

LINES = "/api/partner/v1/credit-lines/"
_keys = itertools.count(1)


def line_path(line_id, action: str | None = None) -> str:
    return f"{LINES}{line_id}/" + (f"{action}/" if action else "")


def grant_body(number: str, **fields) -> dict:
    body = {"id_number": number, "name": "张三", "score": 650, "score_provider": "baihang"}
    body.update(fields)
    return body


def id_number_ending_in_x(birth: date = date(1979, 8, 9)) -> str:
    """A valid ID number whose check digit is X (upper case)."""
    for sequence in range(1000):
        base = f"110101{birth:%Y%m%d}{sequence:03d}"
        if ric.calc_check_digit(base + "0") == "X":
            return base + "X"
    raise AssertionError("no sequence gives an X check digit")


def state() -> tuple:
    """Everything a partner request could write, to show that a refused one wrote nothing."""
    return (
        Person.objects.count(),
        AuditEvent.objects.count(),
        IdempotentRequest.objects.count(),
        Transaction.objects.count(),
        Hold.objects.count(),
        sorted(
            (str(line.pk), line.status, line.limit, line.score) for line in CreditLine.objects.all()
        ),
    )


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["fields"], dict)
    return body["error"]


def signed_headers(
    client, method: str, path: str, raw: bytes = b"", **overrides: str
) -> dict[str, str]:
    """WSGI headers signing ``method path raw`` with ``client``'s key; overrides by header."""
    timestamp, nonce = str(int(timezone.now().timestamp())), secrets.token_hex(12)
    headers = {
        "HTTP_X_PARTNER_KEY": client.key_id,
        "HTTP_X_TIMESTAMP": timestamp,
        "HTTP_X_NONCE": nonce,
        "HTTP_X_SIGNATURE": signing.sign(client.secret, method, path, timestamp, nonce, raw),
    }
    headers.update(overrides)
    return headers


def hold(line: CreditLine, amount: int) -> Hold:
    return ledger.hold_create(
        key=f"test-hold-{next(_keys)}",
        debit=line.capacity_account,
        credit=partner_pool(line.partner),
        amount=amount,
    )


def draw(line: CreditLine, amount: int) -> None:
    ledger.transfer(
        key=f"test-draw-{next(_keys)}",
        debit=line.capacity_account,
        credit=line.drawn_account,
        amount=amount,
    )


@pytest.fixture
def bank(make_partner):
    return make_partner("厦门银行")


@pytest.fixture
def granted(bank, id_number):
    """A ¥1,000 line at the bank: (line id, SignedClient)."""
    _, client = bank
    response = client.post(LINES, grant_body(id_number(date(1980, 5, 17)), limit="1000.00"))
    assert response.status_code == 201, response.content
    return response.json()["id"], client


# --- signatures -------------------------------------------------------------------------------


def test_correctly_signed_request_is_accepted(granted):
    line_id, client = granted

    response = client.get(line_path(line_id))

    assert response.status_code == 200
    assert response.json()["id"] == line_id


def test_wrong_secret_is_refused(bank, id_number):
    _, client = bank
    before = state()

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1))), secret="not-the-secret")

    assert_error(response, 401)
    assert state() == before


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-301, False), (301, False), (-299, True), (299, True)],
    ids=["301s-old", "301s-ahead", "299s-old", "299s-ahead"],
)
def test_timestamp_more_than_300s_away_is_refused(bank, id_number, offset, accepted):
    _, client = bank
    now = timezone.now().timestamp()
    # Round so that the skew the server sees is at least 301 s, or at most 299 s.
    if accepted:
        timestamp = math.ceil(now) + offset if offset < 0 else math.floor(now) + offset
    else:
        timestamp = math.floor(now) + offset if offset < 0 else math.ceil(now) + offset
    before = state()

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1))), timestamp=timestamp)

    if accepted:
        assert response.status_code == 201, response.content
    else:
        assert_error(response, 401)
        assert state() == before


@pytest.mark.parametrize("timestamp", ["abc", "1.7e9", "17000000000.5", "-1", "0"])
def test_timestamp_that_is_not_recent_unix_seconds_is_refused(bank, id_number, timestamp):
    _, client = bank
    raw = json.dumps(grant_body(id_number(date(1980, 1, 1)))).encode()
    before = state()

    response = client.client.generic(
        "POST",
        LINES,
        raw,
        content_type="application/json",
        **signed_headers(client, "POST", LINES, raw, HTTP_X_TIMESTAMP=timestamp),
    )

    assert_error(response, 401)
    assert state() == before


def test_timestamp_too_large_for_a_float_is_refused(bank, id_number):
    _, client = bank
    before = state()

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1))), timestamp=10**400)

    assert_error(response, 401)
    assert state() == before


def test_replayed_nonce_is_refused(bank, id_number):
    _, client = bank
    number = id_number(date(1980, 1, 1))
    first = client.post(LINES, grant_body(number, limit="100.00"), nonce="nonce-1")
    assert first.status_code == 201
    before = state()

    replay = client.post(LINES, grant_body(number, limit="900.00"), nonce="nonce-1")

    assert_error(replay, 401)
    assert state() == before
    assert client.get(line_path(first.json()["id"])).json()["limit"] == "100.00"


def test_replayed_nonce_is_refused_on_a_read_too(granted):
    line_id, client = granted
    assert client.get(line_path(line_id), nonce="read-once").status_code == 200

    assert_error(client.get(line_path(line_id), nonce="read-once"), 401)


def test_body_changed_after_signing_is_refused(bank, id_number):
    _, client = bank
    number = id_number(date(1980, 1, 1))
    before = state()

    response = client.post(
        LINES,
        grant_body(number, limit="100.00"),
        sent_body=json.dumps(grant_body(number, limit="3000.00")).encode(),
    )

    assert_error(response, 401)
    assert state() == before


def test_unknown_key_id_is_refused(bank, id_number):
    _, client = bank
    before = state()

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1))), key_id="pk_unknown")

    assert_error(response, 401)
    assert state() == before


def test_revoked_key_is_refused(bank, id_number):
    _, client = bank
    partner_key_revoke(actor="test", key=PartnerKey.objects.get(key_id=client.key_id))
    before = state()

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1))))

    assert_error(response, 401)
    assert state() == before


@pytest.mark.parametrize(
    "missing",
    [
        "HTTP_X_PARTNER_KEY",
        "HTTP_X_TIMESTAMP",
        "HTTP_X_NONCE",
        "HTTP_X_SIGNATURE",
        "all",
    ],
)
def test_missing_signature_headers_are_refused(bank, id_number, missing):
    _, client = bank
    raw = json.dumps(grant_body(id_number(date(1980, 1, 1)))).encode()
    headers = signed_headers(client, "POST", LINES, raw)
    headers = {} if missing == "all" else {k: v for k, v in headers.items() if k != missing}
    before = state()

    response = client.client.generic("POST", LINES, raw, content_type="application/json", **headers)

    assert_error(response, 401)
    assert state() == before


def test_path_changed_after_signing_is_refused(granted, id_number):
    line_id, client = granted
    before = state()

    headers = signed_headers(client, "POST", line_path(line_id, "freeze"))
    response = client.client.generic("POST", line_path(line_id, "close"), b"", **headers)

    assert_error(response, 401)
    assert state() == before
    assert CreditLine.objects.get(pk=line_id).status == CreditLine.Status.ACTIVE


def test_query_changed_after_signing_is_refused(granted):
    line_id, client = granted
    signed = line_path(line_id) + "?view=1"

    before = state()

    for sent in (line_path(line_id) + "?view=2", line_path(line_id)):
        response = client.client.generic("GET", sent, **signed_headers(client, "GET", signed))
        assert_error(response, 401)
    assert state() == before


def test_query_signed_with_the_path_is_accepted(granted):
    line_id, client = granted

    assert client.get(line_path(line_id) + "?view=1").status_code == 200


def test_a_second_key_of_the_same_partner_works(bank, granted):
    partner, old = bank
    line_id, _ = granted
    key, secret = partner_key_issue(actor="test", partner=partner)
    new = type(old)(key.key_id, secret)  # the conftest's SignedClient

    assert new.get(line_path(line_id)).status_code == 200
    assert old.get(line_path(line_id)).status_code == 200

    partner_key_revoke(actor="test", key=PartnerKey.objects.get(key_id=old.key_id))

    assert_error(old.get(line_path(line_id)), 401)
    assert new.post(line_path(line_id, "freeze")).json()["status"] == "frozen"


# --- ownership --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [None, "freeze", "unfreeze", "close"])
def test_another_banks_line_is_not_found(make_partner, granted, action):
    line_id, _ = granted
    _, other = make_partner("兴业银行")
    before = state()

    path = line_path(line_id, action)
    response = other.get(path) if action is None else other.post(path)

    assert_error(response, 404)
    assert state() == before


@pytest.mark.parametrize("action", [None, "freeze", "unfreeze", "close"])
def test_unknown_line_is_not_found(bank, action):
    _, client = bank
    path = line_path(uuid.uuid4(), action)

    response = client.get(path) if action is None else client.post(path)

    assert_error(response, 404)


# --- grant ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "limit"),
    [(0, "500.00"), (500, "500.00"), (501, "1000.00"), (600, "1000.00"), (601, "3000.00")],
)
def test_grant_without_limit_takes_the_tier_for_the_score(bank, id_number, score, limit):
    _, client = bank

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1)), score=score))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["limit"] == limit
    assert body["available"] == limit
    assert body["held"] == "0.00"
    assert body["drawn"] == "0.00"
    assert body["status"] == "active"
    assert body["score"] == score


def test_grant_answers_the_contract_fields_and_no_id_number(bank, id_number):
    _, client = bank
    number = id_number(date(1980, 1, 1))

    response = client.post(LINES, grant_body(number, limit="800.00"))

    body = response.json()
    assert {"id", "person_id", "limit", "held", "drawn", "available", "status"} <= set(body)
    assert uuid.UUID(body["id"])
    assert body["person_id"] == Person.objects.get().pk
    assert number not in response.content.decode()


def test_stated_limit_wins_over_the_tier(bank, id_number):
    _, client = bank

    response = client.post(
        LINES, grant_body(id_number(date(1980, 1, 1)), score=700, limit="250.50")
    )

    assert response.status_code == 201
    assert response.json()["limit"] == "250.50"
    assert response.json()["available"] == "250.50"
    line = CreditLine.objects.get(pk=response.json()["id"])
    assert line.limit == 25_050
    assert account_balance(line.capacity_account).available == 25_050


def test_null_limit_takes_the_tier(bank, id_number):
    _, client = bank

    response = client.post(LINES, grant_body(id_number(date(1980, 1, 1)), score=550, limit=None))

    assert response.status_code == 201
    assert response.json()["limit"] == "1000.00"


def test_same_person_at_the_same_bank_updates_the_line(bank, id_number):
    _, client = bank
    number = id_number(date(1980, 1, 1))
    first = client.post(LINES, grant_body(number, limit="1000.00")).json()

    response = client.post(LINES, grant_body(number, limit="2000.00", score=720))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == first["id"]
    assert body["person_id"] == first["person_id"]
    assert body["limit"] == "2000.00"
    assert body["available"] == "2000.00"
    assert body["score"] == 720
    assert CreditLine.objects.count() == 1


def test_same_person_at_another_bank_gets_a_second_line(bank, make_partner, id_number):
    _, client = bank
    _, other = make_partner("兴业银行")
    number = id_number(date(1980, 1, 1))
    first = client.post(LINES, grant_body(number)).json()

    response = other.post(LINES, grant_body(number))

    assert response.status_code == 201
    assert response.json()["id"] != first["id"]
    assert response.json()["person_id"] == first["person_id"]
    assert CreditLine.objects.count() == 2
    assert Person.objects.count() == 1


def test_grant_creates_the_person_or_matches_by_id_number(bank, make_partner, make_person):
    _, client = bank
    _, other = make_partner("兴业银行")
    number = id_number_ending_in_x()
    existing = make_person()

    created = client.post(LINES, grant_body(number.lower()))
    matched = other.post(LINES, grant_body(number, name="张三丰"))

    assert created.status_code == matched.status_code == 201
    person = Person.objects.get(pk=created.json()["person_id"])
    assert person.pk != existing.pk
    assert matched.json()["person_id"] == person.pk
    assert person.id_number_masked == number[:6] + "********" + number[-4:]
    assert person.id_number_masked.endswith("X")
    assert person.name == "张三"  # matched, not renamed
    assert Person.objects.count() == 2


def test_lower_case_x_updates_the_same_line(bank):
    _, client = bank
    number = id_number_ending_in_x()
    first = client.post(LINES, grant_body(number, limit="100.00"))

    again = client.post(LINES, grant_body(number.lower(), limit="200.00"))

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_id_number_in_other_digits_is_not_a_second_person(bank):
    _, client = bank
    number = id_number_ending_in_x()  # an X check digit, compared as is, passes
    first = client.post(LINES, grant_body(number))
    assert first.status_code == 201
    other_digits = number[:2] + "".join(
        chr(0x660 + int(char)) if char.isdigit() else char for char in number[2:]
    )

    response = client.post(LINES, grant_body(other_digits))

    assert response.status_code in (200, 400), response.content
    assert Person.objects.count() == 1
    assert CreditLine.objects.count() == 1


def _bad_check_digit(number: str) -> str:
    return number[:-1] + ("1" if number[-1] != "1" else "2")


BAD_INPUT = [
    ("limit", lambda body: {**body, "limit": 1000.0}),
    ("limit", lambda body: {**body, "limit": 1000}),
    ("limit", lambda body: {**body, "limit": "10.001"}),
    ("limit", lambda body: {**body, "limit": "-5.00"}),
    ("limit", lambda body: {**body, "limit": "abc"}),
    ("limit", lambda body: {**body, "limit": "NaN"}),
    ("limit", lambda body: {**body, "limit": "Infinity"}),
    ("limit", lambda body: {**body, "limit": "99999999.00"}),
    ("id_number", lambda body: {**body, "id_number": _bad_check_digit(body["id_number"])}),
    ("id_number", lambda body: {**body, "id_number": body["id_number"][:15]}),
    ("score", lambda body: {k: v for k, v in body.items() if k != "score"}),
    ("score", lambda body: {**body, "score": "high"}),
    ("score", lambda body: {**body, "score": -1}),
    ("score_provider", lambda body: {k: v for k, v in body.items() if k != "score_provider"}),
    ("name", lambda body: {**body, "name": ""}),
    (
        "expires_on",
        lambda body: {**body, "expires_on": str(timezone.localdate() - timedelta(days=1))},
    ),
    ("expires_on", lambda body: {**body, "expires_on": "2030-13-01"}),
]


@pytest.mark.parametrize(
    ("field", "change"),
    BAD_INPUT,
    ids=[
        "limit-float",
        "limit-int",
        "limit-3-decimals",
        "limit-negative",
        "limit-text",
        "limit-nan",
        "limit-infinity",
        "limit-too-large",
        "id-check-digit",
        "id-15-chars",
        "score-missing",
        "score-text",
        "score-negative",
        "score-provider-missing",
        "name-empty",
        "expires-past",
        "expires-not-a-date",
    ],
)
def test_bad_grant_input_is_a_field_error_and_writes_nothing(bank, id_number, field, change):
    _, client = bank
    body = change(grant_body(id_number(date(1980, 1, 1)), limit="1000.00"))
    before = state()

    response = client.post(LINES, body, headers={"Idempotency-Key": f"bad-{field}"})

    error = assert_error(response, 400)
    assert field in error["fields"], error
    assert state() == before


def test_body_that_is_not_json_is_a_400(bank):
    _, client = bank
    raw = b"{not json"
    before = state()

    response = client.client.generic(
        "POST",
        LINES,
        raw,
        content_type="application/json",
        **signed_headers(client, "POST", LINES, raw),
    )

    assert_error(response, 400)
    assert state() == before


# --- status -----------------------------------------------------------------------------------


def test_freeze_unfreeze_close(granted):
    line_id, client = granted

    frozen = client.post(line_path(line_id, "freeze"))
    assert frozen.status_code == 200
    assert frozen.json()["status"] == "frozen"

    active = client.post(line_path(line_id, "unfreeze"))
    assert active.status_code == 200
    assert active.json()["status"] == "active"

    closed = client.post(line_path(line_id, "close"))
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"
    assert closed.json()["available"] == "0.00"
    assert client.get(line_path(line_id)).json()["status"] == "closed"


@pytest.mark.parametrize("action", ["freeze", "unfreeze"])
def test_actions_on_a_closed_line_are_a_conflict(granted, action):
    line_id, client = granted
    assert client.post(line_path(line_id, "close")).status_code == 200
    before = state()

    response = client.post(line_path(line_id, action))

    assert_error(response, 409)
    assert state() == before


def test_closing_a_closed_line_is_a_conflict(granted):
    line_id, client = granted
    assert client.post(line_path(line_id, "close")).status_code == 200

    assert_error(client.post(line_path(line_id, "close")), 409)


def test_close_while_an_amount_is_held_is_a_conflict(granted):
    line_id, client = granted
    hold(CreditLine.objects.get(pk=line_id), 20_000)
    before = state()

    response = client.post(line_path(line_id, "close"))

    assert_error(response, 409)
    assert state() == before
    assert client.get(line_path(line_id)).json()["status"] == "active"


# --- Idempotency-Key --------------------------------------------------------------------------


def test_idempotent_replay_returns_the_first_response_and_writes_nothing(bank, id_number):
    _, client = bank
    body = grant_body(id_number(date(1980, 1, 1)), limit="1000.00")
    first = client.post(LINES, body, headers={"Idempotency-Key": "grant-1"})
    assert first.status_code == 201
    before = state()

    replay = client.post(LINES, body, headers={"Idempotency-Key": "grant-1"})

    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert state() == before


def test_idempotent_replay_of_an_action_changes_nothing(granted):
    line_id, client = granted
    first = client.post(line_path(line_id, "freeze"), headers={"Idempotency-Key": "freeze-1"})
    assert client.post(line_path(line_id, "unfreeze")).json()["status"] == "active"
    before = state()

    replay = client.post(line_path(line_id, "freeze"), headers={"Idempotency-Key": "freeze-1"})

    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.json()["status"] == "frozen"  # the first answer ...
    assert state() == before
    assert client.get(line_path(line_id)).json()["status"] == "active"  # ... not a new freeze


def test_idempotency_key_with_a_different_body_is_a_conflict(bank, id_number):
    _, client = bank
    number = id_number(date(1980, 1, 1))
    client.post(LINES, grant_body(number, limit="1000.00"), headers={"Idempotency-Key": "k"})
    before = state()

    response = client.post(
        LINES, grant_body(number, limit="2000.00"), headers={"Idempotency-Key": "k"}
    )

    assert_error(response, 409)
    assert state() == before


def test_idempotency_key_on_another_path_is_a_conflict(granted):
    line_id, client = granted
    client.post(line_path(line_id, "freeze"), headers={"Idempotency-Key": "k"})
    before = state()

    response = client.post(line_path(line_id, "close"), headers={"Idempotency-Key": "k"})

    assert_error(response, 409)
    assert state() == before


def test_a_failed_request_leaves_its_idempotency_key_free(bank, id_number):
    _, client = bank
    number = id_number(date(1980, 1, 1))
    past = str(timezone.localdate() - timedelta(days=1))
    failed = client.post(
        LINES, grant_body(number, expires_on=past), headers={"Idempotency-Key": "retry-me"}
    )
    assert failed.status_code == 400

    retried = client.post(LINES, grant_body(number), headers={"Idempotency-Key": "retry-me"})

    assert retried.status_code == 201


# --- figures ----------------------------------------------------------------------------------


def test_figures_show_held_drawn_and_available_in_yuan_as_the_ledger_has_them(granted):
    line_id, client = granted
    line = CreditLine.objects.get(pk=line_id)
    hold(line, 20_000)  # ¥200 held for a stay in progress
    draw(line, 15_050)  # ¥150.50 drawn

    body = client.get(line_path(line_id)).json()

    assert body["limit"] == "1000.00"
    assert body["held"] == "200.00"
    assert body["drawn"] == "150.50"
    assert body["available"] == "649.50"
    capacity = account_balance(line.capacity_account)
    drawn = account_balance(line.drawn_account)
    assert body["held"] == fen_to_yuan(capacity.debits_pending)
    assert body["available"] == fen_to_yuan(capacity.available)
    assert body["drawn"] == fen_to_yuan(drawn.posted)


# --- the customer's phone ---------------------------------------------------------------------


def test_a_grant_gives_a_person_without_a_phone_the_banks_and_never_changes_a_known_one(
    bank, id_number
):
    from accounts import crypto

    _, client = bank
    number = id_number(date(1982, 2, 3))
    first = client.post(LINES, grant_body(number, limit="500.00", phone="138 0013 8000"))
    assert first.status_code == 201, first.content
    person = Person.objects.get()
    assert crypto.decrypt(person.phone_encrypted) == "13800138000"
    assert person.phone_hash == crypto.lookup_hash("13800138000")
    again = client.post(LINES, grant_body(number, limit="600.00", phone="13900139000"))
    assert again.status_code == 200, again.content
    person.refresh_from_db()
    assert crypto.decrypt(person.phone_encrypted) == "13800138000"  # changed only at a desk
    before = state()
    bad = client.post(LINES, grant_body(number, limit="700.00", phone="12345"))
    assert assert_error(bad, 400)["fields"] == {
        "phone": [bad.json()["error"]["fields"]["phone"][0]]
    }
    assert state() == before
