"""Forms of the finance desk."""

from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.api_common import YUAN
from accounts.models import Partner


class StatementUploadForm(forms.Form):
    bank = forms.ModelChoiceField(
        label=_("Bank"), queryset=Partner.objects.order_by("name"), empty_label=None
    )
    file = forms.FileField(
        label=_("Statement file"),
        help_text=_("CSV, camt.053 XML or the bank's daily file, UTF-8."),
    )


class ResolveForm(forms.Form):
    comment = forms.CharField(
        label=_("Comment"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
    )
    adjust = forms.DecimalField(
        label=_("Adjustment (yuan, optional)"),
        required=False,
        max_digits=13,
        decimal_places=2,
        help_text=_("Positive takes this much off the bank receivable, negative puts it back."),
    )

    def clean_adjust(self) -> Decimal | None:
        value = self.cleaned_data.get("adjust")
        typed = (self.data.get(self.add_prefix("adjust")) or "").strip()
        if typed and not YUAN.fullmatch(typed):  # "1e2" and "1_000" are not amounts here
            raise forms.ValidationError(_("Enter yuan with at most two decimals, like 12.50."))
        if value is not None and value == 0:
            raise forms.ValidationError(_("Leave it empty for no adjustment."))
        return value

    def adjust_fen(self) -> int | None:
        value = self.cleaned_data.get("adjust")
        return None if value is None else int(value * 100)
