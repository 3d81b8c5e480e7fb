import uuid

from django.db import migrations, models


def give_references(apps, schema_editor):
    Consent = apps.get_model("accounts", "Consent")
    for consent in Consent.objects.filter(reference__isnull=True).only("pk"):
        Consent.objects.filter(pk=consent.pk).update(reference=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_patients_own_channel"),
    ]

    operations = [
        migrations.AlterField(
            model_name="creditline",
            name="frozen_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "not frozen"),
                    ("bank", "frozen by the bank"),
                    ("overdue", "an amount is overdue"),
                    ("score", "the credit score fell below the lowest tier"),
                ],
                default="",
                max_length=32,
            ),
        ),
        # Three steps, so that consents recorded before it each get a reference of their own.
        migrations.AddField(
            model_name="consent",
            name="reference",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(give_references, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="consent",
            name="reference",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
