"""One-time codes sent by SMS: patients sign in (and register) with them.

A code is six digits from ``secrets``, good for ``CODE_MINUTES`` minutes and ``CODE_TRIES``
wrong tries (the last voids it), used once. Only a keyed hash of it is stored (the field key's
lookup hash, over the purpose, the phone and the code), and the message carrying it goes out
through the SMS outbox (``notices.sms_queue``), whose copy of the code is wiped once sent. A
phone gets at most one code a minute and ``DAILY_CODES`` in any 24 hours for each purpose
(signing in, a family member's consent); a new code voids the phone's earlier unused ones for
the same purpose and subject.

Signing in checks the code and then finds the person: the one whose phone it is, or, for a
phone on nobody, the holder of the ID number given (who has no phone yet, and whose name
matches) or a new person. A refusal after the code was found counts as a wrong try, so that
guessing names and ID numbers costs codes, which are few a day.
"""

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractUser
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import crypto
from accounts.exceptions import (
    AccountsError,
    CodeNotValid,
    IdentityMismatch,
    PhoneElsewhere,
    RegistrationNeeded,
    TooManyCodes,
    WrongCode,
)
from accounts.identity import age_on
from accounts.models import Person, SmsCode
from accounts.selectors import person_find

from .audit import audit_record
from .notices import sms_queue
from .patient_tokens import patient_token_issue
from .persons import person_phone_attach, person_register, phone_clean
from .staff import patient_user_ensure

CODE_MINUTES = 5
CODE_TRIES = 5
RESEND_SECONDS = 60
DAILY_CODES = 10
DAY = timedelta(hours=24)


def _code_matches(code: SmsCode, phone: str, typed: str) -> bool:
    # Under any configured key: a code issued just before a key rotation still works.
    wanted = code.code_hash.encode()
    return any(
        hmac.compare_digest(wanted, candidate.encode())
        for candidate in crypto.lookup_hashes(f"sms-code:{code.purpose}:{phone}:{typed}")
    )


def _phone_lock(phone: str) -> None:
    """Serialise code issue and checks for one phone until the transaction ends, so that two
    requests at once cannot both pass the one-a-minute rule or both register the phone.
    (SQLite takes the database's write lock at the start of each transaction already.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"sms-phone:{phone}"]
            )


def _retry_after(until: datetime, now: datetime) -> int:
    return max(1, int((until - now).total_seconds() + 0.999))


@transaction.atomic(savepoint=False)
def sms_code_issue(
    *,
    phone: str,
    purpose: str,
    subject: str = "",
    person: Person | None = None,
    template: str = "LOGIN_CODE",
    params: dict[str, str] | None = None,
) -> SmsCode:
    """Make a code for ``phone`` and queue its message (``template``, with ``params`` beside
    the code); a step inside the caller's transaction. ``TooManyCodes`` (with
    ``retry_after``) past the phone's limits."""
    phone = phone_clean(phone)
    _phone_lock(phone)
    now = timezone.now()
    hashes = crypto.lookup_hashes(phone)
    # Counted per purpose: consent codes a family member has asked for do not use up the
    # phone's own sign-ins.
    recent = list(
        SmsCode.objects.filter(phone_hash__in=hashes, purpose=purpose, created_at__gt=now - DAY)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:DAILY_CODES]
    )
    if recent and now - recent[0] < timedelta(seconds=RESEND_SECONDS):
        raise TooManyCodes(
            retry_after=_retry_after(recent[0] + timedelta(seconds=RESEND_SECONDS), now),
            daily=False,
        )
    if len(recent) >= DAILY_CODES:
        raise TooManyCodes(retry_after=_retry_after(recent[-1] + DAY, now), daily=True)
    # A new code voids the earlier unused ones for the same thing (two family members asking a
    # parent's consent each keep theirs).
    SmsCode.objects.filter(
        phone_hash__in=hashes,
        purpose=purpose,
        subject=subject,
        used_at__isnull=True,
        voided_at__isnull=True,
    ).update(voided_at=now)
    digits = f"{secrets.randbelow(10**6):06d}"
    code = SmsCode.objects.create(
        phone_hash=crypto.lookup_hash(phone),
        purpose=purpose,
        subject=subject,
        code_hash=crypto.lookup_hash(f"sms-code:{purpose}:{phone}:{digits}"),
        created_at=now,
        expires_at=now + timedelta(minutes=CODE_MINUTES),
    )
    prefix = "sign-in" if purpose == SmsCode.Purpose.SIGN_IN else purpose
    sms_queue(
        key=f"{prefix}:{code.pk}",
        phone=phone,
        template=template,
        params={**(params or {}), "code": digits},
        person=person,
        send_by=code.expires_at,
    )
    return code


@transaction.atomic(durable=True)
def sign_in_code_send(*, phone: str) -> SmsCode:
    """Send a sign-in code to ``phone``, whether or not it is anyone's: a new patient
    registers with it, and the answer tells nobody who is enrolled."""
    return sms_code_issue(phone=phone, purpose=SmsCode.Purpose.SIGN_IN)


def _live_code(phone: str, purpose: str, subject: str, now: datetime) -> SmsCode | None:
    code = (
        SmsCode.objects.select_for_update()
        .filter(
            phone_hash__in=crypto.lookup_hashes(phone),
            purpose=purpose,
            subject=subject,
            used_at__isnull=True,
            voided_at__isnull=True,
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    return code if code is not None and code.expires_at > now else None


def sms_code_take(
    *, phone: str, purpose: str, subject: str, typed: str
) -> tuple[SmsCode | None, AccountsError | None]:
    """Check ``typed`` against the live code for ``phone``, ``purpose`` and ``subject``, inside
    the caller's transaction: the code (now used) or the refusal to raise once that
    transaction has committed the wrong try it counted."""
    _phone_lock(phone)
    now = timezone.now()
    found = _live_code(phone, purpose, subject, now)
    if found is None:
        return None, _no_code()
    if not _code_matches(found, phone, (typed or "").strip()):
        return None, _wrong_code(_wrong_try(found, now))
    found.used_at = now
    found.save(update_fields=["used_at"])
    return found, None


def _wrong_try(code: SmsCode, now: datetime) -> int:
    """Count a wrong try; how many are left (none: the code is void now)."""
    code.attempts += 1
    fields = ["attempts"]
    if code.attempts >= CODE_TRIES:
        code.voided_at = now
        fields.append("voided_at")
    code.save(update_fields=fields)
    return CODE_TRIES - code.attempts


def _wrong_code(tries_left: int) -> WrongCode:
    if tries_left <= 0:
        return WrongCode(
            _("the code is wrong, and void after five wrong tries: ask for a new code"),
            field="code",
        )
    return WrongCode(
        _("the code is wrong: %(tries)s more tries before it is void"),
        field="code",
        params={"tries": tries_left},
    )


def _no_code() -> CodeNotValid:
    return CodeNotValid(
        _("no valid code for this number: it expired, was used or was never sent; ask for one"),
        field="code",
    )


def person_of_phone(phone: str) -> Person | None:
    """Whose phone this is: several people may share one (a parent's on a child's record), and
    the one who signs in with it is then the adult enrolled first."""
    people = Person.objects.filter(phone_hash__in=crypto.lookup_hashes(phone)).order_by(
        "created_at", "pk"
    )
    today = timezone.localdate()
    found = list(people[:20])
    adults = [p for p in found if age_on(p.birth_date, today) >= 18]
    chosen = adults or found
    return chosen[0] if chosen else None


def _person_signing_in(*, phone: str, name: str, id_number: str, actor: str) -> tuple[Person, bool]:
    """The person this verified phone signs in, registered now if need be; True if new."""
    person = person_of_phone(phone)
    if person is not None:
        return person, False
    if not name.strip() or not id_number.strip():
        raise RegistrationNeeded(
            _("this mobile number is on nobody yet: give your name and ID number to register"),
            field="id_number",
        )
    holder = person_find(id_number)
    if holder is None:
        return person_register(actor=actor, name=name, id_number=id_number, phone=phone), True
    holder = Person.objects.select_for_update().get(pk=holder.pk)
    if "".join(holder.name.split()) != "".join(name.split()):
        raise IdentityMismatch(
            _("the name and the ID number do not belong together"), field="id_number"
        )
    if holder.phone_hash:
        raise PhoneElsewhere(
            _(
                "this person has another mobile number; it can be changed at a hospital"
                " cashier's desk"
            ),
            field="phone",
        )
    person_phone_attach(actor=actor, person=holder, phone=phone)
    return holder, True


@dataclass(frozen=True)
class SignedIn:
    """Who signed in; ``registered`` when this sign-in enrolled them or gave them the phone.
    ``token`` for the city's app, ``user`` for the portal's session."""

    person: Person
    registered: bool
    token: str | None = None
    user: AbstractUser | None = None


def patient_sign_in(
    *, phone: str, code: str, channel: str, name: str = "", id_number: str = ""
) -> SignedIn:
    """Sign a patient in with the code sent to ``phone``: for ``channel`` ``app`` with a new
    bearer token, for ``portal`` with the Django user of their session (made if need be).

    Refusals are ``AccountsError`` s: ``InvalidInput`` of the phone, ``CodeNotValid``,
    ``WrongCode``, ``RegistrationNeeded``, ``IdentityMismatch``, ``InvalidInput`` of the
    name or ID number, ``PhoneElsewhere`` (409). Every refusal after a code was found counts
    as a wrong try on it, and that count is kept although the call fails.
    """
    phone = phone_clean(phone)
    typed = (code or "").strip()
    refusal: AccountsError | None = None
    with transaction.atomic(durable=True):
        _phone_lock(phone)
        now = timezone.now()
        found = _live_code(phone, SmsCode.Purpose.SIGN_IN, "", now)
        if found is None:
            refusal = _no_code()
        elif not _code_matches(found, phone, typed):
            refusal = _wrong_code(_wrong_try(found, now))
        else:
            try:
                with transaction.atomic():  # a refused registration leaves nothing behind
                    signed_in = _signed_in(found, phone, channel, name, id_number, now)
            except AccountsError as error:
                _wrong_try(found, now)
                refusal = error
    if refusal is not None:
        raise refusal
    return signed_in


def _signed_in(
    code: SmsCode, phone: str, channel: str, name: str, id_number: str, now: datetime
) -> SignedIn:
    person, registered = _person_signing_in(
        phone=phone, name=name, id_number=id_number, actor=f"self:{channel}"
    )
    actor = f"patient:{person.pk}"
    code.used_at = now
    code.save(update_fields=["used_at"])
    audit_record(
        actor=actor,
        action="patient.register" if registered else "patient.sign_in",
        obj=person,
        changes={"channel": channel, "code": code.pk},
    )
    if channel == "app":
        return SignedIn(person, registered, token=patient_token_issue(person=person, actor=actor))
    return SignedIn(person, registered, user=patient_user_ensure(actor=actor, person=person))
