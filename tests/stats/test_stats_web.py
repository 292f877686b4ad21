"""The statistics over HTTP (JSON and CSV alike, scopes, list limits) and in a real Chromium: the
dashboard and the annual report render their charts and tables, and the report prints on A4."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.matching.models import MatchEvent
from seawall.stats import demo, service

HEADER = (
    "id,reported_at,assessed_at,url,outcome,category,age_band,sex,self_generated,commercial,ai_generated,"
    "site_type,hosting_country,channel\n"
)


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _pages(db: Session, settings: Settings) -> None:
    lines = [
        f"p{year}-{n},,{year}-0{1 + n % 6}-0{1 + n % 9}T10:00:00Z,https://pics.example/{n},csam,B,"
        f"{'7-10' if n % 3 else '11-13'},girl,{'true' if n % 2 else 'false'},false,false,forum,NL,public\n"
        for year in (2021, 2022)
        for n in range(12 if year == 2021 else 20)
    ]
    service.import_records(db, settings, "urls", HEADER + "".join(lines))
    db.commit()


def test_json_and_csv_give_the_same_table(client: TestClient, db: Session, settings: Settings) -> None:
    _pages(db, settings)
    reader = _key(db, "stats-reader", ["stats:read"])
    params = {"measure": "pages", "by": "half_year,age_band", "where": "self_generated:true"}
    answer = client.get("/v1/stats", params=params, headers=reader)
    assert answer.status_code == 200
    rows = answer.json()["rows"]
    assert rows == [
        {"half_year": "2021-H1", "age_band": "7-10", "count": 4, "previous": 0, "change_pct": None, "share_pct": 66.7},
        {"half_year": "2021-H1", "age_band": "11-13", "count": 2, "previous": 0, "change_pct": None, "share_pct": 33.3},
        {"half_year": "2021-H2", "age_band": "7-10", "count": 0, "previous": 0, "change_pct": None, "share_pct": None},
        {"half_year": "2021-H2", "age_band": "11-13", "count": 0, "previous": 0, "change_pct": None, "share_pct": None},
        {"half_year": "2022-H1", "age_band": "7-10", "count": 7, "previous": 4, "change_pct": 75.0, "share_pct": 70.0},
        {"half_year": "2022-H1", "age_band": "11-13", "count": 3, "previous": 2, "change_pct": 50.0, "share_pct": 30.0},
    ]
    as_csv = client.get("/v1/stats", params=params, headers={**reader, "accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [
        {
            k: (None if v == "" else int(v) if k in ("count", "previous") else float(v) if k.endswith("pct") else v)
            for k, v in row.items()
        }
        for row in parsed
    ] == rows
    assert client.get("/v1/stats", params={**params, "format": "csv"}, headers=reader).text == as_csv.text
    bad = client.get("/v1/stats", params={"by": "fortnight"}, headers=reader)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("cannot group pages by 'fortnight'")
    assert client.get("/v1/stats", headers=_key(db, "no-stats", ["lists:read"])).status_code == 403
    assert client.get("/v1/stats").status_code == 401


def test_matches_by_list_honour_a_keys_list_limits(client: TestClient, db: Session) -> None:
    at = datetime(2022, 5, 1, 12, tzinfo=UTC)
    for n, lists in enumerate([["mine"], ["theirs"], ["mine", "theirs"]]):
        db.add(
            MatchEvent(
                match_id=f"m-{n}",
                occurred_at=at,
                principal="key:x",
                matches=[{"list": name, "signal_type": "pdq"} for name in lists],
            )
        )
    db.commit()
    params = {"measure": "matches", "by": "year,list"}
    everyone = client.get("/v1/stats", params=params, headers=_key(db, "all-lists", ["stats:read"])).json()["rows"]
    assert [(r["list"], r["count"]) for r in everyone] == [("mine", 2), ("theirs", 2)]
    limited = _key(db, "mine-only", ["stats:read"], lists=["mine"])
    answer = client.get("/v1/stats", params=params, headers=limited)
    assert [(r["list"], r["count"]) for r in answer.json()["rows"]] == [("mine", 2)]
    assert "theirs" not in answer.text


def test_the_public_report_is_off_unless_published_and_suppresses_small_counts(
    client: TestClient, db: Session, settings: Settings
) -> None:
    _pages(db, settings)
    assert client.get("/public/stats/report?year=2022").status_code == 404
    client.app.state.settings = settings.model_copy(update={"stats_public": True})  # type: ignore[attr-defined]
    page = client.get("/public/stats/report?year=2022")
    assert page.status_code == 200
    assert "Annual report 2022" in page.text
    assert "&lt;10" in page.text  # 2022's 3 pages of 11-13s
    assert "/v1/stats" not in page.text  # no links into the API


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dashboard_and_annual_report_in_chromium(live_server: Any, page: Any, db: Session) -> None:
    from conftest import save_screenshot

    demo.seed_demo(db, Console(file=io.StringIO()))
    db.commit()
    auth_service.create_user(db, SYSTEM, username="auditor1", role="auditor", password="a long password 1")
    db.commit()
    page.goto(live_server.url + "/stats")
    page.get_by_label("Username").fill("auditor1")
    page.get_by_label("Password").fill("a long password 1")
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/stats")
    assert page.get_by_role("heading", level=1).inner_text() == "Statistics"
    year = datetime.now(UTC).year - 1
    assert page.locator("#year").input_value() == str(year)
    assert page.locator("figure.chart-box svg").count() == 4
    assert page.locator(".headlines .card").count() == 6
    first_table = page.locator(".stats-section").first.locator("tbody tr")
    assert first_table.count() == 10  # five years of half-years
    shot = save_screenshot(page, "stats-dashboard")
    assert shot.stat().st_size > 20000

    page.get_by_role("link", name=f"Annual report {year}").click()
    page.wait_for_url(live_server.url + f"/stats/report?year={year}")
    assert page.get_by_role("heading", level=1).inner_text() == f"Annual report {year}"
    save_screenshot(page, "stats-report")
    page.emulate_media(media="print")
    assert page.locator(".topbar").is_hidden()
    save_screenshot(page, "stats-report-print")
    pdf = page.pdf(format="A4", prefer_css_page_size=True)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 2
