"""Forms of the cashier console: field checks only; every rule lives in the services."""

import uuid
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Department, FamilyLink, Institution
from core.money import API, NotYuan, yuan_to_fen
from settlement.models import Channel

from .labels import CHANNEL, ENCOUNTER_KIND, INSURANCE_CLASS

MAX_YUAN = Decimal(10) ** 9  # ¥1,000,000,000: the services' own ceiling for one amount

CHANNEL_CHOICES = [(value, CHANNEL[value]) for value in Channel.values]
KIND_CHOICES = list(ENCOUNTER_KIND.items())
RELATION_CHOICES = [
    (FamilyLink.Relation.PARENT_OF_MINOR, _("Parent carries a minor child's costs")),
    (FamilyLink.Relation.CHILD_OF_PARENT, _("Adult child carries a parent's costs")),
]
ROLE_CHOICES = [
    ("beneficiary", _("This person's costs are carried by the other person")),
    ("payer", _("This person carries the other person's costs")),
]
INSURANCE_CLASS_CHOICES = list(INSURANCE_CLASS.items())
CATEGORY_SUGGESTIONS = ["drug", "exam", "lab", "bed", "treatment", "surgery", "material", "nursing"]


class YuanField(forms.DecimalField):
    """A yuan amount typed as a decimal string with at most two places; cleans to integer fen.

    Django's ``DecimalField`` checks it first, so its messages come in the page's language; then
    it must be yuan as the API reads it (``core.money.API``: no exponent, no spaces inside),
    which also turns it into fen.
    """

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 12)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", Decimal(0) if allow_zero else Decimal("0.01"))
        kwargs.setdefault("max_value", MAX_YUAN)
        # A text box, not type=number: the browser must not refuse "12.345" before the server
        # can say why in the page's language.
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})
        )
        super().__init__(**kwargs)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        for name in ("min", "max", "step"):
            attrs.pop(name, None)
        return attrs

    def clean(self, value: Any) -> int | None:
        if super().clean(value) is None:
            return None
        try:
            return yuan_to_fen(str(value), API)
        except NotYuan:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class FindForm(forms.Form):
    q = forms.CharField(
        label=_("ID number or name"),
        max_length=100,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"}),
    )


class PersonForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    id_number = forms.CharField(label=_("ID number"), max_length=18, min_length=18)
    phone = forms.CharField(label=_("Mobile number"), max_length=20, required=False)


class OnceForm(forms.Form):
    """A form posted once: ``token`` tells a double click from a second request."""

    token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)


class DepartmentField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Department) -> str:
        return f"{obj.institution.name} · {obj.name}"


class AdmitForm(OnceForm):
    """Admission at the desk's own institution: its departments are the only choices."""

    department = DepartmentField(label=_("Department"), queryset=Department.objects.none())
    kind = forms.ChoiceField(label=_("Kind of visit"), choices=KIND_CHOICES)
    diagnosis_code = forms.CharField(label=_("Diagnosis code"), max_length=32, required=False)

    def __init__(self, *args: Any, institution: Institution | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(DepartmentField, self.fields["department"])
        field.queryset = (
            Department.objects.filter(institution=institution)
            .select_related("institution")
            .order_by("name")
        )


class FamilyLinkForm(forms.Form):
    other_id_number = forms.CharField(
        label=_("The other person's ID number"), max_length=18, min_length=18
    )
    this_is = forms.ChoiceField(label=_("Direction"), choices=ROLE_CHOICES)
    relation = forms.ChoiceField(label=_("Relation"), choices=RELATION_CHOICES)
    cap = YuanField(label=_("Cap (yuan, optional)"), required=False)
    consent_by = forms.CharField(label=_("Consent given by (payer's name)"), max_length=150)
    consent = forms.BooleanField(label=_("The payer consents, in person at the desk"))


class DepositForm(OnceForm):
    amount = YuanField(label=_("Amount (yuan)"))
    channel = forms.ChoiceField(label=_("Payment channel"), choices=CHANNEL_CHOICES)


class ChargeForm(OnceForm):
    code = forms.CharField(label=_("Item code"), max_length=64)
    name = forms.CharField(label=_("Item name"), max_length=200)
    category = forms.CharField(
        label=_("Category"),
        max_length=32,
        widget=forms.TextInput(attrs={"list": "charge-categories"}),
    )
    insurance_class = forms.ChoiceField(label=_("Insurance class"), choices=INSURANCE_CLASS_CHOICES)
    quantity = forms.DecimalField(
        label=_("Quantity"),
        max_digits=12,
        decimal_places=3,
        min_value=Decimal("0.001"),
        initial=Decimal(1),
    )
    unit_price = YuanField(label=_("Unit price (yuan)"), allow_zero=True)
    service_date = forms.DateField(
        label=_("Service date"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["service_date"].initial = timezone.localdate


class ReverseForm(forms.Form):
    charge = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(label=_("Reason"), max_length=200)


class SettleForm(forms.Form):
    channel = forms.ChoiceField(
        label=_("Payment channel for what deposit and credit do not cover"),
        choices=[("", _("None: deposit or credit only"))] + CHANNEL_CHOICES,
        required=False,
    )


class RefundPayForm(OnceForm):
    """Pay out one refund owed: the channel it goes back through and the payment's reference."""

    channel = forms.ChoiceField(label=_("Refund through"), choices=CHANNEL_CHOICES)
    reference = forms.CharField(
        label=_("Payment reference"),
        max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
