"""Statistics benchmark: 10 million assessed pages and 50 million images (``--scale 1``), each question
answered from the cube and, next to it, by a naive GROUP BY over the raw records (the same table
either way, checked equal). Goal: any one-table question under 1 s on SQLite and PostgreSQL.

    .venv/bin/python bench/stats.py [--scale 0.1] [--database-url URL] [--years 10] [--repeat 3]

Without ``--database-url`` a temporary SQLite file is used. On PostgreSQL the tables are created in
the given (empty or bench-owned) database and dropped afterwards. Rows are generated with numpy in
chunks and loaded with COPY (PostgreSQL) or executemany (SQLite); the cube is then built by the
service's own ``rebuild_cube``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from seawall.config import Settings
from seawall.db import make_engine, make_sessionmaker
from seawall.stats import service
from seawall.stats.models import CubeCount, ImageRecord, PageRecord
from seawall.stats.service import Query

PAGES, IMAGES = 10_000_000, 50_000_000
CHUNK = 500_000
TABLES = [PageRecord.__table__, ImageRecord.__table__, CubeCount.__table__]

AGE = (["0-2", "3-6", "7-10", "11-13", "14-15", "16-17"], [0.01, 0.04, 0.25, 0.5, 0.15, 0.05])
SEX = (["girl", "boy", "both", "unidentified"], [0.88, 0.07, 0.03, 0.02])
CATEGORY = (["A", "B", "C"], [0.2, 0.25, 0.55])
SITE = (
    ["image_host", "cyberlocker", "forum", "website", "banner_site", "social_network", "chat", "blog", "other"],
    [0.45, 0.15, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03],
)
COUNTRY = (
    ["NL", "US", "RU", "DE", "BG", "FR", "SK", "LV", "HK", "CA", "RO", "GB", "UA", "CZ", "SE"],
    [0.28, 0.18, 0.08, 0.06, 0.05, 0.05, 0.04, 0.04, 0.04, 0.04, 0.04, 0.03, 0.03, 0.02, 0.02],
)
CHANNEL = (["public", "proactive", "partner", "self_report", "referral"], [0.6, 0.22, 0.08, 0.05, 0.05])


def _choose(rng: np.random.Generator, spec: tuple[list[str], list[float]], n: int) -> np.ndarray:
    values, weights = spec
    p = np.array(weights) / sum(weights)
    return np.array(values, dtype=object)[rng.choice(len(values), size=n, p=p)]


def _chunks(total: int) -> Iterator[int]:
    done = 0
    while done < total:
        n = min(CHUNK, total - done)
        yield n
        done += n


def _times(rng: np.random.Generator, n: int, first: date, years: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Day offsets (more later: casework grows), and the days and UTC times as SQLite stores them."""
    span = years * 365
    # In day order within a chunk: the day index is then written a page at a time, not at random.
    offsets = np.sort((span * np.sqrt(rng.random(n))).astype(np.int64))
    days = np.datetime64(first.isoformat(), "D") + offsets
    moments = days.astype("datetime64[s]") + rng.integers(0, 86400, n)
    stamps = np.char.add(np.char.replace(moments.astype(str), "T", " "), ".000000")
    return offsets, days.astype(str).tolist(), stamps.tolist()


def _page_rows(rng: np.random.Generator, n: int, first: date, years: int, start_id: int) -> Iterator[tuple[Any, ...]]:
    offsets, days, stamps = _times(rng, n, first, years)
    ids = range(start_id, start_id + n)
    return zip(
        ids,
        (f"bench:{i:010}" for i in ids),
        ["import"] * n,
        stamps,
        stamps,
        days,
        [None] * n,
        np.where(rng.random(n) < 0.9, "csam", "not_csam").tolist(),
        _choose(rng, CATEGORY, n).tolist(),
        _choose(rng, AGE, n).tolist(),
        _choose(rng, SEX, n).tolist(),
        (rng.random(n) < 0.35 + 0.4 * offsets / (years * 365)).tolist(),
        (rng.random(n) < 0.08).tolist(),
        (rng.random(n) < 0.03).tolist(),
        _choose(rng, SITE, n).tolist(),
        _choose(rng, COUNTRY, n).tolist(),
        _choose(rng, CHANNEL, n).tolist(),
        strict=True,
    )


def _image_rows(rng: np.random.Generator, n: int, first: date, years: int, start_id: int) -> Iterator[tuple[Any, ...]]:
    offsets, days, stamps = _times(rng, n, first, years)
    ids = range(start_id, start_id + n)
    return zip(
        ids,
        (f"bench:{i:010}" for i in ids),
        ["import"] * n,
        stamps,
        days,
        np.where(rng.random(n) < 0.93, "image", "video").tolist(),
        ["csam"] * n,
        _choose(rng, CATEGORY, n).tolist(),
        _choose(rng, AGE, n).tolist(),
        _choose(rng, SEX, n).tolist(),
        (rng.random(n) < 0.35 + 0.4 * offsets / (years * 365)).tolist(),
        [None] * n,
        strict=True,
    )


PAGE_COLUMNS = (
    "id, key, source, reported_at, assessed_at, day, url, outcome, category, age_band, sex, self_generated, "
    "commercial, ai_generated, site_type, hosting_country, channel"
)
IMAGE_COLUMNS = "id, key, source, assessed_at, day, media, outcome, category, age_band, sex, self_generated, url"


def _load(engine: Engine, table: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("SET TIME ZONE 'UTC'")  # the generated times are UTC
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns.split(","))
            cursor.execute("PRAGMA cache_size=-4000000")  # 4 GB: the indexes stay in memory as they grow
            cursor.execute("BEGIN")  # the engine's connections autocommit otherwise: one fsync a row
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        raw.commit()
    finally:
        raw.close()


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


QUESTIONS = [
    Query(measure="pages", by=["half_year", "age_band"], where={"self_generated": "true"}),
    Query(measure="pages", by=["year", "hosting_country"]),
    Query(measure="pages", by=["month", "site_type", "channel"]),
    Query(measure="pages", by=["quarter", "age_band"], since=2020),
    Query(measure="pages", by=["week", "sex"]),
    Query(measure="pages", by=["day"]),
    Query(measure="images", by=["half_year", "age_band"], where={"self_generated": "true"}),
    Query(measure="images", by=["quarter", "category", "sex"]),
    Query(measure="images", by=["month", "media"]),
    Query(measure="pages", by=["year", "age_band", "self_generated"], where={"hosting_country": "NL"}),
    Query(measure="pages", by=["year", "age_band"], where={"sex": "boy", "self_generated": "true"}, since=2020),
    Query(measure="pages", by=["week", "age_band", "self_generated"], where={"hosting_country": "NL"}),
    Query(measure="pages", by=["week", "site_type", "hosting_country"]),
    Query(measure="pages", by=["month", "site_type", "hosting_country"], where={"self_generated": "true"}),
]


def _generate(engine: Engine, pages: int, images: int, years: int) -> None:
    """Fresh tables, filled with generated records (the same for the same counts), analysed."""
    for table in TABLES:
        table.drop(engine, checkfirst=True)
        table.create(engine)
    first = date(2026 - years, 1, 1)
    rng = np.random.default_rng(16)
    print(f"{engine.dialect.name}: {pages:,} pages, {images:,} images over {years} years", flush=True)
    started = time.perf_counter()
    done = 0
    for n in _chunks(pages):
        _load(engine, "stats_pages", PAGE_COLUMNS, _page_rows(rng, n, first, years, done + 1))
        done += n
    done = 0
    for n in _chunks(images):
        _load(engine, "stats_images", IMAGE_COLUMNS, _image_rows(rng, n, first, years, done + 1))
        done += n
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE stats_pages; ANALYZE stats_images"))
        else:
            connection.execute(text("ANALYZE"))


def _build(engine: Engine, sessions: Any) -> None:
    started = time.perf_counter()
    with sessions() as session, session.begin():
        cells = service.rebuild_cube(session)
    print(f"cube built by rebuild_cube: {cells:,} cells in {time.perf_counter() - started:.0f} s", flush=True)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE stats_cube" if engine.dialect.name == "postgresql" else "ANALYZE"))


def _describe(q: Query) -> str:
    where = ",".join(f"{k}:{v}" for k, v in q.where.items())
    return (
        f"{q.measure} by {','.join(q.by)}"
        + (f" where {where}" if where else "")
        + (f" since {q.since}" if q.since else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 10M pages and 50M images")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="ask again of tables a BENCH_KEEP=1 run left")
    parser.add_argument("--rebuild", action="store_true", help="with --reuse: make the cube again first")
    args = parser.parse_args()
    pages, images = int(PAGES * args.scale), int(IMAGES * args.scale)
    folder = tempfile.TemporaryDirectory(prefix="seawall-bench-stats-")
    url = args.database_url or f"sqlite+pysqlite:///{Path(folder.name) / 'bench.db'}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    if args.reuse:
        with engine.connect() as connection:
            counts = [connection.scalar(text(f"SELECT count(*) FROM {t.name}")) for t in TABLES]
        print(f"{engine.dialect.name}, reused: {counts[0]:,} pages, {counts[1]:,} images, {counts[2]:,} cube cells")
        if args.rebuild:
            CubeCount.__table__.drop(engine, checkfirst=True)
            CubeCount.__table__.create(engine)
            _build(engine, sessions)
    else:
        _generate(engine, pages, images, args.years)
        _build(engine, sessions)
    settings = Settings(database_url=url, home=Path(folder.name))
    print(f"\n{'question':<70} {'rows':>7} {'source':>13} {'answer s':>9} {'naive s':>8}  equal")
    worst = 0.0
    with sessions() as session:
        for q in QUESTIONS:
            answer_s, answer = _timed(lambda q=q: service.table(session, settings, q), args.repeat)
            cube_dims = service.CUBE_DIMS
            # The same question as a GROUP BY over the raw records.
            service.CUBE_DIMS = {grain: -1 for grain in service.GRAINS}
            try:
                naive_s, naive = _timed(lambda q=q: service.table(session, settings, q), 1)
            finally:
                service.CUBE_DIMS = cube_dims
            worst = max(worst, answer_s)
            print(
                f"{_describe(q):<70} {len(answer.rows):>7} {answer.source:>13} {answer_s:>9.3f} {naive_s:>8.2f}"
                f"  {answer.rows == naive.rows}",
                flush=True,
            )
    print(f"\nslowest answer: {worst:.3f} s")
    if not os.environ.get("BENCH_KEEP"):  # BENCH_KEEP=1 leaves the tables for a closer look
        for table in reversed(TABLES):
            table.drop(engine, checkfirst=True)
    engine.dispose()
    folder.cleanup()


if __name__ == "__main__":
    sys.exit(main())
