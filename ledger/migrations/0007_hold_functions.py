# hold_post and hold_void in one round trip on PostgreSQL: one call of ledger_hold_resolve
# locks the pending hold, applies its balance changes (limit-checked, in account order),
# claims the key and writes the hold's new status and, for a post, the transaction, its entries
# and its chain-queue row. SQLite keeps the Python path in ledger.services; both are held to the
# same tests.

from django.db import migrations

HOLD_RESOLVE = r"""
CREATE OR REPLACE FUNCTION ledger_hold_resolve(
    p_key text,
    p_hash text,
    p_result_type text,
    p_hold uuid,
    p_status text,
    p_amount bigint,
    p_txn_id uuid,
    p_now timestamptz,
    p_seed integer
) RETURNS TABLE (
    outcome text, result_type text, result_id uuid, request_hash text, hold_status text,
    hold_ledger text, debit_account_id bigint, credit_account_id bigint, hold_amount bigint,
    hold_expires_at timestamptz, hold_reference text, hold_created_at timestamptz,
    account_id bigint, available bigint
)
LANGUAGE plpgsql AS $fn$
-- Resolve hold p_hold to p_status ('posted', for p_amount fen or, if NULL, all of it; or
-- 'voided') under key p_key. Nothing is written before every check has passed, so a refusal
-- needs no subtransaction: the hold's row is locked first, then its two balance rows in
-- account order (the order every posting takes them), each UPDATE carrying its account's
-- limit; the key is claimed last, and a lost race for it is undone on rows still held.
-- outcome: 'posted' or 'voided'; 'earlier' (result_* and request_hash are the key's first
-- use, the caller compares); 'missing'; 'not_pending' (hold_status says what it is);
-- 'expired' (posting an expired hold); 'over' (more than the hold); 'refused' (account_id's
-- limit, with ``available`` fen).
DECLARE
    h ledger_hold%ROWTYPE;
    posted bigint;
    accs bigint[];
    d_dp bigint[];
    d_cp bigint[];
    d_dpend bigint[];
    d_cpend bigint[];
    q integer;
    k integer;
BEGIN
    SELECT r.result_type, r.result_id, r.request_hash
      INTO result_type, result_id, request_hash
      FROM ledger_idempotencyrecord r WHERE r.key = p_key;
    IF FOUND THEN
        outcome := 'earlier';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT * INTO h FROM ledger_hold WHERE id = p_hold FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'missing';
        RETURN NEXT;
        RETURN;
    END IF;
    hold_status := h.status;
    hold_ledger := h.ledger;
    debit_account_id := h.debit_account_id;
    credit_account_id := h.credit_account_id;
    hold_amount := h.amount;
    hold_expires_at := h.expires_at;
    hold_reference := h.reference;
    hold_created_at := h.created_at;
    IF h.status <> 'pending' THEN
        -- A call with this key may have resolved the hold while this one waited for its lock.
        SELECT r.result_type, r.result_id, r.request_hash
          INTO result_type, result_id, request_hash
          FROM ledger_idempotencyrecord r WHERE r.key = p_key;
        outcome := CASE WHEN FOUND THEN 'earlier' ELSE 'not_pending' END;
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_status = 'posted' THEN
        IF h.expires_at IS NOT NULL AND h.expires_at <= p_now THEN
            outcome := 'expired';
            RETURN NEXT;
            RETURN;
        END IF;
        posted := coalesce(p_amount, h.amount);
        IF posted > h.amount THEN
            outcome := 'over';
            RETURN NEXT;
            RETURN;
        END IF;
    ELSE
        posted := 0;
    END IF;

    IF h.debit_account_id < h.credit_account_id THEN
        accs := ARRAY[h.debit_account_id, h.credit_account_id];
        d_dp := ARRAY[posted, 0];
        d_cp := ARRAY[0, posted];
        d_dpend := ARRAY[-h.amount, 0];
        d_cpend := ARRAY[0, -h.amount];
    ELSE
        accs := ARRAY[h.credit_account_id, h.debit_account_id];
        d_dp := ARRAY[0, posted];
        d_cp := ARRAY[posted, 0];
        d_dpend := ARRAY[0, -h.amount];
        d_cpend := ARRAY[-h.amount, 0];
    END IF;
    FOR q IN 1..2 LOOP
        UPDATE ledger_balanceslot b
           SET debits_posted = b.debits_posted + d_dp[q],
               credits_posted = b.credits_posted + d_cp[q],
               debits_pending = b.debits_pending + d_dpend[q],
               credits_pending = b.credits_pending + d_cpend[q]
          FROM ledger_account a
         WHERE a.id = accs[q] AND b.account_id = a.id
           AND b.slot = CASE WHEN a.balance_slots = 1 THEN 0 ELSE p_seed % a.balance_slots END
           AND (NOT b.debits_must_not_exceed_credits
                OR b.debits_posted + b.debits_pending + d_dp[q] + d_dpend[q]
                   <= b.credits_posted + d_cp[q])
           AND (NOT b.credits_must_not_exceed_debits
                OR b.credits_posted + b.credits_pending + d_cp[q] + d_cpend[q]
                   <= b.debits_posted + d_dp[q]);
        IF NOT FOUND THEN
            FOR k IN 1..q - 1 LOOP
                UPDATE ledger_balanceslot b
                   SET debits_posted = b.debits_posted - d_dp[k],
                       credits_posted = b.credits_posted - d_cp[k],
                       debits_pending = b.debits_pending - d_dpend[k],
                       credits_pending = b.credits_pending - d_cpend[k]
                  FROM ledger_account a
                 WHERE a.id = accs[k] AND b.account_id = a.id
                   AND b.slot = CASE WHEN a.balance_slots = 1 THEN 0
                                     ELSE p_seed % a.balance_slots END;
            END LOOP;
            SELECT CASE WHEN b.debits_must_not_exceed_credits
                        THEN b.credits_posted - b.debits_posted - b.debits_pending
                        ELSE b.debits_posted - b.credits_posted - b.credits_pending END
              INTO available
              FROM ledger_balanceslot b
             WHERE b.account_id = accs[q] AND b.slot = 0;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger: account % has no balance slot', accs[q];
            END IF;
            outcome := 'refused';
            account_id := accs[q];
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;

    INSERT INTO ledger_idempotencyrecord (key, request_hash, result_type, result_id, created_at)
    VALUES (p_key, p_hash, p_result_type,
            CASE WHEN p_status = 'posted' THEN p_txn_id ELSE p_hold END, p_now)
    ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent call with this key (for another hold) committed first.
        FOR k IN 1..2 LOOP
            UPDATE ledger_balanceslot b
               SET debits_posted = b.debits_posted - d_dp[k],
                   credits_posted = b.credits_posted - d_cp[k],
                   debits_pending = b.debits_pending - d_dpend[k],
                   credits_pending = b.credits_pending - d_cpend[k]
              FROM ledger_account a
             WHERE a.id = accs[k] AND b.account_id = a.id
               AND b.slot = CASE WHEN a.balance_slots = 1 THEN 0
                                 ELSE p_seed % a.balance_slots END;
        END LOOP;
        SELECT r.result_type, r.result_id, r.request_hash
          INTO result_type, result_id, request_hash
          FROM ledger_idempotencyrecord r WHERE r.key = p_key;
        outcome := 'earlier';
        RETURN NEXT;
        RETURN;
    END IF;

    UPDATE ledger_hold SET status = p_status, resolved_at = p_now WHERE id = p_hold;
    hold_status := p_status;
    IF p_status = 'posted' THEN
        INSERT INTO ledger_transaction
            (id, ledger, kind, hold_id, reverses_id, reference, description, created_at, legs)
        VALUES (p_txn_id, h.ledger, 'hold_post', p_hold, NULL, h.reference, '', p_now, 2);
        INSERT INTO ledger_entry (transaction_id, account_id, amount, ledger, leg, legs)
        VALUES (p_txn_id, h.debit_account_id, posted, h.ledger, 0, 2),
               (p_txn_id, h.credit_account_id, -posted, h.ledger, 1, 2);
        INSERT INTO ledger_chainqueue (transaction_id, ledger, created_at)
        VALUES (p_txn_id, h.ledger, p_now);
        result_id := p_txn_id;
    ELSE
        result_id := p_hold;
    END IF;
    outcome := p_status;
    result_type := p_result_type;
    RETURN NEXT;
END;
$fn$;
"""

DROP = (
    "DROP FUNCTION IF EXISTS ledger_hold_resolve(text, text, text, uuid, text, bigint, uuid,"
    " timestamptz, integer)"
)


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(HOLD_RESOLVE)  # no parameters: its % signs are plpgsql's


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0006_batch_lock_order")]

    operations = [migrations.RunPython(create_function, drop_function)]
