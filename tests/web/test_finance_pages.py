"""The finance desk: who may see it, the aging and daily-credit reads, the pages with real data,
and a browser uploading a statement that a real Celery worker reconciles."""

import html
import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from accounts.services.staff import patient_user_ensure, staff_create
from config.celery import app
from settlement import selectors_finance
from settlement.models import InsuranceClaim, Receivable
from settlement.reconciliation.batches import batch_run
from settlement.reconciliation.models import ReconBatch, ReconItem
from settlement.services.repayments import repayment_apply
from tests.factories import home_institution, statement_csv
from tests.web.conftest import sign_in

SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUIRED_ZH = "该字段是必填项。"  # Django's own "This field is required." in Simplified Chinese


def four_classes(references: list[str]) -> bytes:
    first, second, _ = references
    return statement_csv(
        [
            ("B1", "100.00", first),  # matched
            ("B2", "200.01", second),  # amount mismatch
            ("B3", "50.00", "DRNOSUCHTHING"),  # unknown reference
            ("B4", "100.00", first),  # duplicate; the third draw is missing
        ]
    )


def client_as(role: str, make_person=None) -> Client:
    client = Client()
    if role == "anonymous":
        return client
    if role == "patient":
        assert make_person is not None
        user = patient_user_ensure(actor="test", person=make_person("李四"))
    else:
        place = None if role == "platform" else home_institution()
        user, _ = staff_create(actor="test", institution=place, username=f"{role}-web", role=role)
    client.force_login(user)
    return client


# --- who may see what -------------------------------------------------------------------------


def page_urls(batch_id: object) -> list[str]:
    return [
        "/finance/",
        f"/finance/batches/{batch_id}/",
        f"/finance/batches/{batch_id}/progress.json",
        f"/finance/batches/{batch_id}/export.csv",
        "/finance/claims/",
        "/finance/receivables/",
        "/finance/credit/",
        "/finance/deposits/",
    ]


def post_urls(batch_id: object) -> list[str]:
    return [
        "/finance/",
        f"/finance/batches/{batch_id}/items/1/resolve/",
        "/finance/claims/retry/",
        "/finance/deposits/",
    ]


@pytest.mark.django_db
def test_every_page_is_for_finance_and_admin_only(make_person, make_partner):
    from settlement.reconciliation.batches import statement_batch_create

    partner, _ = make_partner("厦门国际银行")
    batch, _ = statement_batch_create(
        actor="test",
        institution=home_institution(),
        partner=partner,
        stream=io.BytesIO(statement_csv([("B1", "1.00", "DRNOSUCHTHING")])),
        file_name="s.csv",
        enqueue=False,
    )
    batch = batch_run(batch.pk)
    gets, posts = page_urls(batch.pk), post_urls(batch.pk)
    anonymous = client_as("anonymous")
    for url in gets + posts:
        answer = anonymous.get(url) if url in gets else anonymous.post(url)
        assert answer.status_code == 302, url
        assert answer["Location"].startswith("/login/?next="), url
    for role in ("cashier", "patient"):
        client = client_as(role, make_person)
        for url in gets:
            assert client.get(url).status_code == 403, (role, url)
        for url in posts:
            assert client.post(url).status_code == 403, (role, url)
    assert ReconBatch.objects.count() == 1  # nothing ran for them
    for role in ("finance", "admin"):
        client = client_as(role)
        for url in gets:
            assert client.get(url).status_code == 200, (role, url)


@pytest.mark.django_db
def test_the_whole_ledger_is_the_platforms_to_see_and_check(make_person):
    """The trial balance and the ledger's checks cover every institution's money: the city
    platform's operators see them, an institution's desks do not."""
    for role in ("cashier", "finance", "admin"):
        client = client_as(role, make_person)
        assert client.get("/finance/ledger/").status_code == 403, role
        assert client.post("/finance/ledger/verify/").status_code == 403, role
    assert ReconBatch.objects.count() == 0
    assert client_as("platform").get("/finance/ledger/").status_code == 200


# --- the reads ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_aging_buckets_by_days_past_due(draws):
    partner, _ = draws
    receivables = list(Receivable.objects.order_by("amount"))
    due = receivables[0].due_date
    assert {r.due_date for r in receivables} == {due}  # one grace period, one due date
    # A part repaid counts what is left; a receivable repaid in full is not aged at all.
    paid_at = timezone.now()
    repayment_apply(
        partner=partner,
        receivable_id=str(receivables[0].pk),
        amount=10_000,
        bank_txn_id="R-full",
        paid_at=paid_at,
    )
    repayment_apply(
        partner=partner,
        receivable_id=str(receivables[1].pk),
        amount=5_000,
        bank_txn_id="R-part",
        paid_at=paid_at,
    )
    expected_open = 15_000 + 30_000

    def buckets(today: date) -> dict[str, int]:
        aging = selectors_finance.receivables_aging(today=today)
        assert [row.bank for row in aging.rows] == ["厦门国际银行"]
        assert aging.totals.total == expected_open
        assert aging.totals.counts == {
            b: (2 if aging.totals.buckets[b] else 0) for b in selectors_finance.AGING_BUCKETS
        }
        return {b: n for b, n in aging.rows[0].buckets.items() if n}

    assert buckets(due - timedelta(days=5)) == {"current": expected_open}
    assert buckets(due) == {"current": expected_open}  # due today is not past due
    assert buckets(due + timedelta(days=1)) == {"1-30": expected_open}
    assert buckets(due + timedelta(days=30)) == {"1-30": expected_open}
    assert buckets(due + timedelta(days=31)) == {"31-60": expected_open}
    assert buckets(due + timedelta(days=60)) == {"31-60": expected_open}
    assert buckets(due + timedelta(days=61)) == {"60+": expected_open}


@pytest.mark.django_db
def test_daily_credit_drawn_by_business_date_and_repaid_by_shanghai_date(draws, make_partner):
    partner, _ = draws
    make_partner("另一家银行")  # a bank with no movements shows no chart
    today = timezone.localdate()
    receivables = list(Receivable.objects.order_by("amount"))
    # 00:30 in Shanghai is still yesterday in UTC: it counts for today.
    early = datetime.combine(today, time(0, 30), tzinfo=SHANGHAI)
    late_yesterday = datetime.combine(today - timedelta(days=1), time(23, 30), tzinfo=SHANGHAI)
    for n, (receivable, amount, paid_at) in enumerate(
        [
            (receivables[0], 4_000, early),
            (receivables[1], 2_500, early),
            (receivables[2], 700, late_yesterday),
        ]
    ):
        repayment_apply(
            partner=partner,
            receivable_id=str(receivable.pk),
            amount=amount,
            bank_txn_id=f"R{n}",
            paid_at=paid_at,
        )
    window, banks = selectors_finance.daily_credit(today=today)
    assert len(window) == 30 and window[0] == today - timedelta(days=29) and window[-1] == today
    assert [bank.bank for bank in banks] == ["厦门国际银行"]
    bank = banks[0]
    assert bank.drawn[today] == 60_000
    assert bank.total_drawn == 60_000
    assert bank.repaid[today] == 6_500
    assert bank.repaid[today - timedelta(days=1)] == 700
    assert bank.total_repaid == 7_200
    # A window ending before the draws holds none of them.
    _, earlier = selectors_finance.daily_credit(today=today - timedelta(days=2))
    assert earlier == []


# --- the pages with data ----------------------------------------------------------------------


@pytest.mark.django_db
def test_upload_batch_page_export_and_resolve(draws, make_person):
    partner, (_, _, third) = draws
    finance = client_as("finance")

    refused = finance.post(
        "/finance/",
        {"bank": partner.pk, "file": SimpleUploadedFile("bad.csv", b"hello world\n")},
    )
    assert refused.status_code == 200
    assert refused.context["form"].errors["file"]
    assert ReconBatch.objects.count() == 0
    missing_file = finance.post("/finance/", {"bank": partner.pk})
    assert missing_file.context["form"].errors["file"] == [REQUIRED_ZH]

    content = four_classes(draws[1])
    answer = finance.post(
        "/finance/", {"bank": partner.pk, "file": SimpleUploadedFile("s.csv", content)}
    )
    batch = ReconBatch.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/finance/batches/{batch.pk}/"
    queued = finance.get(f"/finance/batches/{batch.pk}/progress.json").json()
    assert queued["status"] == "queued" and queued["finished"] is False
    page = finance.get(f"/finance/batches/{batch.pk}/").content.decode()
    assert "progress.json" in page and 'id="exceptions"' not in page

    batch_run(batch.pk)
    done = finance.get(f"/finance/batches/{batch.pk}/progress.json").json()
    assert done["status"] == "done" and done["percent"] == 100
    assert done["progress"] == {"done": 4, "total": 4}
    page = finance.get(f"/finance/batches/{batch.pk}/")
    html = page.content.decode()
    # A bank statement's classes only: it cannot find a ledger integrity problem.
    assert [row["count"] for row in page.context["batch"]["count_rows"]] == [1, 0, 1, 1, 1, 1]
    assert "300.00" in html and "DRNOSUCHTHING" in html and "<script>" not in html
    # The items' details in Chinese, not the API's English sentences.
    assert "这笔支用银行此前已经付过" in html and "银行尚未付款" in html
    assert "already paid" not in html and "not paid by the bank" not in html

    again = finance.post(
        "/finance/", {"bank": partner.pk, "file": SimpleUploadedFile("again.csv", content)}
    )
    assert again["Location"] == f"/finance/batches/{batch.pk}/"
    assert ReconBatch.objects.count() == 1

    exported = finance.get(f"/finance/batches/{batch.pk}/export.csv")
    text = b"".join(exported.streaming_content).decode("utf-8-sig")
    assert text.splitlines()[0].startswith("kind,line,reference")
    assert len(text.splitlines()) == 6

    missing = ReconItem.objects.get(batch=batch, kind="missing")
    url = f"/finance/batches/{batch.pk}/items/{missing.pk}/resolve/"
    empty = finance.post(url, {"comment": "  ", "adjust": ""})
    assert empty.status_code == 200
    assert REQUIRED_ZH in empty.content.decode()
    zero = finance.post(url, {"comment": "ok", "adjust": "0"})
    assert zero.context["exceptions"] and "adjust" in next(
        e["form"].errors for e in zero.context["exceptions"] if e["id"] == missing.pk
    )
    assert ReconItem.objects.get(pk=missing.pk).resolved_at is None
    unknown = ReconItem.objects.get(batch=batch, kind="unknown_reference")
    not_money = finance.post(
        f"/finance/batches/{batch.pk}/items/{unknown.pk}/resolve/",
        {"comment": "bank's error", "adjust": "1.00"},
    )
    (form,) = [e["form"] for e in not_money.context["exceptions"] if e["id"] == unknown.pk]
    assert "adjust" in form.errors  # the error sits by the adjustment field
    assert ReconItem.objects.get(pk=unknown.pk).resolved_at is None

    done = finance.post(url, {"comment": "paid in tomorrow's transfer", "adjust": ""})
    assert done.status_code == 302
    resolved = ReconItem.objects.get(pk=missing.pk)
    assert resolved.resolution_comment == "paid in tomorrow's transfer"
    assert resolved.resolved_by.startswith("staff:")
    assert third == resolved.reference
    twice = finance.post(url, {"comment": "again"})
    (form,) = [e["form"] for e in twice.context["exceptions"] if e["id"] == missing.pk]
    assert form.non_field_errors()  # already resolved: said on the form


@pytest.mark.django_db
def test_claims_ledger_aging_and_credit_pages_show_the_figures(
    draws, monkeypatch, django_capture_on_commit_callbacks
):
    finance = client_as("finance")
    claims = finance.get("/finance/claims/")
    assert len(claims.context["rows"]) == 3
    assert InsuranceClaim.objects.filter(status="deferred").count() == 3
    assert "病人0" in claims.content.decode()

    queued: list[tuple] = []
    monkeypatch.setattr(
        "settlement.web.finance.retry_deferred_claims.delay", lambda *a: queued.append(a)
    )
    before = timezone.now()
    answer = finance.post("/finance/claims/retry/")
    assert answer.status_code == 302 and answer["Location"] == "/finance/claims/"
    assert queued == [()]
    assert all(
        c.next_attempt_at and c.next_attempt_at >= before
        for c in InsuranceClaim.objects.filter(status="deferred")
    )

    platform = client_as("platform")
    ledger = platform.get("/finance/ledger/")
    rows = {item["row"].ledger: item["row"] for item in ledger.context["rows"]}
    assert set(rows) == {"money", "credit"}
    assert all(row.balanced and row.debits_posted > 0 for row in rows.values())
    assert ledger.context["check"] is None
    checks: list[tuple] = []
    monkeypatch.setattr("settlement.reconciliation.batches._enqueue", lambda *a: checks.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        asked = platform.post("/finance/ledger/verify/")
    check = platform.get("/finance/ledger/").context["check"]
    assert asked.status_code == 302 and asked["Location"] == f"/finance/batches/{check.pk}/"
    assert check.status == "queued" and checks == [(check.pk,)]
    with django_capture_on_commit_callbacks(execute=True):
        again = platform.post("/finance/ledger/verify/")  # one check at a time
    assert again["Location"] == asked["Location"] and len(checks) == 1
    batch_run(check.pk)  # what the worker does
    check = platform.get("/finance/ledger/").context["check"]
    assert check.status == "done" and check.counts["problem"] == 0
    assert check.progress_total > 0

    aging = finance.get("/finance/receivables/")
    assert aging.context["grand_total"] == "600.00"
    assert [bar["amount"] for bar in aging.context["bars"]] == [
        "600.00",
        "0.00",
        "0.00",
        "0.00",
    ]
    assert "<svg" in aging.content.decode()

    credit = finance.get("/finance/credit/")
    (chart,) = credit.context["charts"]
    assert chart["total_drawn"] == "600.00" and chart["total_repaid"] == "0.00"
    assert len(chart["chart"]["bars"]) == 60
    assert chart["days"][0]["drawn"] == "600.00"


# --- the browser ------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_finance_uploads_a_statement_and_sees_the_batch_finish(page, live_server, draws, tmp_path):
    partner, references = draws
    user, _ = staff_create(
        actor="test", institution=home_institution(), username="finance1", role="finance"
    )
    user.set_password("finance-pass-1")
    user.save()
    statement = tmp_path / "statement.csv"
    statement.write_bytes(four_classes(references))

    sign_in(page, live_server, "finance1", "finance-pass-1")
    page.wait_for_url(f"{live_server.url}/finance/")
    assert page.locator("#upload-form").is_visible()
    page.select_option("select[name=bank]", str(partner.pk))
    page.set_input_files("input[name=file]", str(statement))
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        with page.expect_navigation():
            page.click("#upload-form button[type=submit]")
        assert "/finance/batches/" in page.url
        page.wait_for_selector("#batch-status[data-status=done]", timeout=30_000)

    counts = {
        kind: page.locator(f"#batch-counts tr[data-kind={kind}] .count").inner_text()
        for kind in ("matched", "amount_mismatch", "unknown_reference", "duplicate", "missing")
    }
    assert counts == dict.fromkeys(counts, "1")
    assert page.locator("#exceptions tbody tr").count() == 4

    row = page.locator("#exceptions tr[data-kind=missing]")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    row = page.locator("#exceptions tr[data-kind=missing]")
    assert REQUIRED_ZH in row.locator(".errorlist").inner_text()
    row.locator("textarea[name=comment]").fill("明日转账补付")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    row = page.locator("#exceptions tr[data-kind=missing]")
    assert row.get_attribute("data-resolved") == "1"
    assert "明日转账补付" in row.inner_text()
    assert ReconItem.objects.get(kind="missing").resolution_comment == "明日转账补付"

    for path in ("claims/", "receivables/", "credit/", "deposits/"):
        page.goto(f"{live_server.url}/finance/{path}")
        assert page.locator("main h1").count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_ledger_check_runs_on_a_worker_and_its_page_follows_it(page, live_server, draws):
    user, _ = staff_create(actor="test", institution=None, username="ops2", role="platform")
    user.set_password("platform-pass-2")
    user.save()
    sign_in(page, live_server, "ops2", "platform-pass-2")
    page.wait_for_url(f"{live_server.url}/platform/")
    page.goto(f"{live_server.url}/finance/ledger/")
    with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        with page.expect_navigation():
            page.click("#verify-now")
        assert "/finance/batches/" in page.url
        page.wait_for_selector("#batch-status[data-status=done]", timeout=30_000)
    assert page.locator("#batch-counts tr[data-kind=problem] .count").inner_text() == "0"
    page.goto(f"{live_server.url}/finance/ledger/")
    assert page.locator("#check-problems").inner_text() == "0"


# --- what the pages show: only real problems, exports that open with their Chinese ------------


@pytest.mark.django_db
def test_a_ledger_check_page_lists_only_integrity_problems():
    from settlement.reconciliation.batches import ledger_check_batch

    batch = ledger_check_batch(actor="test")
    assert batch.status == "done"
    assert client_as("finance").get(f"/finance/batches/{batch.pk}/").status_code == 404
    page = client_as("platform").get(f"/finance/batches/{batch.pk}/")
    assert [row["kind"] for row in page.context["batch"]["count_rows"]] == ["problem"]
    html = page.content.decode()
    assert "完整性问题" in html
    for bank_class in ("已匹配", "金额不符", "未知参考号", "重复", "缺失", "日终轧差"):
        assert bank_class not in html, bank_class


@pytest.mark.django_db
def test_the_export_a_person_downloads_opens_in_excel_with_its_chinese(draws, staff_client):
    """The finance page's CSV starts with a UTF-8 byte order mark (Excel reads a CSV without
    one as GBK on a Chinese Windows); the API's export, read by programs, has none."""
    from settlement.reconciliation.batches import item_resolve

    partner, references = draws
    finance = client_as("finance")
    finance.post(
        "/finance/",
        {"bank": partner.pk, "file": SimpleUploadedFile("s.csv", four_classes(references))},
    )
    batch = ReconBatch.objects.get()
    batch_run(batch.pk)
    missing = ReconItem.objects.get(batch=batch, kind="missing")
    item_resolve(actor="test", item_id=missing.pk, comment="明日转账补付")

    answer = finance.get(f"/finance/batches/{batch.pk}/export.csv")
    assert answer["Content-Type"] == "text/csv; charset=utf-8"
    raw = b"".join(answer.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert text.startswith("kind,line,reference,")
    assert "明日转账补付" in text

    api = staff_client("finance").get(f"/api/v1/reconciliation/batches/{batch.pk}/export/")
    api_raw = b"".join(api.streaming_content)
    assert api_raw.startswith(b"kind,line,reference,")
    assert api_raw == raw[3:]  # the same file, only the mark differs


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            statement_csv([("B1", "100.00", "DR1"), ("B2", "12.345", "DR2")]),
            "文件被拒绝：对账文件格式有误（第 3 行：金额 '12.345' "
            "不是以元为单位、最多两位小数的金额）",
        ),
        (
            b"H|ICBC|20261123|1\nD|B1|20261123|100.00|DR1\nT|2|100.00\n",
            "文件被拒绝：对账文件格式有误"
            "（第 3 行：尾行记为 2 笔 / ¥100.00，文件实际为 1 笔 / ¥100.00）",
        ),
        (  # the upload's own check, past the parser
            statement_csv([("B1", "100.00", "DR" + "9" * 70)]),
            "文件被拒绝：对账文件格式有误（第 1 行：reference 最多只能有 64 个可打印字符）",
        ),
    ],
)
def test_a_refused_upload_says_why_wholly_in_chinese(draws, content, said):
    partner, _ = draws
    finance = client_as("finance")
    refused = finance.post(
        "/finance/", {"bank": partner.pk, "file": SimpleUploadedFile("bad.txt", content)}
    )
    assert refused.status_code == 200
    assert refused.context["form"].errors["file"] == [said]
    assert said in html.unescape(refused.content.decode())
    assert ReconBatch.objects.count() == 0
