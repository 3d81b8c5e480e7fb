"""The authorisation matrix: every staff endpoint and page × role × whose object, against the
documented answer (API.md § "Several hospitals on one platform").

The URL conf is walked and every pattern under ``api/v1/``, ``cashier/``, ``finance/`` and
``platform/`` must have a rule in ``RULES`` (and every other pattern a reason in ``EXCLUDED``):
an endpoint added without a scope rule fails ``test_every_staff_endpoint_has_a_rule``.

The callers work at institution A (or, role ``platform``, at none); target ``own`` is A's
object, ``other`` is B's, ``none`` marks an endpoint that names no institution's object. The
expected answer:

- a role the endpoint does not admit: 403 (the API and the pages alike);
- an admitted role on its own institution's object: not 401/403/404 (a write with an empty body
  may answer 400 or 409: authorisation passed); a list answers 200 and shows the object;
- an admitted role on the other institution's object: 404 for an object, and for a list 200
  without it (else it leaks); the platform's operators see both institutions' objects.

The two institutions' objects are built once for the module, through the services and against
the insurer simulator, inside a transaction rolled back at the end; each test runs in a
savepoint of it, so a write that passes authorisation changes nothing for the next.
"""

import dataclasses
import functools
import io
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import Department, FamilyLink, Institution, Partner, Person
from accounts.selectors import person_id_number
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create
from accounts.services.persons import person_create
from accounts.services.staff import staff_create
from settlement.insurer.client import InsurerClient
from settlement.models import (
    Charge,
    DiagnosisDeposit,
    Encounter,
    InsuranceClaim,
    Receipt,
    Refund,
)
from settlement.reconciliation.batches import (
    batch_run,
    ledger_check_batch,
    statement_batch_create,
)
from settlement.reconciliation.models import ReconBatch, ReconItem
from settlement.services.claim_retries import claims_retry
from settlement.services.deposit_table import deposit_row_save
from settlement.services.encounters import (
    ChargeItem,
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.settle import encounter_settle
from tests.factories import KeyedClient, grant_line, link_family, make_id_number, statement_csv
from tests.settlement.conftest import Simulator

pytestmark = pytest.mark.django_db

ROLES = ("cashier", "finance", "admin", "platform", "norole")
CASHIER_DESK = frozenset({"cashier", "admin"})
FINANCE_DESK = frozenset({"finance", "admin"})
INSTITUTION_STAFF = frozenset({"cashier", "finance", "admin"})
READERS = INSTITUTION_STAFF | {"platform"}
PLATFORM = frozenset({"platform"})
RECONCILERS = FINANCE_DESK | {"platform"}


# --- the two institutions' objects --------------------------------------------------------------


@dataclasses.dataclass
class Side:
    """One institution and one of each object staff act on there; every name and code is
    unique to the side, so that finding it in an answer says whose it is."""

    institution: Institution
    department: Department
    bank: Partner
    deposit_row: DiagnosisDeposit  # its diagnosis deposit table's one row
    person: Person  # seen there (enrolled at its desk), with no encounter
    stay: Encounter  # open, inpatient, with a deposit and a charge
    charge: Charge
    settled: Encounter  # settled on the own bank's credit line, with a receipt
    receipt_no: str
    deferred: Encounter  # settled in cash while the insurer was down: its claim is deferred
    refund: Refund  # owed: the deferred claim of another visit settled later
    batch: ReconBatch  # a bank statement, done, with an unresolved exception
    item: ReconItem
    link: FamilyLink  # between two of its persons (family links are platform-wide)


@dataclasses.dataclass
class World:
    own: Side  # institution A, where the callers work
    other: Side  # institution B
    users: dict[str, AbstractUser]
    tokens: dict[str, str]
    ledger_check: ReconBatch  # a ledger check: no institution's, the platform's

    def side(self, target: str) -> Side:
        return self.other if target == "other" else self.own


def _line(fen: int, insurance_class: str = "C") -> ChargeItem:
    return ChargeItem("D1", "头孢", "drug", insurance_class, Decimal(1), fen, timezone.localdate())


def _visit(department: Department, person: Person, fen: int, klass: str = "A") -> Encounter:
    visit = encounter_admit(actor="test", person=person, department=department, kind="outpatient")
    charges_post(actor="test", encounter_id=visit.pk, items=[_line(fen, klass)], key=uuid4().hex)
    return visit


def _person(name: str, institution: Institution, birth: date = date(1970, 3, 3)) -> Person:
    return person_create(
        actor="test", name=name, id_number=make_id_number(birth), seen_at=institution
    )


def _build(sim: Simulator) -> World:
    insurer = InsurerClient(sim.url, timeout=3)
    parts: dict[str, dict[str, Any]] = {}
    for key, code, tag in (("own", "MXA1", "甲"), ("other", "MXB2", "乙")):
        institution = institution_ensure(actor="test", code=code, name=f"矩阵{tag}院")
        department = department_ensure(
            actor="test",
            institution=institution,
            code=f"DEP{code}",
            name=f"{tag}院内科",
            default_deposit=50_000,
        )
        department.refresh_from_db()
        bank, _, _ = partner_create(actor="test", name=f"矩阵{tag}银行")
        deposit_row = deposit_row_save(
            actor="test",
            institution=institution,
            diagnosis_code=f"Z{code}.1",
            name="矩阵病种",
            amount=90_000,
        )
        stay = encounter_admit(
            actor="test",
            person=_person(f"{tag}院住院者", institution),
            department=department,
            kind="inpatient",
        )
        deposit_pay(
            actor="test", encounter_id=stay.pk, amount=50_000, channel="cash", key=uuid4().hex
        )
        (charge,) = charges_post(
            actor="test", encounter_id=stay.pk, items=[_line(12_300)], key=uuid4().hex
        )
        borrower = _person(f"{tag}院赊账者", institution)
        grant_line(bank, borrower)
        settled = _visit(department, borrower, 20_000, "C")
        encounter_settle(actor="test", encounter_id=settled.pk, client=insurer)
        minor = _person(f"{tag}院小孩", institution, birth=date(2016, 6, 1))
        parts[key] = {
            "institution": institution,
            "department": department,
            "bank": bank,
            "deposit_row": deposit_row,
            "person": _person(f"{tag}院只见者", institution),
            "stay": stay,
            "charge": charge,
            "settled": settled,
            "receipt_no": Receipt.objects.get(
                encounter=settled, superseded_by__isnull=True
            ).receipt_no,
            "link": link_family(borrower, minor),
            "tag": tag,
        }
    # Paid at the window while the insurer is down; its claim settles later: a refund owed.
    sim.control("fail")
    for side in parts.values():
        side["refunded"] = _visit(
            side["department"], _person(f"{side['tag']}院退费者", side["institution"]), 100_000
        )
        encounter_settle(
            actor="test", encounter_id=side["refunded"].pk, channel="cash", client=insurer
        )
    sim.control("ok")
    assert claims_retry(client=insurer).get("reverted") == 2
    # And a visit whose claim stays deferred.
    sim.control("fail")
    for side in parts.values():
        side["deferred"] = _visit(
            side["department"], _person(f"{side['tag']}院待报者", side["institution"]), 30_000
        )
        encounter_settle(
            actor="test", encounter_id=side["deferred"].pk, channel="cash", client=insurer
        )
    sim.control("ok")
    sides = {}
    for key, side in parts.items():
        refunded, deferred = side.pop("refunded"), side.pop("deferred")
        assert InsuranceClaim.objects.get(encounter=deferred).status == "deferred"
        batch = _statement_batch(side["bank"], side["institution"], side["institution"].code)
        sides[key] = Side(
            **{k: v for k, v in side.items() if k != "tag"},
            deferred=deferred,
            refund=Refund.objects.get(encounter=refunded, status=Refund.Status.OWED),
            batch=batch,
            item=batch.items.get(kind=ReconItem.Kind.UNKNOWN_REFERENCE, resolved_at__isnull=True),
        )
    users, tokens = {}, {}
    for role in ROLES:
        institution = None if role == "platform" else sides["own"].institution
        user, token = staff_create(
            actor="test",
            username=f"matrix-{role}",
            role="cashier" if role == "norole" else role,
            institution=institution,
        )
        if role == "norole":  # a staff member of A holding no role
            user.groups.clear()
        users[role], tokens[role] = user, token
    return World(
        own=sides["own"],
        other=sides["other"],
        users=users,
        tokens=tokens,
        ledger_check=ledger_check_batch(actor="test"),
    )


def _statement_batch(bank: Partner, institution: Institution, code: str) -> ReconBatch:
    """A statement from the side's bank with one line nobody knows: done, one exception."""
    csv = statement_csv([(f"TXN-{code}", "12.34", f"NOBODY-{code}")])
    batch, created = statement_batch_create(
        actor="test",
        institution=institution,
        partner=bank,
        stream=io.BytesIO(csv),
        file_name=f"{code}.csv",
        enqueue=False,
    )
    assert created
    batch = batch_run(batch.pk)
    assert batch.status == ReconBatch.Status.DONE, batch.error
    return batch


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    """Both institutions' objects, built once in a transaction that is rolled back after the
    module. It stands in for a test case's own (``_from_testcase``), as ``setUpTestData``'s
    does, so that the services' durable transactions and each test's own nest inside it."""
    folder = tmp_path_factory.mktemp("matrix-insurer")
    sim = Simulator(folder / "insurer-sim.json", folder / "insurer-sim.log")
    sim.start()
    try:
        with django_db_blocker.unblock():
            outer = transaction.atomic()
            outer._from_testcase = True  # type: ignore[attr-defined]
            outer.__enter__()
            try:
                with override_settings(INSURER_URL=sim.url, INSURER_TIMEOUT_SECONDS=3):
                    yield _build(sim)
            finally:
                transaction.set_rollback(True)
                outer.__exit__(None, None, None)
    finally:
        sim.stop()


# --- the rules ----------------------------------------------------------------------------------

Path = Callable[[Side], dict[str, Any]]
Text = Callable[[Side], str]


@dataclasses.dataclass(frozen=True)
class Rule:
    """Who may call an endpoint, and how its answer depends on whose object it names.

    ``scope``: ``object`` (another institution's is a 404), ``list`` (another institution's
    is left out), ``named`` (the body names it: the API answers 400 "no such department", a
    page shows its form again and changes nothing), ``open`` (anyone's: persons and family
    links are platform-wide) or ``none`` (no object). ``args`` fill the URL; ``body`` is what a
    POST sends; ``shows`` is text of the side's object that an answer listing or showing it
    contains; ``hides`` text of the other institution that must not appear even where the
    object itself is open; ``changed`` whether a refused form changed the side's objects.
    """

    roles: frozenset[str]
    scope: str
    args: Path = lambda side: {}
    body: Callable[["World", Side], dict[str, Any]] = lambda world, side: {}
    shows: Text | None = None
    hides: Callable[[Side], tuple[str, ...]] | None = None
    changed: Callable[[Side], bool] | None = None
    recon: bool = False  # a reconciliation endpoint (the API's upload takes multipart)

    @property
    def targets(self) -> tuple[str, ...]:
        return ("none",) if self.scope == "none" else ("own", "other")


def _encounter(side: Side) -> dict[str, Any]:
    return {"encounter_id": side.stay.pk}


def _batch(side: Side) -> dict[str, Any]:
    return {"batch_id": side.batch.pk}


def _admission(world: World, side: Side) -> dict[str, Any]:
    return {"person": world.own.person.pk, "kind": "outpatient", "department": side.department.pk}


def _link_body(world: World, side: Side) -> dict[str, Any]:
    return {
        "payer": side.link.payer_id,
        "beneficiary": side.link.beneficiary_id,
        "relation": "parent_of_minor",
        "consent": True,
    }


RULES: dict[tuple[str, str], Rule] = {
    # --- the staff API: persons, family links, departments
    ("departments", "GET"): Rule(INSTITUTION_STAFF, "list", shows=lambda s: s.department.code),
    ("persons", "GET"): Rule(READERS, "list", shows=lambda s: s.person.name),
    ("persons", "POST"): Rule(CASHIER_DESK, "none"),
    ("person-find", "POST"): Rule(
        READERS,
        "open",
        body=lambda world, s: {"id_number": person_id_number(s.person)},
        shows=lambda s: s.person.name,
    ),
    ("person-detail", "GET"): Rule(
        READERS, "open", args=lambda s: {"person_id": s.person.pk}, shows=lambda s: s.person.name
    ),
    ("family-links", "POST"): Rule(CASHIER_DESK, "open", body=_link_body),
    ("family-link-revoke", "POST"): Rule(
        CASHIER_DESK, "open", args=lambda s: {"link_id": s.link.pk}
    ),
    # --- encounters and what belongs to them
    ("encounters", "POST"): Rule(CASHIER_DESK, "named", body=_admission),
    ("encounter", "GET"): Rule(READERS, "object", args=_encounter),
    ("deposits", "POST"): Rule(CASHIER_DESK, "object", args=_encounter),
    ("charges", "POST"): Rule(CASHIER_DESK, "object", args=_encounter),
    ("bill", "GET"): Rule(READERS, "object", args=_encounter),
    ("settle", "POST"): Rule(CASHIER_DESK, "object", args=lambda s: {"encounter_id": s.settled.pk}),
    ("reverse", "POST"): Rule(CASHIER_DESK, "object", args=lambda s: {"charge_id": s.charge.pk}),
    ("receipt", "GET"): Rule(READERS, "object", args=lambda s: {"receipt_no": s.receipt_no}),
    ("refunds", "GET"): Rule(READERS, "list", shows=lambda s: str(s.refund.encounter_id)),
    ("refund-pay", "POST"): Rule(CASHIER_DESK, "object", args=lambda s: {"refund_id": s.refund.pk}),
    ("claims", "GET"): Rule(READERS, "list", shows=lambda s: str(s.deferred.pk)),
    ("claims-retry", "POST"): Rule(READERS, "none"),
    ("platform-summary", "GET"): Rule(PLATFORM, "list", shows=lambda s: s.institution.code),
    # --- reconciliation
    ("recon-upload", "POST"): Rule(RECONCILERS, "none", recon=True),
    ("recon-batch", "GET"): Rule(RECONCILERS, "object", args=_batch, recon=True),
    ("recon-export", "GET"): Rule(RECONCILERS, "object", args=_batch, recon=True),
    ("recon-resolve", "POST"): Rule(
        RECONCILERS, "object", args=lambda s: {"item_id": s.item.pk}, recon=True
    ),
    # --- the cashier's pages
    ("cashier-home", "GET"): Rule(CASHIER_DESK, "list", shows=lambda s: str(s.stay.pk)),
    ("cashier-person-new", "GET"): Rule(CASHIER_DESK, "none"),
    ("cashier-person-new", "POST"): Rule(CASHIER_DESK, "none"),
    ("cashier-person", "GET"): Rule(
        CASHIER_DESK,
        "open",
        args=lambda s: {"person_id": s.stay.person_id},
        shows=lambda s: s.stay.person.name,
        hides=lambda s: (str(s.stay.pk), s.department.name),
    ),
    ("cashier-person", "POST"): Rule(
        CASHIER_DESK,
        "named",
        args=lambda s: {"person_id": s.stay.person_id},
        body=lambda world, s: {
            "action": "admit",
            "department": s.department.pk,
            "kind": "outpatient",
            "token": str(uuid4()),
        },
        changed=lambda s: Encounter.objects.filter(department=s.department).count() != 4,
    ),
    ("cashier-encounter", "GET"): Rule(CASHIER_DESK, "object", args=_encounter),
    ("cashier-encounter", "POST"): Rule(CASHIER_DESK, "object", args=_encounter),
    ("cashier-receipt", "GET"): Rule(
        CASHIER_DESK, "object", args=lambda s: {"encounter_id": s.settled.pk}
    ),
    ("cashier-claims", "GET"): Rule(CASHIER_DESK, "list", shows=lambda s: s.deferred.person.name),
    ("cashier-refunds", "GET"): Rule(
        CASHIER_DESK, "list", shows=lambda s: s.refund.encounter.person.name
    ),
    ("cashier-refunds", "POST"): Rule(
        CASHIER_DESK, "object", body=lambda world, s: {"refund": s.refund.pk}
    ),
    # --- the finance desk's pages
    ("finance-claims", "GET"): Rule(FINANCE_DESK, "list", shows=lambda s: s.deferred.person.name),
    ("finance-claims-retry", "POST"): Rule(FINANCE_DESK, "none"),
    ("finance-receivables", "GET"): Rule(FINANCE_DESK, "list", shows=lambda s: s.bank.name),
    ("finance-credit", "GET"): Rule(FINANCE_DESK, "list", shows=lambda s: s.bank.name),
    ("finance-deposits", "GET"): Rule(
        FINANCE_DESK, "list", shows=lambda s: s.deposit_row.diagnosis_code
    ),
    ("finance-deposits", "POST"): Rule(
        FINANCE_DESK,
        "named",
        body=lambda world, s: {
            "action": "row",
            "row": s.deposit_row.pk,
            "diagnosis_code": s.deposit_row.diagnosis_code,
            "amount": "1.00",
        },
        changed=lambda s: DiagnosisDeposit.objects.get(pk=s.deposit_row.pk).amount != 90_000,
    ),
    ("finance-home", "GET"): Rule(
        FINANCE_DESK, "list", shows=lambda s: str(s.batch.pk), recon=True
    ),
    ("finance-home", "POST"): Rule(FINANCE_DESK, "none", recon=True),
    ("finance-batch", "GET"): Rule(RECONCILERS, "object", args=_batch, recon=True),
    ("finance-batch-progress", "GET"): Rule(RECONCILERS, "object", args=_batch, recon=True),
    ("finance-batch-export", "GET"): Rule(RECONCILERS, "object", args=_batch, recon=True),
    ("finance-item-resolve", "POST"): Rule(
        RECONCILERS,
        "object",
        args=lambda s: {"batch_id": s.batch.pk, "item_id": s.item.pk},
        recon=True,
    ),
    # the whole city's ledger: the platform's alone
    ("finance-ledger", "GET"): Rule(PLATFORM, "none"),
    ("finance-ledger-verify", "POST"): Rule(PLATFORM, "none"),
    # --- the platform's page
    ("platform-home", "GET"): Rule(PLATFORM, "list", shows=lambda s: s.institution.name),
}

STAFF_PREFIXES = ("api/v1/", "cashier/", "finance/", "platform/")

# Patterns outside the matrix, by route prefix ("" only the site's root itself), and why.
EXCLUDED: dict[str, str] = {
    "api/partner/v1/": "the banks' API: signed requests, a partner sees its own lines and "
    "receivables (tests/accounts/test_partner_api.py, tests/settlement/test_bank_side.py)",
    "api/patient/v1/": "the patients' API: a bearer token from an SMS sign-in sees its own data "
    "and what it pays for (tests/settlement/test_patient_isolation.py)",
    "portal/": "the patients' portal: a patient's own login sees its own data "
    "(tests/web/test_portal_pages.py)",
    "admin/": "Django's admin: is_staff users only, by Django's own checks",
    "login/": "public: the sign-in page",
    "logout/": "public: signing out",
    "healthz": "public: the load balancer's health check",
    "i18n/": "public: choosing the language",
    "api/schema/": "public: the OpenAPI schema",
    "api/docs/": "public: the API's documentation page",
    "": "public: the site's root sends each user to their own home page",
}

# Cells where the product answers otherwise than the rules: each is expected to fail, and
# strictly, so that the mark goes when the product is fixed. (None today.)
KNOWN: dict[tuple[str, str, str, str], str] = {}


# --- walking the URL conf -----------------------------------------------------------------------


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry, route)
        else:
            yield route, entry


def _staff_patterns() -> dict[str, URLPattern]:
    return {
        entry.name or route: entry
        for route, entry in _walk(get_resolver())
        if route.startswith(STAFF_PREFIXES)
    }


@functools.cache
def _routes() -> dict[str, str]:
    return {entry.name: route for route, entry in _walk(get_resolver()) if entry.name is not None}


def _is_api(name: str) -> bool:
    return _routes()[name].startswith("api/")


def test_every_staff_endpoint_has_a_rule():
    """Every staff pattern (and each method an API view handles) has a rule, and every rule
    names a real pattern: an endpoint added without a scope rule fails here."""
    patterns = _staff_patterns()
    ruled = {name for name, _ in RULES}
    assert sorted(set(patterns) - ruled) == [], "staff endpoints without a rule"
    assert sorted(ruled - set(patterns)) == [], "rules naming no pattern"
    for name, entry in patterns.items():
        view = getattr(entry.callback, "view_class", None)
        if view is None:  # a page (a function view): its methods are listed in RULES
            continue
        handled = {m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}
        ruled_methods = {method for rule_name, method in RULES if rule_name == name}
        assert handled == ruled_methods, f"{name}: methods {handled} but rules {ruled_methods}"


def test_every_other_pattern_is_excluded_with_a_reason():
    for route, entry in _walk(get_resolver()):
        if route.startswith(STAFF_PREFIXES):
            continue
        assert any(
            route == prefix if prefix == "" else route.startswith(prefix) for prefix in EXCLUDED
        ), f"{route} ({entry.name}): neither in the matrix nor excluded with a reason"


# --- the matrix ---------------------------------------------------------------------------------


def _cells() -> Iterator[Any]:
    for (name, method), rule in RULES.items():
        for role in ROLES:
            for target in rule.targets:
                known = KNOWN.get((name, method, role, target))
                marks = [] if known is None else [pytest.mark.xfail(reason=known, strict=True)]
                yield pytest.param(
                    name, method, role, target, marks=marks, id=f"{name}-{method}-{role}-{target}"
                )


def _client(world: World, name: str, role: str | None) -> Any:
    if _is_api(name):
        client = KeyedClient()
        if role is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens[role]}")
        return client
    client = Client()
    if role is not None:
        client.force_login(world.users[role])
    return client


def _call(world: World, name: str, method: str, role: str | None, target: str) -> Any:
    rule = RULES[(name, method)]
    side = world.side(target)
    # A form or body names the other institution's object; the rest (the page) is A's.
    url = reverse(name, kwargs=rule.args(world.own if rule.scope == "named" else side))
    client = _client(world, name, role)
    if method == "GET":
        return client.get(url)
    body = rule.body(world, side)
    if _is_api(name) and not rule.recon:
        return client.post(url, body, format="json")
    return client.post(url, body)  # a form, or the statement upload's multipart body


def _expected(rule: Rule, role: str, target: str) -> str:
    """``refused`` (403), ``allowed`` or ``hidden`` (the other institution's object)."""
    if role not in rule.roles:
        return "refused"
    if role == "platform" or target != "other" or rule.scope == "open":
        return "allowed"
    return "hidden"


@pytest.mark.parametrize(("name", "method", "role", "target"), list(_cells()))
def test_the_documented_answer(world, name, method, role, target):
    rule = RULES[(name, method)]
    answer = _call(world, name, method, role, target)
    text = b"".join(answer.streaming_content if answer.streaming else [answer.content]).decode()
    status = answer.status_code
    expected = _expected(rule, role, target)
    side = world.side(target)
    if expected == "refused":
        assert status == 403, (status, text[:300])
    elif expected == "allowed":
        assert status not in (401, 403, 404) and status < 500, (status, text[:300])
        if method == "GET":
            assert status == 200, (status, text[:300])
        if rule.shows is not None:
            assert rule.shows(side) in text, f"{rule.shows(side)!r} is not shown"
        if rule.hides is not None and target == "other" and role != "platform":
            shown = [hidden for hidden in rule.hides(side) if hidden in text]
            assert not shown, f"LEAK: the other institution's {shown} shown"
        if _is_api(name):
            assert "no such" not in text, text[:300]
    elif rule.scope == "list":
        assert status == 200, (status, text[:300])
        assert rule.shows is not None and rule.shows(side) not in text, (
            f"LEAK: the other institution's {rule.shows(side)!r} is listed"
        )
    elif rule.scope == "named" and _is_api(name):
        assert status == 400, (status, text[:300])
        assert answer.json()["error"]["fields"]["department"] == ["no such department"]
    elif rule.scope == "named":  # the form, shown again with the other's object refused
        assert rule.changed is not None and not rule.changed(side), (
            "LEAK: the other institution's object was changed"
        )
        assert status == 200, (status, answer.get("Location"))
    else:
        assert status == 404, (status, text[:300])


@pytest.mark.parametrize(
    ("name", "method"),
    list(RULES),
    ids=[f"{name}-{method}" for name, method in RULES],
)
def test_anonymous_callers_are_sent_to_sign_in(world, name, method):
    """No credentials: the API answers 401, a page sends to the sign-in page."""
    answer = _call(world, name, method, None, RULES[(name, method)].targets[0])
    if _is_api(name):
        assert answer.status_code == 401, answer.content[:300]
    else:
        assert answer.status_code == 302
        assert answer["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("role", ["finance", "admin", "platform"])
def test_a_ledger_check_is_the_platforms(world, role):
    """The ledger's check reads the whole city's ledger and belongs to no institution: the
    platform's operators see it, an institution's finance desk does not (404)."""
    expected = 200 if role == "platform" else 404
    client = _client(world, "recon-batch", role)
    answer = client.get(reverse("recon-batch", kwargs={"batch_id": world.ledger_check.pk}))
    assert answer.status_code == expected, answer.content[:300]
    page = _client(world, "finance-batch", role)
    url = reverse("finance-batch", kwargs={"batch_id": world.ledger_check.pk})
    assert page.get(url).status_code == expected
