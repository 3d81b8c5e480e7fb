"""``IdempotentRequest`` now belongs to ``core`` (every app's requests use it): the model leaves
``accounts``'s state; its table is kept, under its old name, by ``core``."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_credit_line_frozen_reason_choices"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotentRequest")],
            database_operations=[],
        ),
    ]
