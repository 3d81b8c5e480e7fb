"""A real browser (Debian's Chromium, driven by Playwright) against the live test server.

Browser tests are marked ``browser``. Without /usr/bin/chromium they skip, saying why; with
``REQUIRE_BROWSER=1`` (set by ``.ci/run``) they fail instead. Screenshots go to
``test-artifacts/``. Every page must load without a console error.
"""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make
# themselves are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/web/" in str(item.fspath) and item.get_closest_marker("browser"):
            if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
                if os.environ.get("REQUIRE_BROWSER") != "1":  # else it runs and fails loudly
                    item.add_marker(
                        pytest.mark.skip(
                            reason="needs Debian's Chromium at /usr/bin/chromium"
                            " (apt-get install chromium)"
                        )
                    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; fails the test on any console error, and keeps a final screenshot."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    try:
        opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    assert not errors, f"console errors: {errors}"


def sign_in(page: Any, live_server: Any, username: str, password: str) -> None:
    """Sign in through the login form."""
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def sms_sign_in(page: Any, live_server: Any, phone: str) -> None:
    """Sign a patient in on the portal's page: ask a code, enter it from the outbox (what the
    phone receives; tests/web/test_portal_sms_sign_in.py reads it from the SMS simulator)."""
    from tests.factories import outbox_code

    page.goto(f"{live_server.url}/portal/sign-in/")
    page.fill("input[name=phone]", phone)
    page.click("button[value=send]")
    page.wait_for_selector(".sent")
    page.fill("input[name=code]", outbox_code(phone))
    page.click("button.wide[value=sign_in]")
