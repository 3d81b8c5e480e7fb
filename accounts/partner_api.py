"""Partner API: credit lines, signed by the bank (API.md § Partner API)."""

from uuid import UUID

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import IsPartner, PartnerPrincipal, PartnerSignatureAuthentication
from accounts.models import CreditLine
from accounts.selectors import line_figures
from accounts.serializers import CreditLineOut, credit_line_out
from accounts.services import credit_lines
from core.api import IDEMPOTENCY_KEY, ApiView, YuanField, idempotent

SIGNED = (
    "Signed request: `X-Partner-Key`, `X-Timestamp` (Unix seconds, ±300 s), `X-Nonce` (unique) "
    "and `X-Signature` = hex HMAC-SHA256 with the partner secret over "
    "`METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nhex(sha256(body))`."
)


class PartnerView(ApiView):
    authentication_classes = [PartnerSignatureAuthentication]
    permission_classes = [IsPartner]
    checks_roles = False  # a partner is refused for another bank's object with a 404

    def principal(self, request: Request) -> PartnerPrincipal:
        assert isinstance(request.user, PartnerPrincipal)  # noqa: S101 - IsPartner checked it
        return request.user

    def line_response(self, line: CreditLine, code: int = status.HTTP_200_OK) -> Response:
        line = CreditLine.objects.select_related(
            "partner", "capacity_account", "drawn_account"
        ).get(pk=line.pk)
        return Response(credit_line_out(line, line_figures([line])[line.pk]), status=code)

    def own_line(self, request: Request, line_id: UUID) -> CreditLine:
        """The partner's own line; another bank's id is a 404 like an unknown one."""
        return CreditLine.objects.get(pk=line_id, partner=self.principal(request).partner)


class CreditLineGrantApi(PartnerView):
    class CreditLineGrantInput(serializers.Serializer):
        id_number = serializers.CharField(max_length=32)
        name = serializers.CharField(max_length=100)
        limit = YuanField(required=False, allow_null=True)
        score = serializers.IntegerField(min_value=0, max_value=10_000)
        score_provider = serializers.CharField(max_length=64)
        expires_on = serializers.DateField(required=False, allow_null=True)
        phone = serializers.CharField(max_length=20, required=False, allow_blank=True)

    @extend_schema(
        operation_id="partner_credit_lines_grant",
        description="Grant a line (201) or update the person's open line (200). "
        "Without `limit` the bank's tier table decides from `score`. `phone`, the customer's "
        "mobile number, is kept for a person who has none yet (notices go to it); a phone "
        "already known is changed only at a hospital's desk. " + SIGNED,
        parameters=[IDEMPOTENCY_KEY],
        request=CreditLineGrantInput,
        responses={201: CreditLineOut, 200: CreditLineOut},
    )
    def post(self, request: Request) -> Response:
        principal = self.principal(request)
        data = self.CreditLineGrantInput(data=request.data)
        data.is_valid(raise_exception=True)

        def grant() -> Response:
            line, created = credit_lines.credit_line_grant(
                actor=principal.actor, partner=principal.partner, **data.validated_data
            )
            return self.line_response(line, status.HTTP_201_CREATED if created else 200)

        return idempotent(request, f"partner:{principal.partner.pk}", grant)


class CreditLineDetailApi(PartnerView):
    @extend_schema(
        operation_id="partner_credit_lines_read", description=SIGNED, responses=CreditLineOut
    )
    def get(self, request: Request, line_id: UUID) -> Response:
        return self.line_response(self.own_line(request, line_id))


class CreditLineActionApi(PartnerView):
    action_name = ""
    services = {
        "freeze": credit_lines.credit_line_freeze,
        "unfreeze": credit_lines.credit_line_unfreeze,
        "close": credit_lines.credit_line_close,
    }

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        request=None,
        responses={200: CreditLineOut},
        description=SIGNED,
    )
    def post(self, request: Request, line_id: UUID) -> Response:
        principal = self.principal(request)
        change = self.services[self.action_name]

        def act() -> Response:
            line = change(actor=principal.actor, partner=principal.partner, line_id=line_id)
            return self.line_response(line)

        return idempotent(request, f"partner:{principal.partner.pk}", act)


@extend_schema_view(post=extend_schema(operation_id="partner_credit_lines_freeze"))
class CreditLineFreezeApi(CreditLineActionApi):
    action_name = "freeze"


@extend_schema_view(post=extend_schema(operation_id="partner_credit_lines_unfreeze"))
class CreditLineUnfreezeApi(CreditLineActionApi):
    action_name = "unfreeze"


@extend_schema_view(post=extend_schema(operation_id="partner_credit_lines_close"))
class CreditLineCloseApi(CreditLineActionApi):
    action_name = "close"
