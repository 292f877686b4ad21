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
