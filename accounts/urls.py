from django.urls import URLPattern, path

from accounts import api, partner_api, patient_api

staff_urlpatterns = [
    path("departments/", api.DepartmentListApi.as_view(), name="departments"),
    path("persons/", api.PersonListCreateApi.as_view(), name="persons"),
    path("persons/find/", api.PersonFindApi.as_view(), name="person-find"),
    path("persons/<int:person_id>/", api.PersonDetailApi.as_view(), name="person-detail"),
    path("family-links/", api.FamilyLinkCreateApi.as_view(), name="family-links"),
    path(
        "family-links/<int:link_id>/revoke/",
        api.FamilyLinkRevokeApi.as_view(),
        name="family-link-revoke",
    ),
]

partner_urlpatterns = [
    path("credit-lines/", partner_api.CreditLineGrantApi.as_view(), name="partner-credit-lines"),
    path(
        "credit-lines/<uuid:line_id>/",
        partner_api.CreditLineDetailApi.as_view(),
        name="partner-credit-line",
    ),
    path(
        "credit-lines/<uuid:line_id>/freeze/",
        partner_api.CreditLineFreezeApi.as_view(),
        name="partner-credit-line-freeze",
    ),
    path(
        "credit-lines/<uuid:line_id>/unfreeze/",
        partner_api.CreditLineUnfreezeApi.as_view(),
        name="partner-credit-line-unfreeze",
    ),
    path(
        "credit-lines/<uuid:line_id>/close/",
        partner_api.CreditLineCloseApi.as_view(),
        name="partner-credit-line-close",
    ),
]

# The patient API (/api/patient/v1/), for the city's app: a patient's own data.
patient_urlpatterns: list[URLPattern] = [
    path("auth/sms/", patient_api.SmsCodeApi.as_view(), name="patient-auth-sms"),
    path("auth/token/", patient_api.SignInApi.as_view(), name="patient-auth-token"),
    path("auth/logout/", patient_api.SignOutApi.as_view(), name="patient-auth-logout"),
    path("me/", patient_api.MeApi.as_view(), name="patient-me"),
]
