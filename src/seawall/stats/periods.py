"""Calendar periods in the hotline's time zone: which period a local day belongs to, its label, the
same period a year earlier, and every period between two days (so empty ones show as zero)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("day", "week", "month", "quarter", "half_year", "year")
# Periods made of whole months: the month cube answers them.
MONTHLY = ("month", "quarter", "half_year", "year")

Key = tuple[int, int, int]  # (year, index within the year, day of month for "day" periods)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The hotline's calendar day of a UTC moment (a page assessed at 23:30 UTC on 30 June is on
    1 July in Europe/London)."""
    return moment.astimezone(zone).date()


def key_of(kind: str, day: date) -> Key:
    if kind == "day":
        return (day.year, day.month, day.day)
    if kind == "week":
        iso = day.isocalendar()
        return (iso.year, iso.week, 0)
    if kind == "month":
        return (day.year, day.month, 0)
    if kind == "quarter":
        return (day.year, (day.month - 1) // 3 + 1, 0)
    if kind == "half_year":
        return (day.year, 1 if day.month <= 6 else 2, 0)
    if kind == "year":
        return (day.year, 0, 0)
    raise ValueError(f"period is one of {', '.join(PERIODS)} (got {kind!r})")


def label(kind: str, key: Key) -> str:
    year, index, dom = key
    return {
        "day": lambda: f"{year:04d}-{index:02d}-{dom:02d}",
        "week": lambda: f"{year:04d}-W{index:02d}",
        "month": lambda: f"{year:04d}-{index:02d}",
        "quarter": lambda: f"{year:04d}-Q{index}",
        "half_year": lambda: f"{year:04d}-H{index}",
        "year": lambda: f"{year:04d}",
    }[kind]()


def _weeks_in(iso_year: int) -> int:
    return date(iso_year, 12, 28).isocalendar().week


def shift_years(kind: str, key: Key, years: int) -> Key | None:
    """The same period ``years`` later (negative: earlier); None when that year has no such period
    (ISO week 53). 29 February compares with 28 February."""
    year, index, dom = key
    target = year + years
    if kind == "week" and index > _weeks_in(target):
        return None
    if kind == "day" and index == 2 and dom == 29:
        try:
            date(target, 2, 29)
        except ValueError:
            return (target, 2, 28)
    return (target, index, dom)


def start_of(kind: str, day: date) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    if kind == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if kind == "half_year":
        return date(day.year, 1 if day.month <= 6 else 7, 1)
    return date(day.year, 1, 1)


def end_of(kind: str, day: date) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return start_of("week", day) + timedelta(days=6)
    months = {"month": 1, "quarter": 3, "half_year": 6, "year": 12}[kind]
    first = start_of(kind, day)
    month = first.month - 1 + months
    return date(first.year + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def between(kind: str, start: date, end: date) -> Iterator[Key]:
    """Every period that has a day from ``start`` to ``end`` (inclusive), in order."""
    day = start_of(kind, start)
    while day <= end:
        yield key_of(kind, max(day, start))
        day = end_of(kind, day) + timedelta(days=1)


def year_earlier(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)
