"""On PostgreSQL a posting is one statement: the posting functions do the work server-side.

Counted with ``CaptureQueriesContext`` (statements, not time), inside a caller's transaction
as a settlement calls them.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger import services
from ledger.models import Hold
from ledger.selectors import account_balance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def line(make_account):
    line = make_account("credit", "credit", limit="debits", prefix="line")
    granted = make_account("credit", "debit", prefix="granted", slots=4)
    services.transfer(key="grant", debit=granted, credit=line, amount=100_000)
    return line, granted


def test_hold_create_post_and_void_are_one_statement_each(line):
    line, granted = line
    with transaction.atomic():
        with CaptureQueriesContext(connection) as create:
            captured = services.hold_create(key="h1", debit=line, credit=granted, amount=50_000)
        voided = services.hold_create(key="h2", debit=line, credit=granted, amount=10_000)
        with CaptureQueriesContext(connection) as post:
            txn = services.hold_post(key="p", hold_id=captured.id, amount=30_000)
        with CaptureQueriesContext(connection) as void:
            hold = services.hold_void(key="v", hold_id=voided.id)
    assert len(create) == 1, [query["sql"] for query in create]
    assert len(post) == 1, [query["sql"] for query in post]
    assert len(void) == 1, [query["sql"] for query in void]
    assert txn.hold_id == captured.id and hold.status == Hold.Status.VOIDED
    balance = account_balance(line)
    assert (balance.debits_posted, balance.debits_pending, balance.available) == (30_000, 0, 70_000)
    assert account_balance(granted).credits_pending == 0


def test_the_posting_call_goes_through_the_connections_execute_wrappers(line):
    """What watches a connection's queries (a counter, a tracer) sees the prepared posting
    call too, though it goes around Django's cursor."""
    line, granted = line
    seen: list[str] = []

    def watch(execute, sql, params, many, context):
        seen.append(sql)
        assert context["connection"] is connection
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        txn = services.transfer(key="watched", debit=line, credit=granted, amount=1_000)
    assert [sql.split("(")[0].split()[-1] for sql in seen] == ["ledger_post_transaction"], seen
    assert account_balance(line).debits_posted == 1_000 and txn.legs == 2
