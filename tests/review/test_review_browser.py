"""The review console in real Chromium: an analyst claims an item and sees it blurred and greyscale
(in the DOM and in the pixels of a screenshot), reveals it with the key (the audit log has the reveal
and its duration), grades it with keys only; a second analyst cannot claim it; a senior analyst
confirms it in QA and its hash is on the hotline's list; the break is suggested, then enforced.
Screenshots of every review page go to test-artifacts/."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import save_screenshot
from reviewing import PASSWORD, captured_case
from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.hotline.models import Assessment, Item
from seawall.lists import service as lists_service
from webhost import png


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    # One backend for the browser flow (the service rules run on both in test_review_service.py).
    from conftest import _sqlite_database

    yield _sqlite_database(request.getfixturevalue("sqlite_template"), tmp_path)


def _login(context: Any, url: str, username: str) -> Any:
    page = context.new_page()
    page.goto(f"{url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def _saturation(img: Image.Image) -> float:
    return float(np.asarray(img.convert("RGB").convert("HSV"))[..., 1].mean())


def _detail(img: Image.Image) -> float:
    """High-frequency energy: the grey image's spectral power above 0.1 cycles per pixel, per pixel."""
    grey = np.asarray(img.convert("L"), dtype=np.float64)
    grey = grey - grey.mean()
    power = np.abs(np.fft.fft2(grey)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return float(power[np.hypot(fx, fy) > 0.1].sum() / grey.size)


def _audit(db: Session, action: str) -> list[AuditEvent]:
    db.rollback()  # a fresh read of what the server committed
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def _wait_for(check: Any, seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_analyst_flow_in_chromium(browser: Any, live_server: Any, db: Session, settings: Settings) -> None:
    # (Auditors' and analysts' refusals on every review route: tests/foundation/test_route_matrix.py.)
    for name, role in (("ann", "analyst"), ("bob", "analyst"), ("sue", "senior_analyst")):
        auth_service.create_user(db, SYSTEM, username=name, role=role, password=PASSWORD)
    _, (first,) = captured_case(db, settings, "https://urgent.example/p/1", (21,), urgent=True, size=(320, 240))
    _, (second,) = captured_case(db, settings, "https://later.example/p/2", (22,), hours_ago=3)
    db.commit()
    url = live_server.url
    ann_context = browser.new_context(viewport={"width": 1366, "height": 768})
    bob_context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        ann = _login(ann_context, url, "ann")
        ann.goto(f"{url}/review")
        assert ann.locator("nav a[href='/review']").get_attribute("aria-current") == "page"
        assert ann.locator("nav a[href='/qa']").count() == 0  # QA is for senior analysts
        save_screenshot(ann, "review-queue")
        ann.click("#start-next")
        ann.wait_for_url(f"{url}/review/items/{first.id}")  # the urgent one first

        # Blurred and greyscale: the DOM has only the server-rendered preview, and its pixels say so.
        preview = ann.locator("#blurred")
        assert preview.get_attribute("src") == f"/review/items/{first.id}/thumbnail"
        assert ann.locator("[src*='/review/reveals/']").count() == 0
        ann.wait_for_function("document.getElementById('blurred').complete")
        shot = Image.open(io.BytesIO(preview.screenshot()))
        original = Image.open(io.BytesIO(png(21, 320, 240))).convert("RGB").resize(shot.size, Image.Resampling.LANCZOS)
        inner = (4, 4, shot.width - 4, shot.height - 4)  # the element's box may round onto the page around it
        shot, original = shot.crop(inner), original.crop(inner)
        assert _saturation(original) > 40 and _saturation(shot) < 2
        assert _detail(shot) < 0.15 * _detail(original), (_detail(shot), _detail(original))
        save_screenshot(ann, "review-item-blurred")
        ann.keyboard.press("?")
        assert ann.locator("#keymap").is_visible()
        save_screenshot(ann, "review-keymap")
        ann.keyboard.press("Escape")

        # A second analyst sees who holds it, read-only, and cannot claim it.
        bob = _login(bob_context, url, "bob")
        bob.goto(f"{url}/review/items/{first.id}")
        assert "ann is grading this item" in bob.locator("#held-notice").inner_text()
        assert bob.locator("#claim-button").count() == 0 and bob.locator("#grade-form").count() == 0
        assert bob.locator("#reveal-button").count() == 0  # nor reveal it
        status = bob.evaluate(
            """async (id) => {
                const body = new FormData();
                body.append('csrf_token', document.querySelector('meta[name="csrf-token"]').content);
                const claim = await fetch(`/review/items/${id}/claim`, {method: 'POST', body});
                const reveal = await fetch(`/review/items/${id}/reveal`, {method: 'POST', body});
                return [claim.status, reveal.status];
            }""",
            first.id,
        )
        assert status == [409, 409]
        save_screenshot(bob, "review-item-held")

        # Reveal with the key, hide with it: the reveal and its duration are in the audit log.
        ann.keyboard.press("r")
        ann.wait_for_selector("#revealed-media", state="visible")
        ann.wait_for_function("document.getElementById('revealed-media').naturalWidth > 0")
        assert ann.locator("#blurred").is_hidden()
        save_screenshot(ann, "review-item-revealed")
        time.sleep(0.3)
        ann.keyboard.press("r")
        assert ann.locator("#revealed-media").count() == 0 and ann.locator("#blurred").is_visible()
        ended = _wait_for(lambda: _audit(db, "media.reveal.end"))
        assert [e.actor for e in _audit(db, "media.reveal")] == ["ann"]
        assert len(ended) == 1 and ended[0].object_id == str(first.id)
        assert 0.3 <= ended[0].details["duration_seconds"] < 10

        # Grade with keys only: CSAM, category A, 11-13, girl, self-generated; Enter submits and goes on.
        for key in ("c", "1", "7", "g", "s"):
            ann.keyboard.press(key)
        ann.keyboard.press("Enter")
        ann.wait_for_url(f"{url}/review/items/{second.id}?graded={first.id}")
        db.rollback()
        graded = db.scalar(select(Assessment).where(Assessment.item_id == first.id))
        assert graded is not None
        assert (graded.outcome, graded.category, graded.age_band, graded.sex, graded.flags, graded.assessor) == (
            "csam",
            "A",
            "11-13",
            "girl",
            ["self_generated"],
            "user:ann",
        )

        # A senior analyst confirms it in QA: its hashes go to the hotline's list.
        sue = _login(bob_context, url, "sue")
        sue.goto(f"{url}/qa")
        save_screenshot(sue, "review-qa-queue")
        sue.click(f"a[href='/qa/{graded.id}']")
        assert "11-13" in sue.locator("#qa-assessment").inner_text()
        assert sue.locator("#blurred").get_attribute("src") == f"/review/items/{first.id}/thumbnail"
        save_screenshot(sue, "review-qa-item")
        sue.click("#qa-confirm")
        sue.wait_for_url(f"{url}/qa?decided={graded.id}&final=1")
        db.rollback()
        listed = lists_service.get_list(db, settings.hotline_hash_list)
        item = db.get(Item, first.id)
        assert item is not None
        assert [e.value for e in lists_service.find_entries(db, listed, item.sha256, "sha256")] == [item.sha256]
        sue.goto(f"{url}/review/team")
        assert "ann" not in sue.locator("#team-table").inner_text()
        save_screenshot(sue, "review-team")

        # Wellbeing: with tiny limits the break is suggested, then enforced, then over.
        app_settings: Settings = live_server.app.state.settings
        app_settings.review_break_suggest_minutes = 0.001
        ann.reload()
        assert "Consider a break" in ann.locator("#break-suggestion").inner_text()
        save_screenshot(ann, "review-break-suggested")
        app_settings.review_break_enforce_minutes = 0.002
        ann.goto(f"{url}/review/items/{second.id}")
        ann.wait_for_url(f"{url}/review/break")
        assert ann.locator("h1").inner_text() == "Time for a break"
        assert app_settings.review_support_text in ann.locator(".review-break").inner_text()
        # Full screen: the message covers the viewport, and the console's navigation is under it.
        box = ann.locator(".review-break").bounding_box()
        viewport = ann.viewport_size
        assert box is not None and (box["x"], box["y"], box["width"], box["height"]) == (
            0,
            0,
            viewport["width"],
            viewport["height"],
        )
        nav = ann.locator("nav[aria-label=Main]").bounding_box()
        assert nav is not None
        on_top = ann.evaluate(
            "([x, y]) => document.elementFromPoint(x, y).closest('.review-break') !== null",
            [nav["x"] + nav["width"] / 2, nav["y"] + nav["height"] / 2],
        )
        assert on_top is True
        save_screenshot(ann, "review-break-enforced")
        ann.goto(f"{url}/review")
        ann.click("#start-next")
        ann.wait_for_url(f"{url}/review/break")  # the queue hands out no work
        app_settings.review_break_minutes = 0.01  # a 0.6 s gap is a break now
        time.sleep(0.7)
        ann.goto(f"{url}/review/items/{second.id}")
        assert ann.url == f"{url}/review/items/{second.id}"
        ann.goto(f"{url}/review/preferences")
        save_screenshot(ann, "review-preferences")

    finally:
        ann_context.close()
        bob_context.close()
