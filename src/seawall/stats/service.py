"""Statistics: records written on confirmation (or imported), the cube kept current with them, and the
tables asked of both — counts by period and dimension, share of the total, change against the same
period a year earlier and growth since a base year.

Where a figure comes from:
- ``pages`` and ``images`` (csam only, the IWF's "actioned" counts): the cube when the dimensions
  grouped by and filtered on are at most two, else a ``GROUP BY`` over the records;
- ``reports`` (the hotline's reports, plus each imported page), ``self_reports`` (reports from the
  ``self_report`` channel), ``notices``, ``takedown`` and ``matches``: the live tables.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import combinations, islice
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import ColumnElement, CursorResult, delete, func, select, true
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline.models import (
    AGE_BANDS,
    CATEGORIES,
    CHANNELS,
    OUTCOMES,
    SEXES,
    SITE_TYPES,
    Assessment,
    Case,
    CaseItem,
    Item,
    Notice,
    Report,
)
from seawall.matching.models import MatchEvent
from seawall.stats import periods
from seawall.stats.models import CubeCount, ImageRecord, PageRecord

PAGE_DIMS = (
    "age_band",
    "sex",
    "category",
    "self_generated",
    "commercial",
    "ai_generated",
    "site_type",
    "hosting_country",
    "channel",
)
IMAGE_DIMS = ("age_band", "sex", "category", "self_generated", "media")
LIVE_DIMS: dict[str, tuple[str, ...]] = {
    "reports": ("channel", "site_type"),
    "self_reports": ("age_band",),
    "notices": ("hosting_country", "channel"),
    "takedown": ("hosting_country", "channel"),
    "matches": ("list", "signal_type"),
}
MEASURES = ("pages", "images", "reports", "self_reports", "notices", "takedown", "matches")
BOOL_DIMS = ("self_generated", "commercial", "ai_generated")
UNKNOWN = "unknown"  # a missing value, in the cube and in filters
# The cube's grains, each cell dated by the first day of its period: a day, an ISO week (its Monday),
# a month.
GRAINS = {"d": "day", "w": "week", "m": "month"}
# How many dimensions (grouped by or filtered on) the cube holds together, per grain: every
# dimension alone and every pair by day, and every triple too by week and by month (two grouped and
# one filtered, as in "self-generated pages by age band and sex per week", or the yearly tables'
# "self-generated, boys, by age band").
CUBE_DIMS = {"d": 2, "w": 3, "m": 3}
_REBUILD_BATCH = 20_000
DAY, HOURS_24, HOURS_72 = 86400, 24 * 3600, 72 * 3600


class StatsError(ValueError):
    """A question that cannot be answered as asked, or an import line that cannot be read; the message
    says what to change (nothing was written)."""


def zone_of(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def dims_of(measure: str) -> tuple[str, ...]:
    if measure == "pages":
        return PAGE_DIMS
    if measure == "images":
        return IMAGE_DIMS
    if measure in LIVE_DIMS:
        return LIVE_DIMS[measure]
    raise StatsError(f"measure is one of {', '.join(MEASURES)} (got {measure!r})")


def text_of(value: Any) -> str:
    """A dimension's value as the cube and filters spell it."""
    if value is None or value == "":
        return UNKNOWN
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown(dim: str, value: str) -> Any:
    """A dimension's value as a table shows it: booleans as booleans, unknown as null."""
    if value == UNKNOWN:
        return None
    if dim in BOOL_DIMS:
        return value == "true"
    return value


# ---- records and the cube ---------------------------------------------------------------------

# One cell of the cube and its count: measure, grain, dims, period, v1, v2, v3, count.
Cell = tuple[str, str, str, date, str, str, str, int]
_CELL_COLUMNS = "measure, grain, dims, period, v1, v2, v3, count"


def _combos(dims: Sequence[str], most: int) -> list[tuple[str, ...]]:
    names = sorted(dims)
    return [combo for size in range(most + 1) for combo in combinations(names, size)]


_COMBOS = {
    measure: {grain: _combos(dims, most) for grain, most in CUBE_DIMS.items()}
    for measure, dims in (("pages", PAGE_DIMS), ("images", IMAGE_DIMS))
}


def _send_cells(session: Session, cells: Iterable[Cell], *, add: bool) -> int:
    """Cells into the cube in the session's transaction, through the driver (SQLAlchemy's per-row
    parameter handling would cost more than the database): a rebuild's new cells by COPY on
    PostgreSQL, else an executemany of inserts that, with ``add``, add to a cell already there.
    Returns the cells sent."""
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    cursor = connection.connection.cursor()
    sent = 0
    try:
        if postgres and not add:
            with cursor.copy(f"COPY stats_cube ({_CELL_COLUMNS}) FROM STDIN") as copy:
                for cell in cells:
                    copy.write_row(cell)
                    sent += 1
            return sent
        mark = "%s" if postgres else "?"
        statement = f"INSERT INTO stats_cube ({_CELL_COLUMNS}) VALUES ({', '.join([mark] * 8)})"
        if add:
            statement += (
                " ON CONFLICT (measure, grain, dims, period, v1, v2, v3)"
                " DO UPDATE SET count = stats_cube.count + excluded.count"
            )
        # SQLite stores a date as its ISO text.
        rows = iter(cells) if postgres else ((m, g, d, p.isoformat(), *rest) for m, g, d, p, *rest in cells)
        while batch := list(islice(rows, _REBUILD_BATCH)):
            cursor.executemany(statement, batch)
            sent += len(batch)
        return sent
    finally:
        cursor.close()


def _apply(session: Session, cells: Iterable[Cell]) -> None:
    """Add counts to the cube's cells (a new cell starts from zero), in a fixed order so two writers
    never wait on each other in a circle."""
    _send_cells(session, sorted(cell for cell in cells if cell[-1]), add=True)


_PAGE_FIELDS = (
    "source",
    "reported_at",
    "assessed_at",
    "day",
    "url",
    "outcome",
    "category",
    "age_band",
    "sex",
    "self_generated",
    "commercial",
    "ai_generated",
    "site_type",
    "hosting_country",
    "channel",
)
_IMAGE_FIELDS = (
    "source",
    "assessed_at",
    "day",
    "media",
    "outcome",
    "category",
    "age_band",
    "sex",
    "self_generated",
    "url",
)


def _same(row: Any, values: dict[str, Any], names: Sequence[str]) -> bool:
    return all(getattr(row, n) == values[n] for n in names)


def _put(
    session: Session, model: type[PageRecord] | type[ImageRecord], measure: str, batch: dict[str, dict[str, Any]]
) -> tuple[int, int, int]:
    """Write records by key (insert, or replace one whose values changed) and move the cube with
    them. Returns (added, replaced, unchanged)."""
    names = _PAGE_FIELDS if model is PageRecord else _IMAGE_FIELDS
    dims = dims_of(measure)
    # What moves in the cube: (day, dimension values, +1 or -1) of each csam record added or replaced.
    changes: list[tuple[int, tuple[Any, ...], int]] = []

    def count(record: Any, sign: int) -> None:
        if record.outcome == "csam":
            changes.append((record.day.toordinal(), tuple(getattr(record, d) for d in dims), sign))

    added = replaced = unchanged = 0
    keys = list(batch)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found: Iterable[Any] = session.scalars(select(model).where(model.key.in_(chunk)))
        existing = {r.key: r for r in found}
        for key in chunk:
            values = batch[key]
            row: Any = existing.get(key)
            if row is not None and _same(row, values, names):
                unchanged += 1
                continue
            if row is not None:
                count(row, -1)
                for n in names:
                    setattr(row, n, values[n])
                replaced += 1
            else:
                row = model(key=key, **values)
                session.add(row)
                added += 1
            count(row, +1)
    session.flush()
    _apply(session, _cube_cells(measure, _groups_of(len(dims), changes)))
    return added, replaced, unchanged


def _first_report(session: Session, case_id: int) -> Report | None:
    return session.scalars(
        select(Report).where(Report.case_id == case_id).order_by(Report.reported_at, Report.id).limit(1)
    ).first()


def page_values(session: Session, settings: Settings, row: Assessment) -> dict[str, Any] | None:
    """A confirmed case assessment as a page record: its findings (for a derived one already the
    youngest child and most severe category across the page's items), the case's hosting country,
    and the first report's channel and time."""
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    if case is None or case.url is None:
        return None
    first = _first_report(session, case.id)
    flags = set(row.flags or ())
    return {
        "source": "live",
        "reported_at": first.reported_at if first is not None else None,
        "assessed_at": row.assessed_at,
        "day": periods.local_day(row.assessed_at, zone_of(settings)),
        "url": case.url,
        "outcome": row.outcome,
        "category": row.category,
        "age_band": row.age_band,
        "sex": row.sex,
        "self_generated": "self_generated" in flags,
        "commercial": "commercial" in flags,
        "ai_generated": "ai_generated" in flags,
        "site_type": row.site_type or (first.site_type if first is not None else None),
        "hosting_country": case.hosting_country,
        "channel": first.channel if first is not None else None,
    }


def image_values(session: Session, settings: Settings, row: Assessment) -> dict[str, Any] | None:
    item = session.get(Item, row.item_id) if row.item_id is not None else None
    if item is None:
        return None
    url = session.scalar(select(CaseItem.media_url).where(CaseItem.item_id == item.id).order_by(CaseItem.id).limit(1))
    return {
        "source": "live",
        "assessed_at": row.assessed_at,
        "day": periods.local_day(row.assessed_at, zone_of(settings)),
        "media": item.media if item.media in ("image", "video") else "image",
        "outcome": row.outcome,
        "category": row.category,
        "age_band": row.age_band,
        "sex": row.sex,
        "self_generated": "self_generated" in set(row.flags or ()),
        "url": url or None,
    }


def record_confirmed(session: Session, settings: Settings, row: Assessment, *heirs: int | None) -> None:
    """The statistics records of an assessment that is now final (QA's last confirmation, or an
    inherited one) and of the assessments its near-identical items inherited from it (by id), in the
    caller's transaction; a later confirmed assessment of the same item or case replaces a record.
    Called once the item and its cases are locked: cube cells come after cases and before lists in
    the lock order."""
    pages: dict[str, dict[str, Any]] = {}
    images: dict[str, dict[str, Any]] = {}
    rows = [row, *(session.get(Assessment, h) for h in heirs if h is not None)]
    for one in rows:
        if one is None or one.state != "confirmed":
            continue
        if one.subject == "case":
            values = page_values(session, settings, one)
            if values is not None:
                pages[f"case:{one.case_id}"] = values
        elif one.subject == "item":
            values = image_values(session, settings, one)
            if values is not None:
                images[f"item:{one.item_id}"] = values
    if pages:
        _put(session, PageRecord, "pages", pages)
    if images:
        _put(session, ImageRecord, "images", images)


# ---- import -------------------------------------------------------------------------------------

PAGE_COLUMNS = (
    "id",
    "reported_at",
    "assessed_at",
    "url",
    "outcome",
    "category",
    "age_band",
    "sex",
    "self_generated",
    "commercial",
    "ai_generated",
    "site_type",
    "hosting_country",
    "channel",
)
IMAGE_COLUMNS = ("id", "assessed_at", "category", "age_band", "sex", "self_generated", "url")
_TRUE, _FALSE = ("true", "yes", "1", "y", "t"), ("false", "no", "0", "n", "f", "")


@dataclass
class ImportResult:
    kind: str
    read: int = 0
    added: int = 0
    replaced: int = 0
    unchanged: int = 0


def _moment(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StatsError(f"{name} {text!r} is not an ISO 8601 time (2022-06-30T23:30:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _choice(text: str, name: str, allowed: Sequence[str]) -> str | None:
    value = text.strip()
    if not value:
        return None
    if value not in allowed:
        raise StatsError(f"{name} is one of {', '.join(allowed)} (got {value!r})")
    return value


def _flag(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StatsError(f"{name} is true or false (got {text!r})")


def _country(text: str) -> str | None:
    value = text.strip().upper()
    if not value:
        return None
    if len(value) != 2 or not value.isalpha():
        raise StatsError(f"hosting_country is a two-letter country code (got {text!r})")
    return value


def _read_csv(text: str, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or ()]
    missing = [c for c in columns if c not in header]
    if missing:
        raise StatsError(f"line 1: the header lacks {', '.join(missing)} (columns: {', '.join(columns)})")
    reader.fieldnames = header
    for row in reader:
        if None in row:
            raise StatsError(f"line {reader.line_num}: more fields than the header names")
        yield reader.line_num, {k: (v or "") for k, v in row.items()}


def _parse(text: str, kind: str, zone: ZoneInfo) -> dict[str, dict[str, Any]]:
    """Every line checked before anything is written: a bad line is named and nothing imported."""
    columns = PAGE_COLUMNS if kind == "urls" else IMAGE_COLUMNS
    out: dict[str, dict[str, Any]] = {}
    for line, row in _read_csv(text, columns):
        try:
            ident = row["id"].strip()
            if not ident or len(ident) > 200:
                raise StatsError("id is required (at most 200 characters)")
            key = f"import:{ident}"
            if key in out:
                raise StatsError(f"id {ident!r} appears twice in the file")
            assessed_at = _moment(row["assessed_at"], "assessed_at")
            common = {
                "source": "import",
                "assessed_at": assessed_at,
                "day": periods.local_day(assessed_at, zone),
                "category": _choice(row["category"], "category", CATEGORIES),
                "age_band": _choice(row["age_band"], "age_band", AGE_BANDS),
                "sex": _choice(row["sex"], "sex", SEXES),
                "self_generated": _flag(row["self_generated"], "self_generated"),
                "url": row["url"].strip()[:2048] or None,
            }
            if kind == "urls":
                outcome = _choice(row["outcome"], "outcome", OUTCOMES)
                if outcome is None:
                    raise StatsError(f"outcome is required: one of {', '.join(OUTCOMES)}")
                reported = row["reported_at"].strip()
                out[key] = {
                    **common,
                    "reported_at": _moment(reported, "reported_at") if reported else None,
                    "outcome": outcome,
                    "commercial": _flag(row["commercial"], "commercial"),
                    "ai_generated": _flag(row["ai_generated"], "ai_generated"),
                    "site_type": _choice(row["site_type"], "site_type", SITE_TYPES),
                    "hosting_country": _country(row["hosting_country"]),
                    "channel": _choice(row["channel"], "channel", CHANNELS),
                }
            else:
                out[key] = {**common, "media": "image", "outcome": "csam"}
        except StatsError as exc:
            raise StatsError(f"line {line}: {exc}") from None
    return out


def import_records(session: Session, settings: Settings, kind: str, text: str) -> ImportResult:
    """``seawall stats import urls|images``: CSV with a header, idempotent by ``id`` (a line already
    imported with the same values changes nothing; with other values it replaces the record)."""
    if kind not in ("urls", "images"):
        raise StatsError(f"import urls or images (got {kind!r})")
    batch = _parse(text, kind, zone_of(settings))
    model: type[PageRecord] | type[ImageRecord] = PageRecord if kind == "urls" else ImageRecord
    added, replaced, unchanged = _put(session, model, "pages" if kind == "urls" else "images", batch)
    return ImportResult(kind=kind, read=len(batch), added=added, replaced=replaced, unchanged=unchanged)


# ---- rebuild ------------------------------------------------------------------------------------


def _column(model: type[PageRecord] | type[ImageRecord], dim: str) -> Any:
    return getattr(model, dim)


@dataclass
class _Groups:
    """The csam records of one measure grouped by day and every dimension: one row per distinct
    combination, each dimension's value as a small code into ``names``."""

    days: np.ndarray  # int64: the day's proleptic ordinal
    codes: np.ndarray  # int32, a row per group and a column per dimension
    counts: np.ndarray  # int64
    names: list[list[str]]  # per dimension, the cube's spelling of each code


class _Coder:
    """Small integer codes for each dimension's values, and the cube's spelling of each code (None and
    "" are both unknown: one code)."""

    def __init__(self, width: int) -> None:
        self.names: list[list[str]] = [[] for _ in range(width)]
        self._lookups: list[dict[Any, int]] = [{} for _ in range(width)]

    def codes(self, position: int, raws: Iterable[Any]) -> list[int]:
        lookup = self._lookups[position]
        return [lookup[v] if v in lookup else self._first(position, v) for v in raws]

    def _first(self, position: int, raw: Any) -> int:
        spelled, names = text_of(raw), self.names[position]
        if spelled not in names:
            names.append(spelled)
        self._lookups[position][raw] = names.index(spelled)
        return self._lookups[position][raw]


def _groups_of(width: int, changes: Sequence[tuple[int, tuple[Any, ...], int]]) -> _Groups:
    """Groups of a few records in memory: (day ordinal, raw dimension values, count) each."""
    coder = _Coder(width)
    codes = np.empty((len(changes), width), dtype=np.int32)
    for position in range(width):
        codes[:, position] = coder.codes(position, (values[position] for _, values, _ in changes))
    days = np.fromiter((day for day, _, _ in changes), dtype=np.int64, count=len(changes))
    counts = np.fromiter((n for _, _, n in changes), dtype=np.int64, count=len(changes))
    return _Groups(days, codes, counts, coder.names)


def _finest_groups(session: Session, measure: str) -> _Groups:
    """One grouped scan of the records by the database; the values coded in Python as they stream."""
    model: type[PageRecord] | type[ImageRecord] = PageRecord if measure == "pages" else ImageRecord
    dims = dims_of(measure)
    columns = [_column(model, d) for d in dims]
    query = select(model.day, *columns, func.count()).where(model.outcome == "csam").group_by(model.day, *columns)
    coder = _Coder(len(dims))
    days, codes, counts = [], [], []
    result = session.execute(query, execution_options={"yield_per": 50_000})
    for rows in result.partitions():
        cols = list(zip(*rows, strict=True))
        days.append(np.fromiter((d.toordinal() for d in cols[0]), dtype=np.int64, count=len(rows)))
        block = np.empty((len(rows), len(dims)), dtype=np.int32)
        for position in range(len(dims)):
            block[:, position] = coder.codes(position, cols[1 + position])
        codes.append(block)
        counts.append(np.fromiter(cols[-1], dtype=np.int64, count=len(rows)))
    if not days:
        return _groups_of(len(dims), [])
    return _Groups(np.concatenate(days), np.concatenate(codes), np.concatenate(counts), coder.names)


def _cube_cells(measure: str, groups: _Groups) -> Iterator[Cell]:
    """Every cell of the cube for one measure, summed from the finest groups: per grain and
    combination, one composite integer key per group, summed by ``np.unique``."""
    dims = dims_of(measure)
    if not len(groups.days):
        return
    distinct, back = np.unique(groups.days, return_inverse=True)
    firsts = np.array([date.fromordinal(int(o)).replace(day=1).toordinal() for o in distinct], dtype=np.int64)
    starts = {
        "d": groups.days,
        "w": groups.days - (groups.days + 6) % 7,  # ordinal 1 (1 January of year 1) is a Monday
        "m": firsts[back],
    }
    sizes = [max(1, len(n)) for n in groups.names]
    dates: dict[int, date] = {}
    for grain in GRAINS:
        period = starts[grain]
        for combo in _COMBOS[measure][grain]:
            positions = [dims.index(d) for d in combo]
            key = period.copy()
            for p in positions:
                key = key * sizes[p] + groups.codes[:, p]
            cells, inverse = np.unique(key, return_inverse=True)
            sums = np.bincount(inverse, weights=groups.counts).astype(np.int64)
            values: list[list[str]] = []
            for p in reversed(positions):
                values.insert(0, [groups.names[p][c] for c in (cells % sizes[p]).tolist()])
                cells = cells // sizes[p]
            padded = [*values, *([[""] * len(sums)] * (3 - len(values)))]
            name = ",".join(combo)
            for ordinal, v1, v2, v3, n in zip(cells.tolist(), *padded, sums.tolist(), strict=True):
                day = dates.get(ordinal) or dates.setdefault(ordinal, date.fromordinal(ordinal))
                yield measure, grain, name, day, v1, v2, v3, n


def rebuild_cube(session: Session, measures: Sequence[str] = ("pages", "images")) -> int:
    """The cube recomputed from the records (after a bulk load, ``seawall stats rebuild``, or to check
    it): the database groups the csam records once by day and every dimension, and every cell of
    every combination and grain is summed from those groups — one scan of the records, not one per
    combination. Returns the cells written."""
    written = 0
    for measure in measures:
        session.execute(delete(CubeCount).where(CubeCount.measure == measure))
        written += _send_cells(session, _cube_cells(measure, _finest_groups(session, measure)), add=False)
    return written


def rebuild(session: Session, settings: Settings) -> dict[str, int]:
    """Records for every confirmed assessment (those confirmed before statistics existed), every
    record's day in the current time zone, then the cube."""
    zone = zone_of(settings)
    confirmed = session.scalars(select(Assessment).where(Assessment.state == "confirmed").order_by(Assessment.id)).all()
    for row in confirmed:
        record_confirmed(session, settings, row)
    moved = 0
    models: list[type[PageRecord] | type[ImageRecord]] = [PageRecord, ImageRecord]
    for model in models:
        records: Iterable[Any] = session.scalars(select(model)).yield_per(5000)
        for record in records:
            day = periods.local_day(record.assessed_at, zone)
            if record.day != day:
                record.day = day
                moved += 1
    session.flush()
    cells = rebuild_cube(session)
    return {"assessments": len(confirmed), "days_moved": moved, "cells": cells}


# ---- questions --------------------------------------------------------------------------------


@dataclass
class Query:
    measure: str = "pages"
    by: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)
    start: date | None = None
    end: date | None = None
    since: int | None = None


@dataclass
class Result:
    columns: list[str]
    rows: list[dict[str, Any]]
    source: str  # cube (day or month), records, live


def parse_where(items: Iterable[str]) -> dict[str, str]:
    """``dim:value`` or ``dim=value`` items (several per argument, comma-separated)."""
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            sep = ":" if ":" in part else "="
            name, _, value = part.partition(sep)
            if not value.strip():
                raise StatsError(f"where takes dimension:value (got {part!r})")
            out[name.strip()] = value.strip()
    return out


def parse_by(items: Iterable[str]) -> list[str]:
    return [p.strip() for item in items for p in item.split(",") if p.strip()]


def check(query: Query) -> tuple[str | None, list[str]]:
    """The query's period and dimensions, or StatsError naming every problem."""
    dims = dims_of(query.measure)
    problems: list[str] = []
    kind: str | None = None
    plain: list[str] = []
    for name in query.by:
        if name in periods.PERIODS:
            if kind is not None:
                problems.append("group by one period at most")
            kind = name
        elif name in dims:
            if name in plain:
                problems.append(f"{name} is named twice")
            plain.append(name)
        else:
            problems.append(
                f"cannot group {query.measure} by {name!r}: periods {', '.join(periods.PERIODS)};"
                f" dimensions {', '.join(dims)}"
            )
    if len(plain) > 2:
        problems.append("group by two dimensions at most (and a period)")
    for name, value in query.where.items():
        if name not in dims:
            problems.append(f"cannot filter {query.measure} on {name!r}: dimensions {', '.join(dims)}")
        elif name in BOOL_DIMS and value not in ("true", "false"):
            problems.append(f"{name} is true or false (got {value!r})")
    if query.start and query.end and query.start > query.end:
        problems.append("from is after to")
    if query.since is not None and not 1900 <= query.since <= 9999:
        problems.append("since is a year")
    if query.since is not None and kind is None:
        problems.append("since compares periods: group by a period too")
    if problems:
        raise StatsError("; ".join(problems))
    return kind, plain


Counts = dict[tuple[date, tuple[str, ...]], int]
# Counts as read, each (day, values) once: (day or a whole period's first day, *values, count). The
# day is a date, or SQLite's ISO text of it as the cube's rows come from the driver.
Cells = list[tuple[Any, ...]]


def _record_filter(model: type[PageRecord] | type[ImageRecord], where: dict[str, str]) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    for name, value in where.items():
        column = _column(model, name)
        if value == UNKNOWN:
            out.append(column.is_(None))
        elif name in BOOL_DIMS:
            out.append(column.is_(value == "true"))
        else:
            out.append(column == value)
    return out


def _cube_counts(
    session: Session, measure: str, dims: list[str], where: dict[str, str], lo: date, hi: date, grain: str
) -> Cells:
    """The cube's cells of one grain from ``lo`` to ``hi``: with the filtered values fixed, each
    (period, grouped values) is one cell, so nothing is left to sum."""
    needed = sorted(set(dims) | set(where))
    slots = {d: i for i, d in enumerate(needed)}
    value_columns = [CubeCount.v1, CubeCount.v2, CubeCount.v3]
    wanted = [value_columns[slots[d]] for d in dims]
    query = select(CubeCount.period, *wanted, CubeCount.count).where(
        CubeCount.measure == measure,
        CubeCount.grain == grain,
        CubeCount.dims == ",".join(needed),
        CubeCount.period >= lo,
        CubeCount.period <= hi,
        CubeCount.count != 0,
        *(value_columns[slots[d]] == v for d, v in where.items()),
    )
    # The driver's own tuples: SQLAlchemy's rows and SQLite date parsing would cost more than the
    # query on a table of 70,000 cells.
    result = cast(CursorResult[Any], session.connection().execute(query))
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def _record_counts(session: Session, measure: str, dims: list[str], where: dict[str, str], lo: date, hi: date) -> Cells:
    model: type[PageRecord] | type[ImageRecord] = PageRecord if measure == "pages" else ImageRecord
    columns = [_column(model, d) for d in dims]
    query = (
        select(model.day, *columns, func.count())
        .where(model.outcome == "csam", model.day >= lo, model.day <= hi, *_record_filter(model, where))
        .group_by(model.day, *columns)
    )
    return [(day, *(text_of(v) for v in values), int(n)) for day, *values, n in session.execute(query)]


def _grain_for(kind: str | None) -> str:
    """The coarsest grain whose periods make up the table's periods whole: weeks for weeks, days for
    days, months for the rest and for a table with no period."""
    return {"day": "d", "week": "w"}.get(kind or "", "m")


def _tiles(grain: str, lo: date, hi: date) -> tuple[tuple[date, date] | None, list[tuple[date, date]]]:
    """A window cut into the whole periods of ``grain`` inside it (the first and last period's first
    day) and the days at its edges that make no whole period."""
    kind, one = GRAINS[grain], timedelta(days=1)
    first = lo if periods.start_of(kind, lo) == lo else periods.end_of(kind, lo) + one
    last = hi if periods.end_of(kind, hi) == hi else periods.start_of(kind, hi) - one
    if first > last:
        return None, [(lo, hi)]
    edges = [(a, b) for a, b in ((lo, first - one), (last + one, hi)) if a <= b]
    return (first, periods.start_of(kind, last)), edges


def _stored_counts(
    session: Session, measure: str, dims: list[str], where: dict[str, str], lo: date, hi: date, grain: str
) -> tuple[Cells, set[str]]:
    """The counts of one window, each dated by its day or its whole period's first day, and the grains
    (or "records") they came from: the whole periods of ``grain`` from the cube and the edge days from
    its day cells where the cube holds that many dimensions together, the rest from the records."""
    needed = len(set(dims) | set(where))
    if needed > CUBE_DIMS[grain]:
        return _record_counts(session, measure, dims, where, lo, hi), {"records"}
    whole, edges = _tiles(grain, lo, hi)
    cells: Cells = []
    found: set[str] = set()
    if whole is not None:
        cells += _cube_counts(session, measure, dims, where, *whole, grain)
        found.add(grain)
    for a, b in edges:
        if needed <= CUBE_DIMS["d"]:
            cells += _cube_counts(session, measure, dims, where, a, b, "d")
            found.add("d")
        else:
            cells += _record_counts(session, measure, dims, where, a, b)
            found.add("records")
    return cells, found


def _source_label(found: set[str]) -> str:
    """Where a table's counts came from: "cube (month)", "cube (week, day)", "records", or both."""
    grains = [GRAINS[g] for g in ("m", "w", "d") if g in found]
    parts = ([f"cube ({', '.join(grains)})"] if grains else []) + (["records"] if "records" in found else [])
    return " + ".join(parts)


def _utc_bounds(lo: date, hi: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(lo, time(), zone).astimezone(UTC)
    end = datetime.combine(hi + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def _live_events(
    session: Session, settings: Settings, measure: str, lo: date, hi: date, principal: Principal | None
) -> Iterator[tuple[date, dict[str, str], int | None]]:
    """(local day, dimension values, takedown seconds) of each event a live measure counts."""
    zone = zone_of(settings)
    start, end = _utc_bounds(lo, hi, zone)
    if measure in ("reports", "self_reports"):
        query = select(Report.reported_at, Report.channel, Report.site_type, Report.age_band).where(
            Report.reported_at >= start, Report.reported_at < end
        )
        if measure == "self_reports":
            query = query.where(Report.channel == "self_report")
        for at, channel, site_type, age_band in session.execute(query):
            values = {"channel": text_of(channel), "site_type": text_of(site_type), "age_band": text_of(age_band)}
            yield periods.local_day(at, zone), values, None
        # A hotline's past years: each imported page was reported once.
        imported = select(PageRecord.reported_at, PageRecord.channel, PageRecord.site_type, PageRecord.age_band).where(
            PageRecord.source == "import", PageRecord.reported_at >= start, PageRecord.reported_at < end
        )
        if measure == "self_reports":
            imported = imported.where(PageRecord.channel == "self_report")
        for when, how, where_seen, band in session.execute(imported):
            if when is not None:
                found = {"channel": text_of(how), "site_type": text_of(where_seen), "age_band": text_of(band)}
                yield periods.local_day(when, zone), found, None
    elif measure in ("notices", "takedown"):
        sent = (
            select(Notice.sent_at, Notice.channel, Notice.takedown_seconds, Notice.removed_at, Case.hosting_country)
            .join(Case, Case.id == Notice.case_id)
            .where(Notice.sent_at.is_not(None), Notice.sent_at >= start, Notice.sent_at < end)
        )
        for sent_at, by, seconds, removed_at, country in session.execute(sent):
            if sent_at is None or (measure == "takedown" and (removed_at is None or seconds is None)):
                continue
            found = {"hosting_country": text_of(country), "channel": text_of(by)}
            yield periods.local_day(sent_at, zone), found, seconds
    elif measure == "matches":
        events = select(MatchEvent.occurred_at, MatchEvent.matches).where(
            MatchEvent.occurred_at >= start, MatchEvent.occurred_at < end
        )
        for occurred_at, matches in session.execute(events):
            seen: set[tuple[str, str]] = set()
            for match in matches or ():
                name = str(match.get("list", ""))
                # A list-limited key counts matches to its own lists only.
                if principal is not None and not principal.can_use_list(name):
                    continue
                seen.add((name, str(match.get("signal_type", ""))))
            for name, signal_type in sorted(seen):
                yield (
                    periods.local_day(occurred_at, zone),
                    {"list": text_of(name), "signal_type": text_of(signal_type)},
                    None,
                )


def _live_counts(
    session: Session,
    settings: Settings,
    measure: str,
    dims: list[str],
    where: dict[str, str],
    lo: date,
    hi: date,
    principal: Principal | None,
) -> tuple[Counts, dict[tuple[date, tuple[str, ...]], list[int]]]:
    counts: Counts = defaultdict(int)
    samples: dict[tuple[date, tuple[str, ...]], list[int]] = defaultdict(list)
    for day, values, seconds in _live_events(session, settings, measure, lo, hi, principal):
        if any(values.get(k) != v for k, v in where.items()):
            continue
        key = (day, tuple(values[d] for d in dims))
        counts[key] += 1
        if seconds is not None:
            samples[key].append(int(seconds))
    return dict(counts), dict(samples)


def _extent(session: Session, settings: Settings, measure: str) -> tuple[date, date] | None:
    """The first and last day with data of a measure."""
    if measure in ("pages", "images"):
        low, high = session.execute(
            select(func.min(CubeCount.period), func.max(CubeCount.period)).where(
                CubeCount.measure == measure, CubeCount.grain == "d", CubeCount.dims == "", CubeCount.count > 0
            )
        ).one()
        return (low, high) if low is not None else None
    zone = zone_of(settings)
    column: Any = {
        "reports": Report.reported_at,
        "self_reports": Report.reported_at,
        "notices": Notice.sent_at,
        "takedown": Notice.sent_at,
        "matches": MatchEvent.occurred_at,
    }[measure]
    query = select(func.min(column), func.max(column))
    if measure == "self_reports":
        query = query.where(Report.channel == "self_report")
    low, high = session.execute(query).one()
    days = [periods.local_day(m, zone) for m in (low, high) if m is not None]
    if measure in ("reports", "self_reports"):
        imported = session.execute(
            select(func.min(PageRecord.reported_at), func.max(PageRecord.reported_at)).where(
                PageRecord.source == "import",
                PageRecord.channel == "self_report" if measure == "self_reports" else true(),
            )
        ).one()
        days += [periods.local_day(m, zone) for m in imported if m is not None]
    return (min(days), max(days)) if days else None


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _change(count: int, previous: int) -> float | None:
    return round(100.0 * (count - previous) / previous, 1) if previous else None


def _percentile(values: list[int], share: float) -> int:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _hours(seconds: float) -> float:
    return round(seconds / 3600.0, 1)


def _order(dims: Sequence[str], values: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """Age bands youngest first, other values alphabetically, unknown last."""
    out = []
    for dim, value in zip(dims, values, strict=True):
        if value == UNKNOWN:
            out.append((2, 0, value))
        elif dim == "age_band" and value in AGE_BANDS:
            out.append((0, AGE_BANDS.index(value), value))
        else:
            out.append((1, 0, value))
    return tuple(out)


def table(session: Session, settings: Settings, query: Query, principal: Principal | None = None) -> Result:
    """Counts by period and up to two dimensions, with share, year-on-year change and growth since a
    base year. Every period in the range is a row for every combination of values seen in the range,
    a year earlier or in the base year (zero when empty)."""
    kind, dims = check(query)
    measure = query.measure
    columns = ([kind] if kind else []) + dims + ["count", "previous", "change_pct", "share_pct"]
    if query.since is not None:
        columns += ["base", "since_pct"]
    if measure == "takedown":
        columns += ["median_hours", "p90_hours", "within_24h_pct", "within_72h_pct"]
    extent = _extent(session, settings, measure)
    start, end = query.start, query.end
    if extent is None and (start is None or end is None):
        return Result(columns=columns, rows=[], source="none")
    span = kind or "day"
    if start is None:
        assert extent is not None
        start = periods.start_of(span, extent[0])
    if end is None:
        assert extent is not None
        end = periods.end_of(span, max(extent[1], start))
    # The windows a table reads: its own, the same days a year earlier, and the base year.
    windows = [(start, end), (periods.year_earlier(start), periods.year_earlier(end))]
    if query.since is not None:
        windows.append((date(query.since, 1, 1), date(query.since, 12, 31)))

    samples: dict[tuple[date, tuple[str, ...]], list[int]] = {}
    if measure in ("pages", "images"):
        grain = _grain_for(kind)
        found: set[str] = set()
        window_counts: list[Cells] = []
        for lo, hi in windows:
            cells, sources = _stored_counts(session, measure, dims, query.where, lo, hi, grain)
            window_counts.append(cells)
            found |= sources
        source = _source_label(found)
    else:
        counts, samples = _live_counts(
            session,
            settings,
            measure,
            dims,
            query.where,
            min(lo for lo, _ in windows),
            max(hi for _, hi in windows),
            principal,
        )
        window_counts = [[(d, *v, n) for (d, v), n in counts.items() if lo <= d <= hi] for lo, hi in windows]
        source = "live"

    period_keys: dict[Any, Any] = {}

    def fold(cells: Cells) -> dict[Any, dict[tuple[str, ...], int]]:
        """Counts by day (or by the first day of a whole week or month) summed into the table's
        periods: per period, the count of each combination of values."""
        out: dict[Any, dict[tuple[str, ...], int]] = {}
        for cell in cells:
            day = cell[0]
            if day not in period_keys:
                as_date = date.fromisoformat(day) if isinstance(day, str) else day
                period_keys[day] = periods.key_of(kind, as_date) if kind else None
            key = period_keys[day]
            bucket = out.get(key)
            if bucket is None:
                bucket = out[key] = {}
            values = cell[1:-1]
            bucket[values] = bucket.get(values, 0) + cell[-1]
        return out

    current = fold(window_counts[0])
    previous = fold(window_counts[1])
    base = fold(window_counts[2]) if query.since is not None else {}
    seen = {cell[1:-1] for cells in window_counts for cell in cells}
    combos = sorted(seen, key=lambda v: _order(dims, v)) if dims else [()]
    keys: list[Any] = list(periods.between(kind, start, end)) if kind else [None]
    totals = {key: sum(counts.values()) for key, counts in current.items()}
    window: dict[tuple[Any, tuple[str, ...]], list[int]] = defaultdict(list)
    if measure == "takedown":
        for (day, values), seconds in samples.items():
            if start <= day <= end:
                window[(periods.key_of(kind, day) if kind else None, values)].extend(seconds)
    labels = {values: {dim: shown(dim, v) for dim, v in zip(dims, values, strict=True)} for values in combos}
    rows: list[dict[str, Any]] = []
    nothing: dict[tuple[str, ...], int] = {}
    for key in keys:
        head = {kind: periods.label(kind, key)} if kind else {}
        # A period with no counterpart a year earlier (ISO week 53) or in the base year compares with nothing.
        earlier_key = periods.shift_years(kind, key, -1) if kind else None
        now = current.get(key, nothing)
        then = previous.get(earlier_key, nothing) if earlier_key is not None or not kind else nothing
        base_key = periods.shift_years(kind, key, query.since - key[0]) if query.since is not None and kind else None
        at_base = base.get(base_key, nothing) if base_key is not None else nothing
        total = totals.get(key, 0)
        for values in combos:
            count = now.get(values, 0)
            earlier = then.get(values, 0)
            row: dict[str, Any] = {
                **head,
                **labels[values],
                "count": count,
                "previous": earlier,
                "change_pct": _change(count, earlier),
                "share_pct": _pct(count, total),
            }
            if query.since is not None and kind:
                base_count = at_base.get(values, 0)
                row.update(base=base_count, since_pct=_change(count, base_count))
            if measure == "takedown":
                seconds = window.get((key, values), [])
                row.update(
                    median_hours=_hours(_percentile(seconds, 0.5)) if seconds else None,
                    p90_hours=_hours(_percentile(seconds, 0.9)) if seconds else None,
                    within_24h_pct=_pct(sum(s <= HOURS_24 for s in seconds), len(seconds)),
                    within_72h_pct=_pct(sum(s <= HOURS_72 for s in seconds), len(seconds)),
                )
            rows.append(row)
    return Result(columns=columns, rows=rows, source=source)


def to_csv(result: Result) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(
            [
                "" if row.get(c) is None else str(row[c]).lower() if isinstance(row[c], bool) else row[c]
                for c in result.columns
            ]
        )
    return buffer.getvalue()


def takedown_distribution(session: Session, settings: Settings, start: date, end: date) -> list[tuple[str, int]]:
    """How long removal took for the notices sent from ``start`` to ``end``: counts per band, and
    those not removed yet."""
    bands = [("within 24 h", HOURS_24), ("1-3 days", HOURS_72), ("3-7 days", 7 * DAY), ("1-2 weeks", 14 * DAY)]
    counts = Counter[str]()
    lo, hi = _utc_bounds(start, end, zone_of(settings))
    query = select(Notice.takedown_seconds, Notice.removed_at).where(
        Notice.sent_at.is_not(None), Notice.sent_at >= lo, Notice.sent_at < hi
    )
    for seconds, removed_at in session.execute(query):
        if removed_at is None or seconds is None:
            counts["not removed yet"] += 1
            continue
        counts[next((name for name, limit in bands if seconds <= limit), "over 2 weeks")] += 1
    order = [name for name, _ in bands] + ["over 2 weeks", "not removed yet"]
    return [(name, counts[name]) for name in order]


def suppress(
    rows: list[dict[str, Any]], threshold: int, fields: Sequence[str] = ("count", "previous", "base")
) -> list[dict[str, Any]]:
    """Rows safe to publish: a count below ``threshold`` (and not zero) becomes ``"<threshold"``, and
    the percentages that would reveal it are withheld."""
    out = []
    for row in rows:
        row = dict(row)
        hidden = False
        for name in fields:
            value = row.get(name)
            if isinstance(value, int) and 0 < value < threshold:
                row[name] = f"<{threshold}"
                hidden = True
        if hidden:
            for name in ("change_pct", "share_pct", "since_pct"):
                if name in row:
                    row[name] = None
        out.append(row)
    return out


def has_data(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(CubeCount).where(true())) != 0
