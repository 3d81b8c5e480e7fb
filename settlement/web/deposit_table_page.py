"""The finance desk's diagnosis deposit table (按病种预交金): its institution's rows, one
changed or added at a time, or a whole CSV file loaded (all or nothing). Every change goes
through the table's services, which audit it."""

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from accounts.models import Institution
from accounts.selectors import staff_institution
from core.money import fen_to_yuan

from ..exceptions import SettlementInputError
from ..models import DiagnosisDeposit
from ..services.deposit_table import deposit_row_save, deposit_table_import
from .access import finance_only, page_actor
from .cashier import add_service_error, error_text
from .cashier_forms import YuanField

MAX_FILE_BYTES = 2 * 1024 * 1024


class DepositRowForm(forms.Form):
    row = forms.IntegerField(required=False, widget=forms.HiddenInput)
    diagnosis_code = forms.CharField(label=_("Diagnosis code"), max_length=32)
    name = forms.CharField(label=_("Diagnosis"), max_length=200, required=False)
    amount = YuanField(label=_("Deposit (yuan)"))


class DepositTableUploadForm(forms.Form):
    file = forms.FileField(label=_("Deposit table (CSV: diagnosis_code,name,amount)"))


def _rows(institution: Institution) -> list[dict[str, Any]]:
    return [
        {
            "row": row,
            "amount": fen_to_yuan(row.amount),
            "form": DepositRowForm(
                initial={
                    "row": row.pk,
                    "diagnosis_code": row.diagnosis_code,
                    "name": row.name,
                    "amount": fen_to_yuan(row.amount),
                },
                auto_id=f"id_row{row.pk}_%s",
            ),
        }
        for row in DiagnosisDeposit.objects.filter(institution=institution).order_by(
            "diagnosis_code"
        )
    ]


@finance_only
@require_http_methods(["GET", "POST"])
def deposit_table(request: HttpRequest) -> HttpResponse:
    institution = staff_institution(request.user)
    here = reverse("finance-deposits")
    action = request.POST.get("action") if request.method == "POST" else None
    row_form = DepositRowForm(request.POST if action == "row" else None, auto_id="id_new_%s")
    upload = DepositTableUploadForm(
        request.POST if action == "import" else None,
        request.FILES if action == "import" else None,
    )
    if institution is not None and action == "row" and row_form.is_valid():
        data = row_form.cleaned_data
        try:
            saved = deposit_row_save(
                actor=page_actor(request),
                institution=institution,
                diagnosis_code=data["diagnosis_code"],
                name=data["name"],
                amount=data["amount"],
                row_id=data["row"],
            )
        except SettlementInputError as error:
            add_service_error(row_form, error)
        else:
            messages.success(
                request,
                gettext("%(code)s now takes a deposit of ¥%(amount)s.")
                % {"code": saved.diagnosis_code, "amount": fen_to_yuan(saved.amount)},
            )
            return HttpResponseRedirect(here)
    if institution is not None and action == "import" and upload.is_valid():
        file = upload.cleaned_data["file"]
        try:
            if file.size > MAX_FILE_BYTES:
                raise ValueError
            text = file.read().decode("utf-8-sig")
        except (ValueError, UnicodeDecodeError):
            upload.add_error("file", gettext("A deposit table is a UTF-8 CSV file under 2 MB."))
        else:
            try:
                result = deposit_table_import(
                    actor=page_actor(request), institution=institution, text=text
                )
            except SettlementInputError as error:
                upload.add_error("file", error_text(error))
            else:
                messages.success(
                    request,
                    gettext(
                        "Loaded: %(created)s added, %(updated)s changed, %(unchanged)s the same."
                    )
                    % {
                        "created": result.created,
                        "updated": result.updated,
                        "unchanged": result.unchanged,
                    },
                )
                return HttpResponseRedirect(here)
    context = {
        "institution": institution,
        "rows": _rows(institution) if institution is not None else [],
        "row_form": row_form,
        "upload": upload,
    }
    return render(request, "web/finance/deposits.html", context)
