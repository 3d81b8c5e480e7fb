from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import URLValidator

from accounts.exceptions import AccountsError
from accounts.models import Partner
from accounts.services.partners import DEFAULT_TIERS, partner_create, partner_key_issue
from core.money import WHOLE, yuan_to_fen


def parse_tiers(text: str) -> tuple[tuple[int, int], ...]:
    """``0:500,501:1000,601:3000`` — minimum score : limit in whole yuan."""
    try:
        bands = [part.split(":") for part in text.split(",") if part.strip()]
        return tuple((int(score), yuan_to_fen(yuan, WHOLE)) for score, yuan in bands)
    except ValueError:  # NotYuan is one
        raise CommandError("--tiers looks like 0:500,501:1000,601:3000") from None


class Command(BaseCommand):
    help = (
        "Create a bank partner with a signing key and print partner_id, key_id and the secret "
        "(shown once). With --new-key, issue another key to an existing partner (rotation)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--webhook-url", default="")
        parser.add_argument("--grace-days", type=int, default=10)
        parser.add_argument("--tiers", help="min_score:limit_yuan,... (default Xiamen's tiers)")
        parser.add_argument(
            "--enrolment",
            choices=[choice.value for choice in Partner.Enrolment],
            default=Partner.Enrolment.AUTO.value,
            help="citizens who enrol get a line at once (auto), or the bank answers each one",
        )
        parser.add_argument(
            "--new-key", action="store_true", help="add a key to the existing partner NAME"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = "command:create_partner"
        if options["webhook_url"]:
            try:
                URLValidator(schemes=["http", "https"])(options["webhook_url"])
            except ValidationError:
                raise CommandError("--webhook-url must be an http(s) URL") from None
        try:
            if options["new_key"]:
                partner = Partner.objects.filter(name=options["name"]).first()
                if partner is None:
                    raise CommandError(f"no partner named {options['name']!r}")
                key, secret = partner_key_issue(actor=actor, partner=partner)
            else:
                tiers = parse_tiers(options["tiers"]) if options["tiers"] else DEFAULT_TIERS
                partner, key, secret = partner_create(
                    actor=actor,
                    name=options["name"],
                    webhook_url=options["webhook_url"],
                    grace_days=options["grace_days"],
                    tiers=tiers,
                    enrolment=options["enrolment"],
                )
        except AccountsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"partner_id={partner.pk}")
        self.stdout.write(f"key_id={key.key_id}")
        self.stdout.write(f"secret={secret}")
        self.stdout.write("The secret is shown only now; keep it in the bank's vault.")
