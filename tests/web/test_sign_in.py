"""Signing in, the language switch and where each role lands."""

import pytest

from accounts.services.staff import staff_create
from tests.factories import home_institution
from tests.web.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_page_is_chinese_first_and_switches_to_english(page, live_server):
    page.goto(f"{live_server.url}/login/")
    assert page.locator("h1").inner_text() == "登录"
    with page.expect_navigation():
        page.select_option("select[name=language]", "en")
    assert page.locator("h1").inner_text() == "Sign in"


def test_wrong_password_is_said_in_the_pages_language(page, live_server):
    staff_create(actor="test", institution=home_institution(), username="cashier1", role="cashier")
    sign_in(page, live_server, "cashier1", "wrong-password")
    assert "密码" in page.locator(".errorlist").inner_text()
