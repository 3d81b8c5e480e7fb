"""Sign-in and the landing page."""

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.backends import client_address, sign_in_name

from . import portal_sign_in
from .access import home_for


class LoginForm(forms.Form):
    username = forms.CharField(label=_("User name"), max_length=150)
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput)


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(
            request,
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
        )
        if user is None:
            form.add_error(None, _("The user name or password is wrong."))
        else:
            # The failures were counted against the login as typed, which django-axes does not
            # clear by itself on success when it differs from the user's own name.
            AxesProxyHandler.reset_attempts(
                ip_address=client_address(request),
                username=sign_in_name(request, {"username": form.cleaned_data["username"]}),
            )
            login(request, user)
            target = request.GET.get("next", "")
            if not url_has_allowed_host_and_scheme(target, {request.get_host()}):
                target = home_for(user)
            return HttpResponseRedirect(target or home_for(user))
    return render(request, "web/login.html", {"form": form})


def locked_out(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The sign-in page again, saying the login is locked for a while (django-axes calls this
    after too many wrong passwords, or wrong SMS codes on the patient's sign-in page)."""
    if request.path == reverse("portal-sign-in"):
        return portal_sign_in.locked_out(request)
    form = LoginForm(request.POST or None)
    form.is_valid()
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    form.add_error(
        None,
        _("Too many wrong passwords for this login. Try again in %(minutes)d minutes.")
        % {"minutes": minutes},
    )
    return render(request, "web/login.html", {"form": form}, status=429)


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    """Sign out, back to the sign-in page one came through: a patient's by SMS code, else
    the staff's."""
    patient = request.user.is_authenticated and home_for(request.user) == "/portal/"
    logout(request)
    return HttpResponseRedirect(reverse("portal-sign-in") if patient else "/login/")


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return HttpResponseRedirect("/login/")
    return HttpResponseRedirect(home_for(request.user))
