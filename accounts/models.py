"""People, institutions, staff tokens, bank partners, credit lines, family links, audit.

Personal data (ID number, phone) is stored only encrypted (``accounts.crypto``), with a keyed
hash beside it for lookups; ``id_number_masked`` is what any output shows. Written only by
``accounts.services``.
"""

import uuid

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from ledger.models import Account as LedgerAccount


class Institution(models.Model):
    """A hospital or community health centre served by the platform."""

    class Kind(models.TextChoices):
        HOSPITAL = "hospital", "hospital"
        COMMUNITY = "community", "community health centre"

    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.HOSPITAL)

    def __str__(self) -> str:
        return self.name


class Department(models.Model):
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="departments"
    )
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    # The inpatient deposit when the diagnosis has no entry in the deposit table (fen).
    default_deposit = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["institution", "code"], name="department_code_unique"),
            models.CheckConstraint(
                name="department_deposit_not_negative", condition=Q(default_deposit__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.institution.code}/{self.name}"


class Person(models.Model):
    class Sex(models.TextChoices):
        MALE = "M", "male"
        FEMALE = "F", "female"

    name = models.CharField(max_length=100)
    id_number_encrypted = models.TextField()
    id_number_hash = models.CharField(max_length=64, unique=True)
    id_number_masked = models.CharField(max_length=18)
    birth_date = models.DateField()
    sex = models.CharField(max_length=1, choices=Sex.choices)
    phone_encrypted = models.TextField(blank=True)
    phone_hash = models.CharField(max_length=64, blank=True, db_index=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="person",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.id_number_masked})"


class PersonSeen(models.Model):
    """An institution that has seen this person (admitted them once at least): its staff list
    them. Anyone is found by ID number anywhere; a list shows only whom the institution saw."""

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="seen_at")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["person", "institution"], name="person_seen_once")
        ]

    def __str__(self) -> str:
        return f"{self.person_id} @ {self.institution_id}"


class StaffMember(models.Model):
    """Where a staff user works: one institution, or none for the city platform's operators
    (role ``platform``), who see every institution."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_member"
    )
    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.PROTECT, related_name="staff"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user} @ {self.institution.code if self.institution else 'platform'}"


class StaffToken(models.Model):
    """An API token; only its SHA-256 is stored, the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class Partner(models.Model):
    """A bank that funds credit lines and calls the signed partner API."""

    class Enrolment(models.TextChoices):
        # A citizen enrolling with this bank gets a line at once, on the bank's tier table.
        AUTO = "auto", "granted on the tier table"
        # The bank is sent a signed credit.application and answers through the grant call.
        APPLICATION = "application", "the bank decides each application"

    name = models.CharField(max_length=100, unique=True)
    webhook_url = models.URLField(blank=True)
    grace_days = models.PositiveSmallIntegerField(default=10)
    enrolment = models.CharField(max_length=12, choices=Enrolment.choices, default=Enrolment.AUTO)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class PartnerTier(models.Model):
    """Score band → limit: ``min_score`` and up, until the next band (fen).

    The lowest band's ``min_score`` is the least score the bank lends on: a citizen scoring
    under it is declined at enrolment, and a line whose holder falls under it is frozen.
    """

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="tiers")
    min_score = models.PositiveIntegerField()
    limit = models.BigIntegerField()

    class Meta:
        ordering = ["min_score"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "min_score"], name="tier_unique"),
            models.CheckConstraint(name="tier_limit_positive", condition=Q(limit__gt=0)),
        ]

    def __str__(self) -> str:
        return f"{self.partner}: {self.min_score}+ → {self.limit}"


class PartnerKey(models.Model):
    """A signing key of a partner. The secret is kept encrypted: verifying a signature needs it."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="keys")
    key_id = models.CharField(max_length=40, unique=True)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key_id


class PartnerNonce(models.Model):
    """A nonce already used with a key; a second use is a replay. Purged after the skew window."""

    key = models.ForeignKey(PartnerKey, on_delete=models.CASCADE, related_name="+")
    nonce = models.CharField(max_length=100)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "nonce"], name="nonce_once")]

    def __str__(self) -> str:
        return self.nonce


class CreditLine(models.Model):
    """A bank's credit line for a person, backed by two accounts on the ``credit`` ledger.

    ``capacity_account`` (limit flag: debits never exceed credits) is credited with the limit;
    holds and draws debit it, so its available amount is what can still be drawn.
    ``drawn_account`` is credited by each draw (debiting capacity) and debited by each
    repayment (crediting capacity back), so its balance is what is drawn and not yet repaid.
    When a limit is cut below what is held and drawn, the capacity is cut to zero and
    ``limit_shortfall`` remembers the rest, taken from repayments before they restore any
    capacity.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        FROZEN = "frozen", "frozen"
        CLOSED = "closed", "closed"

    class FrozenReason(models.TextChoices):
        NONE = "", "not frozen"
        BANK = "bank", "frozen by the bank"
        OVERDUE = "overdue", "an amount is overdue"
        # The monthly score refresh found the holder's score below the bank's lowest tier.
        SCORE = "score", "the credit score fell below the lowest tier"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="credit_lines")
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="credit_lines")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    frozen_reason = models.CharField(
        max_length=32, blank=True, choices=FrozenReason.choices, default=FrozenReason.NONE
    )
    limit = models.BigIntegerField()
    limit_shortfall = models.BigIntegerField(default=0)
    score = models.PositiveIntegerField()
    score_provider = models.CharField(max_length=64)
    expires_on = models.DateField(null=True, blank=True)
    capacity_account = models.OneToOneField(
        LedgerAccount, on_delete=models.PROTECT, related_name="+"
    )
    drawn_account = models.OneToOneField(LedgerAccount, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "person"],
                condition=~Q(status="closed"),
                name="one_open_line_per_bank",
            ),
            models.CheckConstraint(name="line_limit_not_negative", condition=Q(limit__gte=0)),
            models.CheckConstraint(
                name="line_shortfall_not_negative", condition=Q(limit_shortfall__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner} line {self.id}"


class FamilyLink(models.Model):
    """亲情付: ``payer``'s credit lines carry ``beneficiary``'s costs.

    ``parent_of_minor`` lapses on the beneficiary's 18th birthday; ``child_of_parent`` needs
    the payer's recorded consent and is revocable. Revoking never touches amounts drawn.
    ``cap_account`` (credit ledger, limited) enforces the optional cap on what the link draws.
    """

    class Relation(models.TextChoices):
        PARENT_OF_MINOR = "parent_of_minor", "parent of a minor"
        CHILD_OF_PARENT = "child_of_parent", "adult child of a parent"

    class Status(models.TextChoices):
        # Asked for, waiting for the beneficiary's consent (a code sent to their phone).
        PENDING = "pending", "awaiting consent"
        ACTIVE = "active", "active"
        REVOKED = "revoked", "revoked"
        LAPSED = "lapsed", "lapsed"

    payer = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="links_as_payer")
    beneficiary = models.ForeignKey(
        Person, on_delete=models.PROTECT, related_name="links_as_beneficiary"
    )
    relation = models.CharField(max_length=16, choices=Relation.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    cap = models.BigIntegerField(null=True, blank=True)
    cap_account = models.OneToOneField(
        LedgerAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    consent_at = models.DateTimeField(null=True, blank=True)  # none while pending
    consent_by = models.CharField(max_length=150)
    consent_channel = models.CharField(max_length=16)
    # At a desk: the staff user who saw the consent given in person.
    consent_recorded_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["payer", "beneficiary"],
                condition=Q(status="active"),
                name="one_active_link_per_pair",
            ),
            # One request waiting for consent per pair: asking again reuses it.
            models.UniqueConstraint(
                fields=["payer", "beneficiary"],
                condition=Q(status="pending"),
                name="one_pending_link_per_pair",
            ),
            models.CheckConstraint(
                name="link_not_to_self", condition=~Q(payer=models.F("beneficiary"))
            ),
            models.CheckConstraint(
                name="link_cap_positive", condition=Q(cap__isnull=True) | Q(cap__gt=0)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.relation} {self.payer_id}→{self.beneficiary_id}"


class AuditEvent(models.Model):
    """Who changed what, when; written in the same transaction as the change.

    ``changes`` never holds personal data in clear: ID numbers appear masked, phones not at all.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=120)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64)
    changes = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]
        triggers = [
            pgtrigger.Protect(
                name="audit_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_id}"


# --- the patients' own channel -----------------------------------------------------------------


class SmsMessage(models.Model):
    """A text message to a phone: the SMS outbox.

    Written in the transaction of the event it tells of, with a key naming that event, so it
    exists exactly when the event does and never twice for it; a worker sends it
    (``accounts.services.notices``), at least once, giving the gateway the message's id as
    ``OutId`` so that a send repeated after a worker died mid-way is one message. The
    parameters are kept encrypted (a login code is a secret) and those of a login code are
    wiped once it is sent; ``text`` is what the person reads, kept for their list of messages
    (empty for a login code, which is not listed).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "to send"
        SENT = "sent", "sent"
        FAILED = "failed", "refused by the gateway, or expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_key = models.CharField(max_length=150, unique=True)
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="sms_messages"
    )
    phone_encrypted = models.TextField()
    template = models.CharField(max_length=20)
    params_encrypted = models.TextField(blank=True)
    text = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A message not sent by then is not sent at all (a login code after its 5 minutes).
    send_by = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    biz_id = models.CharField(max_length=64, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="sms_due",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["person", "created_at"], name="sms_of_person"),
        ]

    def __str__(self) -> str:
        return f"{self.template} {self.event_key} {self.status}"


class SmsCode(models.Model):
    """A one-time code sent to a phone: to sign in, or for a person's consent (a family link).

    Only a keyed hash of the code is kept. It is good for ``CODE_MINUTES`` minutes and
    ``CODE_TRIES`` wrong tries (the last voids it), and used once.
    """

    class Purpose(models.TextChoices):
        SIGN_IN = "sign_in", "sign in"
        FAMILY_CONSENT = "family_consent", "consent to a family link"

    phone_hash = models.CharField(max_length=64)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    subject = models.CharField(max_length=64, blank=True)  # what it consents to (a link's id)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["phone_hash", "created_at"], name="sms_code_of_phone")]

    def __str__(self) -> str:
        return f"{self.purpose} code {self.pk}"


class PatientToken(models.Model):
    """A patient's sign-in for the city's app (``Authorization: Bearer <token>``): only its
    SHA-256 is stored; it expires, and the patient (or staff) can revoke it."""

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.person_id})"


class Consent(models.Model):
    """A person's consent to a use of their data (PIPL): what for, how far, when, and until it
    is revoked. Asking the credit-score platform for a score needs one."""

    class Purpose(models.TextChoices):
        CREDIT_SCORE = "credit_score", "read my credit score for credit medical care"

    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="consents")
    # Named to the credit-score platform as the request's ``consent_id``; made before the row
    # is written, since the score is asked before anything is recorded.
    reference = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    scope = models.TextField()  # the words the person agreed to
    channel = models.CharField(max_length=16)  # app, portal or desk
    recorded_by = models.CharField(max_length=150, blank=True)  # at a desk: who saw it given
    granted_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.purpose} by {self.person_id}"


class CreditApplication(models.Model):
    """A citizen's enrolment with a bank (开通信用就医): the score read with their consent, the
    bank's tier applied, and the answer: granted (a line), declined, or waiting for the bank."""

    class Status(models.TextChoices):
        GRANTED = "granted", "granted"
        PENDING_BANK = "pending_bank", "waiting for the bank"
        DECLINED = "declined", "declined"

    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="applications")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="applications")
    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices)
    score = models.PositiveIntegerField(null=True, blank=True)
    level = models.CharField(max_length=8, blank=True)
    tier_limit = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)  # why declined
    credit_line = models.ForeignKey(
        CreditLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["person", "partner"],
                condition=Q(status="pending_bank"),
                name="one_pending_application_per_bank",
            )
        ]

    def __str__(self) -> str:
        return f"{self.person_id} at {self.partner_id}: {self.status}"
