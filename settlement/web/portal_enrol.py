"""The portal's enrolment page (开通信用就医): the consent's words in full, a checkbox, the
bank; the same service as the patient API's ``enrolment/``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.exceptions import AccountsError
from accounts.models import Consent, CreditApplication, Partner
from accounts.services.consents import consent_revoke
from core.money import fen_to_yuan
from settlement.services.enrolment import (
    CONSENT_TEXT,
    DECLINED_BELOW_LOWEST_TIER,
    DECLINED_NO_SCORE,
    enrolment_apply,
    enrolment_bank,
)

from .access import patient_required
from .portal_forms import domain_error_text

if TYPE_CHECKING:  # types only: nothing of django-stubs-ext is needed at run time
    from django_stubs_ext import StrPromise

APPLICATION_STATUS: dict[str, StrPromise] = {
    CreditApplication.Status.GRANTED: _("granted"),
    CreditApplication.Status.PENDING_BANK: _("waiting for the bank"),
    CreditApplication.Status.DECLINED: _("declined"),
}
DECLINE_REASONS: dict[str, StrPromise] = {
    DECLINED_NO_SCORE: _("the credit platform has no score for you"),
    DECLINED_BELOW_LOWEST_TIER: _("your score is below the bank's lowest tier"),
}
OUTCOMES: dict[str, StrPromise] = {
    CreditApplication.Status.GRANTED: _(
        "Enrolled: %(bank)s granted you a credit line of ¥%(limit)s."
    ),
    CreditApplication.Status.PENDING_BANK: _(
        "Your application was sent to %(bank)s; your line appears here once the bank grants it."
    ),
}


class EnrolForm(forms.Form):
    bank = forms.ModelChoiceField(
        label=_("Bank"), queryset=Partner.objects.order_by("name"), empty_label=None
    )
    consent = forms.BooleanField(
        label=_("I have read the words above and agree to them."), required=True
    )


def _default_bank() -> Partner | None:
    try:
        return enrolment_bank(None)
    except AccountsError:
        return None


def _applications(person: Any) -> list[dict[str, Any]]:
    return [
        {
            "bank": application.partner.name,
            "status": application.status,
            "status_label": APPLICATION_STATUS.get(application.status, application.status),
            "score": application.score,
            "tier_limit": fen_to_yuan(application.tier_limit)
            if application.tier_limit is not None
            else None,
            "reason": DECLINE_REASONS.get(application.reason, application.reason),
            "at": application.created_at,
        }
        for application in CreditApplication.objects.filter(person=person)
        .select_related("partner")
        .order_by("-created_at", "-pk")
    ]


@require_http_methods(["GET", "POST"])
@patient_required
def enrol(request: HttpRequest) -> HttpResponse:
    person = request.person  # type: ignore[attr-defined]
    default = _default_bank()
    form = EnrolForm(request.POST or None, initial={"bank": default})
    if request.method == "POST" and form.is_valid():
        bank = form.cleaned_data["bank"]
        try:
            enrolment = enrolment_apply(
                actor=f"patient:{person.pk}",
                person=person,
                partner=bank,
                consent_scope=str(CONSENT_TEXT),  # in the page's language, as it was read
                channel="portal",
            )
        except AccountsError as error:
            form.add_error(None, domain_error_text(error))
        else:
            if enrolment.status == CreditApplication.Status.DECLINED:
                messages.error(
                    request,
                    _("Not enrolled: %(reason)s.")
                    % {
                        "reason": DECLINE_REASONS.get(
                            enrolment.application.reason, enrolment.application.reason
                        )
                    },
                )
            else:
                messages.success(
                    request,
                    OUTCOMES[enrolment.status]
                    % {"bank": bank.name, "limit": fen_to_yuan(enrolment.tier_limit or 0)},
                )
            return HttpResponseRedirect(reverse("portal-enrol"))
    return render(
        request,
        "web/portal/enrol.html",
        {
            "form": form,
            "consent_text": CONSENT_TEXT,
            "applications": _applications(person),
            "consents": Consent.objects.filter(
                person=person, purpose=Consent.Purpose.CREDIT_SCORE, revoked_at__isnull=True
            ).order_by("-granted_at"),
            "section": "enrol",
        },
    )


@require_POST
@patient_required
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Withdraw one of the patient's own consents (another's is a 404)."""
    person = request.person  # type: ignore[attr-defined]
    try:
        consent_revoke(actor=f"patient:{person.pk}", person=person, consent_id=pk)
    except Consent.DoesNotExist:
        raise Http404 from None
    messages.success(
        request,
        _("Consent withdrawn: your credit score is no longer read. Your lines stay as they are."),
    )
    return HttpResponseRedirect(reverse("portal-enrol"))
