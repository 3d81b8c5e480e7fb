"""The patient portal: my credit lines, family links, encounters with the daily bill, receipts
and what I owe to which bank.

Every object is looked up through ``request.person`` (404 for anyone else's); the services and
selectors are the same the API uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.exceptions import AccountsError
from accounts.models import FamilyLink, Person
from accounts.selectors import credit_line_status, line_figures, lines_of, person_named
from accounts.services.family import (
    family_link_consent,
    family_link_create,
    family_link_request,
    family_link_revoke,
)
from accounts.services.notices import messages_of
from core.money import fen_to_yuan
from settlement.models import Encounter, Receipt, Receivable, Refund
from settlement.selectors import (
    encounter_bill,
    owed_per_line,
    patient_encounters,
    patient_owed,
    receivable_is_overdue,
    settlement_out,
)
from settlement.services.receipts import receipt_verify

from . import portal_sign_in
from .access import patient_required
from .labels import (
    CHANNEL,
    ENCOUNTER_KIND,
    ENCOUNTER_STATUS,
    FUNDED_BY,
    LINE_STATUS,
    LINK_STATUS,
    MESSAGE_KIND,
    MESSAGE_STATUS,
    RECEIVABLE_STATUS,
    REFUND_STATUS,
    bill_labelled,
    label,
)
from .portal_forms import FamilyLinkForm, ReceiptCheckForm, add_domain_error, domain_error_text
from .refund_rows import refund_row

if TYPE_CHECKING:  # types only: nothing of django-stubs-ext is needed at run time
    from django_stubs_ext import StrOrPromise, StrPromise

# Relations are said from the patient's own side here; every other code's label is the pages'
# shared one (``labels``), so a status reads the same on the portal as at the desk.
RELATION_LABELS: dict[str, StrPromise] = {
    FamilyLink.Relation.PARENT_OF_MINOR: _("my minor child"),
    FamilyLink.Relation.CHILD_OF_PARENT: _("my parent"),
}
ADD_KINDS: dict[str, tuple[str, StrPromise]] = {
    "minor": (
        FamilyLink.Relation.PARENT_OF_MINOR,
        _(
            "I am this child's parent or guardian and agree that my credit lines pay for"
            " the child's care."
        ),
    ),
    "parent": (
        FamilyLink.Relation.CHILD_OF_PARENT,
        _("I agree that my credit lines pay for my parent's care, until I revoke it."),
    ),
}


def me(request: HttpRequest) -> Person:
    person: Person = request.person  # type: ignore[attr-defined]
    return person


def actor(request: HttpRequest) -> str:
    return f"patient:{me(request).pk}"


def receivable_label(receivable: Receivable, overdue: bool) -> StrOrPromise:
    """Past its due date it is overdue, whether or not the nightly task has marked it yet."""
    return label(RECEIVABLE_STATUS, Receivable.Status.OVERDUE if overdue else receivable.status)


def owed_rows(person: Person) -> list[dict[str, Any]]:
    today = timezone.localdate()
    rows = []
    for receivable in patient_owed(person):
        encounter = receivable.encounter
        overdue = receivable_is_overdue(receivable, today)
        rows.append(
            {
                "bank": receivable.partner.name,
                "outstanding": fen_to_yuan(receivable.outstanding),
                "amount": fen_to_yuan(receivable.amount),
                "due_date": receivable.due_date,
                "status": receivable.status,
                "status_label": receivable_label(receivable, overdue),
                "overdue": overdue,
                "institution": encounter.institution.name,
                "patient": encounter.person.name,
                "mine": encounter.person_id == person.pk,
                "encounter_id": encounter.pk,
            }
        )
    return rows


# --- pages ------------------------------------------------------------------------------------


@require_GET
@patient_required
def home(request: HttpRequest) -> HttpResponse:
    person = me(request)
    lines = list(lines_of(person))
    figures = line_figures(lines)
    owed = patient_owed(person)
    per_line = owed_per_line(owed)
    rows = []
    for line in lines:
        figure = figures[line.pk]
        on_line = per_line.get(line.pk)
        status = credit_line_status(line)
        rows.append(
            {
                "bank": line.partner.name,
                "status": status,
                "status_label": label(LINE_STATUS, status),
                "limit": fen_to_yuan(figure.limit),
                "held": fen_to_yuan(figure.held),
                "drawn": fen_to_yuan(figure.drawn),
                "available": fen_to_yuan(figure.available),
                "expires_on": line.expires_on,
                "next_due": on_line.next_due if on_line else None,
                "next_due_amount": fen_to_yuan(on_line.next_due_amount if on_line else 0),
                "owed": fen_to_yuan(on_line.owed if on_line else 0),
            }
        )
    total_owed = sum(r.outstanding for r in owed)
    return render(
        request,
        "web/portal/home.html",
        {
            "person": person,
            "lines": rows,
            "total_owed": fen_to_yuan(total_owed) if owed else None,
            "section": "home",
        },
    )


@require_GET
@patient_required
def owed(request: HttpRequest) -> HttpResponse:
    return render(
        request, "web/portal/owed.html", {"rows": owed_rows(me(request)), "section": "owed"}
    )


def family_context(person: Person, forms: dict[str, FamilyLinkForm]) -> dict[str, Any]:
    as_payer = (
        FamilyLink.objects.filter(payer=person)
        .select_related("beneficiary")
        .order_by("-status", "-created_at")
    )
    as_beneficiary = (
        FamilyLink.objects.filter(beneficiary=person, status=FamilyLink.Status.ACTIVE)
        .select_related("payer")
        .order_by("-created_at")
    )
    return {
        "links": [
            {
                "pk": link.pk,
                "name": link.beneficiary.name,
                "id_masked": link.beneficiary.id_number_masked,
                "relation": label(RELATION_LABELS, link.relation),
                "status": link.status,
                "status_label": label(LINK_STATUS, link.status),
                "cap": fen_to_yuan(link.cap) if link.cap is not None else None,
                "since": link.consent_at,
                "active": link.status == FamilyLink.Status.ACTIVE,
                "pending": link.status == FamilyLink.Status.PENDING,
            }
            for link in as_payer
        ],
        "carried_by": [
            {"name": link.payer.name, "since": link.consent_at} for link in as_beneficiary
        ],
        "minor_form": forms["minor"],
        "parent_form": forms["parent"],
        "section": "family",
    }


def new_form(kind: str, data: Any = None) -> FamilyLinkForm:
    return FamilyLinkForm(data, prefix=kind, consent_label=ADD_KINDS[kind][1])


@require_GET
@patient_required
def family(request: HttpRequest) -> HttpResponse:
    forms = {kind: new_form(kind) for kind in ADD_KINDS}
    return render(request, "web/portal/family.html", family_context(me(request), forms))


@require_POST
@patient_required
def family_add(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in ADD_KINDS:
        return HttpResponse(status=404)
    person = me(request)
    relation = ADD_KINDS[kind][0]
    form = new_form(kind, request.POST)
    if form.is_valid():
        try:
            beneficiary = person_named(
                name=form.cleaned_data["name"], id_number=form.cleaned_data["id_number"]
            )
            if beneficiary is None:
                form.add_error(
                    "id_number",
                    _(
                        "No enrolled person has this name and ID number. They must be enrolled"
                        " first (at a hospital cashier or by a partner bank)."
                    ),
                )
            elif relation == FamilyLink.Relation.CHILD_OF_PARENT:
                link = family_link_request(
                    actor=actor(request),
                    payer=person,
                    beneficiary=beneficiary,
                    consent=bool(form.cleaned_data["consent"]),
                )
                messages.success(
                    request,
                    _(
                        "A code was sent to %(name)s's phone. Their consent is that code: "
                        "enter it below when they tell it to you."
                    )
                    % {"name": link.beneficiary.name},
                )
                return HttpResponseRedirect(reverse("portal-family") + f"#link-{link.pk}")
            else:
                link = family_link_create(
                    actor=actor(request),
                    payer=person,
                    beneficiary=beneficiary,
                    relation=relation,
                    consent=bool(form.cleaned_data["consent"]),
                    consent_by=person.name,
                    consent_channel="portal",
                )
                messages.success(
                    request,
                    _("%(name)s is now linked: your credit lines can pay for their care.")
                    % {"name": link.beneficiary.name},
                )
                return HttpResponseRedirect(reverse("portal-family"))
        except AccountsError as error:
            add_domain_error(form, error)
    forms = {other: new_form(other) for other in ADD_KINDS}
    forms[kind] = form
    # 200 with the errors by their fields, as Django forms do (a browser logs a 400 as an error).
    return render(request, "web/portal/family.html", family_context(person, forms))


@require_POST
@patient_required
def family_consent(request: HttpRequest, pk: int) -> HttpResponse:
    """The code the parent received, entered by the child who asked: the link is active."""
    link = get_object_or_404(FamilyLink, pk=pk, payer=me(request), status=FamilyLink.Status.PENDING)
    try:
        family_link_consent(
            actor=actor(request),
            payer=me(request),
            link_id=link.pk,
            code=request.POST.get("code", ""),
        )
    except AccountsError as error:
        messages.error(request, domain_error_text(error))
        return HttpResponseRedirect(reverse("portal-family") + f"#link-{link.pk}")
    messages.success(
        request,
        _("%(name)s consented: your credit lines can pay for their care.")
        % {"name": link.beneficiary.name},
    )
    return HttpResponseRedirect(reverse("portal-family"))


@require_POST
@patient_required
def family_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    link = get_object_or_404(FamilyLink, pk=pk, payer=me(request))
    try:
        family_link_revoke(actor=actor(request), link_id=link.pk)
    except AccountsError as error:
        messages.error(request, domain_error_text(error))
    else:
        messages.success(request, _("The link is revoked. What was already drawn stays as it is."))
    return HttpResponseRedirect(reverse("portal-family"))


@require_GET
@patient_required
def encounters(request: HttpRequest) -> HttpResponse:
    """My visits, and the family members' my credit line carried (亲情付), marked as such."""
    person = me(request)
    rows = [
        {
            "pk": encounter.pk,
            "institution": encounter.institution.name,
            "department": encounter.department.name,
            "kind": label(ENCOUNTER_KIND, encounter.kind),
            "status_label": label(ENCOUNTER_STATUS, encounter.status),
            "admitted_at": encounter.admitted_at,
            # Another's stay, on my line: whose it is.
            "carried_for": encounter.person.name if encounter.person_id != person.pk else "",
        }
        for encounter in patient_encounters(person).select_related("department")
    ]
    return render(
        request, "web/portal/encounters.html", {"encounters": rows, "section": "encounters"}
    )


@require_GET
@patient_required
def encounter_detail(request: HttpRequest, pk: UUID) -> HttpResponse:
    # Mine, or a family member's my line carried; anyone else's is not found.
    encounter = get_object_or_404(
        patient_encounters(me(request)).select_related("department"), pk=pk
    )
    bill = bill_labelled(encounter_bill(encounter))
    settlement = getattr(encounter, "settlement", None)
    settled = settlement_out(settlement) if settlement is not None else None
    if settled is not None:
        settled["funded_by_label"] = label(FUNDED_BY, settled["funded_by"])
    receipts = encounter.receipts.order_by("-version")
    refunds = [
        {
            "amount": fen_to_yuan(refund.amount),
            "channel": label(CHANNEL, refund.channel),
            "status_label": label(REFUND_STATUS, refund.status),
        }
        for refund in Refund.objects.filter(encounter=encounter).order_by("created_at")
    ]
    receivable = Receivable.objects.filter(encounter=encounter).select_related("partner").first()
    return render(
        request,
        "web/portal/encounter.html",
        {
            "encounter": encounter,
            "kind": label(ENCOUNTER_KIND, encounter.kind),
            "status_label": label(ENCOUNTER_STATUS, encounter.status),
            "deferred": encounter.status == Encounter.Status.SETTLED_INSURANCE_DEFERRED,
            "bill": bill,
            "settlement": settled,
            "receipts": receipts,
            "refunds": refunds,
            "receivable": None
            if receivable is None
            else {
                "bank": receivable.partner.name,
                "outstanding": fen_to_yuan(receivable.outstanding),
                "due_date": receivable.due_date,
                "status_label": receivable_label(
                    receivable, receivable_is_overdue(receivable, timezone.localdate())
                ),
            },
            "section": "encounters",
        },
    )


RECEIPT_AMOUNTS: list[tuple[str, StrPromise]] = [
    ("total", _("Total")),
    ("insurance_fund", _("Insurance fund")),
    ("personal_account", _("Personal account")),
    ("self_pay", _("Self-pay")),
    ("paid_by_deposit", _("Paid from the deposit")),
    ("paid_by_credit", _("Paid by the credit line")),
    ("paid_by_channel", _("Paid at the window")),
]


@require_http_methods(["GET"])
@patient_required
def receipt_detail(request: HttpRequest, receipt_no: str) -> HttpResponse:
    receipt = get_object_or_404(
        Receipt.objects.select_related("encounter", "superseded_by"),
        receipt_no=receipt_no,
        encounter__in=patient_encounters(me(request)).values("pk"),
    )
    content = receipt.content
    amounts = [
        (name, fen_to_yuan(int(content.get(key) or 0)))
        for key, name in RECEIPT_AMOUNTS
        if key in content
    ]
    form = ReceiptCheckForm(request.GET if "code" in request.GET else None)
    verified = None
    if form.is_bound and form.is_valid():
        verified = receipt_verify(receipt, form.cleaned_data["code"])
    return render(
        request,
        "web/portal/receipt.html",
        {
            "receipt": receipt,
            "content": content,
            "amounts": amounts,
            "form": form,
            "verified": verified,
            "section": "encounters",
        },
    )


@require_GET
@patient_required
def refunds(request: HttpRequest) -> HttpResponse:
    """My refunds: what the hospitals owe me back (to collect at the desk) and what they paid."""
    mine = (
        Refund.objects.filter(encounter__person=me(request))
        .select_related("encounter__institution")
        .order_by("-created_at", "-pk")
    )
    rows = [
        {**refund_row(refund), "institution": refund.encounter.institution.name} for refund in mine
    ]
    return render(
        request,
        "web/portal/refunds.html",
        {
            "owed": [row for row in rows if row["owed"]],
            "paid": [row for row in rows if not row["owed"]],
            "section": "refunds",
        },
    )


@require_GET
@patient_required
def sms_messages(request: HttpRequest) -> HttpResponse:
    """My messages: the notices sent to my phone (bill settled, due soon, overdue, refund
    ready, family pay used), as the patient API lists them."""
    rows = [
        {
            "pk": message.pk,
            "template": message.template,
            "kind_label": label(MESSAGE_KIND, message.template),
            "text": message.text,
            "status": message.status,
            "status_label": label(MESSAGE_STATUS, message.status),
            "created_at": message.created_at,
            "sent_at": message.sent_at,
        }
        for message in messages_of(me(request))
    ]
    return render(request, "web/portal/messages.html", {"rows": rows, "section": "messages"})


urlpatterns: list[URLPattern] = [
    path("sign-in/", portal_sign_in.sign_in_page, name="portal-sign-in"),
    path("", home, name="portal-home"),
    path("owed/", owed, name="portal-owed"),
    path("family/", family, name="portal-family"),
    path("family/add/<str:kind>/", family_add, name="portal-family-add"),
    path("family/<int:pk>/revoke/", family_revoke, name="portal-family-revoke"),
    path("family/<int:pk>/consent/", family_consent, name="portal-family-consent"),
    path("encounters/", encounters, name="portal-encounters"),
    path("encounters/<uuid:pk>/", encounter_detail, name="portal-encounter"),
    path("receipts/<str:receipt_no>/", receipt_detail, name="portal-receipt"),
    path("refunds/", refunds, name="portal-refunds"),
    path("messages/", sms_messages, name="portal-messages"),
]
