"""The cashier console (收费处): find and enrol people, family links, admission and deposits,
charges and their reversal, the bill by day, settlement, receipts and deferred claims.

Views are thin: they check fields with forms, call the services and selectors the API calls,
and put a domain error's message next to the field it names. Every page needs the ``cashier``
or ``admin`` role.
"""

import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from accounts.exceptions import AccountsError
from accounts.identity import age_on
from accounts.models import CreditLine, FamilyLink, Person
from accounts.selectors import (
    StaffPlace,
    credit_line_status,
    line_figures,
    lines_of,
    person_find,
    staff_institution,
    staff_place,
)
from accounts.services.family import family_link_create
from accounts.services.persons import person_create
from core.errors import DomainError
from core.idempotency import KeyReused, StillRunning, run_once
from core.money import fen_to_yuan
from ledger.exceptions import LedgerError, LimitExceeded
from settlement.models import (
    Charge,
    Encounter,
    InsuranceClaim,
    Receipt,
    Refund,
    Settlement,
)
from settlement.selectors import encounter_out, insurer_outage, settlement_out
from settlement.services.encounters import (
    ChargeItem,
    charge_reverse,
    charges_post,
    deposit_pay,
    encounter_admit,
)
from settlement.services.settle import encounter_settle

from . import labels
from .access import cashier_only, page_actor
from .bill_rows import bill_page, receipt_rows
from .cashier_forms import (
    CATEGORY_SUGGESTIONS,
    AdmitForm,
    ChargeForm,
    DepositForm,
    FamilyLinkForm,
    FindForm,
    PersonForm,
    ReverseForm,
    SettleForm,
)
from .refund_rows import refund_rows

ID_NUMBER_LIKE = re.compile(r"^[0-9]{17}[0-9Xx]$")
NAME_RESULTS = 50

# The codes' labels are the pages' shared tables (``labels``); relations are said from the
# desk's side here and from the patient's own side on the portal.
STATUS_LABELS = labels.ENCOUNTER_STATUS
FUNDED_BY_LABELS = labels.FUNDED_BY
LINE_STATUS_LABELS = labels.LINE_STATUS
LINK_STATUS_LABELS = labels.LINK_STATUS
KIND_LABELS = labels.ENCOUNTER_KIND
RELATION_LABELS: dict[str, Promise] = {
    FamilyLink.Relation.PARENT_OF_MINOR: _("Parent of a minor"),
    FamilyLink.Relation.CHILD_OF_PARENT: _("Adult child of a parent"),
}

# Ledger errors name account codes and fen: the desk is told what they mean, by code.
LEDGER_MESSAGES: dict[str, Promise] = {
    LimitExceeded.code: _("The credit line does not have enough room for this."),
}


def error_text(error: DomainError) -> str:
    """A service's error in the page's language: its own message, or for the ledger's
    (whose messages are for logs) what its code means."""
    if isinstance(error, LedgerError):
        known = LEDGER_MESSAGES.get(error.code)
        if known is not None:
            return str(known)
        return gettext("The ledger refused this posting (%(code)s).") % {"code": error.code}
    return capfirst(str(error.public))


def add_service_error(
    form: forms.Form, error: DomainError, fields: dict[str, str | None] | None = None
) -> None:
    """Put a service error next to the field it names (through ``fields`` when the service's
    name differs from the form's), else at the top of the form."""
    field = getattr(error, "field", None)
    if fields and field in fields:
        field = fields[field]
    if field not in form.fields:
        field = None
    form.add_error(field, error_text(error))


def form_key(request: HttpRequest, form: forms.Form) -> str:
    """The form's one-time token as the service's idempotency key, per signed-in user."""
    return f"web:{request.user.pk}:{form.cleaned_data['token']}"


class FormInFlight(AccountsError):
    """The same form (its token) was sent again while the first is still being handled, or
    its token was used for something else."""

    code = "in_progress"
    status = 409

    def __init__(self) -> None:
        super().__init__(_("This form is still being handled: wait a moment, then reload."))


def form_once(request: HttpRequest, form: forms.Form, action: Callable[[], str]) -> str:
    """Run ``action`` (which calls one service and returns where to go next) once per the form's
    token: a double click or a resent form goes where the first one went instead of doing it
    again. A second click while the first is still running waits for it."""
    try:
        return run_once(
            scope=f"web:{request.user.pk}",
            key=str(form.cleaned_data["token"]),
            fingerprint="web",
            work=action,
            remember=lambda target: (303, {"location": target}),
            replay=lambda status_code, body: str(body["location"]),
        )
    except (KeyReused, StillRunning):
        raise FormInFlight() from None


def page(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    # A form shown again with its errors is a 200, as on the sign-in page.
    return render(
        request,
        f"web/cashier/{template}",
        {
            "outage": insurer_outage(where=staff_place(request.user).q("encounter__institution")),
            **context,
        },
    )


# --- finding and enrolling people ------------------------------------------------------------


def find_people(query: str, place: StaffPlace) -> tuple[list[Person], str | None]:
    """By ID number through its keyed hash (exact, anyone: a patient may arrive anywhere), else
    by name among those with an encounter at the desk's institution; an error text if the ID
    number is not valid."""
    query = query.strip()
    if ID_NUMBER_LIKE.match(query):
        try:
            found = person_find(query.upper())
        except AccountsError as error:
            return [], error_text(error)
        return ([found] if found else []), None
    people = (
        Person.objects.filter(place.q("seen_at__institution"), name__contains=query)
        .distinct()
        .order_by("name", "pk")[:NAME_RESULTS]
    )
    return list(people), None


@cashier_only
@require_http_methods(["GET"])
def home(request: HttpRequest) -> HttpResponse:
    form = FindForm(request.GET or None)
    people: list[Person] | None = None
    if form.is_bound and form.is_valid():
        people, problem = find_people(form.cleaned_data["q"], staff_place(request.user))
        if problem:
            form.add_error("q", problem)
    open_encounters = (
        Encounter.objects.filter(
            staff_place(request.user).q(),
            status__in=[Encounter.Status.OPEN, Encounter.Status.SETTLING],
        )
        .select_related("person", "department")
        .order_by("-admitted_at")[:20]
    )
    return page(
        request,
        "home.html",
        {
            "form": form,
            "people": people,
            "open_encounters": [encounter_row(e) for e in open_encounters],
        },
    )


@cashier_only
@require_http_methods(["GET", "POST"])
def person_new(request: HttpRequest) -> HttpResponse:
    form = PersonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            person = person_create(
                actor=page_actor(request),
                name=form.cleaned_data["name"],
                id_number=form.cleaned_data["id_number"].strip().upper(),
                phone=form.cleaned_data["phone"],
                seen_at=staff_institution(request.user),
            )
        except AccountsError as error:
            add_service_error(form, error)
        else:
            messages.success(request, gettext("The person is enrolled."))
            return HttpResponseRedirect(reverse("cashier-person", args=[person.pk]))
    return page(request, "person_new.html", {"form": form})


def line_rows(lines: list[CreditLine]) -> list[dict[str, Any]]:
    figures = line_figures(lines)
    return [
        {
            "line": line,
            "bank": line.partner.name,
            "status": LINE_STATUS_LABELS.get(credit_line_status(line), credit_line_status(line)),
            "usable": credit_line_status(line) == "active",
            "limit": fen_to_yuan(figures[line.pk].limit),
            "held": fen_to_yuan(figures[line.pk].held),
            "drawn": fen_to_yuan(figures[line.pk].drawn),
            "available": fen_to_yuan(figures[line.pk].available),
            "score": f"{line.score_provider} {line.score}",
            "expires_on": line.expires_on,
        }
        for line in lines
    ]


def link_rows(links: Any, other: str) -> list[dict[str, Any]]:
    return [
        {
            "link": link,
            "other": getattr(link, other),
            "relation": RELATION_LABELS.get(link.relation, link.relation),
            "status": LINK_STATUS_LABELS.get(link.status, link.status),
            "cap": fen_to_yuan(link.cap) if link.cap is not None else None,
        }
        for link in links
    ]


def encounter_row(encounter: Encounter) -> dict[str, Any]:
    return {
        "encounter": encounter,
        "kind": KIND_LABELS.get(encounter.kind, encounter.kind),
        "status": STATUS_LABELS.get(encounter.status, encounter.status),
    }


def admit(request: HttpRequest, person: Person, form: AdmitForm) -> str:
    def action() -> str:
        encounter = encounter_admit(
            actor=page_actor(request),
            person=person,
            department=form.cleaned_data["department"],
            kind=form.cleaned_data["kind"],
            diagnosis_code=form.cleaned_data["diagnosis_code"],
            key=form_key(request, form),
        )
        return reverse("cashier-encounter", args=[encounter.pk])

    return form_once(request, form, action)


def link_create(request: HttpRequest, person: Person, form: FamilyLinkForm) -> bool:
    data = form.cleaned_data
    try:
        other = person_find(data["other_id_number"].strip().upper())
    except AccountsError as error:
        form.add_error("other_id_number", error_text(error))
        return False
    if other is None:
        form.add_error("other_id_number", gettext("No one is enrolled with this ID number."))
        return False
    this_pays = data["this_is"] == "payer"
    payer, beneficiary = (person, other) if this_pays else (other, person)
    try:
        family_link_create(
            actor=page_actor(request),
            payer=payer,
            beneficiary=beneficiary,
            relation=data["relation"],
            consent=data["consent"],
            consent_by=data["consent_by"],
            consent_channel="cashier",
            cap=data["cap"],
        )
    except AccountsError as error:
        other_field = "payer" if not this_pays else "beneficiary"
        add_service_error(form, error, {other_field: "other_id_number"})
        return False
    return True


@cashier_only
@require_http_methods(["GET", "POST"])
def person_detail(request: HttpRequest, person_id: int) -> HttpResponse:
    person = get_object_or_404(Person, pk=person_id)
    action = request.POST.get("action") if request.method == "POST" else None
    admit_form = AdmitForm(
        request.POST if action == "admit" else None, institution=staff_institution(request.user)
    )
    link_form = FamilyLinkForm(
        request.POST if action == "link" else None, initial={"this_is": "beneficiary"}
    )
    if action == "admit" and admit_form.is_valid():
        try:
            return HttpResponseRedirect(admit(request, person, admit_form))
        except (AccountsError, LedgerError) as error:
            add_service_error(admit_form, error)
    elif action == "link" and link_form.is_valid() and link_create(request, person, link_form):
        messages.success(request, gettext("The family link is recorded."))
        return HttpResponseRedirect(reverse("cashier-person", args=[person.pk]))
    lines = list(lines_of(person))
    as_beneficiary = (
        FamilyLink.objects.filter(beneficiary=person).select_related("payer").order_by("-pk")
    )
    as_payer = FamilyLink.objects.filter(payer=person).select_related("beneficiary").order_by("-pk")
    encounters = (
        Encounter.objects.filter(staff_place(request.user).q(), person=person)
        .select_related("department")
        .order_by("-admitted_at")[:20]
    )
    return page(
        request,
        "person.html",
        {
            "person": person,
            "age": age_on(person.birth_date, timezone.localdate()),
            "lines": line_rows(lines),
            "links_in": link_rows(as_beneficiary, "payer"),
            "links_out": link_rows(as_payer, "beneficiary"),
            "encounters": [encounter_row(e) for e in encounters],
            "admit_form": admit_form,
            "link_form": link_form,
        },
    )


# --- the encounter: deposit, charges, bill, settlement ---------------------------------------


def funding_view(encounter: Encounter) -> dict[str, Any] | None:
    line = encounter.funding_line
    if line is None:
        return None
    link = encounter.funding_link
    return {
        "bank": line.partner.name,
        "holder": line.person,
        "own": link is None,
        "relation": RELATION_LABELS.get(link.relation, link.relation) if link else None,
    }


def _encounter(request: HttpRequest, encounter_id: UUID) -> Encounter:
    """The encounter if it is at the desk's institution (another's is a 404), with its person,
    department and institution, and the credit line carrying it with that line's bank and
    holder (a family link is read when shown). The line is read apart: one query joining all
    eight tables took PostgreSQL longer to plan than the two take to run."""
    encounter = get_object_or_404(
        Encounter.objects.filter(staff_place(request.user).q()).select_related(
            "person", "department__institution"
        ),
        pk=encounter_id,
    )
    if encounter.funding_line_id is not None:
        encounter.funding_line = CreditLine.objects.select_related("partner", "person").get(
            pk=encounter.funding_line_id
        )
    return encounter


def settlement_view(encounter: Encounter) -> dict[str, Any] | None:
    settlement = Settlement.objects.filter(encounter=encounter).first()
    if settlement is None:
        return None
    out = settlement_out(settlement)
    out["status_label"] = STATUS_LABELS.get(out["status"], out["status"])
    out["funded_by_label"] = FUNDED_BY_LABELS.get(out["funded_by"], out["funded_by"])
    out["channel_label"] = labels.label(labels.CHANNEL, settlement.channel) or None
    return out


def deposit_view(encounter: Encounter, deposit: dict[str, Any]) -> dict[str, Any]:
    """The deposit card: what was taken and, once settled, what of it paid the bill and what
    went back (the API's ``paid`` is what is held now, nothing after settlement)."""
    taken = list(encounter.deposits.order_by("paid_at", "pk"))
    refunds = list(encounter.refunds.order_by("created_at", "pk"))
    total = sum(d.amount for d in taken)
    refunded = sum(r.amount for r in refunds if r.reason == Refund.Reason.DEPOSIT_LEFTOVER)
    settled = encounter.status not in (Encounter.Status.OPEN, Encounter.Status.SETTLING)
    return {
        **deposit,
        "taken": fen_to_yuan(total),
        "settled": settled and bool(taken),
        "used": fen_to_yuan(total - refunded),
        "refunded": fen_to_yuan(refunded),
        "lines": [
            {
                "amount": fen_to_yuan(d.amount),
                "channel": labels.label(labels.CHANNEL, d.channel),
                "paid_at": d.paid_at,
            }
            for d in taken
        ],
        "refunds": refund_rows(refunds),
    }


@cashier_only
@require_http_methods(["GET", "POST"])
def encounter_detail(request: HttpRequest, encounter_id: UUID) -> HttpResponse:
    encounter = _encounter(request, encounter_id)
    action = request.POST.get("action") if request.method == "POST" else None
    posted = request.POST if request.method == "POST" else None
    deposit_form = DepositForm(posted if action == "deposit" else None)
    charge_form = ChargeForm(posted if action == "charge" else None)
    reverse_form = ReverseForm(posted if action == "reverse" else None)
    settle_form = SettleForm(posted if action == "settle" else None)
    here = reverse("cashier-encounter", args=[encounter.pk])
    if action == "deposit" and deposit_form.is_valid():
        try:
            target = form_once(
                request, deposit_form, lambda: _deposit(request, encounter, deposit_form, here)
            )
            return HttpResponseRedirect(target)
        except (AccountsError, LedgerError) as error:
            add_service_error(deposit_form, error)
    elif action == "charge" and charge_form.is_valid():
        try:
            target = form_once(
                request, charge_form, lambda: _charge(request, encounter, charge_form, here)
            )
            return HttpResponseRedirect(target)
        except (AccountsError, LedgerError) as error:
            add_service_error(charge_form, error, {"items[0]": charge_error_field(error)})
    elif action == "reverse" and reverse_form.is_valid():
        charge = Charge.objects.filter(
            pk=reverse_form.cleaned_data["charge"], encounter=encounter
        ).first()
        if charge is None:
            raise Http404
        try:
            charge_reverse(
                actor=page_actor(request),
                charge_id=charge.pk,
                reason=reverse_form.cleaned_data["reason"],
            )
        except (AccountsError, LedgerError) as error:
            add_service_error(reverse_form, error)
        else:
            messages.success(request, gettext("The charge line is reversed."))
            return HttpResponseRedirect(f"{here}#day-{charge.service_date.isoformat()}")
    elif action == "settle" and settle_form.is_valid():
        try:
            encounter_settle(
                actor=page_actor(request),
                encounter_id=encounter.pk,
                channel=settle_form.cleaned_data["channel"] or None,
            )
        except (AccountsError, LedgerError) as error:
            add_service_error(settle_form, error)
        else:
            return HttpResponseRedirect(here + "#settlement")
    if request.method == "POST":  # a refused action may have met a settle that went on
        encounter.refresh_from_db(fields=["status"])
    out = encounter_out(encounter)
    return page(
        request,
        "encounter.html",
        {
            "encounter": encounter,
            "kind": KIND_LABELS.get(encounter.kind, encounter.kind),
            "status": STATUS_LABELS.get(encounter.status, encounter.status),
            "is_open": encounter.status == Encounter.Status.OPEN,
            "deposit": deposit_view(encounter, out["deposit"]),
            "funding": funding_view(encounter),
            "bill": bill_page(encounter),
            "settlement": settlement_view(encounter),
            "deposit_form": deposit_form,
            "charge_form": charge_form,
            "reverse_form": reverse_form,
            "settle_form": settle_form,
            "categories": [
                {"value": c, "label": labels.label(labels.CATEGORY, c)}
                for c in CATEGORY_SUGGESTIONS
            ],
        },
    )


def _deposit(request: HttpRequest, encounter: Encounter, form: DepositForm, here: str) -> str:
    deposit_pay(
        actor=page_actor(request),
        encounter_id=encounter.pk,
        amount=form.cleaned_data["amount"],
        channel=form.cleaned_data["channel"],
        key=form_key(request, form),
    )
    messages.success(request, gettext("The deposit is taken."))
    return here


def _charge(request: HttpRequest, encounter: Encounter, form: ChargeForm, here: str) -> str:
    data = form.cleaned_data
    charges_post(
        actor=page_actor(request),
        encounter_id=encounter.pk,
        key=form_key(request, form),
        items=[
            ChargeItem(
                code=data["code"],
                name=data["name"],
                category=data["category"],
                insurance_class=data["insurance_class"],
                quantity=data["quantity"],
                unit_price=data["unit_price"],
                service_date=data["service_date"],
            )
        ],
    )
    messages.success(request, gettext("The charge line is posted."))
    return f"{here}#day-{data['service_date'].isoformat()}"


def charge_error_field(error: DomainError) -> str | None:
    """The form field a charge line's error is about (the service names the line and, for
    some errors, the line's own field)."""
    return error.item_field


@cashier_only
@require_http_methods(["GET"])
def receipt(request: HttpRequest, encounter_id: UUID) -> HttpResponse:
    encounter = _encounter(request, encounter_id)
    settlement = settlement_view(encounter)
    if settlement is None:
        raise Http404
    current = Receipt.objects.filter(receipt_no=settlement["receipt_no"]).first()
    return page(
        request,
        "receipt.html",
        {
            "encounter": encounter,
            "kind": KIND_LABELS.get(encounter.kind, encounter.kind),
            "settlement": settlement,
            "receipt": current,
            "charge_rows": receipt_rows(encounter),
            "funding": funding_view(encounter),
            "refunds": refund_rows(encounter.refunds.order_by("created_at", "pk")),
        },
    )


@cashier_only
@require_http_methods(["GET"])
def claims(request: HttpRequest) -> HttpResponse:
    mine = staff_place(request.user).q("encounter__institution")
    deferred = (
        InsuranceClaim.objects.filter(mine, status=InsuranceClaim.Status.DEFERRED)
        .select_related("encounter__person", "encounter__department")
        .order_by("created_at", "pk")[:500]
    )
    failed = (
        InsuranceClaim.objects.filter(mine, status=InsuranceClaim.Status.FAILED)
        .select_related("encounter__person")
        .order_by("-updated_at")[:50]
    )
    return page(
        request,
        "claims.html",
        {
            "claims": [
                {
                    "claim": claim,
                    "encounter": claim.encounter,
                    "total": fen_to_yuan(claim.medfee_sumamt),
                    "self_pay": fen_to_yuan(claim.self_pay),
                }
                for claim in deferred
            ],
            "failed": failed,
        },
    )


urlpatterns: list[URLPattern] = [
    path("", home, name="cashier-home"),
    path("persons/new/", person_new, name="cashier-person-new"),
    path("persons/<int:person_id>/", person_detail, name="cashier-person"),
    path("encounters/<uuid:encounter_id>/", encounter_detail, name="cashier-encounter"),
    path("encounters/<uuid:encounter_id>/receipt/", receipt, name="cashier-receipt"),
    path("claims/", claims, name="cashier-claims"),
]
