"""The cashier's refunds desk (退费): refunds owed to patients, each paid out with a form.

A refund is owed when a deferred insurance claim settles after the patient paid at the window.
The desk pays it through the channel the patient paid by (or another), with the payment's
reference; ``settlement.services.refunds.refund_pay`` does it, once per refund. Needs the
``cashier`` or ``admin`` role, like every cashier page.
"""

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from accounts.exceptions import AccountsError
from accounts.selectors import staff_place
from core.money import fen_to_yuan
from ledger.exceptions import LedgerError
from settlement.models import Refund
from settlement.services.refunds import refund_pay

from .access import cashier_only, page_actor
from .cashier import error_text, form_key, form_once, page
from .cashier_forms import RefundPayForm
from .refund_rows import refund_row

OWED_SHOWN = 500
PAID_SHOWN = 20


def pay_form(refund: Refund, data: Any = None) -> RefundPayForm:
    """The pay-out form of one refund; the channel the patient paid by comes first."""
    return RefundPayForm(data, prefix=f"refund-{refund.pk}", initial={"channel": refund.channel})


def _pay(request: HttpRequest, refund: Refund, form: RefundPayForm) -> str:
    def action() -> str:
        paid = refund_pay(
            actor=page_actor(request),
            refund_id=refund.pk,
            channel=form.cleaned_data["channel"],
            reference=form.cleaned_data["reference"],
            key=form_key(request, form),
        )
        messages.success(
            request,
            gettext("Refund of ¥%(amount)s to %(name)s paid out.")
            % {"amount": fen_to_yuan(paid.amount), "name": refund.encounter.person.name},
        )
        return reverse("cashier-refunds") + "#paid"

    return form_once(request, form, action)


@cashier_only
@require_http_methods(["GET", "POST"])
def refunds_desk(request: HttpRequest) -> HttpResponse:
    mine = staff_place(request.user).q("encounter__institution")  # the desk's institution's
    posted: Refund | None = None
    posted_form: RefundPayForm | None = None
    if request.method == "POST":
        posted = get_object_or_404(Refund.objects.filter(mine), pk=request.POST.get("refund") or 0)
        posted_form = pay_form(posted, request.POST)
        if posted_form.is_valid():
            try:
                return HttpResponseRedirect(_pay(request, posted, posted_form))
            except (AccountsError, LedgerError) as error:
                field = getattr(error, "field", None)
                posted_form.add_error(
                    field if field in posted_form.fields else None, error_text(error)
                )
    owed = (
        Refund.objects.filter(mine, status=Refund.Status.OWED)
        .select_related("encounter__person", "encounter__department__institution")
        .order_by("created_at", "pk")[:OWED_SHOWN]
    )
    paid = (
        Refund.objects.filter(mine, status=Refund.Status.PAID, transaction_id__isnull=False)
        .select_related("encounter__person", "encounter__department__institution")
        .order_by("-paid_at", "-pk")[:PAID_SHOWN]
    )
    rows, listed = [], set()
    for refund in owed:
        listed.add(refund.pk)
        form = posted_form if posted is not None and posted.pk == refund.pk else pay_form(refund)
        rows.append({**refund_row(refund), "encounter": refund.encounter, "form": form})
    return page(
        request,
        "refunds.html",
        {
            "owed": rows,
            "paid": [{**refund_row(r), "encounter": r.encounter} for r in paid],
            # A refund paid out by someone else while this form was open is no longer listed.
            "stale": posted_form if posted is not None and posted.pk not in listed else None,
        },
    )


urlpatterns: list[URLPattern] = [
    path("", refunds_desk, name="cashier-refunds"),
]
