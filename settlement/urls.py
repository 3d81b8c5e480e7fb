from django.urls import URLPattern, path

from . import api, enrolment_api, partner_api, patient_api, platform_api
from .reconciliation import api as recon_api

staff_urlpatterns = [
    path("platform/summary/", platform_api.PlatformSummaryApi.as_view(), name="platform-summary"),
    path("encounters/", api.EncounterCreateApi.as_view(), name="encounters"),
    path("encounters/<uuid:encounter_id>/", api.EncounterDetailApi.as_view(), name="encounter"),
    path("encounters/<uuid:encounter_id>/deposits/", api.DepositApi.as_view(), name="deposits"),
    path("encounters/<uuid:encounter_id>/charges/", api.ChargesApi.as_view(), name="charges"),
    path("encounters/<uuid:encounter_id>/bill/", api.BillApi.as_view(), name="bill"),
    path("encounters/<uuid:encounter_id>/settle/", api.SettleApi.as_view(), name="settle"),
    path("charges/<int:charge_id>/reverse/", api.ChargeReverseApi.as_view(), name="reverse"),
    path("receipts/<str:receipt_no>/", api.ReceiptApi.as_view(), name="receipt"),
    path("refunds/", api.RefundsApi.as_view(), name="refunds"),
    path("refunds/<int:refund_id>/pay/", api.RefundPayApi.as_view(), name="refund-pay"),
    path("insurance/claims/", api.ClaimsApi.as_view(), name="claims"),
    path("insurance/claims/retry/", api.ClaimsRetryApi.as_view(), name="claims-retry"),
    path(
        "reconciliation/bank-statements/",
        recon_api.BankStatementUploadApi.as_view(),
        name="recon-upload",
    ),
    path(
        "reconciliation/batches/<uuid:batch_id>/",
        recon_api.BatchDetailApi.as_view(),
        name="recon-batch",
    ),
    path(
        "reconciliation/batches/<uuid:batch_id>/export/",
        recon_api.BatchExportApi.as_view(),
        name="recon-export",
    ),
    path(
        "reconciliation/items/<int:item_id>/resolve/",
        recon_api.ItemResolveApi.as_view(),
        name="recon-resolve",
    ),
]

partner_urlpatterns = [
    path("receivables/", partner_api.ReceivablesApi.as_view(), name="partner-receivables"),
    path("repayments/", partner_api.RepaymentsApi.as_view(), name="partner-repayments"),
    path("statements/<str:day>/", partner_api.StatementApi.as_view(), name="partner-statement"),
]

# The patient API (/api/patient/v1/), for the city's app: a patient's own data.
patient_urlpatterns: list[URLPattern] = [
    path("enrolment/", enrolment_api.EnrolmentApi.as_view(), name="patient-enrolment"),
    path(
        "consents/<int:consent_id>/revoke/",
        enrolment_api.ConsentRevokeApi.as_view(),
        name="patient-consent-revoke",
    ),
    path("encounters/", patient_api.PatientEncountersApi.as_view(), name="patient-encounters"),
    path(
        "encounters/<uuid:encounter_id>/bill/",
        patient_api.PatientBillApi.as_view(),
        name="patient-bill",
    ),
    path("refunds/", patient_api.PatientRefundsApi.as_view(), name="patient-refunds"),
    path("messages/", patient_api.PatientMessagesApi.as_view(), name="patient-messages"),
]
