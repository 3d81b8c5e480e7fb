"""Output shapes shared by the staff and partner APIs."""

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from accounts.identity import age_on
from accounts.models import CreditLine, Department, FamilyLink, Person
from accounts.selectors import LineFigures, credit_line_status
from core.api import YuanField, page_of

# As credit_line_status() gives it: a line past its expiry date shows as expired.
LINE_STATUSES = [*CreditLine.Status.values, "expired"]


class CreditLineOut(serializers.Serializer):
    id = serializers.UUIDField()
    person_id = serializers.IntegerField()
    partner = serializers.CharField(source="partner.name")
    limit = YuanField()
    held = YuanField()
    drawn = YuanField()
    available = YuanField()
    status = serializers.ChoiceField(choices=LINE_STATUSES)
    score = serializers.IntegerField()
    score_provider = serializers.CharField()
    expires_on = serializers.DateField(allow_null=True)


def credit_line_out(line: CreditLine, figures: LineFigures) -> dict[str, Any]:
    return CreditLineOut(
        {
            "id": line.id,
            "person_id": line.person_id,
            "partner": line.partner,
            "limit": figures.limit,
            "held": figures.held,
            "drawn": figures.drawn,
            "available": figures.available,
            "status": credit_line_status(line),
            "score": line.score,
            "score_provider": line.score_provider,
            "expires_on": line.expires_on,
        }
    ).data


class FamilyLinkOut(serializers.ModelSerializer):
    cap = YuanField(allow_null=True)

    class Meta:
        model = FamilyLink
        fields = [
            "id",
            "payer",
            "beneficiary",
            "relation",
            "status",
            "cap",
            "consent_at",
            "consent_by",
            "consent_channel",
            "consent_recorded_by",
            "created_at",
            "ended_at",
        ]


class PersonOut(serializers.ModelSerializer):
    is_minor = serializers.SerializerMethodField()

    class Meta:
        model = Person
        fields = ["id", "name", "id_number_masked", "birth_date", "sex", "is_minor"]

    def get_is_minor(self, person: Person) -> bool:
        return age_on(person.birth_date, timezone.localdate()) < 18


class PersonDetailOut(PersonOut):
    """A person with their credit lines and the family links they are part of."""

    credit_lines = CreditLineOut(many=True)
    family_links = FamilyLinkOut(many=True)

    class Meta(PersonOut.Meta):
        fields = [*PersonOut.Meta.fields, "credit_lines", "family_links"]


PersonPage = page_of("PersonPage", PersonOut)


class DepartmentOut(serializers.ModelSerializer):
    default_deposit = YuanField(
        read_only=True,
        help_text="the inpatient deposit when the diagnosis deposit table has no entry",
    )

    class Meta:
        model = Department
        fields = ["id", "code", "name", "default_deposit"]


DepartmentPage = page_of("DepartmentPage", DepartmentOut)
