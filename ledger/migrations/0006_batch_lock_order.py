# Lock order of the batch function: ledger_post_transfers locked the rows of limited accounts
# first and then updated every slot in account order, so a batch holding a limited line while
# waiting for an unlimited account of lower id deadlocked with a single posting holding that
# account while waiting for the line. Now the batch locks every balance row it may write, in
# (account, slot) order, before anything else, and claims its keys after them, as the single
# posting does.

import importlib

from django.db import migrations

POST_TRANSFERS = r"""
CREATE OR REPLACE FUNCTION ledger_post_transfers(
    p_linked boolean,
    p_created_at timestamptz,
    p_keys text[],
    p_hashes text[],
    p_ids uuid[],
    p_ledgers text[],
    p_references text[],
    p_descriptions text[],
    p_entry_txns integer[],
    p_entry_accounts bigint[],
    p_entry_amounts bigint[],
    p_delta_txns integer[],
    p_delta_accounts bigint[],
    p_delta_slots integer[],
    p_delta_debits bigint[],
    p_delta_credits bigint[]
) RETURNS TABLE (
    idx integer, outcome text, result_type text, result_id uuid, request_hash text,
    account_id bigint, available bigint
)
LANGUAGE plpgsql AS $fn$
-- Post transfers p_keys[1..n] with their entries (p_entry_*: the transfer's index, account,
-- signed amount) and their balance changes (p_delta_*: one row per transfer and account, in
-- transfer then account order). Every key is claimed in one INSERT; rows of accounts with a
-- limit are locked in account order and every transfer is checked against them in order; then
-- each touched balance slot gets one UPDATE (again in account order, re-checking the limit)
-- and transactions, entries and the chain queue one INSERT each.
--
-- outcome per transfer: 'posted'; 'earlier' (the key was used before: result_* and
-- request_hash are that use's, the caller compares); 'refused' (account_id's limit, with
-- ``available`` fen of room at that point of the batch);
-- 'linked' (p_linked and another transfer of the batch was refused or used before).
-- A refused transfer writes nothing, not even its key: an inner block rolls the round back
-- and the next round claims only the transfers still standing.
DECLARE
    n integer := cardinality(p_keys);
    m integer := cardinality(p_delta_txns);
    standing boolean[] := array_fill(true, ARRAY[n]);
    refused_by bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    room_left bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    state text[];
    lim_ids bigint[];
    lim_debit boolean[];
    lim_room bigint[];
    i integer;
    j integer;
    k integer;
    q integer;
    pos integer;
    bad bigint;
    want bigint;
    refusals integer;
    earlier integer;
    acc bigint;
    sl integer;
    dd bigint;
    cc bigint;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN;
    END IF;
    LOOP
        BEGIN
            state := array_fill('earlier'::text, ARRAY[n]);
            FOR i IN 1..n LOOP
                IF NOT standing[i] THEN
                    state[i] := CASE WHEN refused_by[i] IS NULL THEN 'linked' ELSE 'refused' END;
                END IF;
            END LOOP;
            -- Every balance row the batch may write, limited or not, is locked first, in
            -- (account, slot) order: the order the single posting's UPDATEs and the ORM path
            -- take, so a batch and a single posting on the same accounts cannot deadlock. The
            -- keys are claimed after the rows, as the single posting claims its key after its
            -- UPDATEs.
            SELECT array_agg(s.account_id ORDER BY s.account_id) FILTER (WHERE s.limited),
                   array_agg(s.debits_must_not_exceed_credits ORDER BY s.account_id)
                       FILTER (WHERE s.limited),
                   array_agg(CASE WHEN s.debits_must_not_exceed_credits
                                  THEN s.credits_posted - s.debits_posted - s.debits_pending
                                  ELSE s.debits_posted - s.credits_posted - s.credits_pending
                             END ORDER BY s.account_id) FILTER (WHERE s.limited)
              INTO lim_ids, lim_debit, lim_room
              FROM (SELECT b.account_id, b.debits_must_not_exceed_credits,
                           b.debits_must_not_exceed_credits OR b.credits_must_not_exceed_debits
                               AS limited,
                           b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending
                      FROM ledger_balanceslot b
                     WHERE (b.account_id, b.slot) IN (
                               SELECT d.a, d.s
                                 FROM unnest(p_delta_txns, p_delta_accounts, p_delta_slots)
                                      AS d(t, a, s)
                                WHERE standing[d.t])
                     ORDER BY b.account_id, b.slot
                       FOR UPDATE) AS s;

            FOR i IN
                WITH claimed AS (
                    INSERT INTO ledger_idempotencyrecord
                        (key, request_hash, result_type, result_id, created_at)
                    SELECT u.k, u.h, 'transaction', u.t, p_created_at
                      FROM unnest(p_keys, p_hashes, p_ids) WITH ORDINALITY AS u(k, h, t, o)
                     WHERE standing[u.o]
                    ON CONFLICT (key) DO NOTHING
                    RETURNING key
                )
                SELECT u.o FROM claimed c
                  JOIN unnest(p_keys) WITH ORDINALITY AS u(k, o) ON u.k = c.key
            LOOP
                state[i] := 'posted';
            END LOOP;

            refusals := 0;
            j := 1;
            WHILE j <= m LOOP
                i := p_delta_txns[j];
                k := j;
                WHILE k <= m AND p_delta_txns[k] = i LOOP
                    k := k + 1;
                END LOOP;
                IF state[i] = 'posted' AND lim_ids IS NOT NULL THEN
                    bad := NULL;
                    FOR q IN j..k - 1 LOOP
                        pos := array_position(lim_ids, p_delta_accounts[q]);
                        CONTINUE WHEN pos IS NULL;
                        IF lim_debit[pos] THEN
                            want := p_delta_debits[q] - p_delta_credits[q];
                        ELSE
                            want := p_delta_credits[q] - p_delta_debits[q];
                        END IF;
                        IF want > lim_room[pos] THEN
                            bad := p_delta_accounts[q];
                            room_left[i] := lim_room[pos];
                            EXIT;
                        END IF;
                    END LOOP;
                    IF bad IS NULL THEN
                        FOR q IN j..k - 1 LOOP
                            pos := array_position(lim_ids, p_delta_accounts[q]);
                            CONTINUE WHEN pos IS NULL;
                            IF lim_debit[pos] THEN
                                lim_room[pos] := lim_room[pos] - p_delta_debits[q]
                                                 + p_delta_credits[q];
                            ELSE
                                lim_room[pos] := lim_room[pos] - p_delta_credits[q]
                                                 + p_delta_debits[q];
                            END IF;
                        END LOOP;
                    ELSE
                        standing[i] := false;
                        refused_by[i] := bad;
                        refusals := refusals + 1;
                    END IF;
                END IF;
                j := k;
            END LOOP;

            earlier := 0;
            FOR i IN 1..n LOOP
                IF standing[i] AND state[i] = 'earlier' THEN
                    earlier := earlier + 1;
                END IF;
            END LOOP;
            IF p_linked AND (refusals > 0 OR (earlier > 0 AND earlier < n)) THEN
                -- All or nothing: what was claimed goes back, every transfer is refused.
                FOR i IN 1..n LOOP
                    standing[i] := false;
                END LOOP;
                RAISE EXCEPTION USING ERRCODE = 'LG001';
            END IF;
            IF refusals > 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'LG001';  -- again without the refused ones
            END IF;

            FOR acc, sl, dd, cc IN
                SELECT d.a, d.s, sum(d.dd)::bigint, sum(d.cc)::bigint
                  FROM unnest(p_delta_txns, p_delta_accounts, p_delta_slots, p_delta_debits,
                              p_delta_credits) AS d(t, a, s, dd, cc)
                 WHERE state[d.t] = 'posted'
                 GROUP BY d.a, d.s
                 ORDER BY d.a, d.s
            LOOP
                UPDATE ledger_balanceslot b
                   SET debits_posted = b.debits_posted + dd,
                       credits_posted = b.credits_posted + cc
                 WHERE b.account_id = acc AND b.slot = sl
                   AND (NOT b.debits_must_not_exceed_credits
                        OR b.debits_posted + b.debits_pending + dd <= b.credits_posted + cc)
                   AND (NOT b.credits_must_not_exceed_debits
                        OR b.credits_posted + b.credits_pending + cc <= b.debits_posted + dd);
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'ledger: slot % of account % is missing or its limit broke',
                        sl, acc USING ERRCODE = 'check_violation';
                END IF;
            END LOOP;

            INSERT INTO ledger_transaction
                (id, ledger, kind, hold_id, reverses_id, reference, description, created_at,
                 legs)
            SELECT p_ids[o], p_ledgers[o], 'transfer', NULL, NULL, p_references[o],
                   p_descriptions[o], p_created_at, c.legs
              FROM generate_subscripts(p_ids, 1) AS o
              JOIN (SELECT e.t, count(*)::smallint AS legs
                      FROM unnest(p_entry_txns) AS e(t) GROUP BY e.t) AS c ON c.t = o
             WHERE state[o] = 'posted'
             ORDER BY o;
            INSERT INTO ledger_entry (transaction_id, account_id, amount, ledger, leg, legs)
            SELECT p_ids[e.t], e.a, e.m, p_ledgers[e.t],
                   (row_number() OVER w - 1)::smallint, (count(*) OVER w)::smallint
              FROM unnest(p_entry_txns, p_entry_accounts, p_entry_amounts)
                   WITH ORDINALITY AS e(t, a, m, o)
             WHERE state[e.t] = 'posted'
            WINDOW w AS (PARTITION BY e.t ORDER BY e.o
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);
            INSERT INTO ledger_chainqueue (transaction_id, ledger, created_at)
            SELECT p_ids[o], p_ledgers[o], p_created_at
              FROM generate_subscripts(p_ids, 1) AS o
             WHERE state[o] = 'posted';
            EXIT;
        EXCEPTION WHEN SQLSTATE 'LG001' THEN
            IF p_linked THEN
                state := array_fill('linked'::text, ARRAY[n]);
                FOR i IN 1..n LOOP
                    IF refused_by[i] IS NOT NULL THEN
                        state[i] := 'refused';
                    END IF;
                END LOOP;
                EXIT;
            END IF;
        END;
    END LOOP;

    -- Row by row: the earlier record is looked up by its key only where there is one.
    FOR i IN 1..n LOOP
        idx := i;
        outcome := state[i];
        account_id := refused_by[i];
        available := room_left[i];
        result_type := NULL;
        result_id := NULL;
        request_hash := NULL;
        IF state[i] = 'posted' THEN
            result_type := 'transaction';
            result_id := p_ids[i];
        ELSIF state[i] = 'earlier' THEN
            SELECT r.result_type, r.result_id, r.request_hash
              INTO result_type, result_id, request_hash
              FROM ledger_idempotencyrecord r WHERE r.key = p_keys[i];
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$fn$;
"""



def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(POST_TRANSFERS)  # no parameters: its % signs are plpgsql's


def restore_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        previous = importlib.import_module("ledger.migrations.0005_post_functions")
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(previous.POST_TRANSFERS)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0005_post_functions")]

    operations = [migrations.RunPython(create_function, restore_function)]
