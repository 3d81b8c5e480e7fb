import re
import unicodedata

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import crypto
from accounts.exceptions import InvalidInput, PersonExists
from accounts.identity import ResidentId, parse_id_number
from accounts.models import Institution, Person, PersonSeen
from accounts.selectors import person_find

from .audit import audit_record

PHONE = re.compile(r"^1\d{10}$")


def parse_id_number_field(id_number: str) -> ResidentId:
    """The resident ID; an ``InvalidIdNumber`` (``InvalidInput`` of ``id_number``) if not valid."""
    return parse_id_number(id_number)


# Letters and symbols that draw nothing: Hangul fillers and the blank Braille pattern.
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(char: str) -> bool:
    """Whether ``char`` draws something by itself: not a control, format or direction mark
    (category C), not a space (Z), not a combining mark without a base (M), not a blank."""
    return unicodedata.category(char)[0] not in "CZM" and char not in BLANK_CHARACTERS


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput(_("a name of 1 to 100 characters is needed"), field="name")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidInput(_("a name cannot hold control characters"), field="name")
    # Zero-width and direction-control characters have their place inside a name (a joiner in
    # some scripts, an isolate around a Uyghur name), but a name of nothing else shows as blank
    # on a receipt and can pass for anyone's.
    if not any(_visible(char) for char in name):
        raise InvalidInput(_("a name needs at least one visible character"), field="name")
    return name


def _clean_phone(phone: str | None) -> str:
    phone = (phone or "").strip().replace(" ", "").replace("-", "")
    if phone and not PHONE.match(phone):
        raise InvalidInput(
            _("a mainland mobile number has 11 digits starting with 1"), field="phone"
        )
    return phone


@transaction.atomic(durable=True)
def person_create(
    *,
    actor: str,
    name: str,
    id_number: str,
    phone: str | None = None,
    seen_at: Institution | None = None,
) -> Person:
    """Enrol a person (a second enrolment of the same ID number is ``PersonExists``); enrolled
    at an institution's desk (``seen_at``), that institution has seen them."""
    person = _person_enrol(actor=actor, name=name, id_number=id_number, phone=phone)
    if seen_at is not None:
        person_seen(person=person, institution=seen_at)
    return person


def _person_enrol(*, actor: str, name: str, id_number: str, phone: str | None) -> Person:
    name, phone = _clean_name(name), _clean_phone(phone)
    resident = parse_id_number_field(id_number)
    if Person.objects.filter(id_number_hash__in=crypto.lookup_hashes(resident.number)).exists():
        raise PersonExists(_("a person with this ID number is already enrolled"), field="id_number")
    try:
        with transaction.atomic():
            person = Person.objects.create(
                name=name,
                id_number_encrypted=crypto.encrypt(resident.number),
                id_number_hash=crypto.lookup_hash(resident.number),
                id_number_masked=resident.masked,
                birth_date=resident.birth_date,
                sex=resident.sex,
                phone_encrypted=crypto.encrypt(phone) if phone else "",
                phone_hash=crypto.lookup_hash(phone) if phone else "",
            )
    except IntegrityError:  # enrolled concurrently
        raise PersonExists(
            _("a person with this ID number is already enrolled"), field="id_number"
        ) from None
    audit_record(
        actor=actor,
        action="person.create",
        obj=person,
        changes={"name": name, "id_number": resident.masked, "phone": bool(phone)},
    )
    return person


def phone_clean(phone: str) -> str:
    """A mainland mobile number as 11 digits (blanks and dashes dropped); an ``InvalidInput``
    of ``phone`` if it is empty or not one."""
    cleaned = _clean_phone(phone)
    if not cleaned:
        raise InvalidInput(
            _("a mainland mobile number has 11 digits starting with 1"), field="phone"
        )
    return cleaned


def person_register(*, actor: str, name: str, id_number: str, phone: str) -> Person:
    """Enrol a person who signs up themself with a verified phone: a step of the sign-in
    service, inside its transaction (``person_create`` is the desk's, a transaction of its
    own)."""
    return _person_enrol(actor=actor, name=name, id_number=id_number, phone=phone)


def person_phone_attach(*, actor: str, person: Person, phone: str, how: str = "verified") -> None:
    """Give ``person`` (who has no phone) this one: a step of the sign-in service (a phone
    verified by its code) or of a bank's grant (``how``: the bank's customer's phone)."""
    cleaned = phone_clean(phone)
    person.phone_encrypted = crypto.encrypt(cleaned)
    person.phone_hash = crypto.lookup_hash(cleaned)
    person.updated_at = timezone.now()
    person.save(update_fields=["phone_encrypted", "phone_hash", "updated_at"])
    audit_record(actor=actor, action="person.update", obj=person, changes={"phone": how})


def person_get_or_create(
    *, actor: str, name: str, id_number: str, phone: str | None = None
) -> tuple[Person, bool]:
    """The person with this ID number, enrolled now if new; True if new. A step of the
    service calling it (a partner's grant), inside its transaction.

    ``phone`` (a bank knows its customer's) is kept for a person who has none yet; a person's
    phone once known is changed only at a desk, never by a third party.
    """
    phone = _clean_phone(phone)
    existing = person_find(id_number)
    if existing is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent enrolment leaves ours usable
                return _person_enrol(actor=actor, name=name, id_number=id_number, phone=phone), True
        except PersonExists:
            existing = person_find(id_number)
            assert existing is not None  # noqa: S101 - PersonExists means the row is there
    if phone and not existing.phone_hash:
        # Locked and read again: a patient's own sign-in may be verifying a phone this moment.
        existing = Person.objects.select_for_update().get(pk=existing.pk)
        if not existing.phone_hash:
            person_phone_attach(actor=actor, person=existing, phone=phone, how="given by a bank")
    return existing, False


@transaction.atomic(durable=True)
def person_update(
    *, actor: str, person: Person, name: str | None = None, phone: str | None = None
) -> Person:
    changes: dict[str, object] = {}
    if name is not None and name.strip() != person.name:
        person.name = _clean_name(name)
        changes["name"] = person.name
    if phone is not None:
        cleaned = _clean_phone(phone)
        person.phone_encrypted = crypto.encrypt(cleaned) if cleaned else ""
        person.phone_hash = crypto.lookup_hash(cleaned) if cleaned else ""
        changes["phone"] = "changed" if cleaned else "removed"
    if changes:
        person.updated_at = timezone.now()
        person.save()
        audit_record(actor=actor, action="person.update", obj=person, changes=changes)
    return person


def persons_rotate_keys(*, batch: int = 500) -> int:
    """Re-encrypt and re-hash every person under the first configured key. Safe to rerun."""
    done = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            people = list(
                Person.objects.select_for_update().filter(pk__gt=last_pk).order_by("pk")[:batch]
            )
            if not people:
                return done
            for person in people:
                number = crypto.decrypt(person.id_number_encrypted)
                person.id_number_encrypted = crypto.reencrypt(person.id_number_encrypted)
                person.id_number_hash = crypto.lookup_hash(number)
                if person.phone_encrypted:
                    phone = crypto.decrypt(person.phone_encrypted)
                    person.phone_encrypted = crypto.reencrypt(person.phone_encrypted)
                    person.phone_hash = crypto.lookup_hash(phone)
            Person.objects.bulk_update(
                people,
                ["id_number_encrypted", "id_number_hash", "phone_encrypted", "phone_hash"],
            )
            done += len(people)
            last_pk = people[-1].pk


def person_seen(*, person: Person, institution: Institution) -> None:
    """Record that ``institution`` has seen ``person`` (a step of admission, in its
    transaction), once however many times it does."""
    PersonSeen.objects.bulk_create(
        [PersonSeen(person=person, institution=institution)], ignore_conflicts=True
    )
