"""What the pages call the codes the API returns, in the page's language.

One table per kind of code, shared by the cashier console, the portal and the finance desk, so
that a code reads the same on every page. The codes themselves (``drug``, ``A``, ``cash``) are
the API's and stay as they are in its JSON; only the pages show these labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_lazy as _

from accounts.models import FamilyLink, Institution, SmsMessage
from settlement.models import Channel, Charge, Encounter, Receivable, Refund, Settlement

if TYPE_CHECKING:  # types only: nothing of django-stubs-ext is needed at run time
    from django_stubs_ext import StrOrPromise, StrPromise

    Labels = Mapping[str, StrPromise]

INSTITUTION_KIND: Labels = {
    Institution.Kind.HOSPITAL: _("Hospital"),
    Institution.Kind.COMMUNITY: _("Community health centre"),
}
CHANNEL: Labels = {
    Channel.CASH: _("Cash"),
    Channel.CARD: _("Bank card"),
    Channel.UNIONPAY: _("UnionPay"),
    Channel.ALIPAY: _("Alipay"),
    Channel.WECHAT: _("WeChat Pay"),
}
ENCOUNTER_KIND: Labels = {
    Encounter.Kind.INPATIENT: _("Inpatient"),
    Encounter.Kind.OUTPATIENT: _("Outpatient"),
}
ENCOUNTER_STATUS: Labels = {
    Encounter.Status.OPEN: _("Not settled"),
    Encounter.Status.SETTLING: _("Being settled"),
    Encounter.Status.SETTLED: _("Settled"),
    Encounter.Status.SETTLED_INSURANCE_DEFERRED: _("Settled, insurance deferred"),
}
FUNDED_BY: Labels = {
    Settlement.FundedBy.CREDIT: _("Credit line"),
    Settlement.FundedBy.DEPOSIT: _("Deposit"),
    Settlement.FundedBy.CHANNEL: _("Paid at the window"),
}
LINE_STATUS: Labels = {
    "active": _("Active"),
    "frozen": _("Frozen"),
    "closed": _("Closed"),
    "expired": _("Expired"),
}
LINK_STATUS: Labels = {
    FamilyLink.Status.PENDING: _("Awaiting consent"),
    FamilyLink.Status.ACTIVE: _("Active"),
    FamilyLink.Status.REVOKED: _("Revoked"),
    FamilyLink.Status.LAPSED: _("Lapsed"),
}
# A receivable is money owed to a bank: "open" is a debt not yet due, not an unsettled bill;
# a page shows one past its due date as overdue even before the nightly task marks it.
RECEIVABLE_STATUS: Labels = {
    Receivable.Status.OPEN: _("Not yet due"),
    Receivable.Status.OVERDUE: _("Overdue"),
    Receivable.Status.REPAID: _("Repaid in full"),
}
REFUND_STATUS: Labels = {
    Refund.Status.OWED: _("To be refunded"),
    Refund.Status.PAID: _("Refunded"),
}
REFUND_REASON: Labels = {
    Refund.Reason.DEPOSIT_LEFTOVER: _("Deposit left over"),
    Refund.Reason.INSURANCE_REVERSAL: _("Insurer paid after all"),
}
# The notices sent to a patient by SMS (the outbox's templates), and how far each got.
MESSAGE_KIND: Labels = {
    "SETTLED": _("Bill settled"),
    "DUE_SOON": _("Repayment due soon"),
    "OVERDUE": _("Repayment overdue"),
    "REFUND_READY": _("Refund ready"),
    "FAMILY_DRAW": _("Family pay used"),
}
MESSAGE_STATUS: Labels = {
    SmsMessage.Status.PENDING: _("Being sent"),
    SmsMessage.Status.SENT: _("Sent"),
    SmsMessage.Status.FAILED: _("Not sent"),
}
# The categories the cashier's form suggests; any other category a HIS sends is shown as sent.
CATEGORY: Labels = {
    "drug": _("Drugs"),
    "exam": _("Examination"),
    "lab": _("Laboratory tests"),
    "bed": _("Bed"),
    "treatment": _("Treatment"),
    "surgery": _("Surgery"),
    "material": _("Medical materials"),
    "nursing": _("Nursing"),
}
INSURANCE_CLASS: Labels = {
    Charge.InsuranceClass.A: _("Class A (甲)"),
    Charge.InsuranceClass.B: _("Class B (乙)"),
    Charge.InsuranceClass.C: _("Class C (丙)"),
}


def label(labels: Labels, value: str | None) -> StrOrPromise:
    """The label of ``value``, or the value itself when the table has none (a category the
    HIS made up is still shown, as sent)."""
    if value is None:
        return ""
    return labels.get(value, value)


def bill_labelled(bill: dict[str, Any]) -> dict[str, Any]:
    """``encounter_bill``'s answer with each line's category and insurance class labelled for
    a page (the codes stay as they are beside them)."""
    for day in bill["days"]:
        for item in day["items"]:
            item["category_label"] = label(CATEGORY, item["category"])
            item["insurance_class_label"] = label(INSURANCE_CLASS, item["insurance_class"])
    return bill
