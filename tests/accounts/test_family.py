"""亲情付 rules, the 18th-birthday boundary, caps, revocation and the funding-line selector."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from accounts.exceptions import FamilyRuleViolated
from accounts.models import AuditEvent, FamilyLink
from accounts.selectors import funding_line_for
from accounts.services.credit_lines import credit_line_freeze
from accounts.services.family import family_link_revoke, family_links_lapse
from ledger import services as ledger
from tests.factories import grant_line, link_family

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 23)


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


def link(payer, beneficiary, relation="parent_of_minor", today=TODAY, **kwargs):
    return link_family(payer, beneficiary, relation, today=today, **kwargs)


@pytest.fixture
def parent(make_person):
    return make_person("林母", birth=date(1985, 4, 2))


def test_minor_link_allowed_on_the_day_before_the_18th_birthday(parent, make_person):
    child = make_person("林子", birth=years_before(TODAY + timedelta(days=1), 18))
    created = link(parent, child, today=TODAY)
    assert created.status == "active"


def test_minor_link_refused_on_the_18th_birthday(parent, make_person):
    adult = make_person("林子", birth=years_before(TODAY, 18))
    with pytest.raises(FamilyRuleViolated) as refused:
        link(parent, adult, today=TODAY)
    assert refused.value.field == "beneficiary"
    assert "under 18" in str(refused.value)


def test_link_lapses_on_the_18th_birthday(parent, make_person):
    child = make_person("林子", birth=date(2008, 11, 24))
    created = link(parent, child, today=TODAY)
    assert family_links_lapse(today=date(2026, 11, 23)) == 0
    assert family_links_lapse(today=date(2026, 11, 24)) == 1
    created.refresh_from_db()
    assert created.status == "lapsed"
    assert AuditEvent.objects.filter(action="family_link.lapse").count() == 1
    assert family_links_lapse(today=date(2026, 11, 25)) == 0


def test_lapsed_link_is_not_used_even_before_the_task_runs(parent, make_person, make_partner):
    partner, _ = make_partner()
    grant_line(partner, parent, limit=100_000)
    child = make_person("林子", birth=date(2008, 11, 24))
    link(parent, child, today=TODAY)
    assert funding_line_for(person=child, amount=50_000, today=date(2026, 11, 23)) is not None
    assert funding_line_for(person=child, amount=50_000, today=date(2026, 11, 24)) is None


@pytest.mark.parametrize(
    ("relation", "payer_birth", "beneficiary_birth", "field"),
    [
        ("parent_of_minor", date(2010, 1, 1), date(2020, 1, 1), "payer"),  # payer is a minor
        ("parent_of_minor", date(1990, 1, 1), date(1995, 1, 1), "beneficiary"),  # not a minor
        ("child_of_parent", date(1990, 1, 1), date(1995, 1, 1), "beneficiary"),  # younger parent
        ("child_of_parent", date(2012, 1, 1), date(1980, 1, 1), "payer"),  # minor payer
        ("sibling", date(1990, 1, 1), date(1992, 1, 1), "relation"),
    ],
)
def test_rule_failures_name_the_input(make_person, relation, payer_birth, beneficiary_birth, field):
    payer = make_person("甲", birth=payer_birth)
    beneficiary = make_person("乙", birth=beneficiary_birth)
    with pytest.raises(FamilyRuleViolated) as refused:
        link(payer, beneficiary, relation=relation)
    assert refused.value.field == field
    assert FamilyLink.objects.count() == 0


def test_consent_is_required_and_recorded(make_person):
    child = make_person("子", birth=date(1990, 1, 1))
    mother = make_person("母", birth=date(1960, 1, 1))
    with pytest.raises(FamilyRuleViolated) as refused:
        link(child, mother, relation="child_of_parent", consent=False)
    assert refused.value.field == "consent"
    made = link(child, mother, relation="child_of_parent", consent_by="子 at the window")
    assert made.consent_by == "子 at the window"
    assert made.consent_channel == "cashier"
    assert made.consent_at <= timezone.now()


def test_a_pair_has_one_active_link_and_a_person_cannot_pay_for_themselves(parent, make_person):
    child = make_person("子", birth=date(2015, 6, 1))
    link(parent, child)
    with pytest.raises(FamilyRuleViolated, match="already linked"):
        link(parent, child)
    with pytest.raises(FamilyRuleViolated) as refused:
        link(parent, parent)
    assert refused.value.field == "beneficiary"


def test_revocation_keeps_what_was_drawn(make_person, make_partner):
    partner, _ = make_partner()
    child = make_person("子", birth=date(1990, 1, 1))
    mother = make_person("母", birth=date(1960, 1, 1))
    line = grant_line(partner, child, limit=100_000)
    made = link(child, mother, relation="child_of_parent")
    ledger.transfer(
        key="draw", debit=line.capacity_account, credit=line.drawn_account, amount=30_000
    )
    family_link_revoke(actor="test", link_id=made.pk)
    made.refresh_from_db()
    assert made.status == "revoked"
    assert funding_line_for(person=mother, amount=1, today=TODAY) is None
    from ledger.selectors import account_balance

    assert account_balance(line.drawn_account).posted == 30_000
    assert family_link_revoke(actor="test", link_id=made.pk).status == "revoked"


def test_selector_prefers_own_line_then_links_in_order(make_person, make_partner):
    bank_a, _ = make_partner()
    bank_b, _ = make_partner()
    child = make_person("子", birth=date(2014, 2, 2))
    mother = make_person("母", birth=date(1984, 1, 1))
    father = make_person("父", birth=date(1983, 1, 1))
    mother_line = grant_line(bank_a, mother, limit=50_000)
    father_line = grant_line(bank_b, father, limit=300_000)
    link(mother, child)
    link(father, child)

    chosen = funding_line_for(person=child, amount=40_000, today=TODAY)
    assert (chosen.line, chosen.via_link.payer) == (mother_line, mother)
    chosen = funding_line_for(person=child, amount=60_000, today=TODAY)
    assert (chosen.line, chosen.via_link.payer) == (father_line, father)
    assert funding_line_for(person=child, amount=300_001, today=TODAY) is None

    credit_line_freeze(actor="test", partner=bank_a, line_id=mother_line.id)
    chosen = funding_line_for(person=child, amount=40_000, today=TODAY)
    assert chosen.line == father_line

    own = grant_line(bank_a, child, limit=50_000)
    chosen = funding_line_for(person=child, amount=40_000, today=TODAY)
    assert (chosen.line, chosen.via_link) == (own, None)


def test_link_cap_limits_what_the_link_can_carry(make_person, make_partner):
    partner, _ = make_partner()
    child = make_person("子", birth=date(2014, 2, 2))
    mother = make_person("母", birth=date(1984, 1, 1))
    grant_line(partner, mother, limit=300_000)
    capped = link(mother, child, cap=80_000)
    assert capped.cap_account is not None
    assert funding_line_for(person=child, amount=80_000, today=TODAY).available == 80_000
    assert funding_line_for(person=child, amount=80_001, today=TODAY) is None
    with pytest.raises(FamilyRuleViolated) as refused:
        link(mother, child, cap=0)
    assert refused.value.field == "cap"
