"""A real headless Chromium logs in through the console and reaches the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord

pytestmark = pytest.mark.browser


def test_login_through_the_console_reaches_the_dashboard(live_server: Any, page: Any, db: Session) -> None:
    from conftest import save_screenshot

    auth_service.create_user(db, SYSTEM, username="analyst1", role="analyst", password="a long password 1")
    known = lists_service.create_list(db, SYSTEM, name="known", kind="hash", description="Benign stand-ins")
    lists_service.add_entries(db, SYSTEM, known, [EntryRecord("md5", f"{i:032x}", category="B") for i in range(3)])
    db.commit()

    page.goto(live_server.url + "/")
    assert page.url.endswith("/login?next=/")
    page.get_by_label("Username").fill("analyst1")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong username or password."

    page.get_by_label("Password").fill("a long password 1")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "Dashboard"
    assert (
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").get_attribute("aria-current")
        == "page"
    )
    shot = save_screenshot(page, "console-dashboard")
    assert shot.stat().st_size > 5000

    # Keyboard users land on the skip link first.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    page.get_by_role("link", name="Lists").click()
    page.wait_for_url(live_server.url + "/lists")
    page.get_by_role("link", name="known").click()
    assert page.get_by_role("heading", level=1).inner_text() == "known"
    assert page.locator("code.value").count() == 3
    save_screenshot(page, "console-list")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_server.url + "/login")
    page.goto(live_server.url + "/")
    assert "/login" in page.url


# The policy is the same whatever the database: one backend is enough for this one.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_console_and_api_docs_render_offline_under_the_content_security_policy(
    live_server: Any, page: Any, db: Session
) -> None:
    """Every page of the console and /docs works with nothing but this server (an offline network)
    and with no Content-Security-Policy violation."""
    from conftest import save_screenshot

    auth_service.create_user(db, SYSTEM, username="admin1", role="admin", password="a long password 1")
    known = lists_service.create_list(db, SYSTEM, name="known", kind="hash", description="Benign stand-ins")
    lists_service.add_entries(db, SYSTEM, known, [EntryRecord("md5", f"{i:032x}") for i in range(2)])
    db.commit()
    violations: list[str] = []
    errors: list[str] = []
    elsewhere: list[str] = []
    page.expose_function("reportViolation", lambda text: violations.append(text))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile));"
    )
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_this_server(route: Any) -> None:
        url = route.request.url
        if url.startswith(live_server.url) or url.startswith("data:"):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    page.route("**/*", only_this_server)

    login = page.goto(live_server.url + "/login")
    policy = login.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    save_screenshot(page, "csp-login")
    page.get_by_label("Username").fill("admin1")
    page.get_by_label("Password").fill("a long password 1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "Dashboard"
    save_screenshot(page, "csp-dashboard")
    page.goto(live_server.url + "/lists")
    assert page.get_by_role("link", name="known").is_visible()
    save_screenshot(page, "csp-lists")
    page.goto(live_server.url + "/lists/known")
    assert page.locator("code.value").count() == 2
    save_screenshot(page, "csp-list")

    docs = page.goto(live_server.url + "/docs")
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").filter(has_text="Seawall").wait_for()
    # Try it out from the docs with the console session: the page sends its CSRF token.
    operation = page.locator("#operations-admin-me_v1_me_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    body = operation.locator(".responses-wrapper .live-responses-table .response-col_description pre").first
    body.wait_for()
    assert '"name": "admin1"' in body.inner_text()
    save_screenshot(page, "csp-api-docs")

    assert violations == [] and errors == [] and elsewhere == []
