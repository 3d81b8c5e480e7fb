"""The patient API's enrolment (API.md § Patient API): a signed-in citizen enrols with a bank
on their credit score, read with the consent they give in the call."""

from typing import Any

from django.utils.translation import override
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import patient_of
from accounts.models import Consent, CreditApplication, CreditLine
from accounts.patient_api import PatientView
from accounts.selectors import line_figures
from accounts.serializers import CreditLineOut, credit_line_out
from accounts.services.consents import consent_revoke
from core.api import IDEMPOTENCY_KEY, YuanField, idempotent
from core.api_errors import ErrorOut

from .services.enrolment import CONSENT_TEXT, Enrolment, enrolment_apply, enrolment_bank


class EnrolmentOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=CreditApplication.Status.values)
    application = serializers.IntegerField()
    consent = serializers.IntegerField(help_text="the consent recorded; revocable")
    bank = serializers.CharField()
    score = serializers.IntegerField(allow_null=True, help_text="null: the platform has none")
    level = serializers.CharField(help_text="the platform's band name; empty without a score")
    tier_limit = YuanField(allow_null=True, help_text="the bank's limit for the score")
    reason = serializers.CharField(help_text="why declined: `no score`, `below the lowest tier`")
    credit_line = CreditLineOut(allow_null=True, help_text="the line, when granted")


def enrolment_out(enrolment: Enrolment) -> dict[str, Any]:
    line = enrolment.credit_line
    line_data = None
    if line is not None:
        line = CreditLine.objects.select_related(
            "partner", "capacity_account", "drawn_account"
        ).get(pk=line.pk)
        line_data = credit_line_out(line, line_figures([line])[line.pk])
    application = enrolment.application
    return {
        "status": enrolment.status,
        "application": application.pk,
        "consent": application.consent_id,
        "bank": application.partner.name,
        "score": enrolment.score,
        "level": enrolment.level,
        "tier_limit": YuanField().to_representation(enrolment.tier_limit)
        if enrolment.tier_limit is not None
        else None,
        "reason": application.reason,
        "credit_line": line_data,
    }


class EnrolmentApi(PatientView):
    class EnrolmentInput(serializers.Serializer):
        consent = serializers.BooleanField(
            help_text="must be true: the citizen agrees to the consent text the app shows in "
            "full (the platform reads their credit score for the bank, monthly while a line is "
            "held, until withdrawn)"
        )
        bank = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=100,
            help_text="the bank's partner id or name; left out, the platform's default bank",
        )

        def validate_consent(self, value: bool) -> bool:
            if value is not True:
                raise serializers.ValidationError("consent must be true to read the score")
            return value

    @extend_schema(
        operation_id="patient_enrolment_create",
        description="Enrol with a bank (开通信用就医): with the consent given here, the platform "
        "asks the city credit-score platform for the caller's score and applies the bank's "
        "tier table: `granted` (a line at once), `pending_bank` (the bank is sent a signed "
        "`credit.application` webhook and answers through its grant call) or `declined`. "
        "409 `already_enrolled` or `application_pending`; 503 `score_unavailable` when the "
        "credit-score platform cannot be asked: nothing is recorded, send it again later.",
        parameters=[IDEMPOTENCY_KEY],
        request=EnrolmentInput,
        responses={
            201: EnrolmentOut,
            503: OpenApiResponse(
                ErrorOut,
                description="The credit-score platform cannot be reached now (code "
                "`score_unavailable`); nothing was recorded.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        person = patient_of(request)
        actor = f"patient:{person.pk}"
        data = self.EnrolmentInput(data=request.data)
        data.is_valid(raise_exception=True)

        def enrol() -> Response:
            bank = data.validated_data.get("bank") or None
            with override("zh-hans"):  # the words the city's app shows, in its language
                scope = str(CONSENT_TEXT)
            enrolment = enrolment_apply(
                actor=actor,
                person=person,
                partner=enrolment_bank(bank),
                consent_scope=scope,
                channel="app",
            )
            return Response(enrolment_out(enrolment), status=status.HTTP_201_CREATED)

        return idempotent(request, f"patient:{person.pk}", enrol)


class ConsentOut(serializers.ModelSerializer):
    class Meta:
        model = Consent
        fields = ["id", "purpose", "scope", "channel", "granted_at", "revoked_at"]


class ConsentRevokeApi(PatientView):
    @extend_schema(
        operation_id="patient_consents_revoke",
        description="Withdraw a consent of the caller's (another person's is a 404): the "
        "credit score is no longer read under it, and the monthly refresh passes the caller's "
        "lines by; lines already granted keep their limits. Revoking twice changes nothing.",
        parameters=[IDEMPOTENCY_KEY],
        request=None,
        responses={200: ConsentOut},
    )
    def post(self, request: Request, consent_id: int) -> Response:
        person = patient_of(request)

        def revoke() -> Response:
            consent = consent_revoke(
                actor=f"patient:{person.pk}", person=person, consent_id=consent_id
            )
            return Response(ConsentOut(consent).data)

        return idempotent(request, f"patient:{person.pk}", revoke)
