"""Domain errors: each has a stable code, a status, the field at fault, and a message said in
Chinese on the pages and in English to the API and the logs.

Each error is provoked through the service that raises it; the last tests read the source for
every place a domain error is made and check its message is a translated msgid.
"""

import ast
import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy

from accounts.exceptions import (
    CreditLineStateError,
    FamilyRuleViolated,
    InvalidInput,
    NoTierForScore,
    PersonExists,
)
from accounts.identity import InvalidIdNumber
from accounts.selectors import person_id_number
from accounts.services.credit_lines import credit_line_close, credit_line_grant
from accounts.services.family import family_link_create, family_link_revoke, family_links_lapse
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create, tier_limit
from accounts.services.persons import person_create
from accounts.services.staff import staff_create
from core.errors import DomainError, in_english
from ledger import services as ledger
from ledger.exceptions import (
    AlreadyReversed,
    CrossLedgerTransfer,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InvalidPosting,
    LedgerError,
    LimitExceeded,
    NotReversible,
)
from ledger.models import Ledger, Side
from settlement.exceptions import (
    AlreadySettled,
    EncounterStateError,
    RepaymentConflict,
    SelfPayNotCovered,
    SettlementInputError,
)
from settlement.models import Charge, Receivable
from settlement.services.deposit_table import deposit_row_save, deposit_table_import
from settlement.services.encounters import (
    ChargeItem,
    charge_reverse,
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.repayments import repayment_apply
from settlement.services.settle import encounter_settle
from tests.factories import INSURER_DOWN, make_id_number

CJK = re.compile(r"[\u4e00-\u9fff]")
ROOT = Path(settings.BASE_DIR)


def said(error: DomainError) -> tuple[str, str]:
    """The error's message in English and in Chinese, checked to be a translation."""
    english = in_english(error.public)
    assert english == str(error) or error.public_message is not None
    with translation.override("zh-hans"):
        chinese = str(error.public)
        own = str(error.message)
    assert chinese != english and CJK.search(chinese), (english, chinese)
    assert own != str(error) and CJK.search(own), (str(error), own)
    return english, chinese


def refused(call: Callable[[], Any], kind: type[DomainError]) -> DomainError:
    with pytest.raises(kind) as caught:
        call()
    return caught.value


def check(
    call: Callable[[], Any],
    kind: type[DomainError],
    *,
    code: str,
    status: int,
    field: str | None = None,
    english: str | None = None,
) -> tuple[str, str]:
    error = refused(call, kind)
    assert type(error) is kind
    assert (error.code, error.status, error.field) == (code, status, field)
    words = said(error)
    if english is not None:
        assert words[0] == english
    return words


# --- a hospital, people and a bank, made through the services ---------------------------------


@pytest.fixture
def ward():
    institution = institution_ensure(actor="test", code="XMERR", name="厦门市错误医院")
    department = department_ensure(
        actor="test", institution=institution, code="IM", name="内科", default_deposit=0
    )
    department.refresh_from_db()
    return department


@pytest.fixture
def people(make_person):
    return {
        "parent": make_person("王父", birth=date(1955, 3, 1)),
        "adult": make_person("王成", birth=date(1982, 6, 1)),
        "child": make_person("王小", birth=date(2016, 9, 1)),
    }


@pytest.fixture
def bank(make_partner):
    partner, _client = make_partner("错误测试银行")
    return partner


def charge(**changes: Any) -> ChargeItem:
    item = {
        "code": "C1",
        "name": "诊查费",
        "category": "exam",
        "insurance_class": "C",
        "quantity": Decimal(1),
        "unit_price": 5_000,
        "service_date": timezone.localdate(),
    }
    return ChargeItem(**{**item, **changes})


def admitted(ward, person) -> Any:
    return encounter_admit(actor="test", person=person, department=ward, kind="outpatient")


def post(encounter, *items: ChargeItem) -> list[Charge]:
    return charges_post(actor="test", encounter_id=encounter.pk, items=list(items), key=uuid4().hex)


def settle_insurer_down(encounter, channel: str | None = None) -> Any:
    with override_settings(INSURER_URL=INSURER_DOWN, INSURER_TIMEOUT_SECONDS=1):
        return encounter_settle(actor="test", encounter_id=encounter.pk, channel=channel)


# --- accounts ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_id_number_refused_says_why_in_chinese():
    born = date(1990, 1, 1)
    good = make_id_number(born)
    cases = {
        "12345": "an ID number has 18 characters",
        good[:17] + "Y": "an ID number is 17 digits and a digit or X",
        "99" + good[2:]: "the ID number's region code is not a province of China",
        good[:17] + ("0" if good[-1] != "0" else "1"): "the ID number's check digit is wrong",
    }
    for number, english in cases.items():
        check(
            lambda n=number: person_create(actor="test", name="李四", id_number=n),
            InvalidIdNumber,
            code="invalid",
            status=400,
            field="id_number",
            english=english,
        )


@pytest.mark.django_db
def test_a_name_or_phone_refused_says_why_in_chinese():
    number = make_id_number(date(1990, 2, 2))
    for name, english in (
        ("", "a name of 1 to 100 characters is needed"),
        ("李\x07四", "a name cannot hold control characters"),
        ("\u3164", "a name needs at least one visible character"),
    ):
        check(
            lambda n=name: person_create(actor="test", name=n, id_number=number),
            InvalidInput,
            code="invalid",
            status=400,
            field="name",
            english=english,
        )
    check(
        lambda: person_create(actor="test", name="李四", id_number=number, phone="12345"),
        InvalidInput,
        code="invalid",
        status=400,
        field="phone",
        english="a mainland mobile number has 11 digits starting with 1",
    )


@pytest.mark.django_db
def test_enrolling_someone_twice_is_person_exists(people):
    number = person_id_number(people["adult"])
    _english, chinese = check(
        lambda: person_create(actor="test", name="王成", id_number=number),
        PersonExists,
        code="person_exists",
        status=409,
        field="id_number",
        english="a person with this ID number is already enrolled",
    )
    assert "已登记" in chinese


@pytest.mark.django_db
def test_family_rules_refused_name_the_input_and_say_it_in_chinese(people):
    parent, adult, child = people["parent"], people["adult"], people["child"]

    def link(payer, beneficiary, relation="parent_of_minor", consent=True, **kwargs):
        return lambda: family_link_create(
            actor="test",
            payer=payer,
            beneficiary=beneficiary,
            relation=relation,
            consent=consent,
            consent_by=payer.name,
            consent_channel=kwargs.pop("channel", "cashier"),
            **kwargs,
        )

    cases = [
        (link(adult, child, relation="cousin"), "relation"),
        (link(adult, adult), "beneficiary"),
        (link(adult, child, consent=False), "consent"),
        (link(child, adult, relation="child_of_parent"), "payer"),
        (link(adult, parent), "beneficiary"),  # a parent_of_minor link to an adult
        (link(parent, adult, relation="child_of_parent"), "beneficiary"),  # to someone younger
        (link(adult, child, channel="fax"), "consent"),
        (link(adult, child, cap=0), "cap"),
    ]
    messages = set()
    for call, field in cases:
        english, _chinese = check(
            call, FamilyRuleViolated, code="family_rule", status=400, field=field
        )
        messages.add(english)
    assert len(messages) == len(cases)
    link(adult, child)()
    _english, chinese = check(
        link(adult, child), FamilyRuleViolated, code="family_rule", status=400, field="beneficiary"
    )
    assert "已有亲情付关系" in chinese


@pytest.mark.django_db
def test_revoking_a_lapsed_link_is_a_credit_line_state_error(people, make_person):
    adult = people["adult"]
    younger = make_person("王幼", birth=date(2015, 1, 1))
    link = family_link_create(
        actor="test",
        payer=adult,
        beneficiary=younger,
        relation="parent_of_minor",
        consent=True,
        consent_by=adult.name,
        consent_channel="cashier",
    )
    assert family_links_lapse(today=date(2033, 1, 2)) == 1
    check(
        lambda: family_link_revoke(actor="test", link_id=link.pk),
        CreditLineStateError,
        code="credit_line_state",
        status=409,
        english="the link has already lapsed",
    )


@pytest.mark.django_db
def test_credit_line_refusals_say_why_in_chinese(bank, people):
    adult = people["adult"]
    number = person_id_number(adult)

    def grant(**kwargs):
        values = {"score": 650, "score_provider": "白鹭分", **kwargs}
        return lambda: credit_line_grant(
            actor="test", partner=bank, id_number=number, name=adult.name, **values
        )

    for call, field in (
        (grant(score=10_001), "score"),
        (grant(score_provider=""), "score_provider"),
        (grant(limit=-1), "limit"),
        (grant(expires_on=timezone.localdate()), "expires_on"),
    ):
        check(call, InvalidInput, code="invalid", status=400, field=field)
    line, _new = grant()()
    credit_line_close(actor="test", partner=bank, line_id=line.pk)
    check(
        lambda: credit_line_close(actor="test", partner=bank, line_id=line.pk),
        CreditLineStateError,
        code="credit_line_state",
        status=409,
        english="the credit line is already closed",
    )


@pytest.mark.django_db
def test_partner_staff_and_institution_inputs_refused_in_chinese(bank, people):
    home = institution_ensure(actor="test", code="XMH1", name="厦门市第一医院")
    for call, field in (
        (lambda: partner_create(actor="test", name=""), "name"),
        (lambda: partner_create(actor="test", name=bank.name), "name"),
        (lambda: partner_create(actor="test", name="新银行", grace_days=400), "grace_days"),
        (lambda: partner_create(actor="test", name="新银行", tiers=()), "tiers"),
        (lambda: partner_create(actor="test", name="新银行", tiers=((0, 0),)), "tiers"),
        (lambda: staff_create(actor="test", username="x", role="boss", institution=None), "role"),
        (
            lambda: staff_create(actor="test", username="", role="cashier", institution=home),
            "username",
        ),
        (
            lambda: staff_create(actor="test", username="x", role="cashier", institution=None),
            "institution",
        ),
        (
            lambda: staff_create(actor="test", username="x", role="platform", institution=home),
            "institution",
        ),
        (lambda: institution_ensure(actor="test", code="X Y", name="医院"), "code"),
        (lambda: institution_ensure(actor="test", code="XY", name=""), "name"),
        (lambda: institution_ensure(actor="test", code="X", name="X", kind="zoo"), "kind"),
    ):
        check(call, InvalidInput, code="invalid", status=400, field=field)


@pytest.mark.django_db
def test_a_score_no_tier_covers_is_refused_in_chinese(bank):
    bank.tiers.all().delete()
    english, chinese = check(
        lambda: tier_limit(bank, 300), InvalidInput, code="invalid", status=400, field="score"
    )
    assert english == f"no tier of {bank.name} covers score 300"
    assert bank.name in chinese and "300" in chinese


def test_no_tier_for_score_has_its_code():
    # Declared for the API's error shape; the services say a missing tier as InvalidInput.
    assert (NoTierForScore.code, NoTierForScore.status) == ("no_tier", 400)


# --- admission, charges, settlement -----------------------------------------------------------


@pytest.mark.django_db
def test_admission_deposit_and_charge_inputs_refused_with_the_field(ward, people):
    person = people["adult"]
    check(
        lambda: encounter_admit(actor="test", person=person, department=ward, kind="daycare"),
        SettlementInputError,
        code="invalid",
        status=400,
        field="kind",
    )
    encounter = admitted(ward, person)

    def deposit(amount: int, channel: str) -> Callable[[], Any]:
        return lambda: deposit_pay(
            actor="test", encounter_id=encounter.pk, amount=amount, channel=channel, key="k"
        )

    check(deposit(100, "barter"), SettlementInputError, code="invalid", status=400, field="channel")
    check(deposit(0, "cash"), SettlementInputError, code="invalid", status=400, field="amount")
    check(
        lambda: post(encounter),
        SettlementInputError,
        code="invalid",
        status=400,
        field="items",
        english="post 1 to 500 charge lines",
    )
    later = timezone.localdate() + timedelta(days=1)
    for item, item_field in (
        (charge(insurance_class="D"), "insurance_class"),
        (charge(quantity=Decimal("0.0001")), "quantity"),
        (charge(unit_price=-1), "unit_price"),
        (charge(service_date=later), "service_date"),
        (charge(name=" "), None),
    ):
        error = refused(lambda i=item: post(encounter, charge(), i), SettlementInputError)
        assert (error.code, error.field, error.item_field) == ("invalid", "items[1]", item_field)
        said(error)


@pytest.mark.django_db
def test_reversal_refusals_say_why_in_chinese(ward, people):
    encounter = admitted(ward, people["adult"])
    [line] = post(encounter, charge())
    check(
        lambda: charge_reverse(actor="test", charge_id=line.pk, reason=""),
        SettlementInputError,
        code="invalid",
        status=400,
        field="reason",
    )
    reversal = charge_reverse(actor="test", charge_id=line.pk, reason="录错")
    _english, chinese = check(
        lambda: charge_reverse(actor="test", charge_id=reversal.pk, reason="再冲"),
        EncounterStateError,
        code="encounter_state",
        status=409,
        english="a reversing line cannot itself be reversed",
    )
    assert "冲红" in chinese
    check(
        lambda: charge_reverse(actor="test", charge_id=line.pk, reason="再冲"),
        EncounterStateError,
        code="encounter_state",
        status=409,
        english="this charge line is already reversed",
    )


@pytest.mark.django_db
def test_settling_without_cover_asks_for_a_channel_in_chinese(ward, people):
    encounter = admitted(ward, people["adult"])
    post(encounter, charge(unit_price=12_345))
    check(
        lambda: settle_insurer_down(encounter, channel="barter"),
        SettlementInputError,
        code="invalid",
        status=400,
        field="channel",
        english="unknown payment channel",
    )
    english, chinese = check(
        lambda: settle_insurer_down(encounter),
        SelfPayNotCovered,
        code="self_pay_not_covered",
        status=409,
        field="channel",
    )
    assert english.startswith("123.45 yuan of self-pay")
    assert "123.45" in chinese and "支付方式" in chinese


@pytest.mark.django_db
def test_a_settled_encounter_refuses_settling_and_charges_in_chinese(ward, people):
    encounter = admitted(ward, people["adult"])
    post(encounter, charge())
    settle_insurer_down(encounter, channel="cash")
    _english, chinese = check(
        lambda: settle_insurer_down(encounter, channel="cash"),
        AlreadySettled,
        code="already_settled",
        status=409,
        english="the encounter is already settled",
    )
    assert "已结算" in chinese
    english, chinese = check(
        lambda: post(encounter, charge()), EncounterStateError, code="encounter_state", status=409
    )
    assert english.startswith("the encounter is settled")  # the code, for the API
    assert "已结算" in chinese and "settled" not in chinese  # a word, for the page


@pytest.mark.django_db
def test_repayment_refusals_name_the_field_in_chinese(draws):
    partner, _references = draws
    receivable = Receivable.objects.filter(partner=partner).order_by("amount").first()
    paid_at = timezone.now()

    def repay(amount: int, txn: str) -> Callable[[], Any]:
        return lambda: repayment_apply(
            partner=partner,
            receivable_id=str(receivable.pk),
            amount=amount,
            bank_txn_id=txn,
            paid_at=paid_at,
        )

    check(repay(100, ""), SettlementInputError, code="invalid", status=400, field="bank_txn_id")
    check(repay(0, "T0"), SettlementInputError, code="invalid", status=400, field="amount")
    english, chinese = check(
        repay(receivable.outstanding + 1, "T1"),
        SettlementInputError,
        code="invalid",
        status=400,
        field="amount",
    )
    assert english == "the amount is more than the outstanding 100.00"
    assert "100.00" in chinese
    repay(100, "T2")()
    check(
        repay(200, "T2"),
        RepaymentConflict,
        code="repayment_conflict",
        status=409,
        field="bank_txn_id",
    )


@pytest.mark.django_db
def test_deposit_table_refusals_say_the_line_in_chinese(ward):
    institution = ward.institution
    for text, english in (
        ("code,name\nA1,x\n", None),
        ("diagnosis_code,name,amount\n", "the file has no rows"),
        ("diagnosis_code,name,amount\nA1,x,abc\n", "line 2: amount 'abc' is not yuan"),
        ("diagnosis_code,name,amount\nA1,x,1.234\n", None),
        ("diagnosis_code,name,amount\nA1,x,10\nA1,y,20\n", "line 3: A1 appears twice"),
    ):
        _english, chinese = check(
            lambda t=text: deposit_table_import(actor="test", institution=institution, text=t),
            SettlementInputError,
            code="invalid",
            status=400,
            english=english,
        )
    deposit_row_save(actor="test", institution=institution, diagnosis_code="B1", name="b", amount=1)
    for code, amount, field in (("", 100, "diagnosis_code"), ("B2", 0, "amount"), ("B1", 5, None)):
        check(
            lambda c=code, a=amount: deposit_row_save(
                actor="test", institution=institution, diagnosis_code=c, name="x", amount=a
            ),
            SettlementInputError,
            code="invalid",
            status=400,
            field=field or "diagnosis_code",
        )


# --- the ledger -------------------------------------------------------------------------------


@pytest.fixture
def accounts():
    def account(code: str, **flags: Any):
        return ledger.account_create(
            code=f"test:errors:{code}", ledger=Ledger.MONEY, normal_side=Side.DEBIT, **flags
        )

    return {
        "cash": account("cash"),
        "bank": account("bank"),
        "capped": account("capped", debits_must_not_exceed_credits=True),
        "credit": ledger.account_create(
            code="test:errors:credit", ledger=Ledger.CREDIT, normal_side=Side.DEBIT
        ),
    }


def ledger_check(call: Callable[[], Any], kind: type[LedgerError], code: str, status: int) -> str:
    error = refused(call, kind)
    assert type(error) is kind and (error.code, error.status) == (code, status)
    said(error)
    return str(error)


@pytest.mark.django_db
def test_ledger_refusals_have_codes_and_translations(accounts):
    cash, bank, capped = accounts["cash"], accounts["bank"], accounts["capped"]

    def move(debit, credit, amount, key=None):
        return lambda: ledger.transfer(
            key=key or uuid4().hex, debit=debit, credit=credit, amount=amount
        )

    ledger_check(move(cash, bank, 0), InvalidPosting, "invalid_posting", 400)
    ledger_check(move(cash, bank, "1"), InvalidPosting, "invalid_posting", 400)
    ledger_check(move(cash, cash, 100), InvalidPosting, "invalid_posting", 400)
    ledger_check(move(cash, accounts["credit"], 100), CrossLedgerTransfer, "cross_ledger", 400)
    ledger_check(
        lambda: ledger.account_create(
            code="test:errors:cash", ledger=Ledger.MONEY, normal_side=Side.CREDIT
        ),
        InvalidPosting,
        "invalid_posting",
        400,
    )
    move(cash, bank, 100, key="once")()
    assert "'once'" in ledger_check(
        move(cash, bank, 200, key="once"), IdempotencyConflict, "idempotency_conflict", 409
    )
    limit = refused(move(capped, bank, 100), LimitExceeded)
    assert (limit.code, limit.status) == ("limit_exceeded", 409)
    assert "test:errors:capped" in str(limit)  # for the logs
    english, chinese = said(limit)
    assert english == "the credit line (or its family cap) does not have room for this"
    assert "test:errors" not in english + chinese  # internal names stay in the logs


@pytest.mark.django_db
def test_ledger_reversal_and_hold_refusals_have_codes_and_translations(accounts):
    cash, bank = accounts["cash"], accounts["bank"]
    posted = ledger.transfer(key=uuid4().hex, debit=cash, credit=bank, amount=100)

    def reverse(transaction_id):
        return lambda: ledger.transaction_reverse(key=uuid4().hex, transaction_id=transaction_id)

    ledger_check(reverse(uuid4()), NotReversible, "not_reversible", 409)
    reversal = reverse(posted.pk)()
    ledger_check(reverse(posted.pk), AlreadyReversed, "already_reversed", 409)
    ledger_check(reverse(reversal.pk), NotReversible, "not_reversible", 409)
    hold = ledger.hold_create(key=uuid4().hex, debit=cash, credit=bank, amount=100)
    ledger_check(
        lambda: ledger.hold_post(key=uuid4().hex, hold_id=hold.pk, amount=200),
        InvalidPosting,
        "invalid_posting",
        400,
    )
    ledger.hold_void(key=uuid4().hex, hold_id=hold.pk)
    ledger_check(
        lambda: ledger.hold_post(key=uuid4().hex, hold_id=hold.pk),
        HoldNotPending,
        "hold_not_pending",
        409,
    )
    expired = ledger.hold_create(
        key=uuid4().hex,
        debit=cash,
        credit=bank,
        amount=100,
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    ledger_check(
        lambda: ledger.hold_post(key=uuid4().hex, hold_id=expired.pk),
        HoldExpired,
        "hold_expired",
        409,
    )


# --- every domain error in the source: a translated msgid -------------------------------------

PACKAGES = ("accounts", "settlement", "ledger", "core")
TRANSLATORS = {"_": None, "gettext_lazy": None, "pgettext_lazy": "context"}


def _domain_error_classes() -> dict[str, type[DomainError]]:
    found: dict[str, type[DomainError]] = {}
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _msgid(node: ast.expr) -> tuple[str | None, str] | None:
    """``(context, msgid)`` of a gettext_lazy/pgettext_lazy call on literals, else None."""
    if not isinstance(node, ast.Call) or _name(node.func) not in TRANSLATORS:
        return None
    texts = [a.value for a in node.args if isinstance(a, ast.Constant)]
    if len(texts) != len(node.args) or not all(isinstance(t, str) for t in texts):
        return None
    if _name(node.func) == "pgettext_lazy":
        return (texts[0], texts[1]) if len(texts) == 2 else None
    return (None, texts[0]) if len(texts) == 1 else None


def _params(call: ast.Call) -> set[str] | None:
    for keyword in call.keywords:
        if keyword.arg == "params" and isinstance(keyword.value, ast.Dict):
            return {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)}
    return None


def _made_errors() -> Iterator[tuple[str, ast.Call, tuple[str | None, str] | None]]:
    """Every call that makes a domain error (its class takes a message first)."""
    classes = _domain_error_classes()
    takes_message = {name for name, cls in classes.items() if cls.__init__ is DomainError.__init__}
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in takes_message:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                yield where, node, _msgid(node.args[0]) if node.args else None
            elif isinstance(node, ast.ClassDef) and node.name in classes:
                # A class of its own __init__ passes its message on to DomainError's.
                parent = classes[node.name].__mro__[1]
                if getattr(parent, "__init__", None) is not DomainError.__init__:
                    continue
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Call)
                        and isinstance(inner.func, ast.Attribute)
                        and inner.func.attr == "__init__"
                    ):
                        where = f"{path.relative_to(ROOT)}:{inner.lineno}"
                        yield where, inner, _msgid(inner.args[0]) if inner.args else None


def _translated(context: str | None, msgid: str) -> str:
    with translation.override("zh-hans"):
        if context is None:
            return translation.gettext(msgid)
        return translation.pgettext(context, msgid)


PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def test_every_domain_error_made_in_the_source_has_a_translated_msgid():
    made = list(_made_errors())
    assert len(made) > 100  # every service's refusals, not a handful
    problems = []
    for where, call, msgid in made:
        if msgid is None:
            problems.append(f"{where}: the message is not a gettext_lazy literal")
            continue
        context, text = msgid
        chinese = _translated(context, text)
        if chinese == text or not CJK.search(chinese):
            problems.append(f"{where}: no zh-Hans translation of {text!r}")
        wanted = set(PLACEHOLDER.findall(text))
        given = _params(call) or set()
        if wanted != given and not (wanted <= given):
            problems.append(f"{where}: placeholders {sorted(wanted)}, params {sorted(given)}")
        if set(PLACEHOLDER.findall(chinese)) != wanted:
            problems.append(f"{where}: the translation of {text!r} changes its placeholders")
    assert not problems, "\n".join(problems)


def test_every_lazy_msgid_of_the_services_is_in_the_catalog():
    """What services say beside their errors (status words, the identity checks)."""
    problems = []
    count = 0
    for path in _sources():
        if "web" in path.parts:
            continue  # the pages' own text is checked by the page tests
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            msgid = _msgid(node) if isinstance(node, ast.expr) else None
            if msgid is None:
                continue
            count += 1
            chinese = _translated(*msgid)
            if chinese == msgid[1] or not CJK.search(chinese):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {msgid!r}")
    assert count > 100
    assert not problems, "\n".join(problems)


def test_the_catalog_has_no_fuzzy_or_empty_entries():
    text = (ROOT / "locale/zh_Hans/LC_MESSAGES/django.po").read_text()
    assert "#, fuzzy" not in text
    entries = text.split("\n\n")[1:]  # the first is the header
    empty = [e for e in entries if e.rstrip().endswith('msgstr ""')]
    assert not empty, empty


def test_str_of_an_error_is_english_and_its_message_follows_the_language():
    error = SettlementInputError(
        gettext_lazy("the amount is more than the outstanding %(outstanding)s"),
        field="amount",
        params={"outstanding": "10.00"},
    )
    with translation.override("zh-hans"):
        assert str(error) == "the amount is more than the outstanding 10.00"
        assert str(error.message) == "金额超过了未还金额 10.00 元。"
    with translation.override("en"):
        assert str(error.message) == "the amount is more than the outstanding 10.00"


@pytest.mark.django_db
def test_the_api_says_a_domain_error_in_english_whatever_the_language_asked(staff_client, people):
    client = staff_client("cashier")
    number = person_id_number(people["adult"])
    for language in ("zh-hans", "en"):
        answer = client.post(
            "/api/v1/persons/",
            {"name": "王成", "id_number": number},
            format="json",
            HTTP_ACCEPT_LANGUAGE=language,
        )
        message = "a person with this ID number is already enrolled"
        assert answer.status_code == 409
        assert answer.json() == {
            "error": {
                "code": "person_exists",
                "message": message,
                "fields": {"id_number": [message]},
            }
        }


# --- the statement parsers' refusals: a translated msgid too --------------------------------

# What makes a StatementFormatError, and the position of its message among the arguments: a
# refused upload's domain error carries the parser's message to the finance pages.
STATEMENT_ERROR_MAKERS = {"StatementFormatError": 0, "at_line": 1}
STATEMENTS = "settlement/reconciliation/statements.py"
STATEMENT_ENTRY_MAKERS = {"fail": 0}  # the camt.053 parser's own, in STATEMENTS only


def _statement_error_problems(source: str, where: str) -> tuple[int, list[str]]:
    """``(calls, problems)``: each call making a statement error in ``source`` whose message
    is not a translated gettext_lazy literal (or a name given only such literals) with its
    params."""
    tree = ast.parse(source, where)
    makers = dict(STATEMENT_ERROR_MAKERS)
    if where == STATEMENTS:
        makers.update(STATEMENT_ENTRY_MAKERS)
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
    calls = 0
    problems: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _name(node.func) in makers):
            continue
        calls += 1
        at = f"{where}:{node.lineno}"
        position = makers[_name(node.func)]  # type: ignore[index]
        if len(node.args) <= position:
            problems.append(f"{at}: no message")
            continue
        message = node.args[position]
        given: set[str] = set()
        params = [k.value for k in node.keywords if k.arg == "params"]
        params += node.args[position + 1 : position + 2]
        for value in params:
            if isinstance(value, ast.Dict):
                given |= {k.value for k in value.keys if isinstance(k, ast.Constant)}
        if isinstance(message, ast.Name) and message.id in assigned:
            messages = assigned[message.id]
        else:
            messages = [message]
        for each in messages:
            msgid = _msgid(each)
            if msgid is None:
                problems.append(f"{at}: the message is not a gettext_lazy literal")
                continue
            context, text = msgid
            chinese = _translated(context, text)
            if chinese == text or not CJK.search(chinese):
                problems.append(f"{at}: no zh-Hans translation of {text!r}")
            wanted = set(PLACEHOLDER.findall(text))
            if not wanted <= given:
                problems.append(f"{at}: placeholders {sorted(wanted)}, params {sorted(given)}")
            if set(PLACEHOLDER.findall(chinese)) != wanted:
                problems.append(f"{at}: the translation of {text!r} changes its placeholders")
    return calls, problems


def test_every_statement_refusal_in_the_source_has_a_translated_msgid():
    calls = 0
    problems = []
    for path in _sources():
        where = str(path.relative_to(ROOT))
        found, wrong = _statement_error_problems(path.read_text(), where)
        calls += found
        problems += wrong
    assert calls > 50  # the parsers' every refusal, and the upload's own check
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        'raise StatementFormatError(f"line {line}: amount is zero", line_no=line)',
        'raise StatementFormatError("the file is empty")',
        'raise at_line(line, "amount is zero")',
        'raise at_line(line, f"expected 4 fields, found {count}")',
        'raise at_line(line, _("expected 4 fields, found %(count)s"))',  # no params
        'raise StatementFormatError(_("a refusal nobody translated"))',
        'raise fail("no Amt")',
        'message = "the file is empty"\nraise StatementFormatError(message)',
    ],
)
def test_a_statement_refusal_without_a_translated_msgid_is_found(source):
    calls, problems = _statement_error_problems(source, STATEMENTS)
    assert calls == 1
    assert len(problems) == 1, problems
