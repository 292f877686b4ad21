"""Console pages for lists: what a list holds, filtered and paged, for analysts; none for partners."""

from __future__ import annotations

import hashlib
import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.lists import service
from seawall.lists.records import EntryRecord


def _login(client: TestClient, db: Session, role: str) -> None:
    auth_service.create_user(db, SYSTEM, username=f"u-{role}", role=role, password="a long password")
    db.commit()
    page = client.get("/login", headers={"accept": "text/html"})
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/login",
        data={"username": f"u-{role}", "password": "a long password", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_lists_pages_show_entries_filtered_and_paged(client: TestClient, db: Session) -> None:
    hl = service.create_list(db, SYSTEM, name="known", kind="hash", description="Benign stand-ins")
    values = [hashlib.md5(f"benign {i}".encode()).hexdigest() for i in range(60)]
    service.add_entries(db, SYSTEM, hl, [EntryRecord("md5", v, category="B") for v in values])
    service.set_status(db, SYSTEM, service.find_entries(db, hl, values[0], "md5"), "retracted")
    db.commit()
    _login(client, db, "analyst")
    overview = client.get("/lists", headers={"accept": "text/html"})
    assert overview.status_code == 200
    assert re.search(r'<a href="/lists/known">known</a>.*?<td class="num">59</td>', overview.text, re.S)
    detail = client.get("/lists/known", headers={"accept": "text/html"})
    assert "59 active, 0 disabled, 1 retracted" in detail.text
    assert detail.text.count('<code class="value">') == 50 and "Next page" in detail.text
    retracted = client.get("/lists/known?status=retracted", headers={"accept": "text/html"}).text
    assert retracted.count('<code class="value">') == 1 and values[0] in retracted
    prefixed = client.get(f"/lists/known?q={values[5][:6]}", headers={"accept": "text/html"}).text
    assert values[5] in prefixed
    assert "revision 61: status → retracted" in detail.text
    dashboard = client.get("/", headers={"accept": "text/html"}).text
    assert re.search(r"Active entries</h2>\s*<p class=\"figure\">59</p>", dashboard)
    assert client.get("/lists/nope", headers={"accept": "text/html"}).status_code == 404


def test_partners_have_no_console(client: TestClient, db: Session) -> None:
    _login(client, db, "auditor")
    assert client.get("/lists", headers={"accept": "text/html"}).status_code == 200  # auditors may read lists
    client.cookies.clear()
    _login(client, db, "partner")
    denied = client.get("/lists", headers={"accept": "text/html"})
    assert denied.status_code == 403 and "your role does not use the console" in denied.text
    assert client.get("/", headers={"accept": "text/html"}).status_code == 403
