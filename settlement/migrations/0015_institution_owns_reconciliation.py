"""Reconciliation belongs to an institution.

A draw or reversal keeps its encounter's institution (filled in from the encounter for those
made before), so that a statement is matched against the uploading institution's items only.
A batch keeps its institution: earlier statement and insurer batches go to the only
institution where there is one; with several, they stay unplaced, seen by the platform's
operators alone (a ledger check belongs to no institution, and every finance desk sees it).
"""

import django.db.models.deletion
from django.db import migrations, models


def movements_placed(apps, schema_editor):
    CreditMovement = apps.get_model("settlement", "CreditMovement")
    Encounter = apps.get_model("settlement", "Encounter")
    CreditMovement.objects.filter(institution__isnull=True).update(
        institution=models.Subquery(
            Encounter.objects.filter(receivable__pk=models.OuterRef("receivable_id")).values(
                "institution_id"
            )[:1]
        )
    )


def batches_placed(apps, schema_editor):
    Institution = apps.get_model("accounts", "Institution")
    ReconBatch = apps.get_model("settlement", "ReconBatch")
    institutions = list(Institution.objects.values_list("pk", flat=True)[:2])
    if len(institutions) == 1:
        ReconBatch.objects.exclude(source="ledger").update(institution_id=institutions[0])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_person_seen"),
        ("settlement", "0014_persons_seen_where_admitted"),
    ]

    operations = [
        migrations.AddField(
            model_name="creditmovement",
            name="institution",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.institution",
            ),
        ),
        migrations.RunPython(movements_placed, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="creditmovement",
            name="institution",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.institution",
            ),
        ),
        migrations.AddField(
            model_name="reconbatch",
            name="institution",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.institution",
            ),
        ),
        migrations.RunPython(batches_placed, migrations.RunPython.noop),
    ]
