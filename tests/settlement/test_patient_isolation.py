"""No patient reads another's data: every endpoint of the patient API, walked from the URL conf,
for a family payer, the child their line carried until the link was revoked, and an unrelated
patient.

Each endpoint has a rule saying which of the world's objects each patient may see or touch; an
endpoint without a rule fails ``test_every_patient_endpoint_has_a_rule``. Lists must hold
exactly the viewer's objects; an object endpoint answers 200 for the viewer's own and 404 for
everyone else's, never 403 and never 200. The world is that of ``test_patient_data_api``: the
parent's own stay, the child's stay drawn on the parent's line, the child's later stay after
the link was revoked (not the parent's), the stranger's stay and refund.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Consent, Person, SmsMessage
from accounts.services.consents import consent_record
from accounts.services.notices import sms_queue
from tests.settlement.test_patient_data_api import Family, bearer, family  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

VIEWERS = ("parent", "child", "stranger")


@dataclass(frozen=True)
class Rule:
    """``visible(world, viewer)`` the ids the viewer may see; a list's rows are read with
    ``row_id``, an object endpoint is called for every id in ``every(world)``."""

    kind: str  # "list", "object" or "self"
    visible: Callable[[Any, str], set[str]]
    every: Callable[[Any], set[str]] = lambda world: set()
    url_kwarg: str = ""
    method: str = "GET"


def _stays(world: Any, viewer: str) -> set[str]:
    f: Family = world.family
    mine = {
        "parent": {f.parent_stay, f.child_stay},  # own, and the stay the line carried
        "child": {f.child_stay, f.later_stay},
        "stranger": {f.stranger_stay, f.refund.encounter},
    }[viewer]
    return {str(stay.pk) for stay in mine}


def _all_stays(world: Any) -> set[str]:
    return set().union(*(_stays(world, viewer) for viewer in VIEWERS))


RULES: dict[str, Rule] = {
    "patient-encounters": Rule("list", _stays),
    "patient-bill": Rule("object", _stays, _all_stays, "encounter_id"),
    "patient-refunds": Rule(
        "list",
        lambda world, viewer: {str(world.family.refund.pk)} if viewer == "stranger" else set(),
    ),
    "patient-messages": Rule("list", lambda world, viewer: world.messages[viewer]),
    "patient-consent-revoke": Rule(
        "object",
        lambda world, viewer: {world.consents[viewer]},
        lambda world: set(world.consents.values()),
        "consent_id",
        "POST",
    ),
    # Acts on the caller alone: what it makes is the caller's (checked below).
    "patient-enrolment": Rule("self", lambda world, viewer: set(), method="POST"),
    "patient-me": Rule("me", lambda world, viewer: {str(world.people[viewer].pk)}),
    "patient-auth-logout": Rule("logout", lambda world, viewer: set(), method="POST"),
    # Signing in reads nobody's data; asking a code tells nothing of whose phone it is.
    "patient-auth-sms": Rule("public", lambda world, viewer: set(), method="POST"),
    "patient-auth-token": Rule("public", lambda world, viewer: set(), method="POST"),
}


def _walk(resolver: URLResolver, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += _walk(entry, route)
        else:
            found.append((route, entry))
    return found


def test_every_patient_endpoint_has_a_rule():
    patterns = {
        entry.name for route, entry in _walk(get_resolver()) if route.startswith("api/patient/")
    }
    assert patterns == set(RULES), patterns ^ set(RULES)


@dataclass
class World:
    family: Family
    people: dict[str, Person]
    messages: dict[str, set[str]]
    consents: dict[str, str]


@pytest.fixture
def world(family) -> World:  # noqa: F811 - the imported fixture
    people = {"parent": family.parent, "child": family.child, "stranger": family.stranger}
    for viewer, person in people.items():
        with transaction.atomic():
            sms_queue(
                key=f"isolation:{viewer}",
                phone="13900019999",
                template="REFUND_READY",
                params={"amount": "1.00"},
                person=person,
            )
    messages = {
        viewer: {
            str(m.pk)
            for m in SmsMessage.objects.filter(person=person).exclude(template="LOGIN_CODE")
        }
        for viewer, person in people.items()
    }
    consents = {}
    for viewer, person in people.items():
        with transaction.atomic():
            consent = consent_record(
                actor="test",
                person=person,
                purpose=Consent.Purpose.CREDIT_SCORE,
                scope="read my credit score",
                channel="app",
            )
        consents[viewer] = str(consent.pk)
    return World(family, people, messages, consents)


def _cells() -> list[Any]:
    return [
        pytest.param(name, viewer, id=f"{name}-{viewer}") for name in RULES for viewer in VIEWERS
    ]


@pytest.mark.parametrize(("name", "viewer"), _cells())
def test_a_patient_sees_and_touches_only_their_own(world, name, viewer):
    rule = RULES[name]
    client = bearer(world.people[viewer])
    allowed = rule.visible(world, viewer)
    if rule.kind == "list":
        answer = client.get(reverse(name))
        assert answer.status_code == 200, answer.content[:300]
        shown = {str(row["id"]) for row in answer.json()["results"]}
        assert shown == allowed, f"LEAK or loss: {shown ^ allowed}"
    elif rule.kind == "object":
        for object_id in sorted(rule.every(world)):
            url = reverse(name, kwargs={rule.url_kwarg: object_id})
            if rule.method == "GET":
                answer = client.get(url)
            else:
                answer = client.post(url, HTTP_IDEMPOTENCY_KEY=uuid4().hex)
            expected = 200 if object_id in allowed else 404
            assert answer.status_code == expected, (object_id, answer.content[:300])
    elif rule.kind == "me":
        body = client.get(reverse(name)).json()
        assert {str(body["id"])} == allowed
        person = world.people[viewer].pk
        assert all(person in (link["payer"], link["beneficiary"]) for link in body["family_links"])
    elif rule.kind == "logout":
        others = {other: bearer(world.people[other]) for other in VIEWERS if other != viewer}
        assert client.post(reverse(name)).status_code == 204
        assert client.get(reverse("patient-me")).status_code == 401
        for other in others.values():  # only the caller's own token is revoked
            assert other.get(reverse("patient-me")).status_code == 200
    elif rule.kind == "public":
        if name == "patient-auth-sms":  # a known phone answers as an unknown one
            known = client.post(reverse(name), {"phone": "13900010001"}, format="json")
            unknown = client.post(reverse(name), {"phone": "13700000000"}, format="json")
            assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
        else:  # a wrong code for another's phone signs nobody in and reads nothing
            answer = client.post(
                reverse(name), {"phone": "13900010003", "code": "000000"}, format="json"
            )
            assert answer.status_code == 400 and "token" not in answer.json()
    else:  # acts on the caller alone
        answer = client.post(
            reverse(name), {"consent": False}, format="json", HTTP_IDEMPOTENCY_KEY=uuid4().hex
        )
        assert answer.status_code == 400  # refused without consent: nothing made for anyone
        assert not world.people[viewer].applications.exists()
