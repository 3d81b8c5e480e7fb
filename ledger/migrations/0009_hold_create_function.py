# hold_create in one round trip on PostgreSQL, as transaction_post: one call of
# ledger_hold_create adds the pending amounts (limit-checked, in account order), claims the key
# and inserts the hold. SQLite keeps the Python path; both are held to the same tests.

from django.db import migrations

HOLD_CREATE = r"""
CREATE OR REPLACE FUNCTION ledger_hold_create(
    p_key text,
    p_hash text,
    p_id uuid,
    p_ledger text,
    p_debit bigint,
    p_credit bigint,
    p_amount bigint,
    p_expires_at timestamptz,
    p_reference text,
    p_now timestamptz,
    p_debit_slot integer,
    p_credit_slot integer
) RETURNS TABLE (
    outcome text, result_type text, result_id uuid, request_hash text, account_id bigint,
    available bigint
)
LANGUAGE plpgsql AS $fn$
-- Reserve p_amount as pending on both accounts: debits pending on p_debit, credits pending on
-- p_credit. Each balance row gets one UPDATE, in account order, carrying its account's limit
-- (pending debits count against a debit limit); the key is claimed after them, so a refusal
-- or a lost race for the key is undone on rows this call still holds, and nothing of it
-- remains. outcome: 'posted', 'earlier' (result_* and request_hash are the key's first use;
-- the caller compares) or 'refused' (account_id's limit had ``available``).
DECLARE
    accs bigint[];
    slots integer[];
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
    IF p_debit < p_credit THEN
        accs := ARRAY[p_debit, p_credit];
        slots := ARRAY[p_debit_slot, p_credit_slot];
        d_dpend := ARRAY[p_amount, 0];
        d_cpend := ARRAY[0, p_amount];
    ELSE
        accs := ARRAY[p_credit, p_debit];
        slots := ARRAY[p_credit_slot, p_debit_slot];
        d_dpend := ARRAY[0, p_amount];
        d_cpend := ARRAY[p_amount, 0];
    END IF;
    FOR q IN 1..2 LOOP
        UPDATE ledger_balanceslot b
           SET debits_pending = b.debits_pending + d_dpend[q],
               credits_pending = b.credits_pending + d_cpend[q]
         WHERE b.account_id = accs[q] AND b.slot = slots[q]
           AND (NOT b.debits_must_not_exceed_credits
                OR b.debits_posted + b.debits_pending + d_dpend[q] <= b.credits_posted)
           AND (NOT b.credits_must_not_exceed_debits
                OR b.credits_posted + b.credits_pending + d_cpend[q] <= b.debits_posted);
        IF NOT FOUND THEN
            FOR k IN 1..q - 1 LOOP
                UPDATE ledger_balanceslot b
                   SET debits_pending = b.debits_pending - d_dpend[k],
                       credits_pending = b.credits_pending - d_cpend[k]
                 WHERE b.account_id = accs[k] AND b.slot = slots[k];
            END LOOP;
            SELECT CASE WHEN b.debits_must_not_exceed_credits
                        THEN b.credits_posted - b.debits_posted - b.debits_pending
                        ELSE b.debits_posted - b.credits_posted - b.credits_pending END
              INTO available
              FROM ledger_balanceslot b
             WHERE b.account_id = accs[q] AND b.slot = slots[q];
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger: account % has no balance slot %', accs[q], slots[q];
            END IF;
            outcome := 'refused';
            account_id := accs[q];
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO ledger_idempotencyrecord (key, request_hash, result_type, result_id, created_at)
    VALUES (p_key, p_hash, 'hold', p_id, p_now)
    ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent call with this key committed first (the INSERT waited for it).
        FOR k IN 1..2 LOOP
            UPDATE ledger_balanceslot b
               SET debits_pending = b.debits_pending - d_dpend[k],
                   credits_pending = b.credits_pending - d_cpend[k]
             WHERE b.account_id = accs[k] AND b.slot = slots[k];
        END LOOP;
        SELECT r.result_type, r.result_id, r.request_hash
          INTO result_type, result_id, request_hash
          FROM ledger_idempotencyrecord r WHERE r.key = p_key;
        outcome := 'earlier';
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO ledger_hold
        (id, ledger, debit_account_id, credit_account_id, amount, status, expires_at,
         reference, created_at, resolved_at)
    VALUES (p_id, p_ledger, p_debit, p_credit, p_amount, 'pending', p_expires_at, p_reference,
            p_now, NULL);
    outcome := 'posted';
    result_type := 'hold';
    result_id := p_id;
    RETURN NEXT;
END;
$fn$;
"""

DROP = (
    "DROP FUNCTION IF EXISTS ledger_hold_create(text, text, uuid, text, bigint, bigint, bigint,"
    " timestamptz, text, timestamptz, integer, integer)"
)


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(HOLD_CREATE)  # no parameters: its % signs are plpgsql's


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0008_batch_set_based")]

    operations = [migrations.RunPython(create_function, drop_function)]
