"""Patient API (``/api/patient/v1/``, API.md § Patient API): the city's app signs a patient in
with an SMS code and reads their own data.

``auth/sms/`` and ``auth/token/`` take no credentials; what limits them is the code's own rules
(one a minute and ten a day per phone, five tries per code: ``accounts.services.sms_codes``).
Everything else needs the bearer token ``auth/token/`` gives.
"""

from typing import Any

from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import IsPatient, PatientPrincipal, PatientTokenAuthentication
from accounts.exceptions import TooManyCodes
from accounts.models import FamilyLink
from accounts.selectors import line_figures, lines_of
from accounts.serializers import CreditLineOut, FamilyLinkOut, credit_line_out
from accounts.services.patient_tokens import patient_token_revoke
from accounts.services.sms_codes import CODE_MINUTES, patient_sign_in, sign_in_code_send
from core.api import ApiView, YuanField
from core.api_errors import ErrorDetailOut, domain_error_response
from core.money import fen_to_yuan


class OpenView(ApiView):
    """No credentials: anyone may ask for a code or sign in with one."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    checks_roles = False


class PatientView(ApiView):
    """A signed-in patient (bearer token); all they reach is their own."""

    authentication_classes = [PatientTokenAuthentication]
    permission_classes = [IsPatient]
    checks_roles = False


class TooManyCodesOut(serializers.Serializer):
    """Too many codes asked for this phone: the error shape, and when to ask again (also in
    the ``Retry-After`` header)."""

    error = ErrorDetailOut()
    retry_after = serializers.IntegerField(min_value=1, help_text="seconds")


class CodeSentOut(serializers.Serializer):
    detail = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="seconds the code is good for")


class SmsCodeApi(OpenView):
    class SmsCodeInput(serializers.Serializer):
        phone = serializers.CharField(max_length=32)

    @extend_schema(
        operation_id="patient_auth_sms",
        description="Send a sign-in code by SMS. The answer is the same whether or not the "
        "number is anyone's (a new patient registers with the code); one code a minute and "
        "ten a day per number.",
        request=SmsCodeInput,
        responses={
            202: CodeSentOut,
            429: OpenApiResponse(
                TooManyCodesOut, description="Asked too often: `retry_after` seconds to wait."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.SmsCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            sign_in_code_send(phone=data.validated_data["phone"])
        except TooManyCodes as error:
            answer = domain_error_response(error)
            answer.data["retry_after"] = error.retry_after
            answer["Retry-After"] = str(error.retry_after)
            return answer
        return Response(
            {"detail": "a code is on its way by SMS", "expires_in": CODE_MINUTES * 60},
            status=status.HTTP_202_ACCEPTED,
        )


class TokenOut(serializers.Serializer):
    token = serializers.CharField(help_text="send as `Authorization: Bearer <token>`")
    registered = serializers.BooleanField(
        help_text="true when this sign-in enrolled the patient or gave them this number"
    )


class SignInApi(OpenView):
    may_conflict = True  # a person who has another phone: 409

    class SignInInput(serializers.Serializer):
        phone = serializers.CharField(max_length=32)
        code = serializers.CharField(max_length=16)
        name = serializers.CharField(max_length=100, required=False, allow_blank=True)
        id_number = serializers.CharField(max_length=32, required=False, allow_blank=True)

    @extend_schema(
        operation_id="patient_auth_token",
        description="Sign in with the SMS code: a bearer token. A number on nobody needs "
        "`name` and `id_number`: a new person is enrolled, or the holder of the ID number "
        "(with no number yet, the name matching) gets this one; a holder with another number "
        "is a 409 (changed at a cashier's desk). A wrong code is a 400 (`wrong_code`), the "
        "fifth voids it; every refusal after a code was found counts as a wrong try.",
        request=SignInInput,
        responses={200: TokenOut},
    )
    def post(self, request: Request) -> Response:
        data = self.SignInInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        signed_in = patient_sign_in(
            phone=values["phone"],
            code=values["code"],
            name=values.get("name", ""),
            id_number=values.get("id_number", ""),
            channel="app",
        )
        return Response({"token": signed_in.token, "registered": signed_in.registered})


class SignOutApi(PatientView):
    @extend_schema(
        operation_id="patient_auth_logout",
        description="Revoke the token of this request: it answers no more.",
        request=None,
        responses={204: None},
    )
    def post(self, request: Request) -> Response:
        principal = request.user
        assert isinstance(principal, PatientPrincipal)  # noqa: S101 - IsPatient checked it
        patient_token_revoke(token=principal.token, actor=principal.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    id_number_masked = serializers.CharField()
    credit_lines = CreditLineOut(many=True)
    family_links = FamilyLinkOut(many=True)
    owed = YuanField(help_text="drawn on the patient's own lines and not repaid yet")


class MeApi(PatientView):
    @extend_schema(
        operation_id="patient_me",
        description="The signed-in patient: their credit lines, the family links they are "
        "part of, and what they owe on their own lines.",
        responses=MeOut,
    )
    def get(self, request: Request) -> Response:
        principal = request.user
        assert isinstance(principal, PatientPrincipal)  # noqa: S101 - IsPatient checked it
        person = principal.person
        lines = list(lines_of(person))
        figures = line_figures(lines)
        links = FamilyLink.objects.filter(Q(payer=person) | Q(beneficiary=person)).order_by("id")
        return Response(
            {
                "id": person.pk,
                "name": person.name,
                "id_number_masked": person.id_number_masked,
                "credit_lines": [credit_line_out(line, figures[line.pk]) for line in lines],
                "family_links": FamilyLinkOut(links, many=True).data,
                "owed": fen_to_yuan(sum(figures[line.pk].drawn for line in lines)),
            }
        )
