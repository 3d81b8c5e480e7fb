from django.urls import include, path

from . import (
    cashier,
    cashier_refunds,
    deposit_table_page,
    finance,
    pages,
    platform,
    portal,
    portal_enrol,
)

urlpatterns = [
    path("", pages.home, name="web-home"),
    path("login/", pages.login_page, name="web-login"),
    path("logout/", pages.logout_page, name="web-logout"),
    path("cashier/refunds/", include(cashier_refunds.urlpatterns)),
    path("cashier/", include(cashier.urlpatterns)),
    path("portal/enrol/", portal_enrol.enrol, name="portal-enrol"),
    path(
        "portal/enrol/consents/<int:pk>/revoke/",
        portal_enrol.revoke,
        name="portal-consent-revoke",
    ),
    path("portal/", include(portal.urlpatterns)),
    path("finance/", include(finance.urlpatterns)),
    path("finance/deposits/", deposit_table_page.deposit_table, name="finance-deposits"),
    path("platform/", platform.platform_home, name="platform-home"),
]
