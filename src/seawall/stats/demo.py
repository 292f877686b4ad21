"""Demo statistics: five past years of benign casework figures as imported records (no media needed),
shaped like the published trends — the self-generated share rising, 11-13 the most common age band,
7-10 growing fastest — and notices with their takedown times, so the dashboard is alive on first run."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.config import get_settings
from seawall.hotline.models import Case, Notice
from seawall.stats import service

YEARS = 5
SEED = 2022


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _bands(progress: float) -> dict[str, float]:
    """Age-band weights in a year ``progress`` (0 first, 1 last) of the way along."""
    return {
        "0-2": 0.01,
        "3-6": 0.02 + 0.03 * progress,
        "7-10": 0.12 + 0.20 * progress,
        "11-13": 0.55,
        "14-15": 0.22 - 0.05 * progress,
        "16-17": 0.08 - 0.03 * progress,
    }


COUNTRIES = {"NL": 30, "US": 18, "RU": 8, "DE": 6, "BG": 5, "FR": 5, "SK": 4, "LV": 4, "HK": 4, "CA": 4, "RO": 3}
SITES = {"image_host": 45, "cyberlocker": 15, "forum": 10, "website": 10, "banner_site": 5, "social_network": 5}
CHANNELS = {"public": 60, "proactive": 22, "partner": 8, "self_report": 5, "referral": 5}


def _rows(years: Sequence[int], rng: random.Random) -> tuple[str, str]:
    pages = [",".join(service.PAGE_COLUMNS)]
    images = [",".join(service.IMAGE_COLUMNS)]
    for n, year in enumerate(years):
        progress = n / max(1, len(years) - 1)
        count = int(1200 * (1.25**n))
        start = datetime(year, 1, 1, tzinfo=UTC)
        for i in range(count):
            at = start + timedelta(seconds=rng.randrange(365 * 86400))
            reported = at - timedelta(minutes=rng.randrange(10, 72 * 60))
            band = _pick(rng, _bands(progress))
            self_made = rng.random() < (0.35 + 0.35 * progress) * (1.2 if band in ("7-10", "11-13") else 0.6)
            sex = _pick(rng, {"girl": 88 - 6 * progress, "boy": 6 + 6 * progress, "both": 4, "unidentified": 2})
            category = _pick(rng, {"A": 20, "B": 25, "C": 55})
            ident = f"demo-{year}-{i}"
            pages.append(
                ",".join(
                    [
                        ident,
                        reported.isoformat(),
                        at.isoformat(),
                        f"https://demo.example/{year}/{i}",
                        "csam",
                        category,
                        band,
                        sex,
                        str(self_made).lower(),
                        str(rng.random() < 0.08).lower(),
                        str(rng.random() < 0.01 + 0.04 * progress).lower(),
                        _pick(rng, SITES),
                        _pick(rng, COUNTRIES),
                        _pick(rng, CHANNELS),
                    ]
                )
            )
            for j in range(rng.randrange(1, 5)):
                images.append(
                    f"{ident}-{j},{at.isoformat()},{_pick(rng, {'A': 20, 'B': 25, 'C': 55})},{band},{sex},"
                    f"{str(self_made).lower()},https://demo.example/{year}/{i}/{j}.jpg"
                )
    return "\n".join(pages) + "\n", "\n".join(images) + "\n"


def _notices(session: Session, rng: random.Random, year: int) -> int:
    """Notices sent in ``year`` for demo cases, most removed within days."""
    if session.scalar(select(Case.id).where(Case.reference == "C-DEMO-00000")) is not None:
        return 0
    made = 0
    for i in range(240):
        sent = datetime(year, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(360 * 86400))
        country = _pick(rng, {"NL": 5, "DE": 2, "FR": 2, "GB": 3})
        case = Case(
            reference=f"C-DEMO-{i:05d}",
            url=f"https://demo.example/notice/{i}",
            state="removed",
            hosting_country=country,
            opened_at=sent - timedelta(hours=6),
        )
        session.add(case)
        session.flush()
        hours = rng.lognormvariate(3.0, 1.0)  # median about 20 h, a long tail
        removed = rng.random() < 0.96
        seconds = int(hours * 3600)
        session.add(
            Notice(
                case_id=case.id,
                channel="smtp",
                recipient="abuse@demo.example",
                document={"demo": True},
                state="removed" if removed else "sent",
                created_at=sent,
                sent_at=sent,
                removed_at=sent + timedelta(seconds=seconds) if removed else None,
                takedown_seconds=seconds if removed else None,
            )
        )
        made += 1
    return made


def seed_demo(session: Session, console: Console) -> None:
    settings = get_settings()
    rng = random.Random(SEED)
    last = datetime.now(UTC).year - 1
    years = list(range(last - YEARS + 1, last + 1))
    pages, images = _rows(years, rng)
    done_pages = service.import_records(session, settings, "urls", pages)
    done_images = service.import_records(session, settings, "images", images)
    notices = _notices(session, rng, last)
    console.print(
        f"demo statistics {years[0]}-{years[-1]}: {done_pages.added} pages and {done_images.added} images added "
        f"({done_pages.unchanged + done_images.unchanged} already there), {notices} notices; see /stats"
    )
