"""``IdempotentRequest`` moves here from ``accounts``: the model's state only; its table,
``accounts_idempotentrequest``, stays as it is."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0003_credit_line_frozen_reason_choices"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotentRequest",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("scope", models.CharField(max_length=64)),
                        ("key", models.CharField(max_length=200)),
                        ("fingerprint", models.CharField(max_length=64)),
                        ("status_code", models.PositiveSmallIntegerField(null=True)),
                        ("body", models.JSONField(null=True)),
                        (
                            "created_at",
                            models.DateTimeField(default=django.utils.timezone.now),
                        ),
                    ],
                    options={
                        "db_table": "accounts_idempotentrequest",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("scope", "key"), name="idempotent_request_once"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
