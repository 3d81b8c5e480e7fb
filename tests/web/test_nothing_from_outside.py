"""On a hospital intranet nothing outside answers: no page may load anything from outside."""

from urllib.parse import urlsplit

import pytest

from accounts.services.staff import staff_create
from tests.factories import home_institution
from tests.web.conftest import sign_in

PASSWORD = "admin-password-1"  # noqa: S105 - a test account

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pages_and_the_api_docs_load_only_from_the_web_process(page, live_server):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    user, _ = staff_create(
        actor="test", institution=home_institution(), username="admin1", role="admin"
    )
    user.set_password(PASSWORD)
    user.save()

    page.goto(f"{live_server.url}/api/docs/")
    # Swagger UI drew the operations from the schema it fetched from here.
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock").count() > 10
    sign_in(page, live_server, "admin1", PASSWORD)
    for path in ("/cashier/", "/finance/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")

    ours = urlsplit(live_server.url).netloc
    outside = [url for url in requested if urlsplit(url).netloc not in (ours, "")]
    assert requested and not outside, outside
