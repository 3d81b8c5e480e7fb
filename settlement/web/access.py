"""Who may see which pages."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.models import Person
from accounts.services.staff import user_roles


def role_required(
    *roles: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Staff pages: a signed-in user holding one of ``roles`` (403 for anyone else)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_roles(request.user) & set(roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


PATIENT_SIGN_IN = "/portal/sign-in/"


def patient_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Portal pages: a signed-in patient; ``request.person`` is that patient's own person.
    Anyone else signed out is sent to the patient's sign-in (by SMS code)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), PATIENT_SIGN_IN)
        person = Person.objects.filter(user=request.user).first()
        if person is None:
            raise PermissionDenied
        request.person = person  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped


def home_for(user: Any) -> str:
    """Where a user lands after signing in."""
    roles = user_roles(user)
    if "cashier" in roles:
        return "/cashier/"
    if "finance" in roles:
        return "/finance/"
    if "admin" in roles:
        return "/cashier/"
    if "platform" in roles:
        return "/platform/"
    return "/portal/"


cashier_only = role_required("cashier", "admin")
finance_only = role_required("finance", "admin")
platform_only = role_required("platform")
# A batch's pages: its institution's finance, and the city platform's operators (who also
# reconcile, at any institution).
reconcilers = role_required("finance", "admin", "platform")


def page_actor(request: HttpRequest) -> str:
    """Who did it, for the audit trail: the signed-in staff user (as the API's staff_actor)."""
    return f"staff:{request.user.pk}:{request.user.get_username()}"
