import django.db.models.deletion
from django.db import migrations, models

# An item's row and bit: its id divided by 32, and bit id % 32 of that row's bits.
BIT = "(CAST(1 AS bigint) << CAST(movement_id & 31 AS integer))"


def to_bits(apps, schema_editor):
    """Fold the rows of paid items, one per item, into a bitmap row per 32 neighbouring ids."""
    postgres = schema_editor.connection.vendor == "postgresql"
    # SQLite has no bitwise OR aggregate; the sum of distinct powers of two is the same number.
    bits = f"bit_or({BIT})" if postgres else f"SUM(DISTINCT {BIT})"
    schema_editor.execute(
        "INSERT INTO settlement_reconpaid (block, batch_id, bits)"
        f" SELECT movement_id / 32, batch_id, {bits} FROM settlement_reconpaiditem"
        " GROUP BY movement_id / 32, batch_id"
    )


def to_items(apps, schema_editor):
    """Unfold the bitmaps into a row per paid item again."""
    bits = ", ".join(f"({bit})" for bit in range(32))
    schema_editor.execute(
        f"WITH bit (n) AS (VALUES {bits})"
        " INSERT INTO settlement_reconpaiditem (movement_id, batch_id)"
        " SELECT p.block * 32 + bit.n, p.batch_id FROM settlement_reconpaid p, bit"
        " WHERE (p.bits & (CAST(1 AS bigint) << bit.n)) <> 0"
        " ON CONFLICT (movement_id) DO NOTHING"
    )


def rename_old_key(apps, schema_editor):
    """PostgreSQL: the renamed table's key index takes the renamed table's name, leaving the new
    table's key the name Django gives it."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER INDEX IF EXISTS settlement_reconpaid_pkey RENAME TO settlement_reconpaiditem_pkey"
        )


def restore_old_key(apps, schema_editor):
    """PostgreSQL, on the way back: the key's name and the BRIN index of migration 0007."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER INDEX IF EXISTS settlement_reconpaiditem_pkey RENAME TO settlement_reconpaid_pkey"
        )
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS recon_paid_batch_brin"
            " ON settlement_reconpaiditem USING brin (batch_id)"
        )


class Migration(migrations.Migration):
    """A batch's paid items become bitmaps, 32 neighbouring item ids to a row (see ReconPaid).

    Stop the workers while it runs: a batch that commits its results in the old shape meanwhile
    fails and is run again."""

    dependencies = [
        ("settlement", "0007_recon_paid"),
    ]

    operations = [
        migrations.RenameModel("ReconPaid", "ReconPaidItem"),
        migrations.RunPython(rename_old_key, restore_old_key),
        migrations.CreateModel(
            name="ReconPaid",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "block", "batch", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("block", models.BigIntegerField()),
                (
                    "batch",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="paid",
                        to="settlement.reconbatch",
                    ),
                ),
                ("bits", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(to_bits, to_items),
        migrations.DeleteModel("ReconPaidItem"),
    ]
