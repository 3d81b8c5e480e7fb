"""Admin views. The deposit table is edited here by finance; the rest is read-only."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from ledger.admin import ReadOnlyAdmin

from .models import DiagnosisDeposit, Encounter, InsuranceClaim, Receivable, Settlement
from .services.deposit_table import deposit_row_save, diagnosis_code_clean


class DiagnosisDepositForm(forms.ModelForm):
    class Meta:
        model = DiagnosisDeposit
        fields = ("institution", "diagnosis_code", "name", "amount")

    def clean_diagnosis_code(self) -> str:
        code = diagnosis_code_clean(self.cleaned_data.get("diagnosis_code") or "")
        if not code:
            raise forms.ValidationError("A diagnosis code of 1 to 32 characters is needed.")
        return code

    def clean_amount(self) -> int:
        amount = self.cleaned_data.get("amount")
        if amount is None or amount <= 0:
            raise forms.ValidationError("The deposit (fen) must be more than zero.")
        return int(amount)


@admin.register(DiagnosisDeposit)
class DiagnosisDepositAdmin(admin.ModelAdmin):
    """Rows go through the table's service, so a code is kept as admission reads it."""

    form = DiagnosisDepositForm
    list_display = ("institution", "diagnosis_code", "name", "amount", "updated_at")
    list_filter = ("institution",)
    search_fields = ("diagnosis_code", "name")
    readonly_fields = ("updated_at",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A row stays its institution's (the service refuses to move one).
        return ("institution", "updated_at") if obj is not None else ("updated_at",)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Without the admin's own transaction around the form: the service owns its own (a
        # durable one), and the admin's log entry follows it.
        return self._changeform_view(request, object_id, form_url, extra_context)  # type: ignore[attr-defined]

    def save_model(
        self, request: HttpRequest, obj: DiagnosisDeposit, form: object, change: bool
    ) -> None:
        saved = deposit_row_save(
            actor=f"admin:{request.user.pk}",
            institution=obj.institution,
            diagnosis_code=obj.diagnosis_code,
            name=obj.name,
            amount=obj.amount,
            row_id=obj.pk if change else None,
        )
        obj.pk, obj.updated_at = saved.pk, saved.updated_at


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
