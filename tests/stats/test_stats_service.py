"""Statistics on hand-built datasets: exact aggregates, period boundaries in a non-UTC time zone,
empty periods, leap years, year-on-year and growth since a base year, filters, the cube against a
plain GROUP BY, imports (idempotent, a bad line), and the records written on QA confirmation."""

from __future__ import annotations

from datetime import date
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth.permissions import ROLE_SCOPES, SYSTEM, Principal, Role
from seawall.config import Settings
from seawall.hotline import assessment, capture, intake, notices, referrals
from seawall.hotline.models import Capture, Case, CaseItem, Item
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
from seawall.stats import service
from seawall.stats.models import CubeCount, ImageRecord, PageRecord
from seawall.stats.service import Query, StatsError

HEADER = (
    "id,reported_at,assessed_at,url,outcome,category,age_band,sex,self_generated,commercial,ai_generated,"
    "site_type,hosting_country,channel\n"
)


def page(
    ident: str,
    assessed_at: str,
    *,
    age_band: str = "11-13",
    sg: bool = False,
    outcome: str = "csam",
    category: str = "C",
    country: str = "NL",
    channel: str = "public",
    site: str = "image_host",
    sex: str = "girl",
) -> str:
    sgt = "true" if sg else "false"
    return (
        f"{ident},{assessed_at},{assessed_at},https://pics.example/{ident},{outcome},{category},{age_band},{sex},"
        f"{sgt},false,false,{site},{country},{channel}\n"
    )


def load(db: Session, settings: Settings, lines: list[str], kind: str = "urls") -> service.ImportResult:
    result = service.import_records(db, settings, kind, HEADER + "".join(lines) if kind == "urls" else "".join(lines))
    db.commit()
    return result


def ask(db: Session, settings: Settings, **kw: Any) -> list[dict[str, Any]]:
    return service.table(db, settings, Query(**kw)).rows


def test_a_page_counts_in_the_local_period_of_its_assessment(db: Session, settings: Settings) -> None:
    london = settings.model_copy(update={"timezone": "Europe/London"})
    load(db, london, [page("p1", "2022-06-30T23:30:00Z"), page("p2", "2022-06-30T22:59:00Z")])
    rows = ask(db, london, by=["month"])
    assert [(r["month"], r["count"]) for r in rows] == [("2022-06", 1), ("2022-07", 1)]
    halves = ask(db, london, by=["half_year"])
    assert [(r["half_year"], r["count"]) for r in halves] == [("2022-H1", 1), ("2022-H2", 1)]
    assert db.scalar(select(PageRecord.day).where(PageRecord.key == "import:p1")) == date(2022, 7, 1)
    # In UTC both are 30 June.
    db.execute(CubeCount.__table__.delete())
    db.commit()
    assert service.rebuild(db, settings)["days_moved"] == 1
    db.commit()
    assert [(r["month"], r["count"]) for r in ask(db, settings, by=["month"])] == [("2022-06", 2)]


def test_empty_periods_are_zero_and_a_missing_previous_year_is_null(db: Session, settings: Settings) -> None:
    load(
        db,
        settings,
        [
            page("a", "2021-02-01T10:00:00Z"),
            page("b", "2021-03-01T10:00:00Z"),
            page("c", "2022-01-05T10:00:00Z"),
            page("d", "2022-02-05T10:00:00Z"),
            page("e", "2022-03-05T10:00:00Z"),
            page("f", "2022-04-05T10:00:00Z"),
            page("g", "2022-05-05T10:00:00Z"),
            page("h", "2023-10-01T10:00:00Z"),
        ],
    )
    rows = ask(db, settings, by=["half_year"])
    assert rows == [
        {"half_year": "2021-H1", "count": 2, "previous": 0, "change_pct": None, "share_pct": 100.0},
        {"half_year": "2021-H2", "count": 0, "previous": 0, "change_pct": None, "share_pct": None},
        {"half_year": "2022-H1", "count": 5, "previous": 2, "change_pct": 150.0, "share_pct": 100.0},
        {"half_year": "2022-H2", "count": 0, "previous": 0, "change_pct": None, "share_pct": None},
        {"half_year": "2023-H1", "count": 0, "previous": 5, "change_pct": -100.0, "share_pct": None},
        {"half_year": "2023-H2", "count": 1, "previous": 0, "change_pct": None, "share_pct": 100.0},
    ]
    quarters = ask(db, settings, by=["quarter"], start=date(2022, 1, 1), end=date(2022, 12, 31))
    assert [(r["quarter"], r["count"], r["previous"]) for r in quarters] == [
        ("2022-Q1", 3, 2),
        ("2022-Q2", 2, 0),
        ("2022-Q3", 0, 0),
        ("2022-Q4", 0, 0),
    ]
    since = ask(db, settings, by=["year"], since=2021)
    assert [(r["year"], r["count"], r["base"], r["since_pct"]) for r in since] == [
        ("2021", 2, 2, 0.0),
        ("2022", 5, 2, 150.0),
        ("2023", 1, 2, -50.0),
    ]


def test_leap_days_and_weeks(db: Session, settings: Settings) -> None:
    load(
        db,
        settings,
        [
            page("x", "2023-02-28T12:00:00Z"),
            page("y", "2024-02-29T12:00:00Z"),
            page("z", "2024-02-29T13:00:00Z"),
        ],
    )
    rows = ask(db, settings, by=["day"], start=date(2024, 2, 27), end=date(2024, 3, 1))
    assert [(r["day"], r["count"], r["previous"], r["change_pct"]) for r in rows] == [
        ("2024-02-27", 0, 0, None),
        ("2024-02-28", 0, 1, -100.0),
        ("2024-02-29", 2, 1, 100.0),  # 29 February compares with 28 February
        ("2024-03-01", 0, 0, None),
    ]
    assert sum(r["count"] for r in ask(db, settings, by=["month"], start=date(2024, 2, 1), end=date(2024, 2, 29))) == 2
    weeks = ask(db, settings, by=["week"], start=date(2024, 2, 26), end=date(2024, 3, 3))
    assert [(r["week"], r["count"], r["previous"]) for r in weeks] == [("2024-W09", 2, 1)]


def test_two_dimensions_filters_share_and_the_cube_agrees_with_the_records(
    db: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        page("1", "2021-03-01T10:00:00Z", age_band="7-10", sg=True),
        page("2", "2021-03-02T10:00:00Z", age_band="11-13", sg=True),
        page("3", "2022-03-01T10:00:00Z", age_band="7-10", sg=True),
        page("4", "2022-03-02T10:00:00Z", age_band="7-10", sg=True),
        page("5", "2022-03-03T10:00:00Z", age_band="7-10", sg=False),
        page("6", "2022-03-04T10:00:00Z", age_band="11-13", sg=True, country="US"),
        page("7", "2022-03-05T10:00:00Z", age_band="11-13", sg=True, outcome="not_csam", category=""),
    ]
    load(db, settings, lines)
    query = Query(measure="pages", by=["half_year", "age_band"], where={"self_generated": "true"})
    result = service.table(db, settings, query)
    assert result.source == "cube (month)"
    assert result.rows == [
        {"half_year": "2021-H1", "age_band": "7-10", "count": 1, "previous": 0, "change_pct": None, "share_pct": 50.0},
        {"half_year": "2021-H1", "age_band": "11-13", "count": 1, "previous": 0, "change_pct": None, "share_pct": 50.0},
        {"half_year": "2021-H2", "age_band": "7-10", "count": 0, "previous": 0, "change_pct": None, "share_pct": None},
        {"half_year": "2021-H2", "age_band": "11-13", "count": 0, "previous": 0, "change_pct": None, "share_pct": None},
        {"half_year": "2022-H1", "age_band": "7-10", "count": 2, "previous": 1, "change_pct": 100.0, "share_pct": 66.7},
        {"half_year": "2022-H1", "age_band": "11-13", "count": 1, "previous": 1, "change_pct": 0.0, "share_pct": 33.3},
    ]
    # Three dimensions (two grouped, one filtered): by year from the cube's monthly triples, by week
    # from its weekly ones (the days at the edges of the window a year earlier from the records: the
    # cube holds pairs only by day), by day from the records; the same counts every way.
    combined = Query(by=["year", "age_band", "self_generated"], where={"hosting_country": "NL"})
    answer = service.table(db, settings, combined)
    assert answer.source == "cube (month)"
    assert [(r["year"], r["age_band"], r["self_generated"], r["count"]) for r in answer.rows] == [
        ("2021", "7-10", False, 0),
        ("2021", "7-10", True, 1),
        ("2021", "11-13", True, 1),
        ("2022", "7-10", False, 1),
        ("2022", "7-10", True, 2),
        ("2022", "11-13", True, 0),
    ]
    weekly = service.table(db, settings, Query(by=["week", *combined.by[1:]], where=combined.where))
    assert weekly.source == "cube (week) + records"
    daily = service.table(db, settings, Query(by=["day", *combined.by[1:]], where=combined.where))
    assert daily.source == "records"
    assert sum(r["count"] for r in weekly.rows) == sum(r["count"] for r in daily.rows) == 5
    assert sum(r["count"] for r in answer.rows) == 5
    four = service.table(db, settings, Query(by=combined.by, where={**combined.where, "sex": "girl"}))
    assert four.source == "records"
    # The cube and a GROUP BY over the records give the same table.
    monkeypatch.setattr(service, "CUBE_DIMS", {grain: -1 for grain in service.GRAINS})
    plain = service.table(db, settings, query)
    assert plain.source == "records" and plain.rows == result.rows
    monkeypatch.undo()
    # A day-grain question with from/to not on month boundaries.
    narrow = ask(db, settings, by=["month", "sex"], start=date(2022, 3, 2), end=date(2022, 3, 4))
    assert narrow == [
        {"month": "2022-03", "sex": "girl", "count": 3, "previous": 1, "change_pct": 200.0, "share_pct": 100.0}
    ]


def test_whole_weeks_and_months_come_from_their_own_cells_and_edge_days_from_the_day_cells(
    db: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every window of a table (its own, a year earlier, the base year) is cut into the whole weeks or
    months inside it and the days at its edges; the answer is the same as a GROUP BY over the records,
    whatever the windows' edges."""
    bands, sites, countries = ["3-6", "7-10", "11-13"], ["image_host", "forum"], ["NL", "US", "DE"]
    lines = [
        page(
            str(n),
            f"{date.fromordinal(date(2021, 1, 1).toordinal() + (n * 37) % 900).isoformat()}T{n % 24:02d}:15:00Z",
            age_band=bands[n % 3],
            sg=n % 4 == 0,
            site=sites[n % 2],
            country=countries[n % 5 % 3],
            sex="boy" if n % 7 == 0 else "girl",
        )
        for n in range(400)
    ]
    load(db, settings, lines)
    questions = [
        (Query(by=["week", "site_type", "hosting_country"]), "cube (week, day)"),
        (Query(by=["week", "age_band"], start=date(2022, 3, 9), end=date(2022, 8, 17)), "cube (week, day)"),
        (Query(by=["week", "age_band"], where={"self_generated": "true"}, since=2021), "cube (week, day)"),
        (Query(by=["month", "sex"], start=date(2022, 2, 10), end=date(2023, 1, 20)), "cube (month, day)"),
        (Query(by=["quarter", "age_band"], since=2021), "cube (month)"),
        (Query(by=["age_band", "site_type"], start=date(2021, 5, 3), end=date(2022, 6, 29)), "cube (month, day)"),
        (Query(by=["day", "hosting_country"], start=date(2022, 12, 20), end=date(2023, 1, 10)), "cube (day)"),
        (Query(by=["week", "age_band", "self_generated"], where={"hosting_country": "NL"}), "cube (week) + records"),
        (Query(by=["day", "age_band", "self_generated"], where={"hosting_country": "NL"}), "records"),
        (
            Query(by=["month", "age_band", "sex"], where={"site_type": "forum"}, start=date(2022, 1, 15)),
            "cube (month) + records",
        ),
    ]
    answers = [service.table(db, settings, q) for q, _ in questions]
    assert [a.source for a in answers] == [source for _, source in questions]
    assert all(a.rows for a in answers)
    monkeypatch.setattr(service, "CUBE_DIMS", {grain: -1 for grain in service.GRAINS})
    for (q, _), answer in zip(questions, answers, strict=True):
        plain = service.table(db, settings, q)
        assert plain.source == "records"
        assert plain.rows == answer.rows, q
    # The window a year earlier starts on Tuesday 9 March 2021: of 2021-W10 it counts the page of
    # 9 March (7-10), not that of Monday 8 March (3-6), which the whole week holds. 2022-W10 itself
    # counts from Wednesday 9 March: 3-6 on the 9th and 12th, 7-10 on the 10th and 13th, 11-13 on the 11th.
    week10 = [(r["age_band"], r["count"], r["previous"]) for r in answers[1].rows if r["week"] == "2022-W10"]
    assert week10 == [("3-6", 2, 0), ("7-10", 2, 1), ("11-13", 1, 0)]
    whole = ask(db, settings, by=["week", "age_band"], start=date(2021, 3, 8), end=date(2021, 3, 14))
    assert [(r["age_band"], r["count"]) for r in whole] == [("3-6", 1), ("7-10", 1)]


def test_bad_questions_are_named(db: Session, settings: Settings) -> None:
    with pytest.raises(StatsError) as caught:
        service.table(
            db, settings, Query(by=["decade", "age_band", "sex", "category"], where={"self_generated": "maybe"})
        )
    assert str(caught.value) == (
        "cannot group pages by 'decade': periods day, week, month, quarter, half_year, year; dimensions "
        "age_band, sex, category, self_generated, commercial, ai_generated, site_type, hosting_country, channel; "
        "group by two dimensions at most (and a period); self_generated is true or false (got 'maybe')"
    )
    with pytest.raises(StatsError, match="measure is one of pages, images"):
        service.table(db, settings, Query(measure="hats"))


def test_imports_are_idempotent_and_a_bad_line_imports_nothing(db: Session, settings: Settings) -> None:
    first = load(db, settings, [page("a", "2022-01-01T00:00:00Z"), page("b", "2022-01-02T00:00:00Z")])
    assert (first.added, first.replaced, first.unchanged) == (2, 0, 0)
    again = load(db, settings, [page("a", "2022-01-01T00:00:00Z"), page("b", "2022-01-02T00:00:00Z", age_band="3-6")])
    assert (again.added, again.replaced, again.unchanged) == (0, 1, 1)
    rows = ask(db, settings, by=["year", "age_band"])
    assert [(r["age_band"], r["count"]) for r in rows] == [("3-6", 1), ("11-13", 1)]
    with pytest.raises(StatsError) as caught:
        load(db, settings, [page("c", "2022-01-03T00:00:00Z"), page("d", "2022-01-04T00:00:00Z", age_band="9-12")])
    assert str(caught.value) == "line 3: age_band is one of 0-2, 3-6, 7-10, 11-13, 14-15, 16-17 (got '9-12')"
    db.rollback()
    assert db.scalar(select(func.count()).select_from(PageRecord)) == 2
    images = "id,assessed_at,category,age_band,sex,self_generated,url\n" + "".join(
        f"i{n},2022-0{1 + n % 2}-10T10:00:00Z,A,7-10,girl,{'true' if n % 3 == 0 else 'false'},\n" for n in range(6)
    )
    assert service.import_records(db, settings, "images", images).added == 6
    db.commit()
    assert service.import_records(db, settings, "images", images).unchanged == 6
    db.commit()
    rows = ask(db, settings, measure="images", by=["month", "self_generated"])
    assert [(r["month"], r["self_generated"], r["count"]) for r in rows] == [
        ("2022-01", False, 2),
        ("2022-01", True, 1),
        ("2022-02", False, 2),
        ("2022-02", True, 1),
    ]
    with pytest.raises(StatsError, match="line 1: the header lacks sex"):
        service.import_records(db, settings, "images", "id,assessed_at,category,age_band,self_generated,url\n")


def test_writers_importing_at_the_same_time_both_count(engine: Any, db: Session, settings: Settings) -> None:
    """Two imports in two transactions at once, over the same days and values (the same cube cells):
    each adds to the cells the other also writes, and the cube is what a rebuild makes."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from seawall.db import make_sessionmaker

    sessions = make_sessionmaker(engine)
    both = Barrier(2)

    def write(prefix: str) -> int:
        lines = [
            page(f"{prefix}{n}", f"2022-05-0{1 + n % 7}T10:00:00Z", age_band=["7-10", "11-13"][n % 2], sg=n % 3 == 0)
            for n in range(60)
        ]
        with sessions() as session:
            both.wait(timeout=30)  # both transactions open before either writes
            added = service.import_records(session, settings, "urls", HEADER + "".join(lines)).added
            session.commit()
        return added

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(write, ["a", "b"])) == [60, 60]
    key = attrgetter("measure", "grain", "dims", "period", "v1", "v2", "v3")
    cells = {key(c): c.count for c in db.scalars(select(CubeCount)) if c.count}
    assert cells[("pages", "m", "", date(2022, 5, 1), "", "", "")] == 120
    assert cells[("pages", "w", "age_band", date(2022, 4, 25), "7-10", "", "")] == 2 * 5  # 1 May, a Sunday
    service.rebuild_cube(db)
    assert {key(c): c.count for c in db.scalars(select(CubeCount))} == cells
    db.rollback()


def test_the_cube_is_what_a_rebuild_makes(db: Session, settings: Settings) -> None:
    load(
        db,
        settings,
        [
            page(
                str(n),
                f"2022-0{1 + n % 9}-1{n % 9}T10:00:00Z",
                age_band="7-10" if n % 2 else "11-13",
                sg=n % 3 == 0,
                country="NL" if n % 4 else "US",
            )
            for n in range(40)
        ],
    )
    load(db, settings, [page(str(n), f"2022-0{1 + n % 9}-1{n % 9}T10:00:00Z", sex="boy") for n in range(0, 40, 5)])
    key = attrgetter("measure", "grain", "dims", "period", "v1", "v2", "v3")
    cells = {key(c): c.count for c in db.scalars(select(CubeCount)) if c.count}
    service.rebuild_cube(db)
    db.commit()
    rebuilt = {key(c): c.count for c in db.scalars(select(CubeCount))}
    assert cells == rebuilt
    assert rebuilt[("pages", "m", "", date(2022, 1, 1), "", "", "")] == 5


def test_suppression_of_small_counts() -> None:
    rows = [
        {"year": "2022", "count": 4, "previous": 12, "change_pct": -66.7, "share_pct": 10.0},
        {"year": "2023", "count": 0, "previous": 4, "change_pct": -100.0, "share_pct": None},
        {"year": "2024", "count": 30, "previous": 0, "change_pct": None, "share_pct": 100.0},
    ]
    assert service.suppress(rows, 10) == [
        {"year": "2022", "count": "<10", "previous": 12, "change_pct": None, "share_pct": None},
        {"year": "2023", "count": 0, "previous": "<10", "change_pct": None, "share_pct": None},
        {"year": "2024", "count": 30, "previous": 0, "change_pct": None, "share_pct": 100.0},
    ]


# ---- records written by QA -------------------------------------------------------------------

SENIOR = Principal(kind="user", name="sam", scopes=ROLE_SCOPES[Role.senior_analyst])
ANALYST = Principal(kind="user", name="alice", scopes=ROLE_SCOPES[Role.analyst])


def _item(db: Session, folder: Path, seed: int) -> Item:
    path = folder / f"benign-{seed}.png"
    benign_image(seed, 320, 240).save(path)
    found = hash_file(path, ["md5", "sha1", "sha256", "pdq"])
    item = Item(
        sha256=found["sha256"],
        md5=found["md5"],
        sha1=found["sha1"],
        pdq=found["pdq"],
        pdq_quality=found["pdq_quality"],
        media="image",
        mime="image/png",
        size=path.stat().st_size,
    )
    db.add(item)
    db.commit()
    return item


def test_confirmation_writes_the_records_by_the_per_url_rules(
    db: Session, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture, "scheduler", lambda case_id: None)
    monkeypatch.setattr(notices, "open_notice", lambda *a, **k: None)
    monkeypatch.setattr(referrals, "refer", lambda *a, **k: None)
    items = [_item(db, tmp_path, 11), _item(db, tmp_path, 97)]
    done = intake.submit(db, settings, SYSTEM, intake.ReportIn(channel="self_report", url="https://pics.example/x"))
    case = done.case
    for item in items:
        db.add(CaseItem(case_id=case.id, item_id=item.id, media_url=f"https://pics.example/{item.id}.png"))
    db.add(Capture(case_id=case.id, state="done", media_found=2))
    case.state, case.hosting_country = "captured", "DE"
    db.commit()
    findings = [
        assessment.AssessmentIn(outcome="csam", category="C", age_band="3-6", sex="girl", flags=["self_generated"]),
        assessment.AssessmentIn(outcome="csam", category="A", age_band="11-13", sex="boy"),
    ]
    for item, data in zip(items, findings, strict=True):
        db.refresh(item)
        saved = assessment.assess_item(db, settings, ANALYST, item.id, item.version, data)
        db.commit()
        assessment.qa(db, settings, SENIOR, saved.assessment.id, "confirm", "checked")
        db.commit()
    assert db.scalar(select(func.count()).select_from(PageRecord)) == 0  # the page is not confirmed yet
    derived = assessment.current_case_assessment(db, db.get(Case, case.id))  # type: ignore[arg-type]
    assert derived is not None and derived.derived
    assessment.qa(db, settings, SENIOR, derived.id, "confirm", "checked")
    db.commit()
    record = db.scalars(select(PageRecord)).one()
    assert (record.key, record.outcome, record.category, record.age_band, record.sex) == (
        f"case:{case.id}",
        "csam",
        "A",  # the most severe
        "3-6",  # the youngest
        "both",
    )
    assert (record.self_generated, record.hosting_country, record.channel, record.source) == (
        True,
        "DE",
        "self_report",
        "live",
    )
    images = sorted((r.key, r.age_band, r.category, r.self_generated) for r in db.scalars(select(ImageRecord)))
    assert images == [(f"item:{items[0].id}", "3-6", "C", True), (f"item:{items[1].id}", "11-13", "A", False)]
    rows = ask(db, settings, by=["year", "age_band"])
    assert [(r["age_band"], r["count"]) for r in rows] == [("3-6", 1)]
    assert sum(r["count"] for r in ask(db, settings, measure="images", by=["year"])) == 2
    assert [r["count"] for r in ask(db, settings, measure="self_reports", by=["year"])] == [1]


def test_the_cube_migrations_fill_the_triples_and_weeks_from_existing_records(empty_database_url: str) -> None:
    """A database whose cube predates the monthly triples gets them when it is migrated, so the first
    three-dimension question read from the cube is already right."""
    from sqlalchemy import text

    from seawall import migrate
    from seawall.db import make_engine

    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "i11_hma")
        with engine.begin() as c:
            for n, (sg, sex) in enumerate([(True, "boy"), (True, "boy"), (False, "boy"), (True, "girl")]):
                c.execute(
                    text(
                        "INSERT INTO stats_pages (id, key, source, assessed_at, day, outcome, age_band, sex,"
                        " self_generated, commercial, ai_generated)"
                        " VALUES (:id, :key, 'import', :at, :day, 'csam', '7-10', :sex, :sg, false, false)"
                    ),
                    {
                        "id": n + 1,
                        "key": f"import:{n}",
                        "at": f"2022-03-0{n + 1} 10:00:00",
                        "day": date(2022, 3, n + 1),
                        "sex": sex,
                        "sg": sg,
                    },
                )
        migrate.upgrade(engine)
        with Session(engine) as session:
            triple = session.execute(
                select(CubeCount.period, CubeCount.v1, CubeCount.v2, CubeCount.v3, CubeCount.count)
                .where(CubeCount.dims == "age_band,self_generated,sex", CubeCount.grain == "m")
                .order_by(CubeCount.v2, CubeCount.v3)
            ).all()
            assert [tuple(r) for r in triple] == [
                (date(2022, 3, 1), "7-10", "false", "boy", 1),
                (date(2022, 3, 1), "7-10", "true", "boy", 2),
                (date(2022, 3, 1), "7-10", "true", "girl", 1),
            ]
            settings = Settings(database_url=empty_database_url)
            answer = service.table(
                session, settings, Query(by=["year", "age_band"], where={"sex": "boy", "self_generated": "true"})
            )
            assert answer.source == "cube (month)"
            assert [(r["year"], r["age_band"], r["count"]) for r in answer.rows] == [("2022", "7-10", 2)]
            weeks = session.execute(
                select(CubeCount.period, CubeCount.v1, CubeCount.count)
                .where(CubeCount.dims == "sex", CubeCount.grain == "w")
                .order_by(CubeCount.v1)
            ).all()
            assert [tuple(r) for r in weeks] == [(date(2022, 2, 28), "boy", 3), (date(2022, 2, 28), "girl", 1)]
        # A cube from before the weeks (at the triples' revision) gets them from the weeks' migration.
        migrate.downgrade(engine, "s16_cube_triples")
        with engine.connect() as c:
            assert c.scalar(text("SELECT count(*) FROM stats_cube WHERE grain = 'w'")) == 0
        migrate.upgrade(engine)
        with engine.connect() as c:
            week_cells = "SELECT period, v1, count FROM stats_cube WHERE grain = 'w' AND dims = 'sex' ORDER BY v1"
            again = [(date.fromisoformat(str(p)), v, n) for p, v, n in c.execute(text(week_cells))]
            assert again == [(date(2022, 2, 28), "boy", 3), (date(2022, 2, 28), "girl", 1)]
        migrate.downgrade(engine, "i11_hma")  # the triples and the weeks go again; the pairs stay
        with engine.connect() as c:
            assert c.scalar(text("SELECT count(*) FROM stats_cube WHERE grain = 'w'")) == 0
            assert c.scalar(text("SELECT count(*) FROM stats_cube WHERE dims LIKE '%,%,%'")) == 0
            assert c.scalar(text("SELECT sum(count) FROM stats_cube WHERE grain = 'm' AND dims = 'sex'")) == 4
    finally:
        engine.dispose()
