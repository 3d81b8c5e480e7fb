"""Self-enrolment and the monthly score refresh against the shipped credit-score simulator, a
real HTTP server in a child process; banks' webhooks go to a real HTTP server in a thread."""

from typing import Any
from uuid import uuid4

import pytest
from celery.schedules import crontab
from django.conf import settings as django_settings
from django.utils.translation import override
from rest_framework.test import APIClient

from accounts.credit_score.client import citizen_hash
from accounts.credit_score.simulator import as_of
from accounts.models import AuditEvent, Consent, CreditApplication, CreditLine, Person
from accounts.selectors import person_id_number
from accounts.services.consents import consent_revoke
from accounts.services.partners import partner_set_tiers
from accounts.services.patient_tokens import patient_token_issue
from settlement.exceptions import AlreadyEnrolled
from settlement.models import OutboxEvent
from settlement.services.enrolment import CONSENT_TEXT, enrolment_apply, scores_refresh
from settlement.services.outbox import outbox_deliver
from settlement.tasks import refresh_credit_scores
from tests.accounts.simulators import HOLD, SimulatorProcess, started
from tests.settlement.test_bank_side import assert_signed, hook, no_proxy  # noqa: F401
from tests.threads import run_threads
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

ENROL = "/api/patient/v1/enrolment/"
# A bank lending from 450 up: ¥500 to 500, ¥1,000 to 600, ¥3,000 from 601.
FROM_450 = ((450, 50_000), (501, 100_000), (601, 300_000))


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    simulator = started("run_credit_score_simulator", tmp_path_factory.mktemp("score") / "s.log")
    yield simulator
    simulator.stop()


@pytest.fixture
def score_platform(platform, settings):
    """The simulator as ``CREDIT_SCORE_URL``, answering; put back to answering afterwards."""
    settings.CREDIT_SCORE_URL = platform.url
    settings.CREDIT_SCORE_TIMEOUT_SECONDS = 5
    platform.control(mode="ok")
    yield platform
    platform.control(mode="ok")


def pin(platform: SimulatorProcess, person: Person, score: int | None) -> None:
    answer = platform.request(
        "POST",
        "/sim/pin",
        {"id_number_hash": citizen_hash(person_id_number(person)), "score": score},
    )
    assert answer["score"] == score


def patient(person: Person) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {patient_token_issue(person=person, actor='t')}")
    return client


def enrol(client: APIClient, key: str | None = None, **body: Any):
    return client.post(
        ENROL,
        {"consent": True, **body},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or f"enrol-{uuid4().hex}",
    )


def written() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Consent, CreditApplication, CreditLine, OutboxEvent)
    }


@pytest.fixture
def bank(make_partner, hook):  # noqa: F811 - the fixture imported above
    partner, client = make_partner("厦门国际银行", webhook_url=hook.url, tiers=FROM_450)
    return partner, client


# --- enrolment --------------------------------------------------------------------------------


def test_an_auto_bank_grants_a_line_on_its_tier_table_at_once(score_platform, bank, make_person):
    partner, _ = bank
    person = make_person("陈美玲")
    pin(score_platform, person, 640)

    response = enrol(patient(person), bank=partner.name)

    assert response.status_code == 201, response.json()
    answer = response.json()
    line = CreditLine.objects.get(person=person)
    assert answer["status"] == "granted"
    assert (answer["score"], answer["level"], answer["tier_limit"]) == (640, "A", "3000.00")
    assert answer["bank"] == partner.name and answer["reason"] == ""
    assert answer["credit_line"]["id"] == str(line.pk)
    assert answer["credit_line"]["limit"] == answer["credit_line"]["available"] == "3000.00"
    assert (line.limit, line.score, line.score_provider) == (300_000, 640, "白鹭分")
    consent = Consent.objects.get(person=person)
    assert consent.purpose == "credit_score" and consent.channel == "app"
    assert consent.revoked_at is None
    with override("zh-hans"):
        assert consent.scope == str(CONSENT_TEXT)  # the words the city's app shows
    assert "白鹭分" in consent.scope and "同意" in consent.scope
    application = CreditApplication.objects.get(person=person)
    assert (application.status, application.credit_line, application.consent) == (
        "granted",
        line,
        consent,
    )
    # The platform was asked with the agreed hash of the number and this consent's id.
    asked = score_platform.state()["requests"][-1]
    assert asked["id_number_hash"] == citizen_hash(person_id_number(person))
    assert asked["consent_id"] == str(consent.reference)
    assert not OutboxEvent.objects.filter(type="credit.application").exists()


def test_a_bank_deciding_each_case_is_sent_one_signed_application_and_its_grant_answers_it(
    score_platform,
    make_partner,
    make_person,
    hook,  # noqa: F811 - the fixture imported above
):
    partner, bank_client = make_partner(
        "厦门银行", webhook_url=hook.url, tiers=FROM_450, enrolment="application"
    )
    person = make_person("林志强")
    pin(score_platform, person, 550)

    response = enrol(patient(person), bank=str(partner.pk))

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert (answer["status"], answer["score"], answer["tier_limit"]) == (
        "pending_bank",
        550,
        "1000.00",
    )
    assert answer["credit_line"] is None
    assert not CreditLine.objects.filter(person=person).exists()
    application = CreditApplication.objects.get(person=person)
    assert application.status == "pending_bank" and answer["application"] == application.pk

    event = OutboxEvent.objects.get()  # queued once
    assert event.type == "credit.application" and event.partner == partner
    assert outbox_deliver() == 1 and outbox_deliver() == 0
    (request,) = hook.received
    body = assert_signed(request, bank_client.key_id, bank_client.secret)
    assert body["type"] == "credit.application"
    assert body["data"] == {
        "application": str(application.pk),
        "person": str(person.pk),
        "id_number_masked": person.id_number_masked,
        "name": "林志强",
        "score": 550,
        "level": "B",
        "as_of": as_of().isoformat(),
        "tier_limit": "1000.00",
    }
    assert person_id_number(person) not in request.body.decode()

    # Asking again while the bank decides is a conflict, and tells the bank nothing more.
    again = enrol(patient(person), bank=partner.name)
    assert again.status_code == 409 and again.json()["error"]["code"] == "application_pending"

    granted = bank_client.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": person_id_number(person),
            "name": person.name,
            "score": 550,
            "score_provider": "白鹭分",
        },
    )
    assert granted.status_code == 201, granted.json()
    application.refresh_from_db()
    assert application.status == "granted"
    assert str(application.credit_line_id) == granted.json()["id"]
    assert application.decided_at is not None
    assert granted.json()["limit"] == "1000.00"
    assert OutboxEvent.objects.count() == 1

    # The bank decides the limit as well: the monthly refresh leaves what it set alone, even
    # where the score's band on its table says otherwise.
    raised = bank_client.post(
        "/api/partner/v1/credit-lines/",
        {
            "id_number": person_id_number(person),
            "name": person.name,
            "score": 550,
            "score_provider": "白鹭分",
            "limit": "2500.00",
        },
    )
    assert raised.status_code == 200, raised.json()
    report = scores_refresh()
    line = CreditLine.objects.get(pk=granted.json()["id"])
    assert (line.status, line.limit, report.retiered, report.asked) == ("active", 250_000, 0, 0)


def test_a_citizen_without_a_score_is_declined_and_the_consent_kept(
    score_platform, bank, make_person
):
    partner, _ = bank
    person = make_person("王芳")
    pin(score_platform, person, None)

    response = enrol(patient(person), bank=partner.name)

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert (answer["status"], answer["score"], answer["tier_limit"], answer["reason"]) == (
        "declined",
        None,
        None,
        "no score",
    )
    assert answer["credit_line"] is None
    assert written() == {"Consent": 1, "CreditApplication": 1, "CreditLine": 0, "OutboxEvent": 0}


def test_a_score_below_the_banks_lowest_tier_is_declined(score_platform, bank, make_person):
    partner, _ = bank
    person = make_person("黄伟")
    pin(score_platform, person, 449)

    answer = enrol(patient(person), bank=partner.name).json()

    assert (answer["status"], answer["score"], answer["reason"]) == (
        "declined",
        449,
        "below the lowest tier",
    )
    assert not CreditLine.objects.exists()
    pin(score_platform, person, 450)  # the lowest band's own score is in it
    assert enrol(patient(person), bank=partner.name).json()["tier_limit"] == "500.00"


def test_a_platform_that_fails_is_a_503_and_nothing_is_written_until_it_answers(
    score_platform, bank, make_person
):
    partner, _ = bank
    person = make_person("郑丽")
    pin(score_platform, person, 700)
    client = patient(person)
    audits = AuditEvent.objects.count()
    score_platform.control(mode="fail")

    response = enrol(client, key="enrol-once", bank=partner.name)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "score_unavailable"
    assert "nothing was recorded" in error["message"]
    assert written() == {"Consent": 0, "CreditApplication": 0, "CreditLine": 0, "OutboxEvent": 0}
    assert AuditEvent.objects.count() == audits

    # The same request again, once the platform answers, enrols: the failure kept nothing.
    score_platform.control(mode="ok")
    again = enrol(client, key="enrol-once", bank=partner.name)
    assert again.status_code == 201 and again.json()["status"] == "granted"


def test_a_platform_that_cannot_be_reached_is_a_503(settings, bank, make_person):
    partner, _ = bank
    settings.CREDIT_SCORE_URL = "http://127.0.0.1:9"  # nothing listens on discard
    response = enrol(patient(make_person("吴刚")), bank=partner.name)
    assert response.status_code == 503
    assert written()["Consent"] == 0


def test_a_hanging_platform_times_out_as_a_503_with_nothing_written(
    score_platform, settings, bank, make_person
):
    partner, _ = bank
    settings.CREDIT_SCORE_TIMEOUT_SECONDS = 0.5
    score_platform.control(mode="hang", hang_seconds=HOLD)
    try:
        response = enrol(patient(make_person("罗兰")), bank=partner.name)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "score_unavailable"
        assert written() == {
            "Consent": 0,
            "CreditApplication": 0,
            "CreditLine": 0,
            "OutboxEvent": 0,
        }
    finally:
        score_platform.control(mode="ok", release=True)
        assert wait_until(lambda: score_platform.state()["hanging"] == 0)


@pytest.mark.parametrize("body", [{"consent": False}, {}, {"consent": "maybe"}])
def test_enrolment_needs_consent_given_as_true(score_platform, bank, make_person, body):
    partner, _ = bank
    asked = len(score_platform.state()["requests"])
    response = patient(make_person("赵敏")).post(
        ENROL, {**body, "bank": partner.name}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert response.status_code == 400
    assert "consent" in response.json()["error"]["fields"]
    assert written()["Consent"] == 0
    assert len(score_platform.state()["requests"]) == asked  # the platform was not asked


def test_a_holder_of_an_open_line_with_the_bank_is_told_so(score_platform, bank, make_person):
    partner, _ = bank
    person = make_person("孙丽")
    pin(score_platform, person, 640)
    client = patient(person)
    assert enrol(client, bank=partner.name).status_code == 201
    again = enrol(client, bank=partner.name)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_enrolled"
    assert CreditApplication.objects.count() == 1


def test_without_a_bank_the_default_bank_is_used(
    score_platform, make_partner, make_person, settings
):
    only, _ = make_partner("厦门农商银行")
    person = make_person("周杰")
    pin(score_platform, person, 640)
    assert enrol(patient(person)).json()["bank"] == only.name

    other, _ = make_partner("兴业银行")
    second = make_person("钱芳")
    pin(score_platform, second, 640)
    refused = enrol(patient(second))
    assert refused.status_code == 400 and "bank" in refused.json()["error"]["fields"]
    settings.ENROLMENT_DEFAULT_BANK = other.name
    assert enrol(patient(second)).json()["bank"] == other.name
    unknown = enrol(patient(second), bank="no such bank")
    assert unknown.status_code == 400 and "bank" in unknown.json()["error"]["fields"]


def test_only_a_signed_in_patient_may_enrol(bank, staff_client):
    assert APIClient().post(ENROL, {"consent": True}, format="json").status_code == 401
    staff = staff_client("admin").post(ENROL, {"consent": True}, format="json")
    assert staff.status_code == 401


def test_a_consent_is_revoked_by_its_person_only(score_platform, bank, make_person):
    partner, _ = bank
    person, stranger = make_person("许晴"), make_person("冯凯")
    pin(score_platform, person, 640)
    enrolment_apply(
        actor="t", person=person, partner=partner, consent_scope="同意", channel="portal"
    )
    consent = Consent.objects.get(person=person)
    with pytest.raises(Consent.DoesNotExist):
        consent_revoke(actor="t", person=stranger, consent_id=consent.pk)
    revoked = consent_revoke(actor="t", person=person, consent_id=consent.pk)
    assert revoked.revoked_at is not None
    assert consent_revoke(actor="t", person=person, consent_id=consent.pk).revoked_at == (
        revoked.revoked_at
    )
    assert AuditEvent.objects.filter(action="consent.revoke").count() == 1


def test_a_patient_revokes_their_own_consent_through_the_api(score_platform, bank, make_person):
    partner, _ = bank
    person, stranger = make_person("邓超"), make_person("韩梅")
    pin(score_platform, person, 640)
    consent_id = enrol(patient(person), bank=partner.name).json()["consent"]
    url = f"/api/patient/v1/consents/{consent_id}/revoke/"

    others = patient(stranger).post(url, HTTP_IDEMPOTENCY_KEY="r1")
    assert others.status_code == 404
    assert Consent.objects.get(pk=consent_id).revoked_at is None

    revoked = patient(person).post(url, HTTP_IDEMPOTENCY_KEY="r2")
    assert revoked.status_code == 200, revoked.json()
    answer = revoked.json()
    assert (answer["id"], answer["purpose"], answer["channel"]) == (
        consent_id,
        "credit_score",
        "app",
    )
    assert answer["revoked_at"] is not None
    assert Consent.objects.get(pk=consent_id).revoked_at is not None
    assert CreditLine.objects.get(person=person).status == "active"  # the line stays


# --- the monthly refresh ----------------------------------------------------------------------


def enrolled(platform, partner, make_person, name: str, score: int) -> CreditLine:
    person = make_person(name)
    pin(platform, person, score)
    enrolment = enrolment_apply(
        actor="t", person=person, partner=partner, consent_scope="同意", channel="app"
    )
    assert enrolment.credit_line is not None
    return enrolment.credit_line


def events(kind: str) -> list[dict[str, Any]]:
    return [e.data for e in OutboxEvent.objects.filter(type=kind).order_by("created_at")]


def test_the_refresh_retiers_freezes_below_the_lowest_tier_and_thaws(
    score_platform, bank, make_person
):
    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "陈静", 640)
    person = line.person

    pin(score_platform, person, 550)
    report = scores_refresh()
    assert (report.asked, report.retiered) == (1, 1)
    line.refresh_from_db()
    assert (line.limit, line.score, line.status) == (100_000, 550, "active")
    (retiered,) = events("credit.line_retiered")
    assert retiered["credit_line"] == str(line.pk)
    assert (retiered["limit_before"], retiered["limit"], retiered["score"]) == (
        "3000.00",
        "1000.00",
        550,
    )
    assert retiered["status"] == "active"

    # The same score again next run: nothing changes, nobody is told.
    assert scores_refresh().unchanged == 1
    assert len(events("credit.line_retiered")) == 1

    pin(score_platform, person, 420)
    assert scores_refresh().frozen == 1
    line.refresh_from_db()
    assert (line.status, line.frozen_reason, line.limit) == ("frozen", "score", 100_000)
    (frozen,) = events("credit.line_frozen")
    assert (frozen["reason"], frozen["score"], frozen["lowest_tier_score"]) == ("score", 420, 450)
    assert scores_refresh().unchanged == 1  # still under: frozen once, told once
    assert len(events("credit.line_frozen")) == 1

    pin(score_platform, person, 700)
    assert scores_refresh().unfrozen == 1
    line.refresh_from_db()
    assert (line.status, line.frozen_reason, line.limit) == ("active", "", 300_000)
    thawed = events("credit.line_retiered")[-1]
    assert (thawed["status"], thawed["limit"]) == ("active", "3000.00")


def test_a_citizen_whose_score_is_gone_is_frozen(score_platform, bank, make_person):
    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "刘洋", 640)
    pin(score_platform, line.person, None)
    assert scores_refresh().frozen == 1
    line.refresh_from_db()
    assert line.frozen_reason == "score"
    assert events("credit.line_frozen")[0]["score"] is None


def test_an_outage_skips_the_holder_and_never_freezes(score_platform, bank, make_person):
    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "杨帆", 640)
    pin(score_platform, line.person, 300)
    score_platform.control(mode="fail")

    report = scores_refresh()

    assert (report.asked, report.skipped, report.frozen) == (1, 1, 0)
    assert report.skipped_persons == [line.person_id]
    line.refresh_from_db()
    assert (line.status, line.limit) == ("active", 300_000)
    assert not OutboxEvent.objects.exists()

    score_platform.control(mode="ok")  # the next run asks again
    assert scores_refresh().frozen == 1


def test_a_line_the_bank_froze_is_not_thawed_by_a_good_score(score_platform, bank, make_person):
    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "何静", 640)
    CreditLine.objects.filter(pk=line.pk).update(status="frozen", frozen_reason="bank")
    pin(score_platform, line.person, 550)
    scores_refresh()
    line.refresh_from_db()
    assert (line.status, line.frozen_reason, line.limit) == ("frozen", "bank", 100_000)


def test_a_revoked_consent_stops_the_refresh_asking(score_platform, bank, make_person):
    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "马丽", 640)
    consent = Consent.objects.get(person=line.person)
    consent_revoke(actor="t", person=line.person, consent_id=consent.pk)
    pin(score_platform, line.person, 300)
    asked_before = len(score_platform.state()["requests"])

    assert scores_refresh().asked == 0
    assert len(score_platform.state()["requests"]) == asked_before
    line.refresh_from_db()
    assert (line.status, line.limit) == ("active", 300_000)


def test_a_tier_table_may_start_above_zero(bank):
    partner, _ = bank
    partner_set_tiers(actor="t", partner=partner, tiers=((350, 20_000), (600, 80_000)))
    assert list(partner.tiers.values_list("min_score", "limit")) == [(350, 20_000), (600, 80_000)]


def test_the_task_runs_the_refresh_and_reports_it(score_platform, bank, make_person):
    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "唐宁", 640)
    pin(score_platform, line.person, 550)
    assert refresh_credit_scores() == {
        "asked": 1,
        "retiered": 1,
        "frozen": 0,
        "unfrozen": 0,
        "unchanged": 0,
        "skipped": 0,
    }


def test_the_refresh_runs_monthly_by_beat():
    entry = django_settings.CELERY_BEAT_SCHEDULE["settlement-refresh-credit-scores"]
    assert entry["task"] == "settlement.tasks.refresh_credit_scores"
    schedule = entry["schedule"]
    assert isinstance(schedule, crontab)
    assert schedule.day_of_month == {2} and schedule.hour == {4} and schedule.minute == {0}


# --- racing -----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_enrolments_racing_for_one_person_grant_one_line(score_platform, make_partner, make_person):
    partner, _ = make_partner("厦门国际银行", tiers=FROM_450)
    person = make_person("赵雷")
    pin(score_platform, person, 640)

    def attempt(i: int) -> object:
        return enrolment_apply(
            actor=f"t{i}", person=person, partner=partner, consent_scope="同意", channel="app"
        )

    results = run_threads(attempt, threads=4)

    granted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, AlreadyEnrolled)]
    assert len(granted) == 1 and len(refused) == 3, results
    assert CreditLine.objects.filter(person=person).count() == 1
    assert CreditApplication.objects.filter(person=person).count() == 1
    assert Consent.objects.filter(person=person).count() == 1  # the refused wrote nothing


def test_the_refresh_leaves_a_line_the_bank_set_itself_alone(
    score_platform, bank, make_person, make_partner
):
    """A holder enrolled at one bank keeps another bank's line as that bank set it: the
    refresh re-tiers only what an enrolment granted."""
    from tests.factories import grant_line

    partner, _ = bank
    line = enrolled(score_platform, partner, make_person, "宋佳", 640)
    other, _ = make_partner("厦门银行")  # no tier table of its own matters here
    own = grant_line(other, line.person, limit=123_400)
    pin(score_platform, line.person, 550)

    report = scores_refresh()

    assert (report.asked, report.retiered, report.frozen) == (1, 1, 0)
    own.refresh_from_db()
    assert (own.status, own.limit) == ("active", 123_400)
    assert all(e["credit_line"] == str(line.pk) for e in events("credit.line_retiered"))
