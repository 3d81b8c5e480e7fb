"""Every institution has seen the persons it admitted before this was recorded: its staff list
them (accounts.PersonSeen)."""

from django.db import migrations


def seen_where_admitted(apps, schema_editor):
    Encounter = apps.get_model("settlement", "Encounter")
    PersonSeen = apps.get_model("accounts", "PersonSeen")
    pairs = Encounter.objects.values_list("person_id", "institution_id").distinct()
    batch = []
    for person_id, institution_id in pairs.iterator(chunk_size=2000):
        batch.append(PersonSeen(person_id=person_id, institution_id=institution_id))
        if len(batch) == 2000:
            PersonSeen.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    PersonSeen.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_person_seen"),
        ("settlement", "0013_refund_paid_out"),
    ]

    operations = [migrations.RunPython(seen_where_admitted, migrations.RunPython.noop)]
