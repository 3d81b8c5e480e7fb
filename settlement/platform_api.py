"""The city platform's own API: what every institution and bank stand at (role ``platform``)."""

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import StaffTokenAuthentication, roles
from core.api import ApiView, YuanField

from .selectors_platform import platform_summary


class InstitutionFiguresOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    enrolled = serializers.IntegerField(
        min_value=0, help_text="persons it has seen who hold an open line"
    )
    lines = serializers.IntegerField(min_value=0, help_text="their open lines")
    limit_total = YuanField(help_text="those lines' total limit")
    settlements_today = serializers.IntegerField(min_value=0)
    settled_today = YuanField(help_text="the day's settlements' totals")
    deferred_claims = serializers.IntegerField(min_value=0, help_text="insurer shares owed")
    drawn = YuanField(help_text="drawn on credit for its patients' stays")
    repaid = YuanField(help_text="of which repaid to the banks")
    overdue = YuanField(help_text="owed past its due date")


class BankFiguresOut(serializers.Serializer):
    name = serializers.CharField()
    enrolled = serializers.IntegerField(min_value=0, help_text="persons with an open line")
    lines = serializers.IntegerField(min_value=0, help_text="open lines (active or frozen)")
    limit_total = YuanField()
    drawn = YuanField()
    repaid = YuanField()
    overdue = YuanField()


class PlatformSummaryOut(serializers.Serializer):
    date = serializers.DateField()
    institutions = InstitutionFiguresOut(many=True)
    banks = BankFiguresOut(many=True)


class PlatformSummaryApi(ApiView):
    authentication_classes = [StaffTokenAuthentication]
    permission_classes = [roles("platform")]

    @extend_schema(
        operation_id="platform_summary",
        description="Per institution and per bank: enrolled persons, their open lines and total "
        "limit, drawn, repaid and overdue; per institution also the day's settlements and the "
        "deferred claims. For the platform's operators.",
        responses=PlatformSummaryOut,
    )
    def get(self, request: Request) -> Response:
        summary = platform_summary()
        body = {
            "date": summary.day,
            "institutions": [asdict(row) for row in summary.institutions],
            "banks": [asdict(row) for row in summary.banks],
        }
        return Response(PlatformSummaryOut(body).data)
