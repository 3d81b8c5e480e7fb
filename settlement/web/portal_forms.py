"""Forms of the patient portal; domain errors are put on the field they concern, translated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from core.errors import DomainError

if TYPE_CHECKING:  # types only: nothing of django-stubs-ext is needed at run time
    from django_stubs_ext import StrOrPromise


class FamilyLinkForm(forms.Form):
    """Add a minor child, or consent to carry a parent: the signed-in patient pays.

    The person is named by both their name and their ID number, as enrolled: the number alone
    would let anyone link (and learn of) a stranger.
    """

    name = forms.CharField(label=_("Full name, as enrolled"), max_length=100)
    id_number = forms.CharField(
        label=_("Resident ID number"),
        max_length=18,
        min_length=18,
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "text"}),
    )
    consent = forms.BooleanField(required=True)

    def __init__(self, *args: object, consent_label: StrOrPromise = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["consent"].label = consent_label
        self.fields["id_number"].error_messages["min_length"] = _(
            "A resident ID number has 18 characters."
        )
        self.fields["id_number"].error_messages["max_length"] = _(
            "A resident ID number has 18 characters."
        )

    def clean_id_number(self) -> str:
        return str(self.cleaned_data["id_number"]).strip().upper()


class ReceiptCheckForm(forms.Form):
    code = forms.CharField(label=_("Verification code"), max_length=32)


FIELD_OF = {"beneficiary": "id_number", "id_number": "id_number", "consent": "consent"}


def domain_error_text(error: DomainError) -> str:
    """A service's error in the page's language."""
    return capfirst(str(error.message))


def add_domain_error(form: forms.Form, error: DomainError) -> None:
    """Put a service's error on the form, by the field it names (else on the whole form)."""
    if error.field == "id_number":  # the number itself is malformed
        message: StrOrPromise = _("This is not a valid resident ID number.")
    else:
        message = domain_error_text(error)
    field = FIELD_OF.get(error.field or "")
    form.add_error(field if field in form.fields else None, message)
