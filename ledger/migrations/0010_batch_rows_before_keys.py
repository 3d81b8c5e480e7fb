# Lock order of the batch function, again: migration 0008 claimed the keys (its INSERT into
# the key table) before it locked the balance rows, while the single posting, the holds and the
# reversal take the rows first and the key last. A batch and a single posting sent at once with
# one key then deadlocked (the batch holding the key's index entry and waiting for a row, the
# posting holding the row and waiting for the key) and one of them failed with "deadlock
# detected" instead of a replay or an IdempotencyConflict: the order migration 0006 had set.
# Now the batch locks the balance rows of every standing transfer first, in (account, slot)
# order, then claims its keys, in key order, so that two batches sharing keys but not rows wait
# for the keys in one order too. The rest is 0008's: the inserts' deferred checks run early,
# the limits are checked by one windowed query and the slots get one UPDATE; the answers and
# guarantees are unchanged.

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
-- transfer then account order). The balance rows the batch may write are locked first, in
-- (account, slot) order (the order every posting path takes them); then every key is claimed
-- in one INSERT, in key order; transactions, entries and the chain queue get one INSERT each
-- and their deferred checks are run at once; the transfers are checked against the limited
-- rows in batch order by one windowed query, and every touched slot is given its summed
-- change by one UPDATE (which re-checks the limits). The rows are held from there to the
-- commit, with nothing deferred left to run.
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
    posted boolean[];
    batch_refused boolean := false;
    lim_ids bigint[];
    lim_debit boolean[];
    lim_room bigint[];
    fits boolean;
    i integer;
    j integer;
    k integer;
    q integer;
    pos integer;
    bad bigint;
    want bigint;
    refusals integer;
    earlier integer;
    slots_wanted integer;
    slots_updated integer;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN;
    END IF;
    LOOP
        BEGIN
            -- Every balance row the standing transfers may write, limited or not, is locked
            -- first, in (account, slot) order, and the keys are claimed after the rows: the
            -- order of the single posting, the holds and the reversal (rows, then key). A
            -- transfer holding a key waits for no row, so a batch and a posting sharing a key
            -- cannot deadlock (migration 0006; 0008 had claimed first).
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

            -- The keys are claimed in key order: batches sharing keys but not rows (another
            -- request under the same keys) wait for each other's keys in one order.
            WITH claimed AS (
                INSERT INTO ledger_idempotencyrecord
                    (key, request_hash, result_type, result_id, created_at)
                SELECT u.k, u.h, 'transaction', u.t, p_created_at
                  FROM unnest(p_keys, p_hashes, p_ids) WITH ORDINALITY AS u(k, h, t, o)
                 WHERE standing[u.o]
                 ORDER BY u.k
                ON CONFLICT (key) DO NOTHING
                RETURNING key
            )
            SELECT array_agg(c.key IS NOT NULL ORDER BY u.o)
              INTO posted
              FROM unnest(p_keys) WITH ORDINALITY AS u(k, o)
              LEFT JOIN claimed c ON c.key = u.k;

            IF p_linked THEN
                SELECT count(*) INTO earlier
                  FROM generate_subscripts(p_keys, 1) AS o
                 WHERE standing[o] AND NOT posted[o];
                IF earlier > 0 AND earlier < n THEN
                    -- A linked batch is one request: some of its keys used before refuse it.
                    batch_refused := true;
                    RAISE EXCEPTION USING ERRCODE = 'LG001';
                END IF;
            END IF;

            INSERT INTO ledger_transaction
                (id, ledger, kind, hold_id, reverses_id, reference, description, created_at,
                 legs)
            SELECT p_ids[c.t], p_ledgers[c.t], 'transfer', NULL, NULL, p_references[c.t],
                   p_descriptions[c.t], p_created_at, c.legs
              FROM (SELECT e.t, count(*)::smallint AS legs
                      FROM unnest(p_entry_txns) AS e(t)
                     WHERE posted[e.t]
                     GROUP BY e.t) AS c
             ORDER BY c.t;
            INSERT INTO ledger_entry (transaction_id, account_id, amount, ledger, leg, legs)
            SELECT p_ids[e.t], e.a, e.m, p_ledgers[e.t],
                   (row_number() OVER w - 1)::smallint, (count(*) OVER w)::smallint
              FROM unnest(p_entry_txns, p_entry_accounts, p_entry_amounts)
                   WITH ORDINALITY AS e(t, a, m, o)
             WHERE posted[e.t]
            WINDOW w AS (PARTITION BY e.t ORDER BY e.o
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING);
            INSERT INTO ledger_chainqueue (transaction_id, ledger, created_at)
            SELECT p_ids[o], p_ledgers[o], p_created_at
              FROM generate_subscripts(p_ids, 1) AS o
             WHERE posted[o];
            -- The ledger's deferred checks on what was just inserted (zero-sum and the
            -- foreign keys of entries and queue) run now rather than at commit, so the commit
            -- of a batch holding its rows has none of them left to run. Only the ledger's own
            -- constraints: the caller's other deferred constraints keep their time.
            SET CONSTRAINTS pgtrigger_transaction_balanced_48552,
                entry_transaction_ledger_legs_fk, entry_account_ledger_fk,
                ledger_entry_account_id_e9f5e345_fk_ledger_account_id,
                ledger_chainqueue_transaction_id_b4dc7d09_fk_ledger_tr IMMEDIATE;
            SET CONSTRAINTS pgtrigger_transaction_balanced_48552,
                entry_transaction_ledger_legs_fk, entry_account_ledger_fk,
                ledger_entry_account_id_e9f5e345_fk_ledger_account_id,
                ledger_chainqueue_transaction_id_b4dc7d09_fk_ledger_tr DEFERRED;

            -- Transfer i fits an account's limit when the changes of the transfers up to it
            -- (in batch order) stay within the room: while every transfer fits, one query says
            -- so; else the loop below finds, in order, the ones that do not.
            fits := true;
            IF lim_ids IS NOT NULL THEN
                SELECT coalesce(bool_and(w.running <= w.room), true)
                  INTO fits
                  FROM (SELECT sum(CASE WHEN l.debit THEN d.dd - d.cc ELSE d.cc - d.dd END)
                                   OVER (PARTITION BY d.a ORDER BY d.t
                                         ROWS UNBOUNDED PRECEDING) AS running,
                               l.room
                          FROM unnest(p_delta_txns, p_delta_accounts, p_delta_debits,
                                      p_delta_credits) AS d(t, a, dd, cc)
                          JOIN unnest(lim_ids, lim_debit, lim_room) AS l(a, debit, room)
                            ON l.a = d.a
                         WHERE posted[d.t]) AS w;
            END IF;

            refusals := 0;
            IF NOT fits THEN
                j := 1;
                WHILE j <= m LOOP
                    i := p_delta_txns[j];
                    k := j;
                    WHILE k <= m AND p_delta_txns[k] = i LOOP
                        k := k + 1;
                    END LOOP;
                    IF posted[i] THEN
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
            END IF;

            IF refusals > 0 THEN
                -- Linked, all or nothing: every transfer is refused. Unlinked, the round is
                -- rolled back (claims, rows, checks) and the next claims only those standing.
                batch_refused := p_linked;
                RAISE EXCEPTION USING ERRCODE = 'LG001';
            END IF;

            -- The rows were locked first: one UPDATE, in any order, adds every slot's sum.
            WITH d AS (
                SELECT d.a, d.s, sum(d.dd)::bigint AS dd, sum(d.cc)::bigint AS cc
                  FROM unnest(p_delta_txns, p_delta_accounts, p_delta_slots, p_delta_debits,
                              p_delta_credits) AS d(t, a, s, dd, cc)
                 WHERE posted[d.t]
                 GROUP BY d.a, d.s
            ), u AS (
                UPDATE ledger_balanceslot b
                   SET debits_posted = b.debits_posted + d.dd,
                       credits_posted = b.credits_posted + d.cc
                  FROM d
                 WHERE b.account_id = d.a AND b.slot = d.s
                   AND (NOT b.debits_must_not_exceed_credits
                        OR b.debits_posted + b.debits_pending + d.dd <= b.credits_posted + d.cc)
                   AND (NOT b.credits_must_not_exceed_debits
                        OR b.credits_posted + b.credits_pending + d.cc <= b.debits_posted + d.dd)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u)
              INTO slots_wanted, slots_updated;
            IF slots_updated <> slots_wanted THEN
                RAISE EXCEPTION 'ledger: a balance slot of the batch is missing or its limit broke'
                    USING ERRCODE = 'check_violation';
            END IF;

            EXIT;
        EXCEPTION WHEN SQLSTATE 'LG001' THEN
            IF batch_refused THEN
                posted := array_fill(false, ARRAY[n]);
                EXIT;
            END IF;
        END;
    END LOOP;

    -- One statement answers: the earlier record is joined by its key only where there is one.
    RETURN QUERY
    SELECT o::integer,
           CASE WHEN posted[o] THEN 'posted'
                WHEN refused_by[o] IS NOT NULL THEN 'refused'
                WHEN batch_refused THEN 'linked'
                ELSE 'earlier' END,
           CASE WHEN posted[o] THEN 'transaction'::text ELSE r.result_type::text END,
           CASE WHEN posted[o] THEN p_ids[o] ELSE r.result_id END,
           r.request_hash::text,
           refused_by[o],
           room_left[o]
      FROM generate_subscripts(p_keys, 1) AS o
      LEFT JOIN ledger_idempotencyrecord r
        ON NOT batch_refused AND NOT posted[o] AND refused_by[o] IS NULL
           AND r.key = p_keys[o]
     ORDER BY o;
END;
$fn$;
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(POST_TRANSFERS)  # no parameters: its % signs are plpgsql's


def restore_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        previous = importlib.import_module("ledger.migrations.0008_batch_set_based")
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(previous.POST_TRANSFERS)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0009_hold_create_function")]

    operations = [migrations.RunPython(create_function, restore_function)]
