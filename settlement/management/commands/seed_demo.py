import base64
import hashlib
import hmac
import io
import os
import socket
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from stdnum.cn import ric

from accounts import crypto
from accounts.models import (
    Department,
    FamilyLink,
    Institution,
    Partner,
    PartnerKey,
    Person,
    StaffMember,
    StaffToken,
)
from accounts.selectors import person_find
from accounts.services.credit_lines import credit_line_grant
from accounts.services.family import family_link_create
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create, partner_key_issue
from accounts.services.persons import person_get_or_create, person_update
from accounts.services.staff import (
    patient_user_ensure,
    staff_create,
    token_hash,
    token_issue,
    token_revoke,
)
from core.money import fen_to_yuan
from settlement.insurer.client import InsurerClient
from settlement.models import CreditMovement, Encounter, InsuranceClaim, Receivable, Settlement
from settlement.reconciliation.batches import batch_run, statement_batch_create
from settlement.reconciliation.models import ReconBatch
from settlement.services.claim_retries import claim_retry
from settlement.services.deposit_table import deposit_table_import
from settlement.services.encounters import ChargeItem, charges_post, encounter_admit
from settlement.services.repayments import receivables_mark_overdue
from settlement.services.settle import encounter_settle

DEPOSIT_TABLE = """diagnosis_code,name,amount
J18.9,肺炎 (未特指),1800.00
K35.8,急性阑尾炎,2600.00
I63.9,脑梗死,5200.00
J06.9,急性上呼吸道感染,600.00
"""
DEMO_PATIENT_PHONE = "13800000001"
DEMO_PASSWORD_DEFAULT = "demo-pass-2026"  # noqa: S105 - printed demo login, DEBUG only
ACTOR = "command:seed_demo"
BANK = "厦门国际银行 (demo)"


def demo_id_number(region: str, birth: date, sequence: int) -> str:
    base = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return base + ric.calc_check_digit(base + "0")


# name, birth date, sequence (odd: male, even: female), credit score or None
FAMILY = {
    "mother": ("陈静", date(1988, 3, 14), 22, 640),
    "daughter": ("陈小雨", date(2015, 9, 1), 24, None),
    "son": ("吴建国", date(1979, 6, 30), 11, 580),
    "grandfather": ("吴德福", date(1946, 2, 8), 13, None),
    "walk_in": ("黄丽", date(1992, 5, 20), 26, None),  # no credit line: pays at the window
    "late_payer": ("林海", date(1985, 11, 3), 17, 520),
}
# Nothing listens on the discard port: the deferred claim's insurer is "down".
INSURER_DOWN = "http://127.0.0.1:9"
# Failed retries behind the deferred claim, so its next attempt is an hour away (the backoff's
# longest) and finance sees it deferred; it reverts on its own after that, or on "retry now".
DEFERRED_ATTEMPTS = 7


def demo_secret(purpose: str) -> str:
    """A demo credential that is the same at every start of ``make run`` (never in production:
    seed_demo runs only with DEBUG on), derived from the secret key."""
    from django.conf import settings

    digest = hmac.new(settings.SECRET_KEY.encode(), f"demo:{purpose}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def item(
    code: str, name: str, category: str, cls: str, qty: str, fen: int, day: date
) -> ChargeItem:
    return ChargeItem(code, name, category, cls, Decimal(qty), fen, day)


class Command(BaseCommand):
    help = (
        "Load idempotent demo data and print the demo logins: a hospital with departments and "
        "the diagnosis deposit table, a bank partner with credit lines, a family with a minor "
        "and one with an elderly parent, and cashier, finance and admin users. It sets known "
        "passwords, so it runs only with DEBUG on unless --force is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (not for production)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo sets known passwords; it runs only with DEBUG on.")
        password = os.environ.get("DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        # Each service call commits on its own (they are durable) and every step is "ensure",
        # so a run stopped halfway is finished by the next.
        lines = self.seed(password)
        stays = self.seed_stays(lines["hospital"], lines["people"])
        out = self.stdout.write
        out(f"Demo data loaded. Staff logins at /login/ (password for all: {password}):")
        for code, username, role, token in lines["staff"]:
            out(f"  {code:5} {role:8}  {username:10}  API token {token}")
        out(
            f"  patient   mobile {lines['patient']} at /portal/sign-in/ (陈静, mother of a minor):"
            " press 'send code', the code arrives on the SMS simulator's page"
        )
        out(
            "Pages: /cashier/ (cashier), /finance/ (finance), /portal/ (patient), "
            "/platform/ (platform), /admin/ (admin)"
        )
        out("  admin site /admin/ as 'admin'")
        out(f"Bank partner '{BANK}' (partner_id={lines['partner_id']}):")
        out(f"  key_id={lines['key_id']}")
        out(f"  secret={lines['secret']}")
        out(stays)

    def seed(self, password: str) -> dict[str, Any]:
        hospital = institution_ensure(actor=ACTOR, code="XMH1", name="厦门市第一医院 (demo)")
        second = institution_ensure(actor=ACTOR, code="XMH2", name="厦门市第二医院 (demo)")
        centre = institution_ensure(
            actor=ACTOR, code="XMC1", name="思明区社区卫生服务中心 (demo)", kind="community"
        )
        departments = {
            hospital: [
                ("IM", "内科", 300_000),
                ("SUR", "外科", 500_000),
                ("PED", "儿科", 200_000),
                ("GER", "老年科", 300_000),
            ],
            second: [("IM", "内科", 250_000), ("OBS", "妇产科", 300_000), ("OPD", "门诊", 0)],
            centre: [("GP", "全科", 0), ("PH", "预防保健", 0)],
        }
        for institution, rows in departments.items():
            for code, name, default_deposit in rows:
                department_ensure(
                    actor=ACTOR,
                    institution=institution,
                    code=code,
                    name=name,
                    default_deposit=default_deposit,
                )
        deposit_table_import(actor=ACTOR, institution=hospital, text=DEPOSIT_TABLE)

        partner = Partner.objects.filter(name=BANK).first()
        if partner is None:
            partner, key, secret = partner_create(actor=ACTOR, name=BANK, grace_days=10)
        else:  # the key the bank's demo integration already uses keeps working
            active = (
                PartnerKey.objects.filter(partner=partner, revoked_at__isnull=True)
                .order_by("-created_at")
                .first()
            )
            if active is None:
                key, secret = partner_key_issue(actor=ACTOR, partner=partner)
            else:
                key, secret = active, crypto.decrypt(active.secret_encrypted)

        people = {}
        for role, (name, birth, sequence, score) in FAMILY.items():
            number = demo_id_number("350203", birth, sequence)
            people[role] = (
                person_find(number)
                or person_get_or_create(actor=ACTOR, name=name, id_number=number)[0]
            )
            if score is not None:
                credit_line_grant(
                    actor=ACTOR,
                    partner=partner,
                    id_number=number,
                    name=name,
                    score=score,
                    score_provider="白鹭分",
                )
        links = [
            ("mother", "daughter", FamilyLink.Relation.PARENT_OF_MINOR),
            ("son", "grandfather", FamilyLink.Relation.CHILD_OF_PARENT),
        ]
        for payer, beneficiary, relation in links:
            if not FamilyLink.objects.filter(
                payer=people[payer], beneficiary=people[beneficiary], status="active"
            ).exists():
                family_link_create(
                    actor=ACTOR,
                    payer=people[payer],
                    beneficiary=people[beneficiary],
                    relation=relation,
                    consent=True,
                    consent_by=f"{people[payer].name} in person (demo)",
                    consent_channel="cashier",
                )
        if not people["mother"].phone_hash:
            person_update(actor=ACTOR, person=people["mother"], phone=DEMO_PATIENT_PHONE)
        # She signs in with an SMS code to her phone (no password): her login is made here so
        # that the demo's pages are hers from the first sign-in.
        patient_user_ensure(actor=ACTOR, person=people["mother"])

        staff = []
        logins: list[tuple[str, str, Institution | None]] = [
            ("cashier", "cashier", hospital),
            ("finance", "finance", hospital),
            ("admin", "admin", hospital),
            ("cashier2", "cashier", second),
            ("finance2", "finance", second),
            ("cashier-c1", "cashier", centre),
            ("platform", "platform", None),  # the city platform's operator: every institution
        ]
        for username, role, place in logins:
            # The same token at every start, so scripts and API clients keep working.
            token = demo_secret(f"token:{username}")
            existing = get_user_model().objects.filter(username=username).first()
            if existing is None or not StaffMember.objects.filter(user=existing).exists():
                # New, or made before staff belonged to an institution: placed at theirs.
                user, spare = staff_create(
                    actor=ACTOR, username=username, role=role, institution=place
                )
                token_revoke(key=spare)
            else:
                user = existing
            if not StaffToken.objects.filter(
                user_id=user.pk, key_hash=token_hash(token), revoked_at__isnull=True
            ).exists():
                token_issue(user=user, key=token)
            if role == "admin":
                user.is_staff = user.is_superuser = True
            if not user.check_password(password):  # a new hash would sign everyone out
                user.set_password(password)
            user.save()
            staff.append((place.code if place else "city", username, role, token))
        return {
            "hospital": hospital,
            "people": people,
            "staff": staff,
            "patient": DEMO_PATIENT_PHONE,
            "partner_id": partner.pk,
            "key_id": key.key_id,
            "secret": secret,
        }

    def seed_stays(self, hospital: Any, people: dict[str, Person]) -> str:
        """Stays in the states a desk sees every day, each made once; what there is to see."""
        if not insurer_reachable():
            return (
                f"Demo stays: not made, the insurer at {settings.INSURER_URL} does not answer "
                "(start it with `manage.py run_insurer_simulator` and run seed_demo again)."
            )
        wards = {d.code: d for d in Department.objects.filter(institution=hospital)}
        today = timezone.localdate()
        made = []
        if not Encounter.objects.filter(person=people["grandfather"]).exists():
            made.append(self.open_stay(people["grandfather"], wards["GER"], today))
        if not Encounter.objects.filter(person=people["daughter"]).exists():
            made.append(self.settled_stay(people["daughter"], wards["PED"], today))
        if not Encounter.objects.filter(person=people["walk_in"]).exists():
            made.append(self.deferred_claim(people["walk_in"], wards["IM"], today))
        if not Encounter.objects.filter(person=people["late_payer"]).exists():
            made.append(self.overdue_stay(people["late_payer"], wards["SUR"], today))
        if made and not ReconBatch.objects.filter(partner__name=BANK).exists():
            self.bank_statement(today)
        lines = ["Demo stays (cashier desk, finance desk and the patient's portal):"]
        lines += [f"  {name}: {story}" for name, story in STAYS]
        if made:
            lines.append(f"  ({len(made)} made now)")
        return "\n".join(lines)

    def open_stay(self, person: Person, ward: Department, today: date) -> Encounter:
        """Admitted four days ago on his son's line (亲情付), charged day by day, still open."""
        stay = admit(person, ward, "J06.9", days_ago=4)
        for offset in range(4, -1, -1):
            day = today - timedelta(days=offset)
            charges_post(
                actor=ACTOR,
                encounter_id=stay.pk,
                key=f"seed_demo:{stay.pk}:charges:1:{day}",
                items=[
                    item("BED-2", "普通病房床位费", "bed", "A", "1", 4_500, day),
                    item("DRG-101", "阿莫西林胶囊", "drug", "A", "3", 1_260, day),
                    item("NUR-1", "二级护理", "nursing", "A", "1", 2_800, day),
                ],
            )
        charges_post(
            actor=ACTOR,
            encounter_id=stay.pk,
            key=f"seed_demo:{stay.pk}:charges:2:{today}",
            items=[item("EXM-CT", "胸部CT平扫", "exam", "B", "1", 26_000, today - timedelta(1))],
        )
        return stay

    def settled_stay(self, person: Person, ward: Department, today: date) -> Encounter:
        """A child's three days on her mother's line, settled after discharge: the bank pays."""
        stay = admit(person, ward, "J18.9", days_ago=3)
        for offset in (3, 2, 1):
            day = today - timedelta(days=offset)
            charges_post(
                actor=ACTOR,
                encounter_id=stay.pk,
                key=f"seed_demo:{stay.pk}:charges:3:{day}",
                items=[
                    item("BED-3", "儿科病房床位费", "bed", "A", "1", 5_000, day),
                    item("DRG-220", "头孢克洛干混悬剂", "drug", "B", "2", 3_850, day),
                    item("LAB-12", "血常规", "lab", "A", "1", 2_500, day),
                    item("TRT-9", "雾化吸入治疗", "treatment", "C", "1", 12_000, day),
                ],
            )
        charges_post(
            actor=ACTOR,
            encounter_id=stay.pk,
            key=f"seed_demo:{stay.pk}:charges:4:{today}",
            items=[
                item("EXM-DR", "胸部DR摄影", "exam", "B", "1", 16_000, today - timedelta(3)),
                item("DRG-IG", "静注人免疫球蛋白", "drug", "C", "1", 68_000, today - timedelta(2)),
            ],
        )
        encounter_settle(actor=ACTOR, encounter_id=stay.pk)
        return stay

    def deferred_claim(self, person: Person, ward: Department, today: date) -> Encounter:
        """An outpatient visit settled while the insurer was down: paid in full by WeChat Pay,
        the claim deferred; when the insurer answers, the insurer's share becomes a refund."""
        stay = admit(person, ward, "", days_ago=0, kind=Encounter.Kind.OUTPATIENT)
        charges_post(
            actor=ACTOR,
            encounter_id=stay.pk,
            key=f"seed_demo:{stay.pk}:charges:5:{today}",
            items=[
                item("EXM-US", "腹部彩超", "exam", "B", "1", 18_000, today),
                item("DRG-305", "奥美拉唑肠溶胶囊", "drug", "A", "2", 2_650, today),
            ],
        )
        down = InsurerClient(INSURER_DOWN, timeout=1)
        encounter_settle(actor=ACTOR, encounter_id=stay.pk, channel="wechat", client=down)
        claim = InsuranceClaim.objects.get(encounter=stay)
        for _ in range(DEFERRED_ATTEMPTS):
            claim_retry(claim_id=claim.pk, client=down)
        return stay

    def overdue_stay(self, person: Person, ward: Department, today: date) -> Encounter:
        """A visit settled on credit some forty days ago and not repaid: overdue, line frozen."""
        stay = admit(person, ward, "", days_ago=0, kind=Encounter.Kind.OUTPATIENT)
        charges_post(
            actor=ACTOR,
            encounter_id=stay.pk,
            key=f"seed_demo:{stay.pk}:charges:6:{today}",
            items=[
                item("TRT-40", "清创缝合术", "treatment", "A", "1", 42_000, today),
                item("MAT-7", "可吸收缝线", "material", "C", "2", 6_800, today),
            ],
        )
        encounter_settle(actor=ACTOR, encounter_id=stay.pk)
        # The demo cannot wait out the bank's grace period: the visit is moved back in time
        # (dates only; the ledger's postings are untouched), then the overdue rule runs as the
        # hourly task would.
        visit = timezone.now() - timedelta(days=40)
        Encounter.objects.filter(pk=stay.pk).update(admitted_at=visit, settled_at=visit)
        due = today - timedelta(days=30)
        Receivable.objects.filter(encounter=stay).update(due_date=due)
        Settlement.objects.filter(encounter=stay).update(settled_at=visit, due_date=due)
        receivables_mark_overdue(today=today)
        return stay

    def bank_statement(self, today: date) -> None:
        """The bank's statement of today, reconciled as a worker would: it pays the demo's
        credit draws and carries one transfer the hospital knows nothing of, for finance."""
        hospital = Institution.objects.get(code="XMH1")  # its finance desk's statement
        draws = CreditMovement.objects.filter(
            partner__name=BANK, institution=hospital, kind=CreditMovement.Kind.DRAW
        ).order_by("pk")
        lines = ["bank_txn_id,value_date,amount,reference"]
        lines += [
            f"DEMO-T{n},{today},{fen_to_yuan(draw.amount)},{draw.reference}"
            for n, draw in enumerate(draws, start=1)
        ]
        lines.append(f"DEMO-T{len(lines)},{today},88.00,DRUNKNOWN0001")
        text = "\n".join(lines) + "\n"
        partner = Partner.objects.get(name=BANK)
        batch, _ = statement_batch_create(
            actor=ACTOR,
            institution=hospital,
            partner=partner,
            stream=io.BytesIO(text.encode()),
            file_name=f"demo-statement-{today}.csv",
            enqueue=False,
        )
        batch_run(batch.pk)


STAYS = [
    ("吴德福", "open inpatient stay of five days on his son's line, charged day by day"),
    ("陈小雨", "settled on her mother's line; the bank owes the hospital (mother's portal)"),
    ("黄丽", "paid by WeChat Pay while the insurer was down; the claim is deferred"),
    ("林海", "settled on credit forty days ago, overdue; his line is frozen"),
    ("对账", "today's bank statement: the credit draws paid, one transfer nobody knows of"),
]


def admit(
    person: Person, ward: Department, diagnosis: str, *, days_ago: int, kind: str = "inpatient"
) -> Encounter:
    stay = encounter_admit(
        actor=ACTOR, person=person, department=ward, kind=kind, diagnosis_code=diagnosis
    )
    if days_ago:  # the stay began days ago (dates only), so its bill has several days
        admitted = timezone.now() - timedelta(days=days_ago)
        Encounter.objects.filter(pk=stay.pk).update(admitted_at=admitted)
        stay.admitted_at = admitted
    return stay


def insurer_reachable() -> bool:
    address = urlsplit(settings.INSURER_URL)
    try:
        socket.create_connection((address.hostname, address.port or 80), timeout=2).close()
    except OSError:
        return False
    return True
