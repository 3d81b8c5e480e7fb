"""Credit lines at the service level: ledger accounts, limits, shortfalls, audit, the command."""

import itertools
import json
from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from accounts import crypto
from accounts.exceptions import CreditLineStateError, InvalidInput
from accounts.models import AuditEvent, CreditLine, Partner, PartnerKey, Person
from accounts.services import credit_lines
from accounts.services.credit_lines import (
    credit_line_close,
    credit_line_freeze,
    credit_line_grant,
    credit_line_unfreeze,
    partner_pool,
)
from accounts.services.partners import partner_create
from ledger import services as ledger
from ledger.exceptions import IdempotencyConflict
from ledger.models import IdempotencyRecord, Transaction
from ledger.selectors import account_balance
from ledger.verification import verify_ledger

pytestmark = pytest.mark.django_db

_keys = itertools.count(1)


@pytest.fixture
def partner():
    partner, _, _ = partner_create(actor="test", name="厦门银行")
    return partner


def grant(partner: Partner, number: str, **kwargs):
    kwargs.setdefault("score", 650)
    kwargs.setdefault("score_provider", "baihang")
    return credit_line_grant(actor="bank", partner=partner, id_number=number, name="张三", **kwargs)


def available(line: CreditLine) -> int:
    return account_balance(line.capacity_account).available


def drawn(line: CreditLine) -> int:
    return account_balance(line.drawn_account).posted


def draw(line: CreditLine, amount: int) -> None:
    ledger.transfer(
        key=f"test-draw-{next(_keys)}",
        debit=line.capacity_account,
        credit=line.drawn_account,
        amount=amount,
    )


def hold(line: CreditLine, amount: int):
    return ledger.hold_create(
        key=f"test-hold-{next(_keys)}",
        debit=line.capacity_account,
        credit=partner_pool(line.partner),
        amount=amount,
    )


def audits(line: CreditLine) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(object_type="creditline", object_id=str(line.pk)).order_by("id")
    )


def assert_ledger_intact() -> None:
    ledger.chain_seal()
    report = verify_ledger()
    assert report.intact, report.problems


# --- grant and limits -------------------------------------------------------------------------


def test_grant_creates_both_ledger_accounts_and_posts_the_limit(partner, id_number):
    line, created = grant(partner, id_number(date(1980, 1, 2)), limit=150_000)

    assert created is True
    assert line.limit == 150_000
    assert line.capacity_account.ledger == "credit"
    assert line.drawn_account.ledger == "credit"
    assert line.capacity_account.debits_must_not_exceed_credits is True
    assert line.capacity_account_id != line.drawn_account_id
    assert available(line) == 150_000
    assert drawn(line) == 0
    assert account_balance(partner_pool(partner)).posted == 150_000
    assert_ledger_intact()


def test_grant_without_limit_takes_the_tier_for_the_score(partner, id_number):
    cases = {0: 50_000, 500: 50_000, 501: 100_000, 600: 100_000, 601: 300_000, 10_000: 300_000}
    for score, expected in cases.items():
        line, _ = grant(partner, id_number(date(1975, 3, 4)), score=score)
        assert line.limit == expected, score
        assert available(line) == expected, score


def test_raising_the_limit_adds_capacity(partner, id_number):
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=100_000)

    again, created = grant(partner, number, limit=250_000)

    assert created is False
    assert again.pk == line.pk
    assert again.limit == 250_000
    assert available(again) == 250_000
    assert account_balance(partner_pool(partner)).posted == 250_000


def test_cutting_the_limit_returns_capacity_to_the_pool(partner, id_number):
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=300_000)
    draw(line, 50_000)

    line, _ = grant(partner, number, limit=100_000)

    assert line.limit == 100_000
    assert line.limit_shortfall == 0
    assert available(line) == 50_000
    assert account_balance(partner_pool(partner)).posted == 100_000
    assert_ledger_intact()


def test_cut_below_what_is_drawn_records_a_shortfall_and_keeps_what_is_owed(partner, id_number):
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=100_000)
    draw(line, 60_000)
    owed_before = drawn(line)

    line, _ = grant(partner, number, limit=20_000)

    assert line.limit == 20_000
    assert available(line) == 0
    assert line.limit_shortfall == 40_000  # 60,000 drawn against a 20,000 limit
    assert drawn(line) == owed_before == 60_000
    line.refresh_from_db()
    assert line.limit_shortfall == 40_000


def test_raising_the_limit_after_a_cut_absorbs_the_shortfall_first(partner, id_number):
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=100_000)
    draw(line, 60_000)
    owed = drawn(line)
    grant(partner, number, limit=20_000)  # shortfall 40,000

    line, _ = grant(partner, number, limit=50_000)
    assert line.limit_shortfall == 10_000
    assert available(line) == 0

    line, _ = grant(partner, number, limit=100_000)
    assert line.limit_shortfall == 0
    assert available(line) == 40_000  # the limit less what is drawn
    assert drawn(line) == owed
    assert_ledger_intact()


def test_a_draw_reads_as_a_positive_amount_drawn(partner, id_number):
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)
    draw(line, 15_000)

    assert drawn(line) == 15_000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": credit_lines.MAX_LIMIT + 1}, "limit"),
        ({"score": -5}, "score"),
        ({"score_provider": ""}, "score_provider"),
        ({"expires_on": date(2000, 1, 1)}, "expires_on"),
    ],
)
def test_grant_refuses_bad_input_and_writes_nothing(partner, id_number, kwargs, field):
    before = (CreditLine.objects.count(), Person.objects.count(), AuditEvent.objects.count())

    with pytest.raises(InvalidInput) as refused:
        grant(partner, id_number(date(1980, 1, 2)), limit=kwargs.pop("limit", 10_000), **kwargs)

    assert refused.value.field == field
    after = (CreditLine.objects.count(), Person.objects.count(), AuditEvent.objects.count())
    assert after == before


def test_expires_on_today_is_refused(partner, id_number):
    with pytest.raises(InvalidInput):
        grant(partner, id_number(date(1980, 1, 2)), expires_on=timezone.localdate())


# --- one open line per person per bank --------------------------------------------------------


def test_one_open_line_per_person_per_bank(partner, id_number):
    number = id_number(date(1980, 1, 2))
    first, created = grant(partner, number, limit=100_000)
    assert created is True
    second, created = grant(partner, number, limit=100_000)
    assert created is False
    assert second.pk == first.pk
    assert CreditLine.objects.filter(partner=partner).count() == 1


def test_after_close_a_new_grant_opens_a_new_line(partner, id_number):
    number = id_number(date(1980, 1, 2))
    first, _ = grant(partner, number, limit=100_000)
    credit_line_close(actor="bank", partner=partner, line_id=first.pk)

    second, created = grant(partner, number, limit=50_000)

    assert created is True
    assert second.pk != first.pk
    assert second.person_id == first.person_id
    first.refresh_from_db()
    assert first.status == CreditLine.Status.CLOSED
    assert available(first) == 0
    assert available(second) == 50_000
    assert_ledger_intact()


def test_another_bank_gets_its_own_line_for_the_same_person(partner, id_number):
    other, _, _ = partner_create(actor="test", name="兴业银行")
    number = id_number(date(1980, 1, 2))
    mine, _ = grant(partner, number, limit=100_000)

    theirs, created = grant(other, number, limit=100_000)

    assert created is True
    assert theirs.pk != mine.pk
    assert theirs.person_id == mine.person_id
    assert Person.objects.count() == 1


# --- status -----------------------------------------------------------------------------------


def test_freeze_unfreeze_and_close(partner, id_number):
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)

    assert credit_line_freeze(actor="bank", partner=partner, line_id=line.pk).status == "frozen"
    assert credit_line_unfreeze(actor="bank", partner=partner, line_id=line.pk).status == "active"
    closed = credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    assert closed.status == "closed"
    assert closed.closed_at is not None
    assert available(closed) == 0
    assert account_balance(partner_pool(partner)).posted == 0
    assert_ledger_intact()


def test_close_keeps_what_is_drawn_owed(partner, id_number):
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)
    draw(line, 30_000)
    owed = drawn(line)

    credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    assert drawn(line) == owed
    assert available(line) == 0


def test_close_is_refused_while_an_amount_is_held(partner, id_number):
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)
    hold(line, 20_000)
    audit_count = AuditEvent.objects.count()

    with pytest.raises(CreditLineStateError):
        credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    line.refresh_from_db()
    assert line.status == CreditLine.Status.ACTIVE
    assert AuditEvent.objects.count() == audit_count


def test_a_closed_line_cannot_be_frozen_or_unfrozen(partner, id_number):
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)
    credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    with pytest.raises(CreditLineStateError):
        credit_line_freeze(actor="bank", partner=partner, line_id=line.pk)
    with pytest.raises(CreditLineStateError):
        credit_line_unfreeze(actor="bank", partner=partner, line_id=line.pk)


def test_another_banks_line_is_not_found(partner, id_number):
    other, _, _ = partner_create(actor="test", name="兴业银行")
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)

    for change in (credit_line_freeze, credit_line_unfreeze, credit_line_close):
        with pytest.raises(CreditLine.DoesNotExist):
            change(actor="other", partner=other, line_id=line.pk)
    line.refresh_from_db()
    assert line.status == CreditLine.Status.ACTIVE


# --- audit ------------------------------------------------------------------------------------


def test_every_change_writes_an_audit_event(partner, id_number):
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=100_000)
    grant(partner, number, limit=200_000)
    credit_line_freeze(actor="bank", partner=partner, line_id=line.pk)
    credit_line_freeze(actor="bank", partner=partner, line_id=line.pk)  # no change: no event
    credit_line_unfreeze(actor="bank", partner=partner, line_id=line.pk)
    credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    events = audits(line)

    assert [event.action for event in events] == [
        "credit_line.grant",
        "credit_line.update",
        "credit_line.freeze",
        "credit_line.unfreeze",
        "credit_line.close",
    ]
    assert all(event.actor == "bank" for event in events)
    assert events[0].changes["limit"] == 100_000
    assert events[1].changes["limit"] == 200_000
    assert events[2].changes["status"] == ["active", "frozen"]
    assert events[4].changes["status"] == ["active", "closed"]
    assert events[4].changes["capacity_returned"] == 200_000


def test_audit_events_never_hold_the_id_number_in_clear(partner, id_number):
    number = id_number(date(1980, 1, 2))
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    line, _ = grant(partner, number, limit=100_000)
    grant(partner, number.lower(), limit=50_000)
    credit_line_freeze(actor="bank", partner=partner, line_id=line.pk)
    credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    events = list(AuditEvent.objects.filter(id__gt=start))

    assert {event.action for event in events} >= {"person.create", "credit_line.grant"}
    for event in events:
        text = json.dumps(event.changes, ensure_ascii=False)
        assert number not in text
        assert number[6:14] not in text  # not even the birth date part
    person_event = next(event for event in events if event.action == "person.create")
    assert person_event.changes["id_number"] == line.person.id_number_masked


def test_audit_event_is_written_in_the_same_transaction_as_the_change(
    partner, id_number, monkeypatch
):
    """The grant fails at its last step, after the person's enrolment was audited: nothing of
    it stays, that audit row included."""
    before = (
        CreditLine.objects.count(),
        Person.objects.count(),
        AuditEvent.objects.count(),
        Transaction.objects.count(),
    )
    real_audit = credit_lines.audit_record

    def audit_then_fail(**kwargs):
        real_audit(**kwargs)
        if kwargs["action"] == "credit_line.grant":
            assert AuditEvent.objects.count() == before[2] + 2  # person.create, the grant
            raise RuntimeError("the database went away after the grant's audit row")

    monkeypatch.setattr(credit_lines, "audit_record", audit_then_fail)
    with pytest.raises(RuntimeError, match="went away"):
        grant(partner, id_number(date(1980, 1, 2)), limit=100_000)

    after = (
        CreditLine.objects.count(),
        Person.objects.count(),
        AuditEvent.objects.count(),
        Transaction.objects.count(),
    )
    assert after == before


def test_a_grant_owns_its_transaction_and_refuses_to_run_inside_a_callers(partner, id_number):
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        grant(partner, id_number(date(1980, 1, 2)), limit=100_000)
    assert not CreditLine.objects.exists()


def test_ledger_is_intact_after_a_lines_whole_life(partner, id_number):
    number = id_number(date(1980, 1, 2))
    line, _ = grant(
        partner, number, limit=100_000, expires_on=timezone.localdate() + timedelta(days=365)
    )
    held = hold(line, 20_000)
    ledger.hold_post(key=f"test-post-{next(_keys)}", hold_id=held.pk, amount=15_000)
    draw(line, 10_000)
    grant(partner, number, limit=5_000)
    grant(partner, number, limit=300_000)
    credit_line_freeze(actor="bank", partner=partner, line_id=line.pk)
    credit_line_unfreeze(actor="bank", partner=partner, line_id=line.pk)
    credit_line_close(actor="bank", partner=partner, line_id=line.pk)

    assert_ledger_intact()


# --- manage.py create_partner ----------------------------------------------------------------


def run_create_partner(*args: str) -> dict[str, str]:
    out = StringIO()
    call_command("create_partner", *args, stdout=out)
    values = {}
    for line in out.getvalue().splitlines():
        name, sep, value = line.partition("=")
        if sep and name in {"partner_id", "key_id", "secret"}:
            values[name] = value
    return values


@pytest.mark.parametrize(
    ("tiers", "bands"),
    [("0:500, 501:1000,601: 3000 ", [(0, 50_000), (501, 100_000), (601, 300_000)])],
)
def test_create_partner_takes_tiers_in_whole_yuan(tiers, bands):
    printed = run_create_partner("厦门银行", "--tiers", tiers)
    partner = Partner.objects.get(pk=int(printed["partner_id"]))
    assert list(partner.tiers.values_list("min_score", "limit")) == bands


@pytest.mark.parametrize("limit", ["500.50", "500.00", "5e2", "+500", "5_00", "１２", "x", ""])
def test_create_partner_refuses_a_limit_that_is_not_whole_yuan(limit):
    with pytest.raises(CommandError, match="--tiers looks like"):
        run_create_partner("厦门银行", "--tiers", f"0:{limit},501:1000")


def test_create_partner_prints_ids_and_the_secret_once_stored_encrypted():
    printed = run_create_partner("厦门银行", "--webhook-url", "https://bank.example/hooks")

    assert set(printed) == {"partner_id", "key_id", "secret"}
    partner = Partner.objects.get(pk=int(printed["partner_id"]))
    assert partner.name == "厦门银行"
    assert partner.webhook_url == "https://bank.example/hooks"
    assert list(partner.tiers.values_list("min_score", "limit")) == [
        (0, 50_000),
        (501, 100_000),
        (601, 300_000),
    ]
    key = PartnerKey.objects.get(key_id=printed["key_id"])
    assert key.partner == partner
    assert printed["secret"]
    assert printed["secret"] not in key.secret_encrypted
    assert crypto.decrypt(key.secret_encrypted) == printed["secret"]


def test_create_partner_new_key_issues_a_second_key():
    first = run_create_partner("厦门银行")

    second = run_create_partner("厦门银行", "--new-key")

    assert second["partner_id"] == first["partner_id"]
    assert second["key_id"] != first["key_id"]
    assert second["secret"] != first["secret"]
    keys = PartnerKey.objects.filter(partner_id=int(first["partner_id"]), revoked_at__isnull=True)
    assert {key.key_id for key in keys} == {first["key_id"], second["key_id"]}
    assert Partner.objects.filter(name="厦门银行").count() == 1


def test_expiry_is_kept_when_an_update_leaves_it_out(partner, id_number):
    number = id_number(date(1980, 1, 2))
    expiry = timezone.localdate() + timedelta(days=365)
    line, _ = grant(partner, number, limit=100_000, expires_on=expiry)
    updated, created = credit_lines.credit_line_grant(
        actor="test",
        partner=partner,
        id_number=number,
        name="甲",
        score=650,
        score_provider="白鹭分",
        limit=120_000,
    )
    assert (created, updated.pk, updated.expires_on) == (False, line.pk, expiry)
    cleared, _ = credit_lines.credit_line_grant(
        actor="test",
        partner=partner,
        id_number=number,
        name="甲",
        score=650,
        score_provider="白鹭分",
        expires_on=None,
    )
    assert cleared.expires_on is None


def test_a_late_repayment_on_a_closed_line_returns_capacity_to_the_bank(partner, id_number):
    line, _ = grant(partner, id_number(date(1980, 1, 2)), limit=100_000)
    draw(line, 30_000)
    credit_lines.credit_line_close(actor="bank", partner=partner, line_id=line.pk)
    assert available(line) == 0 and drawn(line) == 30_000
    credit_lines.credit_restore(
        key="late-repay", line=line, link=None, amount=30_000, reference="repay"
    )
    assert (available(line), drawn(line)) == (0, 0)
    ledger.chain_seal()
    assert verify_ledger().intact


def test_a_restore_posts_its_shortfall_and_closed_transfers_in_one_linked_batch(partner, id_number):
    """A repayment's restore, the part a limit cut still claims and, on a closed line, the rest
    back to the bank are one batch: all posted under their keys, replayed as they were."""
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=100_000)
    draw(line, 60_000)
    line, _ = grant(partner, number, limit=20_000)  # shortfall 40,000
    credit_lines.credit_line_close(actor="bank", partner=partner, line_id=line.pk)
    line.refresh_from_db()
    pool_before = account_balance(partner_pool(partner)).posted

    credit_lines.credit_restore(key="repay", line=line, link=None, amount=50_000, reference="r")

    line.refresh_from_db()
    assert line.limit_shortfall == 0
    assert (available(line), drawn(line)) == (0, 10_000)
    # 40,000 of the shortfall and the 10,000 freed on the closed line went back to the bank.
    assert account_balance(partner_pool(partner)).posted == pool_before - 50_000
    posted = {
        txn.description: txn
        for txn in Transaction.objects.filter(
            pk__in=IdempotencyRecord.objects.filter(
                key__in=["repay:restore", "repay:shortfall", "repay:closed"]
            ).values("result_id")
        )
    }
    assert set(posted) == {
        "",
        "limit cut taken from a repayment",
        "repaid on a closed line, returned to the bank",
    }
    # Each key replays as a single posting of the same request would.
    again = ledger.transfer(
        key="repay:shortfall",
        debit=line.capacity_account,
        credit=partner_pool(partner),
        amount=40_000,
        reference=f"credit-line:{line.pk}",
        description="limit cut taken from a repayment",
    )
    assert again.pk == posted["limit cut taken from a repayment"].pk
    assert_ledger_intact()


def test_a_refused_member_refuses_the_whole_restore(partner, id_number):
    """Linked: the shortfall transfer's key used before for another request refuses it, and
    with it the restore; nothing of the repayment is written."""
    number = id_number(date(1980, 1, 2))
    line, _ = grant(partner, number, limit=100_000)
    draw(line, 60_000)
    line, _ = grant(partner, number, limit=20_000)  # shortfall 40,000
    line.refresh_from_db()
    ledger.transfer(  # another request under the key the restore's shortfall will use
        key="repay:shortfall",
        debit=partner_pool(partner),
        credit=line.capacity_account,
        amount=1,
    )
    before = (available(line), drawn(line), Transaction.objects.count())

    with pytest.raises(IdempotencyConflict):
        credit_lines.credit_restore(key="repay", line=line, link=None, amount=50_000, reference="r")

    assert (available(line), drawn(line), Transaction.objects.count()) == before
    assert not IdempotencyRecord.objects.filter(key="repay:restore").exists()
    line.refresh_from_db()
    assert line.limit_shortfall == 40_000
