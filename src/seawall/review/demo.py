"""Demo data of the review console: people to log in as, and a queue with something in every lane.

Runs after the hotline's demo (which leaves a captured case to grade and assessments awaiting QA).
Adds an urgent report whose pictures wait for an analyst, a match on a category A entry, a child's
self-report (hashes only, no media) and a partner's hash-only report. Every picture is a benign
generated one; every address is in a reserved example domain.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import User
from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.db import utcnow
from seawall.hotline import demo as hotline_demo
from seawall.hotline import intake
from seawall.hotline.models import Case

PEOPLE = (
    ("analyst", "analyst", "Demo analyst"),
    ("senior", "senior_analyst", "Demo senior analyst"),
    ("auditor", "auditor", "Demo auditor"),
)
# (url, channel, hours ago, urgent, picture seeds, description)
URL_REPORTS = (
    ("https://photos.example/album/5", "public", 0.8, True, (41, 42), "Reported as urgent by a member of the public."),
    ("https://uploads.example/i/7Kq", "partner", 1.2, False, (43,), "Found by a partner's moderators."),
)


def _hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[: n // 4]


def seed_demo(session: Session, console: Console) -> None:
    settings = get_settings()
    actor = cli_principal()
    made = []
    for username, role, name in PEOPLE:
        if session.scalar(select(User.id).where(User.username == username)) is None:
            _, password = auth_service.create_user(session, actor, username=username, role=role, display_name=name)
            made.append(username)
            console.print(f"demo: console login  [bold]{username}[/bold] / [bold]{password}[/bold] ({role})")
    if session.scalar(select(Case.id).where(Case.url == URL_REPORTS[0][0])) is not None:
        console.print("demo: the review queues have their examples already")
        return
    now = utcnow()
    for url, channel, hours, urgent, seeds, text in URL_REPORTS:
        submitted = intake.submit(
            session,
            settings,
            actor,
            intake.ReportIn(channel=channel, url=url, content_type="images", description=text, urgent=urgent),
            capture=False,
        )
        submitted.case.opened_at = submitted.report.reported_at = now - timedelta(hours=hours)
        plan = hotline_demo.DemoCase(url, channel, hours, "GB", seeds, "captured")
        hotline_demo._capture(session, settings, submitted.case, plan, copy=False)
    hashed = (
        intake.ReportIn(
            channel="self_report",
            age_band="14-15",
            description="A child asked for their own picture to be blocked everywhere.",
            signals=[("pdq", _hash("demo self-report picture", 256)), ("md5", _hash("demo self-report file", 128))],
        ),
        intake.ReportIn(
            channel="match",
            urgent=True,
            description="matched hotline-hashes (category A) at a partner platform",
            external_id="match:demo-1",
            signals=[("md5", _hash("demo match file", 128)), ("sha256", _hash("demo match file", 256))],
        ),
        intake.ReportIn(
            channel="partner",
            description="Hashes of uploads a partner's moderators removed.",
            signals=[("md5", _hash("demo partner upload", 128))],
        ),
    )
    for n, report in enumerate(hashed):
        submitted = intake.submit(session, settings, actor, report, capture=False)
        submitted.case.opened_at = submitted.report.reported_at = now - timedelta(minutes=20 + 15 * n)
    console.print(
        f"demo: review queues: {len(URL_REPORTS)} more captured URLs to grade, {len(hashed)} hash-only reports "
        "(a self-report, a category A match, a partner's)"
    )
