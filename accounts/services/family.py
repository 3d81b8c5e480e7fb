"""亲情付: family links between a payer's credit lines and a beneficiary's costs."""

from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import crypto
from accounts.exceptions import AccountsError, CreditLineStateError, FamilyRuleViolated
from accounts.identity import age_on
from accounts.models import FamilyLink, Person, SmsCode
from accounts.selectors import link_is_live
from ledger import services as ledger
from ledger.models import Account, Ledger, Side

from .audit import audit_record
from .sms_codes import sms_code_issue, sms_code_take

CONSENT_CHANNELS = ("cashier", "portal", "api", "sms")
MAX_CAP = 100_000_000


def family_cap_pool() -> Account:
    return ledger.account_create(
        code="credit:family-caps",
        name="family link caps granted",
        ledger=Ledger.CREDIT,
        normal_side=Side.DEBIT,
        balance_slots=16,
    )


def check_family_rules(
    *, payer: Person, beneficiary: Person, relation: str, consent: bool, today: date
) -> None:
    """Raise ``FamilyRuleViolated`` naming the input that breaks a rule."""
    if relation not in FamilyLink.Relation.values:
        raise FamilyRuleViolated(
            _("relation must be parent_of_minor or child_of_parent"), field="relation"
        )
    if payer.pk == beneficiary.pk:
        raise FamilyRuleViolated(_("a person cannot carry their own costs"), field="beneficiary")
    if consent is not True:
        raise FamilyRuleViolated(
            _("the payer's consent must be given and recorded"), field="consent"
        )
    if age_on(payer.birth_date, today) < 18:
        raise FamilyRuleViolated(_("the payer must be 18 or older"), field="payer")
    if relation == FamilyLink.Relation.PARENT_OF_MINOR:
        if age_on(beneficiary.birth_date, today) >= 18:
            raise FamilyRuleViolated(
                _("parent_of_minor needs a beneficiary under 18 today"), field="beneficiary"
            )
        if payer.birth_date >= beneficiary.birth_date:
            raise FamilyRuleViolated(_("a parent must be older than the child"), field="payer")
    else:
        if beneficiary.birth_date >= payer.birth_date:
            raise FamilyRuleViolated(
                _("child_of_parent needs a beneficiary older than the payer"), field="beneficiary"
            )


@transaction.atomic(durable=True)
def family_link_create(
    *,
    actor: str,
    payer: Person,
    beneficiary: Person,
    relation: str,
    consent: bool,
    consent_by: str,
    consent_channel: str,
    cap: int | None = None,
    today: date | None = None,
) -> FamilyLink:
    today = today or timezone.localdate()
    check_family_rules(
        payer=payer, beneficiary=beneficiary, relation=relation, consent=consent, today=today
    )
    if consent_channel not in CONSENT_CHANNELS:
        raise FamilyRuleViolated(
            _("consent channel must be one of %(channels)s"),
            field="consent",
            params={"channels": ", ".join(CONSENT_CHANNELS)},
        )
    _check_cap(cap)
    if FamilyLink.objects.filter(
        payer=payer, beneficiary=beneficiary, status=FamilyLink.Status.ACTIVE
    ).exists():
        raise FamilyRuleViolated(_("these two people are already linked"), field="beneficiary")
    try:
        with transaction.atomic():
            link = FamilyLink.objects.create(
                payer=payer,
                beneficiary=beneficiary,
                relation=relation,
                cap=cap,
                consent_at=timezone.now(),
                consent_by=consent_by,
                consent_channel=consent_channel,
                # At a desk the consent is given in person: the staff user who saw it.
                consent_recorded_by=actor if consent_channel == "cashier" else "",
            )
    except IntegrityError:
        raise FamilyRuleViolated(
            _("these two people are already linked"), field="beneficiary"
        ) from None
    _activate(actor, link)
    return link


def _check_cap(cap: int | None) -> None:
    if cap is not None and (isinstance(cap, bool) or not 0 < cap <= MAX_CAP):
        raise FamilyRuleViolated(
            _("cap must be between 1 and %(max)s fen"), field="cap", params={"max": MAX_CAP}
        )


def _activate(actor: str, link: FamilyLink) -> None:
    """The link carries costs from now: its cap account funded, the consent audited."""
    cap = link.cap
    if cap is not None:
        link.cap_account = ledger.account_create(
            code=f"credit:family-link:{link.pk}:cap",
            name="family link cap",
            ledger=Ledger.CREDIT,
            normal_side=Side.CREDIT,
            debits_must_not_exceed_credits=True,
        )
        ledger.transfer(
            key=f"family-link:{link.pk}:cap",
            debit=family_cap_pool(),
            credit=link.cap_account,
            amount=cap,
            reference=f"family-link:{link.pk}",
            description="family link cap",
        )
        link.save(update_fields=["cap_account"])
    audit_record(
        actor=actor,
        action="family_link.create",
        obj=link,
        changes={
            "payer": link.payer_id,
            "beneficiary": link.beneficiary_id,
            "relation": link.relation,
            "cap": cap,
            "consent_by": link.consent_by,
            "consent_channel": link.consent_channel,
            "consent_recorded_by": link.consent_recorded_by,
        },
    )


@transaction.atomic(durable=True)
def family_link_request(
    *, actor: str, payer: Person, beneficiary: Person, consent: bool, cap: int | None = None
) -> FamilyLink:
    """An adult child asks to carry a parent's costs (child_of_parent): the link waits for
    the parent's consent, asked by a code sent to the parent's phone, which the parent gives
    the child to enter (``family_link_consent``). Asking again sends a new code for the same
    waiting link. A parent without a phone on record consents at a hospital desk instead."""
    today = timezone.localdate()
    relation = FamilyLink.Relation.CHILD_OF_PARENT
    check_family_rules(
        payer=payer, beneficiary=beneficiary, relation=relation, consent=consent, today=today
    )
    _check_cap(cap)
    if not beneficiary.phone_encrypted:
        raise FamilyRuleViolated(
            _("%(name)s has no phone on record: their consent is given at a hospital desk"),
            field="beneficiary",
            params={"name": beneficiary.name},
        )
    if FamilyLink.objects.filter(
        payer=payer, beneficiary=beneficiary, status=FamilyLink.Status.ACTIVE
    ).exists():
        raise FamilyRuleViolated(_("these two people are already linked"), field="beneficiary")
    link = (
        FamilyLink.objects.select_for_update()
        .filter(payer=payer, beneficiary=beneficiary, status=FamilyLink.Status.PENDING)
        .first()
    )
    if link is None:
        try:
            with transaction.atomic():  # the same request sent twice at once: one link waits
                link = FamilyLink.objects.create(
                    payer=payer,
                    beneficiary=beneficiary,
                    relation=relation,
                    status=FamilyLink.Status.PENDING,
                    cap=cap,
                    consent_by="",
                    consent_channel="sms",
                )
        except IntegrityError:
            raise FamilyRuleViolated(
                _("this link is already waiting for consent"), field="beneficiary"
            ) from None
    elif link.cap != cap:
        link.cap = cap
        link.save(update_fields=["cap"])
    sms_code_issue(
        phone=crypto.decrypt(beneficiary.phone_encrypted),
        purpose=SmsCode.Purpose.FAMILY_CONSENT,
        subject=str(link.pk),
        person=beneficiary,
        template="CONSENT_CODE",
        params={"name": payer.name[:20]},
    )
    audit_record(
        actor=actor,
        action="family_link.request",
        obj=link,
        changes={"payer": payer.pk, "beneficiary": beneficiary.pk, "cap": cap},
    )
    return link


def family_link_consent(*, actor: str, payer: Person, link_id: int, code: str) -> FamilyLink:
    """The parent's consent, by the code sent to their phone, entered by the child: the link
    becomes active (consent by the parent, channel ``sms``). A wrong code counts against the
    code's five tries, kept although the call fails."""
    refusal: AccountsError | None = None
    with transaction.atomic(durable=True):
        link = (
            FamilyLink.objects.select_for_update()
            .select_related("beneficiary")
            .filter(pk=link_id, payer=payer, status=FamilyLink.Status.PENDING)
            .first()
        )
        if link is None:
            raise FamilyRuleViolated(_("no family link waits for this consent"), field="code")
        taken, refusal = sms_code_take(
            phone=crypto.decrypt(link.beneficiary.phone_encrypted),
            purpose=SmsCode.Purpose.FAMILY_CONSENT,
            subject=str(link.pk),
            typed=code,
        )
        if taken is not None:
            link.status, link.consent_at = FamilyLink.Status.ACTIVE, timezone.now()
            link.consent_by = link.beneficiary.name
            try:
                with transaction.atomic():
                    link.save(update_fields=["status", "consent_at", "consent_by"])
            except IntegrityError:  # linked meanwhile by a desk
                raise FamilyRuleViolated(
                    _("these two people are already linked"), field="beneficiary"
                ) from None
            _activate(actor, link)
    if refusal is not None:
        raise refusal
    return link


@transaction.atomic(durable=True)
def family_link_revoke(*, actor: str, link_id: int) -> FamilyLink:
    """End a link for future stays. Amounts already drawn through it are untouched."""
    link = FamilyLink.objects.select_for_update().get(pk=link_id)
    if link.status == FamilyLink.Status.REVOKED:
        return link
    if link.status == FamilyLink.Status.LAPSED:
        raise CreditLineStateError(_("the link has already lapsed"))
    link.status, link.ended_at = FamilyLink.Status.REVOKED, timezone.now()
    link.save(update_fields=["status", "ended_at"])
    audit_record(actor=actor, action="family_link.revoke", obj=link)
    return link


def family_links_lapse(*, today: date | None = None) -> int:
    """Mark parent_of_minor links whose beneficiary has turned 18 as lapsed (daily beat)."""
    today = today or timezone.localdate()
    lapsed = 0
    candidates = FamilyLink.objects.filter(
        status=FamilyLink.Status.ACTIVE, relation=FamilyLink.Relation.PARENT_OF_MINOR
    ).select_related("beneficiary")
    for link in candidates.iterator():
        if link_is_live(link, today):
            continue
        with transaction.atomic():
            updated = FamilyLink.objects.filter(pk=link.pk, status=FamilyLink.Status.ACTIVE).update(
                status=FamilyLink.Status.LAPSED, ended_at=timezone.now()
            )
            if updated:
                audit_record(
                    actor="system",
                    action="family_link.lapse",
                    obj=link,
                    changes={"reason": "beneficiary turned 18"},
                )
                lapsed += 1
    return lapsed
