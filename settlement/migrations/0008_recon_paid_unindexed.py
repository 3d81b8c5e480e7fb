import django.db.models.deletion
from django.db import migrations, models


def drop_paid_index(apps, schema_editor):
    """The BRIN index by batch slowed the writing of a batch's paid items by a quarter, and
    nothing reads them by batch (see ReconPaid.batch)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS recon_paid_batch_brin")


def index_paid_by_batch(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS recon_paid_batch_brin"
            " ON settlement_reconpaid USING brin (batch_id)"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("settlement", "0007_recon_paid"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reconpaid",
            name="batch",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="paid",
                to="settlement.reconbatch",
            ),
        ),
        migrations.RunPython(drop_paid_index, index_paid_by_batch),
    ]
