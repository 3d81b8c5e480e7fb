"""Personal data is encrypted at rest, found by keyed hash, never shown or logged in clear."""

import json
import logging
import os
import shutil
import subprocess
from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from accounts import crypto
from accounts.models import AuditEvent, Person
from accounts.selectors import person_find, person_id_number

pytestmark = pytest.mark.django_db


def test_rows_hold_no_clear_id_number_or_phone(make_person):
    person = make_person(phone="13800138000")
    clear = person_id_number(person)
    row = Person.objects.filter(pk=person.pk).values().get()
    stored = json.dumps(row, default=str)
    assert clear not in stored
    assert clear[6:14] not in stored  # not even the birth date digits next to each other
    assert "13800138000" not in stored
    assert row["id_number_masked"] == clear[:6] + "********" + clear[-4:]


def test_person_is_found_by_keyed_hash(make_person, id_number):
    person = make_person()
    assert person_find(person_id_number(person)) == person
    assert person_find(id_number(date(1990, 1, 1))) is None
    assert person.id_number_hash == crypto.lookup_hash(person_id_number(person))
    # The hash depends on the key: a different key gives a different hash.
    number = person_id_number(person)
    with override_settings(FIELD_ENCRYPTION_KEY="another-key"):
        assert crypto.lookup_hash(number) != person.id_number_hash


def test_audit_and_logs_show_no_personal_data(make_person, staff_client, id_number, caplog):
    number = id_number(date(1975, 6, 1))
    wrong_check_digit = number[:-1] + ("1" if number[-1] == "0" else "0")
    with caplog.at_level(logging.DEBUG):
        response = staff_client("cashier").post(
            "/api/v1/persons/",
            {"name": "赵六", "id_number": number, "phone": "13912345678"},
            format="json",
        )
        bad = staff_client("cashier").post(
            "/api/v1/persons/", {"name": "赵六", "id_number": wrong_check_digit}, format="json"
        )
    assert response.status_code == 201
    assert number not in json.dumps(response.json())
    assert bad.status_code == 400, bad.content
    assert number[:-1] not in json.dumps(bad.json())
    audit = json.dumps(list(AuditEvent.objects.values("changes")), ensure_ascii=False)
    assert number not in audit and "13912345678" not in audit
    assert number[:-1] not in caplog.text and "13912345678" not in caplog.text


def test_key_rotation_keeps_every_row_readable(make_person, settings):
    old = settings.FIELD_ENCRYPTION_KEY
    people = [make_person(phone=f"1380013800{i}") for i in range(3)]
    numbers = {p.pk: person_id_number(p) for p in people}

    settings.FIELD_ENCRYPTION_KEY = f"new-key-2026,{old}"
    for person in Person.objects.all():  # old rows read, and are found by the old key's hash
        assert person_id_number(person) == numbers[person.pk]
        assert person_find(numbers[person.pk]) == person
    out = StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert "persons re-encrypted: 3" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEY = "new-key-2026"  # the new key alone now does everything
    for person in Person.objects.all():
        assert person_id_number(person) == numbers[person.pk]
        assert person_find(numbers[person.pk]) == person
        assert crypto.decrypt(person.phone_encrypted).startswith("1380013800")

    settings.FIELD_ENCRYPTION_KEY = old  # and the old key alone no longer can
    with pytest.raises(crypto.DecryptionError):
        person_id_number(Person.objects.first())
    assert person_find(numbers[people[0].pk]) is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_dump_holds_no_id_number_in_clear(make_person):
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is needed for this test (Debian: postgresql-client)")
    people = [make_person(phone="13700137000") for _ in range(3)]
    numbers = [person_id_number(p) for p in people]
    settings_dict = connection.settings_dict
    env = dict(os.environ, PGPASSWORD=settings_dict.get("PASSWORD") or "")
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            settings_dict.get("HOST") or "127.0.0.1",
            "-p",
            str(settings_dict.get("PORT") or 5432),
            "-U",
            settings_dict.get("USER") or "postgres",
            settings_dict["NAME"],
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "accounts_person" in dump
    assert people[0].id_number_masked in dump  # the dump really has the rows
    for number in numbers:
        assert number not in dump
        assert number.lower() not in dump
    assert "13700137000" not in dump
