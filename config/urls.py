from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import urls as accounts_urls
from config.health import healthz
from settlement import urls as settlement_urls
from settlement.reconciliation import pages as reconciliation_pages

# Under /api/ every error is JSON with the error shape; pages keep Django's own (core.api_edge).
handler400 = "core.api_edge.bad_request"
handler403 = "core.api_edge.permission_denied"
handler404 = "core.api_edge.page_not_found"
handler500 = "core.api_edge.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include(accounts_urls.staff_urlpatterns)),
    path("api/v1/", include(settlement_urls.staff_urlpatterns)),
    path("api/partner/v1/", include(accounts_urls.partner_urlpatterns)),
    path("api/partner/v1/", include(settlement_urls.partner_urlpatterns)),
    path("api/patient/v1/", include(accounts_urls.patient_urlpatterns)),
    path("api/patient/v1/", include(settlement_urls.patient_urlpatterns)),
    path("i18n/", include("django.conf.urls.i18n")),
    # The finance desk's front page (finance-home) and its batches are reconciliation's.
    path("finance/", include(reconciliation_pages.urlpatterns)),
    path("", include("settlement.web.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
