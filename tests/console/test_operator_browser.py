"""The operator pages in real headless Chromium at 1366x768: every page renders (a screenshot of each
under test-artifacts/), and the actions work from the page: an API key shown once, a webhook
delivery redelivered to a loopback receiver, a quarantine released, an import uploaded with its
progress and exported back, a PDQ near match found, the audit chain verified."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import save_screenshot
from operator_world import KNOWN_PDQ, NEAR_PDQ, OperatorWorld, build_world, session_cookie
from receivers import Receiver
from seawall.config import Settings
from seawall.matching import webhooks
from seawall.matching.models import EntryQuarantine, WebhookDelivery

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

SCREENS = [
    ("/", "operator-dashboard"),
    ("/lists", "operator-lists"),
    ("/lists/known", "operator-list-detail"),
    ("/quarantine", "operator-quarantine"),
    ("/exchanges", "operator-exchanges"),
    ("/policies", "operator-policies"),
    ("/webhooks", "operator-webhooks"),
    (f"/search?q={NEAR_PDQ}", "operator-search"),
    ("/cases", "operator-cases"),
    ("/cases/{case}", "operator-case-timeline"),
    ("/admin/users", "operator-users"),
    ("/admin/keys", "operator-keys"),
    ("/admin/settings", "operator-settings"),
    ("/audit", "operator-audit"),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def world(db: Session, settings: Settings, tmp_path: Path, receiver: Receiver) -> OperatorWorld:
    settings.fetch_allow_networks = ["127.0.0.0/8"]  # the receiver is on loopback
    return build_world(db, settings, tmp_path, webhook_url=receiver.url)


def _admin_page(browser: Any, server: Any, username: str = "op-admin") -> Any:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    context.add_cookies([{"name": "seawall_session", "value": session_cookie(server.app, username), "url": server.url}])
    return context.new_page()


def test_every_operator_page_renders_at_1366x768(browser: Any, live_server: Any, world: OperatorWorld) -> None:
    page = _admin_page(browser, live_server)
    try:
        for path, name in SCREENS:
            answer = page.goto(live_server.url + path.format(case=world.case_reference))
            assert answer is not None and answer.status == 200, path
            assert page.get_by_role("heading", level=1).count() == 1, path
            # Nothing wider than the window: no horizontal scrolling at 1366 pixels.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
            assert save_screenshot(page, name).stat().st_size > 5000
    finally:
        page.context.close()


def test_operator_actions_from_the_page(
    browser: Any,
    live_server: Any,
    world: OperatorWorld,
    receiver: Receiver,
    settings: Settings,
    db: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = live_server.app
    # A worker's attempt, run as soon as the redelivery commits (the queue's job in production).
    monkeypatch.setattr(
        webhooks,
        "scheduler",
        lambda delivery_id, _delay: webhooks.attempt(app.state.sessionmaker, settings, delivery_id),
    )
    page = _admin_page(browser, live_server)
    base = live_server.url
    try:
        # An API key: shown once, then never again.
        page.goto(base + "/admin/keys")
        page.get_by_label("Name").fill("platform-y")
        page.get_by_label("match", exact=True).check()
        page.get_by_role("button", name="Create key").click()
        secret = page.locator("[data-secret]").inner_text()
        assert secret.startswith("swk_") and len(secret) > 40
        save_screenshot(page, "operator-key-shown-once")
        page.goto(base + "/admin/keys")
        assert page.locator("[data-secret]").count() == 0 and secret not in page.content()

        # A dead webhook delivery, sent again to the receiver on loopback.
        page.goto(base + "/webhooks?state=dead")
        page.get_by_role("button", name=f"Redeliver delivery {world.delivery_id}").click()
        page.wait_for_url(f"**/webhooks?redelivered={world.delivery_id}")
        assert receiver.arrived.wait(10)
        [(headers, body)] = receiver.received
        assert headers["x-seawall-signature"].startswith("v1=") and b"benign" in body
        page.goto(base + "/webhooks?state=delivered")
        assert page.get_by_role("button", name=f"Redeliver delivery {world.delivery_id}").count() == 1
        save_screenshot(page, "operator-webhook-redelivered")

        # A quarantined entry, released.
        page.goto(base + "/quarantine")
        page.get_by_role("button", name=f"Release entry {world.quarantined_entry}").click()
        page.wait_for_url(base + "/quarantine")
        assert page.get_by_text("Nothing is quarantined.").is_visible()

        # An import with its progress, then the export of the same list.
        values = [hashlib.md5(f"benign tile {i}".encode()).hexdigest() for i in range(200)]
        upload = ("signal_type,value,category\n" + "".join(f"md5,{v},C\n" for v in values)).encode()
        page.goto(base + "/lists/known")
        page.get_by_label("File to import").set_input_files(
            {"name": "tiles.csv", "mimeType": "text/csv", "buffer": upload}
        )
        page.get_by_role("button", name="Import", exact=True).click()
        status = page.locator("[data-import-status]")
        status.get_by_text("added 200").wait_for()
        assert "Imported tiles.csv: added 200, updated 0, unchanged 0." in status.inner_text()
        assert page.locator("progress").get_attribute("value") == "100"
        save_screenshot(page, "operator-import-done")
        page.goto(base + "/lists/known")
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download").click()
        exported = Path(download_info.value.path()).read_text()
        rows = list(csv.DictReader(io.StringIO(exported)))
        assert {r["value"] for r in rows if r["signal_type"] == "md5"} >= set(values)
        assert KNOWN_PDQ in {r["value"] for r in rows}

        # A near PDQ found on a list, from the search page.
        page.goto(base + "/search")
        page.get_by_role("textbox", name="Hash").fill(NEAR_PDQ)
        page.keyboard.press("Enter")
        page.wait_for_url("**/search?q=*")
        assert page.locator("code.value", has_text=KNOWN_PDQ).count() == 1

        # The audit chain, verified from its button.
        page.goto(base + "/audit")
        page.get_by_role("button", name="Verify chain").click()
        assert "audit chain intact" in page.locator("[data-chain]").inner_text()
        save_screenshot(page, "operator-audit-verified")
    finally:
        page.context.close()
    db.rollback()
    delivery = db.get(WebhookDelivery, world.delivery_id)
    assert delivery is not None and (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 204)
    quarantine = db.scalar(select(EntryQuarantine).where(EntryQuarantine.entry_id == world.quarantined_entry))
    assert quarantine is not None and quarantine.released_by == "op-admin"
