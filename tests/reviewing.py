"""Review-console test helpers: captured cases whose benign pictures (or a short video) wait in the
queue, built as a capture records them (hashes, encrypted original, blurred thumbnail)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import utcnow
from seawall.evidence import service as evidence
from seawall.hotline import capture, intake
from seawall.hotline.models import Capture, Case, CaseItem, Item
from webhost import jpeg, mp4, png

PASSWORD = "review test password"


def captured_case(
    db: Session,
    settings: Settings,
    url: str,
    seeds: tuple[int, ...],
    *,
    channel: str = "public",
    urgent: bool = False,
    hours_ago: float = 1.0,
    video: bool = False,
    size: tuple[int, int] = (240, 180),
    copy: bool = False,
) -> tuple[Case, list[Item]]:
    """A reported URL, captured, its media waiting to be graded (the caller commits). ``copy``: the
    pictures re-encoded as JPEG (other bytes, the same look)."""
    submitted = intake.submit(
        db,
        settings,
        SYSTEM,
        intake.ReportIn(channel=channel, url=url, urgent=urgent, description="a test report"),
        capture=False,
    )
    case = submitted.case
    case.opened_at = submitted.report.reported_at = utcnow() - timedelta(hours=hours_ago)
    shot = Capture(case_id=case.id, state="done", final_url=url, http_status=200, address="192.0.2.10")
    shot.redirects = [url.replace("https://", "http://")]
    db.add(shot)
    db.flush()
    items = []
    for n, seed in enumerate(seeds):
        data = mp4(seed) if video else (jpeg(seed, *size, quality=85) if copy else png(seed, *size))
        media = capture.examine(settings, data, f"{url}/m{n}", "img")
        hashed = media.hashed
        item = Item(
            sha256=media.sha256,
            md5=hashed["md5"],
            sha1=hashed["sha1"],
            pdq=hashed.get("pdq"),
            pdq_quality=hashed.get("pdq_quality"),
            media=media.media,
            mime=media.mime,
            size=len(data),
            state="to_grade",
            matches=[],
        )
        db.add(item)
        db.flush()
        item.evidence_id = evidence.put(
            db, settings, data, media_type=media.mime, purpose="capture", subject=f"item:{item.id}"
        )
        assert media.thumbnail is not None
        item.thumbnail_id = evidence.put(
            db, settings, media.thumbnail, media_type="image/jpeg", purpose="thumbnail", subject=f"item:{item.id}"
        )
        db.add(CaseItem(case_id=case.id, item_id=item.id, capture_id=shot.id, media_url=f"{url}/m{n}"))
        items.append(item)
    case.state = "captured"
    case.hosting_ip, case.hosting_asn, case.hosting_country = "192.0.2.10", 64500, "GB"
    db.flush()
    return case, items
