import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from accounts import crypto, signing
from accounts.exceptions import InvalidInput
from accounts.models import Partner, PartnerKey, PartnerNonce, PartnerTier

from .audit import audit_record

# Xiamen's tiers (DESIGN.md §3): score ≤500 → ¥500, 501-600 → ¥1,000, ≥601 → ¥3,000.
DEFAULT_TIERS = ((0, 50_000), (501, 100_000), (601, 300_000))


class SignatureRejected(Exception):
    """The request's signature headers do not authenticate it; nothing was changed."""


@transaction.atomic(durable=True)
def partner_create(
    *,
    actor: str,
    name: str,
    webhook_url: str = "",
    grace_days: int = 10,
    tiers: tuple[tuple[int, int], ...] = DEFAULT_TIERS,
    enrolment: str = Partner.Enrolment.AUTO,
) -> tuple[Partner, PartnerKey, str]:
    """Create a bank partner with its tier table and a first signing key; ``enrolment`` says
    whether a citizen enrolling with it is granted a line at once or the bank answers."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput(
            gettext_lazy("a partner name of 1 to 100 characters is needed"), field="name"
        )
    if Partner.objects.filter(name=name).exists():
        raise InvalidInput(
            gettext_lazy("a partner named %(name)s exists"),
            field="name",
            params={"name": repr(name)},
        )
    if not 0 <= grace_days <= 365:
        raise InvalidInput(gettext_lazy("grace_days must be between 0 and 365"), field="grace_days")
    if enrolment not in Partner.Enrolment.values:
        raise InvalidInput(gettext_lazy("enrolment must be auto or application"), field="enrolment")
    partner = Partner.objects.create(
        name=name, webhook_url=webhook_url, grace_days=grace_days, enrolment=enrolment
    )
    _tiers_set(actor=actor, partner=partner, tiers=tiers)
    key, secret = partner_key_issue(actor=actor, partner=partner)
    audit_record(
        actor=actor,
        action="partner.create",
        obj=partner,
        changes={
            "name": name,
            "webhook_url": webhook_url,
            "grace_days": grace_days,
            "enrolment": enrolment,
        },
    )
    return partner, key, secret


@transaction.atomic(durable=True)
def partner_set_tiers(*, actor: str, partner: Partner, tiers: tuple[tuple[int, int], ...]) -> None:
    """Replace a bank's tier table (score band to credit limit)."""
    _tiers_set(actor=actor, partner=partner, tiers=tiers)


def _tiers_set(*, actor: str, partner: Partner, tiers: tuple[tuple[int, int], ...]) -> None:
    # The lowest band may start above 0: it is then the least score the bank lends on.
    bands = sorted(tiers)
    if not bands:
        raise InvalidInput(gettext_lazy("the tier table needs at least one band"), field="tiers")
    if len({score for score, _ in bands}) != len(bands) or any(limit <= 0 for _, limit in bands):
        raise InvalidInput(
            gettext_lazy("tier scores must differ and limits be positive"), field="tiers"
        )
    partner.tiers.all().delete()
    PartnerTier.objects.bulk_create(
        PartnerTier(partner=partner, min_score=score, limit=limit) for score, limit in bands
    )
    audit_record(actor=actor, action="partner.tiers", obj=partner, changes={"tiers": bands})


def tier_limit_or_none(partner: Partner, score: int) -> int | None:
    """The limit of the bank's band for ``score``; ``None`` under its lowest band."""
    tier = partner.tiers.filter(min_score__lte=score).order_by("-min_score").first()
    return None if tier is None else tier.limit


def lowest_tier_score(partner: Partner) -> int | None:
    """The least score the bank lends on (``None`` for a bank without a tier table)."""
    tier = partner.tiers.order_by("min_score").first()
    return None if tier is None else tier.min_score


def tier_limit(partner: Partner, score: int) -> int:
    limit = tier_limit_or_none(partner, score)
    if limit is None:
        raise InvalidInput(
            gettext_lazy("no tier of %(partner)s covers score %(score)s"),
            field="score",
            params={"partner": partner.name, "score": score},
        )
    return limit


def partner_key_issue(*, actor: str, partner: Partner) -> tuple[PartnerKey, str]:
    """A new signing key; the secret is returned once and stored only encrypted."""
    secret = secrets.token_urlsafe(32)
    key = PartnerKey.objects.create(
        partner=partner,
        key_id=f"pk_{secrets.token_hex(10)}",
        secret_encrypted=crypto.encrypt(secret),
    )
    audit_record(actor=actor, action="partner.key_issue", obj=key, changes={"key_id": key.key_id})
    return key, secret


def partner_key_revoke(*, actor: str, key: PartnerKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="partner.key_revoke", obj=key)


def partner_authenticate(
    *,
    key_id: str,
    timestamp: str,
    nonce: str,
    signature: str,
    method: str,
    path_with_query: str,
    body: bytes,
    now: datetime | None = None,
) -> PartnerKey:
    """Check a signed request; remember its nonce. Raises ``SignatureRejected``."""
    if not (key_id and timestamp and nonce and signature):
        raise SignatureRejected(
            "X-Partner-Key, X-Timestamp, X-Nonce and X-Signature are all required"
        )
    if len(nonce) > 100:
        raise SignatureRejected("X-Nonce is longer than 100 characters")
    key = (
        PartnerKey.objects.select_related("partner")
        .filter(key_id=key_id, revoked_at__isnull=True)
        .first()
    )
    if key is None:
        raise SignatureRejected("unknown or revoked partner key")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureRejected("X-Timestamp must be Unix seconds")
    sent_at = int(timestamp)
    now = now or timezone.now()
    if abs(now.timestamp() - sent_at) > signing.MAX_SKEW_SECONDS:
        raise SignatureRejected("X-Timestamp is more than 300 s away from the server's clock")
    secret = crypto.decrypt(key.secret_encrypted)
    expected = signing.sign(secret, method, path_with_query, timestamp, nonce, body)
    if not signing.signature_matches(expected, signature):
        raise SignatureRejected("signature does not match")
    try:
        with transaction.atomic():
            PartnerNonce.objects.create(key=key, nonce=nonce, seen_at=now)
    except IntegrityError:
        raise SignatureRejected("nonce already used: the request is a replay") from None
    return key


def partner_nonces_purge(*, now: datetime | None = None) -> int:
    """Forget nonces older than twice the skew window: their timestamps are refused anyway."""
    cutoff = (now or timezone.now()) - timedelta(seconds=2 * signing.MAX_SKEW_SECONDS)
    deleted, _ = PartnerNonce.objects.filter(seen_at__lt=cutoff).delete()
    return deleted
