"""Drop the LIKE index Django gives a text primary key (created after 0007's own operations)."""

from django.db import migrations


def drop_like_index(apps, schema_editor):
    """PostgreSQL: the key is only ever looked up by equality, so the LIKE index Django adds to a
    text key would only slow down writing a batch's million references."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes"
            " WHERE tablename = 'settlement_reconpaid' AND indexname LIKE %s",
            ["%\\_like"],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')


class Migration(migrations.Migration):
    dependencies = [("settlement", "0007_recon_paid")]

    operations = [migrations.RunPython(drop_like_index, migrations.RunPython.noop)]
