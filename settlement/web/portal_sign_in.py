"""The patient's sign-in to the portal: a mobile number, a code sent to it by SMS, and the
patient is signed in with a session (registering, with name and ID number, a number that is
on nobody yet).

The code is checked through ``django.contrib.auth.authenticate`` (``SmsCodeBackend``), so
django-axes counts wrong codes against the number as it counts wrong passwords against a
staff login: five lock the number at that address for ``AXES_COOLOFF_TIME``.
"""

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from accounts.backends import client_address, sign_in_name
from accounts.exceptions import AccountsError, TooManyCodes
from accounts.services.sms_codes import CODE_MINUTES, sign_in_code_send

from .access import home_for
from .portal_forms import domain_error_text

FIELDS = ("phone", "code", "name", "id_number")


class SmsSignInForm(forms.Form):
    phone = forms.CharField(
        label=_("Mobile number"),
        max_length=20,
        widget=forms.TextInput(
            attrs={"inputmode": "tel", "autocomplete": "tel", "placeholder": "138 0000 0000"}
        ),
    )
    code = forms.CharField(
        label=_("SMS code"),
        max_length=6,
        required=False,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9]*"}
        ),
    )
    name = forms.CharField(label=_("Full name"), max_length=100, required=False)
    id_number = forms.CharField(
        label=_("Resident ID number"),
        max_length=18,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


def _target(request: HttpRequest, user: Any) -> str:
    target = request.GET.get("next", "")
    if not target or not url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return home_for(user)
    return target


def _show(
    request: HttpRequest, form: SmsSignInForm, status: int = 200, **more: Any
) -> HttpResponse:
    sent = form.is_bound and request.POST.get("action") == "send" and not form.errors
    context = {"form": form, "sent": sent, "minutes": CODE_MINUTES, **more}
    context["register_open"] = bool(form.data.get("name") or form.data.get("id_number")) or bool(
        more.get("register_needed")
    )
    return render(request, "web/portal/sign_in.html", context, status=status)


def _say(form: SmsSignInForm, error: AccountsError) -> None:
    field = error.field if error.field in FIELDS else None
    if field == "id_number" and error.code == "invalid":
        form.add_error(field, _("This is not a valid resident ID number."))
    else:
        form.add_error(field, domain_error_text(error))


@require_http_methods(["GET", "POST"])
def sign_in_page(request: HttpRequest) -> HttpResponse:
    form = SmsSignInForm(request.POST or None)
    if request.method != "POST" or not form.is_valid():
        return _show(request, form)
    values = form.cleaned_data
    if request.POST.get("action") == "send":
        try:
            sign_in_code_send(phone=values["phone"])
        except AccountsError as error:  # a bad number, or asked too often
            _say(form, error)
            if isinstance(error, TooManyCodes):
                return _show(request, form, retry_after=error.retry_after)
        return _show(request, form)
    if not values["code"]:
        form.add_error("code", _("Enter the code sent to your phone."))
        return _show(request, form)
    user = authenticate(
        request,
        username=values["phone"],
        sms_code=values["code"],
        name=values["name"],
        id_number=values["id_number"],
    )
    if user is None:
        refusal = getattr(request, "sms_sign_in_refusal", None)
        if refusal is not None:
            _say(form, refusal)
        return _show(
            request, form, register_needed=getattr(refusal, "code", "") == "registration_needed"
        )
    # The failures were counted against the number as typed, which django-axes does not clear
    # by itself on success (it clears the user's own name).
    AxesProxyHandler.reset_attempts(
        ip_address=client_address(request),
        username=sign_in_name(request, {"username": values["phone"]}),
    )
    login(request, user)
    return HttpResponseRedirect(_target(request, user))


def locked_out(request: HttpRequest) -> HttpResponse:
    """The sign-in page again, saying the number is locked for a while (django-axes, after too
    many wrong codes)."""
    form = SmsSignInForm(request.POST or None)
    form.is_valid()
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    form.add_error(
        None,
        _("Too many wrong codes for this number. Try again in %(minutes)d minutes.")
        % {"minutes": minutes},
    )
    return _show(request, form, status=429)
