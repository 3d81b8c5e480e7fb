"""Staff API: encounters, deposits, charges, bills, settlement, receipts, insurance claims."""

import re
from collections.abc import Iterator
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

import orjson
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import StaffTokenAuthentication, patient_person_id, roles, staff_actor
from accounts.models import Person
from accounts.selectors import StaffPlace, department_find, staff_institution, staff_place
from core.api import (
    IDEMPOTENCY_KEY,
    PAGE,
    ApiView,
    YuanField,
    idempotent,
    page_of,
    service_key,
)
from core.money import fen_to_yuan
from core.renderers import answers_with_fragments, fast_json_renderers

from .models import Channel, Charge, Encounter, InsuranceClaim, Receipt, Refund
from .selectors import bill_item, charge_out, encounter_bill, encounter_out, settlement_out
from .serializers import (
    BillOut,
    ChargeOut,
    ChargesOut,
    ClaimOut,
    ClaimsRetryOut,
    DepositOut,
    EncounterOut,
    ReceiptOut,
    RefundOut,
    SettlementOut,
)
from .services import encounters
from .services.insurer_claims import claims_due_now
from .services.receipts import receipt_verify
from .services.refunds import refund_pay
from .services.settle import encounter_settle

STAFF = roles("cashier", "finance", "admin")
# Reads the city platform's operators may make too, at every institution.
READ = roles("cashier", "finance", "admin", "platform")
FRONT_DESK = roles("cashier", "admin")
FINANCE = roles("finance", "admin")


def place(request: Request) -> StaffPlace:
    """What the calling staff user may see: their institution's objects, or every one."""
    return staff_place(request.user)


def encounters_seen(request: Request) -> QuerySet[Encounter]:
    """The encounters the caller may see; another institution's is a 404, as if none."""
    return Encounter.objects.filter(place(request).q())


class StaffView(ApiView):
    authentication_classes = [StaffTokenAuthentication]
    permission_classes = [FRONT_DESK]


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "minLength": 1, "maxLength": 32},
        ],
        "description": "the department's code at the caller's institution "
        "(GET /api/v1/departments/), or its id",
    }
)
class DepartmentRefField(serializers.Field):
    """A department as its code (text) or its id (a number)."""

    default_error_messages = {"invalid": "a department code (text) or id (a number)"}

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            if not 0 < data < 2**63:
                self.fail("invalid")
            return data
        if isinstance(data, str) and 0 < len(data.strip()) <= 32:
            return data.strip()
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class EncounterCreateApi(StaffView):
    class EncounterInput(serializers.Serializer):
        person = serializers.IntegerField()
        kind = serializers.ChoiceField(choices=Encounter.Kind.choices)
        department = DepartmentRefField()
        diagnosis_code = serializers.CharField(max_length=32, required=False, allow_blank=True)

    @extend_schema(
        operation_id="encounters_admit",
        parameters=[IDEMPOTENCY_KEY],
        request=EncounterInput,
        responses={201: EncounterOut},
    )
    def post(self, request: Request) -> Response:
        data = self.EncounterInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        person = Person.objects.filter(pk=values["person"]).first()
        department = department_find(values["department"], staff_institution(request.user))
        if department is not None and not place(request).sees(department.institution_id):
            department = None  # another institution's: no such department here
        missing = {}
        if person is None:
            missing["person"] = ["no such person"]
        if department is None:
            missing["department"] = ["no such department"]
        if missing:
            raise serializers.ValidationError(missing)

        def admit() -> Response:
            encounter = encounters.encounter_admit(
                actor=staff_actor(request),
                person=person,  # type: ignore[arg-type]
                department=department,  # type: ignore[arg-type]
                kind=values["kind"],
                diagnosis_code=values.get("diagnosis_code", ""),
                key=service_key(request),
            )
            return Response(encounter_out(encounter), status=status.HTTP_201_CREATED)

        return idempotent(request, f"staff:{request.user.pk}", admit)


class EncounterDetailApi(StaffView):
    permission_classes = [READ]

    @extend_schema(operation_id="encounters_read", responses=EncounterOut)
    def get(self, request: Request, encounter_id: UUID) -> Response:
        return Response(encounter_out(encounters_seen(request).get(pk=encounter_id)))


class DepositApi(StaffView):
    class DepositInput(serializers.Serializer):
        amount = YuanField(allow_zero=False)
        channel = serializers.ChoiceField(choices=Channel.choices)

    @extend_schema(
        operation_id="encounters_deposit",
        parameters=[IDEMPOTENCY_KEY],
        request=DepositInput,
        responses={201: DepositOut},
    )
    def post(self, request: Request, encounter_id: UUID) -> Response:
        encounters_seen(request).get(pk=encounter_id)
        data = self.DepositInput(data=request.data)
        data.is_valid(raise_exception=True)

        def pay() -> Response:
            deposit = encounters.deposit_pay(
                actor=staff_actor(request),
                encounter_id=encounter_id,
                key=service_key(request),
                **data.validated_data,
            )
            return Response(
                {
                    "id": deposit.pk,
                    "encounter": str(encounter_id),
                    "amount": fen_to_yuan(deposit.amount),
                    "channel": deposit.channel,
                    "paid_at": deposit.paid_at.isoformat(),
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, f"staff:{request.user.pk}", pay)


@extend_schema_field(
    {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,3})?$", "example": "2.5"}
)
class QuantityField(serializers.DecimalField):
    """A quantity in plain decimal notation: ``"2.5"`` or ``2``, never ``"1e3"`` nor ``"1_000"``.

    ``Decimal`` reads those too, and a quantity read from one would be echoed as ``1E+3``.
    """

    PLAIN = re.compile(r"[0-9]{1,12}(\.[0-9]+)?")

    def to_internal_value(self, data: Any) -> Decimal:
        text = str(data) if isinstance(data, int | float) and not isinstance(data, bool) else data
        if not isinstance(text, str) or not self.PLAIN.fullmatch(text):
            self.fail("invalid")
        return super().to_internal_value(text)


class ChargeItemInput(serializers.Serializer):
    code = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200)
    category = serializers.CharField(max_length=32)
    insurance_class = serializers.ChoiceField(choices=Charge.InsuranceClass.choices)
    quantity = QuantityField(max_digits=12, decimal_places=3, min_value=Decimal("0.001"))
    unit_price = YuanField()
    service_date = serializers.DateField()


class ChargesApi(StaffView):
    class ChargesInput(serializers.Serializer):
        items = ChargeItemInput(many=True, allow_empty=False, max_length=500)  # type: ignore[call-arg]

    @extend_schema(
        operation_id="encounters_charge",
        parameters=[IDEMPOTENCY_KEY],
        request=ChargesInput,
        responses={201: ChargesOut},
    )
    def post(self, request: Request, encounter_id: UUID) -> Response:
        encounters_seen(request).get(pk=encounter_id)
        data = self.ChargesInput(data=request.data)
        data.is_valid(raise_exception=True)
        items = [encounters.ChargeItem(**item) for item in data.validated_data["items"]]

        def post() -> Response:
            charges = encounters.charges_post(
                actor=staff_actor(request),
                encounter_id=encounter_id,
                items=items,
                key=service_key(request),
            )
            return Response(
                {
                    "charges": [charge_out(charge) for charge in charges],
                    "total": fen_to_yuan(sum(charge.amount for charge in charges)),
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, f"staff:{request.user.pk}", post)


class ChargeReverseApi(StaffView):
    class ReverseInput(serializers.Serializer):
        reason = serializers.CharField(max_length=200)

    @extend_schema(
        operation_id="charges_reverse",
        parameters=[IDEMPOTENCY_KEY],
        request=ReverseInput,
        responses={201: ChargeOut},
    )
    def post(self, request: Request, charge_id: int) -> Response:
        Charge.objects.filter(place(request).q("encounter__institution")).get(pk=charge_id)
        data = self.ReverseInput(data=request.data)
        data.is_valid(raise_exception=True)

        def reverse() -> Response:
            charge = encounters.charge_reverse(
                actor=staff_actor(request), charge_id=charge_id, **data.validated_data
            )
            return Response(charge_out(charge), status=status.HTTP_201_CREATED)

        return idempotent(request, f"staff:{request.user.pk}", reverse)


class BillApi(StaffView):
    """Staff see any bill; a patient's own login sees its own encounters' bills."""

    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = fast_json_renderers()  # a long stay's bill has thousands of lines

    @extend_schema(operation_id="encounters_bill", responses=BillOut)
    def get(self, request: Request, encounter_id: UUID) -> Response:
        own = patient_person_id(request)
        if own is None and not READ().has_permission(request, self):
            raise PermissionDenied("staff roles or the patient's own login only")
        if own is None:
            encounter = encounters_seen(request).get(pk=encounter_id)
        else:
            encounter = Encounter.objects.get(pk=encounter_id)
            if own != encounter.person_id:
                raise PermissionDenied("a patient sees only their own bills")
        return Response(bill_answer(request, encounter))


_LINES_AT_ONCE = 100  # line objects alive at once, well under the garbage collector's 700


def _json_array(items: Iterator[Any]) -> orjson.Fragment:
    """The items as one JSON array written already, a block at a time."""
    blocks = iter(lambda: list(islice(items, _LINES_AT_ONCE)), [])
    return orjson.Fragment(b"[" + b",".join(orjson.dumps(block)[1:-1] for block in blocks) + b"]")


def bill_answer(request: Request, encounter: Encounter) -> dict[str, Any]:
    """The bill as the API answers it. Through orjson (compact JSON, as nearly always) each
    day's lines are written as they are made, a block at a time, so that a long stay's
    thousands of line objects are not all alive at once (they would set the garbage
    collector off several times a request, and now and then a full collection of the
    process); otherwise each line is its object."""
    if answers_with_fragments(request):
        return encounter_bill(encounter, bill_item, _json_array)
    return encounter_bill(encounter)


class SettleApi(StaffView):
    class SettleInput(serializers.Serializer):
        channel = serializers.ChoiceField(choices=Channel.choices, required=False)

    @extend_schema(
        operation_id="encounters_settle",
        description="Settle once: 200 with the split and funding; 409 when already settled, "
        "while another settle runs, or when self-pay is not covered and no channel is given. "
        "The same request sent again with its Idempotency-Key while the first still runs waits "
        "for the first's answer and returns it (after 20 s: 409 `in_progress`, send it again).",
        parameters=[IDEMPOTENCY_KEY],
        request=SettleInput,
        responses={200: SettlementOut},
    )
    def post(self, request: Request, encounter_id: UUID) -> Response:
        encounters_seen(request).get(pk=encounter_id)
        data = self.SettleInput(data=request.data)
        data.is_valid(raise_exception=True)

        def settle() -> Response:
            settlement = encounter_settle(
                actor=staff_actor(request),
                encounter_id=encounter_id,
                channel=data.validated_data.get("channel"),
                key=service_key(request),
            )
            settlement.refresh_from_db()
            return Response(settlement_out(settlement))

        # A second settle with another key is a 409 in any case (the encounter is settled).
        return idempotent(request, f"staff:{request.user.pk}", settle)


class ReceiptApi(ApiView):
    authentication_classes = [StaffTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="receipts_read",
        parameters=[OpenApiParameter("code", str, description="verification code to check")],
        responses=ReceiptOut,
    )
    def get(self, request: Request, receipt_no: str) -> Response:
        receipt = Receipt.objects.select_related("encounter").get(receipt_no=receipt_no)
        own = patient_person_id(request)
        if own is None and not READ().has_permission(request, self):
            raise PermissionDenied("staff roles or the patient's own login only")
        if own is None and not place(request).sees(receipt.encounter.institution_id):
            raise Receipt.DoesNotExist  # another institution's: not found here
        if own is not None and own != receipt.encounter.person_id:
            raise PermissionDenied("a patient sees only their own receipts")
        body = {
            "receipt_no": receipt.receipt_no,
            "version": receipt.version,
            "issued_at": receipt.issued_at.isoformat(),
            "superseded_by": receipt.superseded_by.receipt_no if receipt.superseded_by else None,
            "verification_code": receipt.verification_code,
            **{k: fen_to_yuan(v) if isinstance(v, int) else v for k, v in receipt.content.items()},
        }
        code = request.query_params.get("code")
        if code is not None:
            body["verified"] = receipt_verify(receipt, code)
        return Response(body)


class ClaimsApi(StaffView):
    permission_classes = [READ]

    @extend_schema(
        operation_id="insurance_claims_list",
        parameters=[OpenApiParameter("status", str, enum=InsuranceClaim.Status.values), PAGE],
        responses=page_of("ClaimPage", ClaimOut),
    )
    def get(self, request: Request) -> Response:
        claims = InsuranceClaim.objects.filter(place(request).q("encounter__institution"))
        claims = claims.order_by("-created_at", "-pk")
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in InsuranceClaim.Status.values:
                raise serializers.ValidationError({"status": ["unknown status"]})
            claims = claims.filter(status=wanted)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(claims, request, view=self)
        return paginator.get_paginated_response(
            [
                {
                    "id": claim.pk,
                    "encounter": str(claim.encounter_id),
                    "status": claim.status,
                    "attempts": claim.attempts,
                    "last_error": claim.last_error,
                    "next_attempt_at": claim.next_attempt_at,
                    "insurance_fund": fen_to_yuan(claim.insurance_fund),
                    "personal_account": fen_to_yuan(claim.personal_account),
                    "self_pay": fen_to_yuan(claim.self_pay),
                    "reverted_at": claim.reverted_at,
                }
                for claim in page or []
            ]
        )


class ClaimsRetryApi(StaffView):
    permission_classes = [READ]  # the platform's operators may retry claims too

    @extend_schema(
        operation_id="insurance_claims_retry", request=None, responses={202: ClaimsRetryOut}
    )
    def post(self, request: Request) -> Response:
        from .tasks import retry_deferred_claims

        deferred = claims_due_now(where=place(request).q("encounter__institution"))
        retry_deferred_claims.delay()
        return Response({"queued": True, "deferred": deferred}, status=status.HTTP_202_ACCEPTED)


# --- refunds owed to patients, paid out -------------------------------------------------------


def refund_out(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.pk,
        "encounter": str(refund.encounter_id),
        "person": refund.encounter.person_id,
        "amount": fen_to_yuan(refund.amount),
        "reason": refund.reason,
        "status": refund.status,
        "created_at": refund.created_at.isoformat(),
    }


class RefundsApi(StaffView):
    permission_classes = [READ]

    @extend_schema(
        operation_id="refunds_list",
        description="Refunds to patients, newest first: `status=owed` for those still to pay "
        "out, `status=paid` for those paid.",
        parameters=[OpenApiParameter("status", str, enum=Refund.Status.values), PAGE],
        responses=page_of("RefundPage", RefundOut),
    )
    def get(self, request: Request) -> Response:
        refunds = Refund.objects.filter(place(request).q("encounter__institution"))
        refunds = refunds.select_related("encounter").order_by("-created_at", "-pk")
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in Refund.Status.values:
                raise serializers.ValidationError({"status": ["owed or paid"]})
            refunds = refunds.filter(status=wanted)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(refunds, request, view=self)
        return paginator.get_paginated_response([refund_out(refund) for refund in page or []])


class RefundPayApi(StaffView):
    class PayInput(serializers.Serializer):
        channel = serializers.ChoiceField(
            choices=Channel.choices,
            required=False,
            help_text="the channel it goes back through; by default the one the patient paid by",
        )
        reference = serializers.CharField(
            max_length=64, help_text="the payment's reference at the channel, 1 to 64 characters"
        )

    @extend_schema(
        operation_id="refunds_pay",
        description="Pay out a refund owed, once: 200 the refund, `status: paid`; a refund "
        "already paid is 409 `refund_not_owed`.",
        parameters=[IDEMPOTENCY_KEY],
        request=PayInput,
        responses={200: RefundOut},
    )
    def post(self, request: Request, refund_id: int) -> Response:
        Refund.objects.filter(place(request).q("encounter__institution")).get(pk=refund_id)
        data = self.PayInput(data=request.data)
        data.is_valid(raise_exception=True)

        def pay() -> Response:
            refund = refund_pay(
                actor=staff_actor(request),
                refund_id=refund_id,
                channel=data.validated_data.get("channel"),
                reference=data.validated_data["reference"],
                key=service_key(request),
            )
            return Response(refund_out(refund))

        return idempotent(request, f"staff:{request.user.pk}", pay)
