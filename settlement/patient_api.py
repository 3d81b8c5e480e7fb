"""The patient API's reads (``/api/patient/v1/``, for the city's app): a patient's encounters
and bills, their refunds and the notices sent to them.

A patient signs in with an SMS code (``accounts.patient_api``) and sends the token as
``Authorization: Bearer <token>``. What they may read is their own, and the stays their own
credit line carries for a family member (亲情付); anything else is a 404, as if there were none.
"""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import patient_of
from accounts.models import SmsMessage
from accounts.patient_api import PatientView
from accounts.services.notices import messages_of
from core.api import PAGE, ApiView, YuanField, page_of
from core.money import fen_to_yuan
from core.renderers import fast_json_renderers

from .api import bill_answer, refund_out
from .models import Encounter, Refund
from .selectors import patient_encounters
from .serializers import BillOut, RefundOut


def _page(request: Request, view: ApiView, rows: Any, out: Any) -> Response:
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response([out(row) for row in page or []])


# --- encounters and bills ---------------------------------------------------------------------


class PatientEncounterOut(serializers.Serializer):
    id = serializers.UUIDField()
    person = serializers.CharField(help_text="the patient's name")
    institution = serializers.CharField(help_text="the hospital or health centre")
    status = serializers.ChoiceField(choices=Encounter.Status.choices)
    total = YuanField(allow_negative=True, help_text="the bill so far, or as settled")
    self_pay = YuanField(
        allow_negative=True, allow_null=True, help_text="once settled: the patient's part"
    )
    paid_by_me = serializers.BooleanField(
        help_text="another person's stay that the caller's own credit line carries (亲情付)"
    )


class PatientEncountersApi(PatientView):
    @extend_schema(
        operation_id="patient_encounters_list",
        description="The caller's own encounters and those their credit line carries for a "
        "family member (亲情付), newest first.",
        parameters=[PAGE],
        responses=page_of("PatientEncounterPage", PatientEncounterOut),
    )
    def get(self, request: Request) -> Response:
        me = patient_of(request)

        def out(encounter: Encounter) -> dict[str, Any]:
            settlement = getattr(encounter, "settlement", None)
            total = settlement.total if settlement is not None else encounter.charges_total  # type: ignore[attr-defined]
            return {
                "id": str(encounter.pk),
                "person": encounter.person.name,
                "institution": encounter.institution.name,
                "status": encounter.status,
                "total": fen_to_yuan(total),
                "self_pay": fen_to_yuan(settlement.self_pay) if settlement is not None else None,
                "paid_by_me": encounter.person_id != me.pk,
            }

        return _page(request, self, patient_encounters(me), out)


class PatientBillApi(PatientView):
    renderer_classes = fast_json_renderers()  # a long stay's bill has thousands of lines

    @extend_schema(
        operation_id="patient_encounters_bill",
        description="The bill as the staff API shows it (每日清单, paid, settlement), for the "
        "caller's own encounter or one their credit line carries; any other: 404.",
        responses=BillOut,
    )
    def get(self, request: Request, encounter_id: Any) -> Response:
        encounter = patient_encounters(patient_of(request)).get(pk=encounter_id)
        return Response(bill_answer(request, encounter))


# --- refunds ----------------------------------------------------------------------------------


class PatientRefundsApi(PatientView):
    @extend_schema(
        operation_id="patient_refunds_list",
        description="The caller's refunds, owed (to collect at the hospital's cashier) and "
        "paid, newest first.",
        parameters=[PAGE],
        responses=page_of("PatientRefundPage", RefundOut),
    )
    def get(self, request: Request) -> Response:
        refunds = (
            Refund.objects.filter(encounter__person=patient_of(request))
            .select_related("encounter")
            .order_by("-created_at", "-pk")
        )
        return _page(request, self, refunds, refund_out)


# --- the notices sent ---------------------------------------------------------------------------


class PatientMessageOut(serializers.Serializer):
    id = serializers.UUIDField()
    template = serializers.CharField(help_text="SETTLED, DUE_SOON, OVERDUE, REFUND_READY, ...")
    text = serializers.CharField(help_text="the message as the phone shows it")
    status = serializers.ChoiceField(choices=SmsMessage.Status.choices)
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)


def message_out(message: SmsMessage) -> dict[str, Any]:
    return {
        "id": str(message.pk),
        "template": message.template,
        "text": message.text,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
    }


class PatientMessagesApi(PatientView):
    @extend_schema(
        operation_id="patient_messages_list",
        description="The notices sent (or being sent) to the caller by SMS, newest first; "
        "sign-in codes are not listed.",
        parameters=[PAGE],
        responses=page_of("PatientMessagePage", PatientMessageOut),
    )
    def get(self, request: Request) -> Response:
        return _page(request, self, messages_of(patient_of(request)), message_out)
