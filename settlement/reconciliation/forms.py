"""Forms of the finance desk."""

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Partner
from core.money import API, NotYuan, yuan_to_fen


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

    def clean_adjust(self) -> int | None:
        """The adjustment in fen, read from the text typed once Django has found it a number."""
        if self.cleaned_data.get("adjust") is None:
            return None
        try:  # "1e2" and "1_000" are not amounts here
            fen = yuan_to_fen(self.data.get(self.add_prefix("adjust")), API)
        except NotYuan:
            raise forms.ValidationError(
                _("Enter yuan with at most two decimals, like 12.50.")
            ) from None
        if fen == 0:
            raise forms.ValidationError(_("Leave it empty for no adjustment."))
        return fen

    def adjust_fen(self) -> int | None:
        adjust: int | None = self.cleaned_data.get("adjust")
        return adjust
