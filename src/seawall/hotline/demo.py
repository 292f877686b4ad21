"""Demo data of the hotline: one believable day of casework, so a newcomer sees the whole flow.

Every picture is a benign generated one standing in for reported material; every address is in a
reserved example domain or documentation range (nothing here can be fetched, nothing points at a
real site). The cases are left in every state a hotline day has: just reported, captured and
waiting for an analyst, assessed and waiting for QA, confirmed with a notice out to the host,
removed after a notice (with its takedown time), referred to a partner hotline, closed as not
abuse, and a copy that inherited an earlier assessment without reaching an analyst.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth.permissions import ROLE_SCOPES, Principal, Role, cli_principal
from seawall.config import Settings, get_settings
from seawall.db import utcnow
from seawall.evidence import service as evidence
from seawall.hotline import assessment, capture, intake, tracing
from seawall.hotline.models import Capture, Case, CaseItem, Item, Notice, Report
from seawall.media.synthetic import benign_image

ANALYST = Principal(kind="user", name="demo-analyst", scopes=ROLE_SCOPES[Role.analyst], role=Role.analyst.value)
SENIOR = Principal(
    kind="user", name="demo-senior", scopes=ROLE_SCOPES[Role.senior_analyst], role=Role.senior_analyst.value
)
# The abuse-contact directory the demo hosts resolve to (private AS numbers, example domains).
CONTACTS = """\
asn,domain,name,abuse_email,api_endpoint,language
64500,,Example Hosting Ltd,abuse@hosting.example,,en
64502,,Example Cloud plc,abuse@cloud.example,,en
"""
HOSTS = {
    "GB": ("192.0.2.10", 64500, "Example Hosting Ltd"),
    "GB2": ("192.0.2.77", 64502, "Example Cloud plc"),
    "NL": ("198.51.100.20", 64501, "Example Hosting B.V."),
    "US": ("203.0.113.30", 64503, "Example Hosting Inc."),
}
CSAM = {"outcome": "csam", "sex": "girl", "flags": ["self_generated"], "site_type": "image_host"}


@dataclass(frozen=True)
class DemoCase:
    url: str
    channel: str
    hours_ago: float  # when it was reported
    host: str | None  # a key of HOSTS; None: not captured yet
    pictures: tuple[int, ...]  # benign picture seeds shown on the page
    fate: str  # how far the day took it


DAY = [
    DemoCase("https://pics.example/gallery/2291", "public", 9.5, "GB", (11, 12), "removed"),
    DemoCase("https://share.example/f/8HqZ1", "partner", 7.0, "GB2", (13,), "notified"),
    DemoCase("https://board.example.nl/t/5512", "partner", 6.0, "NL", (14, 15), "referred"),
    DemoCase("https://images.example/a/77", "public", 4.5, "GB", (16,), "assessed"),
    DemoCase("https://cdn.example/u/1/9f2", "match", 3.0, "GB2", (17, 18), "captured"),
    DemoCase("https://landscapes.example/photo/3", "public", 2.5, "US", (19,), "not_csam"),
    DemoCase("https://mirror.example/copy/2291", "partner", 1.5, "GB", (11,), "inherited"),
    DemoCase("https://new.example/p/41", "public", 0.2, None, (), "open"),
]


def _picture(seed: int, copy: bool) -> bytes:
    """A benign generated picture; ``copy``: the same picture re-encoded (other bytes, same look)."""
    out = io.BytesIO()
    image = benign_image(5000 + seed, 480, 360)
    if copy:
        image.save(out, format="JPEG", quality=82)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def _capture(session: Session, settings: Settings, case: Case, plan: DemoCase, copy: bool) -> list[Item]:
    """What a capture records, made from the pictures directly (demo URLs cannot be fetched)."""
    assert plan.host is not None
    address, asn, as_name = HOSTS[plan.host]
    when = case.opened_at + timedelta(minutes=2)
    shot = Capture(case_id=case.id, state="done", started_at=when, finished_at=when + timedelta(seconds=3))
    shot.final_url, shot.http_status, shot.address, shot.fetched_at = case.url, 200, address, when
    shot.media_found = len(plan.pictures)
    session.add(shot)
    session.flush()
    items = []
    for n, seed in enumerate(plan.pictures):
        url = f"{case.url}/media/{n + 1}.{'jpg' if copy else 'png'}"
        media = capture.examine(settings, _picture(seed, copy), url, "img")
        item = session.scalar(select(Item).where(Item.sha256 == media.sha256))
        if item is None:
            hashed = media.hashed
            item = Item(
                sha256=media.sha256,
                md5=hashed["md5"],
                sha1=hashed["sha1"],
                pdq=hashed.get("pdq"),
                pdq_quality=hashed.get("pdq_quality"),
                media=media.media,
                mime=media.mime,
                size=len(media.data),
                state="to_grade",
                matches=[],
                first_seen_at=when,
            )
            session.add(item)
            session.flush()
            subject = f"item:{item.id}"
            item.evidence_id = evidence.put(
                session, settings, media.data, media_type=media.mime, purpose="capture", subject=subject
            )
            if media.thumbnail is not None:
                item.thumbnail_id = evidence.put(
                    session, settings, media.thumbnail, media_type="image/jpeg", purpose="thumbnail", subject=subject
                )
        session.add(CaseItem(case_id=case.id, item_id=item.id, capture_id=shot.id, media_url=url, found_as="img"))
        session.flush()
        assessment.inherit_if_known(session, settings, SENIOR, item)
        items.append(item)
    case.hosting_ip, case.hosting_asn, case.hosting_as_name = address, asn, as_name
    case.hosting_country = plan.host[:2]
    case.host_id = getattr(tracing.host_for(session, asn, None), "id", None)
    if case.state == "open":
        case.state = "captured"
    return items


def _assess(session: Session, settings: Settings, items: list[Item], plan: DemoCase, n: int) -> list[int]:
    """The analyst's assessments of the case's items; their ids."""
    made = []
    for i, item in enumerate(items):
        if item.state != "to_grade":
            continue
        if plan.fate == "not_csam":
            findings = assessment.AssessmentIn(outcome="not_csam", comment="a landscape photograph")
        else:
            age = ("11-13", "7-10", "14-15")[(n + i) % 3]
            findings = assessment.AssessmentIn(category="ABC"[(n + i) % 3], age_band=age, **CSAM)  # type: ignore[arg-type]
        made.append(assessment.assess_item(session, settings, ANALYST, item.id, item.version, findings).assessment.id)
    return made


def seed_demo(session: Session, console: Console) -> None:
    if session.scalar(select(Case.id).limit(1)) is not None:
        console.print("demo: the hotline has cases already")
        return
    settings = get_settings()
    tracing.import_contacts(
        session,
        cli_principal(),
        tracing.read_contacts(io.BytesIO(CONTACTS.encode())),
        source_name="demo contacts",
        digest="demo",
    )
    now = utcnow()
    for n, plan in enumerate(DAY):
        submitted = intake.submit(
            session,
            settings,
            cli_principal(),
            intake.ReportIn(channel=plan.channel, url=plan.url, content_type="images"),
            capture=False,
        )
        case, report = submitted.case, submitted.report
        case.opened_at = report.reported_at = now - timedelta(hours=plan.hours_ago)
        if plan.host is None:
            continue
        items = _capture(session, settings, case, plan, copy=plan.fate == "inherited")
        if plan.fate in ("captured", "inherited"):
            continue
        made = _assess(session, settings, items, plan, n)
        if plan.fate == "assessed":
            continue
        for assessment_id in made:
            assessment.qa(session, settings, SENIOR, assessment_id, "confirm", "")
        derived = assessment.assess_case(
            session,
            settings,
            ANALYST,
            case.reference,
            case.version,
            assessment.AssessmentIn(derive=True, url_level="exact"),
        )
        assessment.qa(session, settings, SENIOR, derived.assessment.id, "confirm", "")
        _notice_progress(session, case, plan, now)
    reports = session.scalar(select(Report.id).order_by(Report.id.desc()).limit(1))
    console.print(f"demo: a hotline day of {len(DAY)} cases ({reports} reports), from just reported to removed")


def _notice_progress(session: Session, case: Case, plan: DemoCase, now: object) -> None:
    """The notice's day: sent soon after confirmation; for the removed case, gone at a re-check."""
    notice = session.scalar(select(Notice).where(Notice.case_id == case.id))
    if notice is None:
        return
    sent = case.opened_at + timedelta(minutes=40)
    notice.state, notice.sent_at, notice.send_attempts = "sent", sent, 1
    notice.checks, notice.next_check_at = 1, sent + timedelta(hours=6)
    case.state = "notified"
    if plan.fate == "removed":
        removed = sent + timedelta(hours=5, minutes=12)
        notice.state, notice.removed_at, notice.checks, notice.next_check_at = "removed", removed, 2, None
        notice.takedown_seconds = int((removed - sent).total_seconds())
        case.state = "removed"
