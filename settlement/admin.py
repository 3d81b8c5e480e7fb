"""Admin views. The deposit table is edited here by finance; the rest is read-only."""

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from accounts.services.audit import audit_record
from ledger.admin import ReadOnlyAdmin

from .models import DiagnosisDeposit, Encounter, InsuranceClaim, Receivable, Settlement


@admin.register(DiagnosisDeposit)
class DiagnosisDepositAdmin(admin.ModelAdmin):
    list_display = ("institution", "diagnosis_code", "name", "amount", "updated_at")
    list_filter = ("institution",)
    search_fields = ("diagnosis_code", "name")
    readonly_fields = ("updated_at",)

    def save_model(
        self, request: HttpRequest, obj: DiagnosisDeposit, form: object, change: bool
    ) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        audit_record(
            actor=f"admin:{request.user.pk}",
            action="deposit_table.change" if change else "deposit_table.add",
            obj=obj,
            changes={"diagnosis_code": obj.diagnosis_code, "amount": obj.amount},
        )


@admin.register(Encounter)
class EncounterAdmin(ReadOnlyAdmin):
    list_display = ("id", "institution", "kind", "status", "deposit_waived", "admitted_at")
    list_filter = ("status", "kind", "institution")


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = ("encounter", "total", "self_pay", "funded_by", "receipt_no", "settled_at")


@admin.register(InsuranceClaim)
class InsuranceClaimAdmin(ReadOnlyAdmin):
    list_display = ("encounter", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status",)


@admin.register(Receivable)
class ReceivableAdmin(ReadOnlyAdmin):
    list_display = ("reference", "partner", "amount", "outstanding", "due_date", "status")
    list_filter = ("status", "partner")
