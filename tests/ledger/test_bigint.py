"""Every fen value is a bigint end to end, whatever the driver's binding.

With server-side binding a Python ``int`` may travel as a 32-bit parameter; an expression such
as ``debits_posted + $1`` must still add 64-bit values, and the posting function's arrays are
cast to ``bigint[]``. Each path that writes an amount (the posting function, the ORM's counter
updates for holds and reversals) posts 10^12 and 9·10^15 fen and reads them back exactly, with
the binding on and off.
"""

import pytest
from django.db import connection

from ledger import services
from ledger.models import BalanceSlot, Entry
from ledger.selectors import account_balance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BIG = [10**12, 9 * 10**15]


@pytest.fixture(params=[False, True], ids=["client-binding", "server-binding"])
def binding(request):
    """Reconnect with psycopg's server-side binding on or off for the test."""
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = options.get("server_side_binding")
    options["server_side_binding"] = request.param
    connection.close()
    yield request.param
    if saved is None:
        options.pop("server_side_binding", None)
    else:
        options["server_side_binding"] = saved
    connection.close()


@pytest.mark.parametrize("amount", BIG)
def test_big_amounts_post_and_read_back_exactly(binding, make_account, amount):
    facility = make_account("credit", "debit")
    line = make_account("credit", "credit", limit="debits")
    drawn = make_account("credit", "debit")
    grant = services.transfer(key="grant", debit=facility, credit=line, amount=amount)
    hold = services.hold_create(key="hold", debit=line, credit=drawn, amount=amount)
    assert account_balance(line).available == 0
    draw = services.hold_post(key="post", hold_id=hold.id)
    services.transaction_reverse(key="undo", transaction_id=draw.id)
    [posted] = services.transfers_post(
        [services.TransferRequest(key="again", debit=line, credit=facility, amount=amount)]
    )
    assert not isinstance(posted, Exception)

    assert sorted(Entry.objects.filter(transaction=grant).values_list("amount", flat=True)) == [
        -amount,
        amount,
    ]
    balance = account_balance(line)
    assert (balance.debits_posted, balance.credits_posted) == (2 * amount, 2 * amount)
    assert (balance.debits_pending, balance.available) == (0, 0)
    row = BalanceSlot.objects.get(account=facility)
    assert (row.debits_posted, row.credits_posted) == (amount, amount)
    assert account_balance(drawn).debits_posted == amount
    assert account_balance(drawn).credits_posted == amount
