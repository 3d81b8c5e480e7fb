import os
from datetime import date
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from stdnum.cn import ric

from accounts.models import FamilyLink, Partner, PartnerKey, StaffToken
from accounts.services.credit_lines import credit_line_grant
from accounts.services.family import family_link_create
from accounts.services.institutions import department_ensure, institution_ensure
from accounts.services.partners import partner_create, partner_key_issue
from accounts.services.persons import person_find, person_get_or_create, person_update
from accounts.services.staff import patient_login_create, staff_create, token_issue
from settlement.services.deposit_table import deposit_table_import

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
}


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
        with transaction.atomic():
            lines = self.seed(password)
        out = self.stdout.write
        out(f"Demo data loaded. Logins (password for all: {password}):")
        for username, role, token in lines["staff"]:
            out(f"  {role:8}  {username:10}  API token {token}")
        out(f"  patient   {lines['patient']} (mobile number; 陈静, mother of a minor)")
        out("Pages: /cashier/ (cashier), /finance/ (finance), /portal/ (patient), /admin/ (admin)")
        out("  admin site /admin/ as 'admin'")
        out(f"Bank partner '{BANK}' (partner_id={lines['partner_id']}):")
        out(f"  key_id={lines['key_id']}")
        out(f"  secret={lines['secret']}")

    def seed(self, password: str) -> dict[str, Any]:
        hospital = institution_ensure(actor=ACTOR, code="XMH1", name="厦门市第一医院 (demo)")
        institution_ensure(
            actor=ACTOR, code="XMC1", name="思明区社区卫生服务中心 (demo)", kind="community"
        )
        departments = [
            ("IM", "内科", 300_000),
            ("SUR", "外科", 500_000),
            ("PED", "儿科", 200_000),
            ("GER", "老年科", 300_000),
        ]
        for code, name, default_deposit in departments:
            department = department_ensure(actor=ACTOR, institution=hospital, code=code, name=name)
            if department.default_deposit != default_deposit:
                department.default_deposit = default_deposit
                department.save(update_fields=["default_deposit"])
        deposit_table_import(actor=ACTOR, institution=hospital, text=DEPOSIT_TABLE)

        partner = Partner.objects.filter(name=BANK).first()
        if partner is None:
            partner, key, secret = partner_create(actor=ACTOR, name=BANK, grace_days=10)
        else:  # a secret is shown once: replace the demo keys with a new one
            PartnerKey.objects.filter(partner=partner, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            key, secret = partner_key_issue(actor=ACTOR, partner=partner)

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
        patient_login_create(actor=ACTOR, person=people["mother"], password=password)

        staff = []
        for username, role in [("cashier", "cashier"), ("finance", "finance"), ("admin", "admin")]:
            existing = get_user_model().objects.filter(username=username).first()
            if existing is None:
                user, token = staff_create(actor=ACTOR, username=username, role=role)
            else:
                user = existing
                StaffToken.objects.filter(user=user, revoked_at__isnull=True).update(
                    revoked_at=timezone.now()
                )
                token = token_issue(user=user)
            if role == "admin":
                user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            staff.append((username, role, token))
        return {
            "staff": staff,
            "patient": DEMO_PATIENT_PHONE,
            "partner_id": partner.pk,
            "key_id": key.key_id,
            "secret": secret,
        }
