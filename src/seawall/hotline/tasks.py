"""Background work of the hotline: capturing reported pages; delivering referrals; sending notices
and re-checking them until the content is gone."""

from __future__ import annotations

import logging
from datetime import timedelta

from huey import crontab
from sqlalchemy import exists, select

from seawall.config import get_settings
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)
# A case this long without any capture lost its queued task (a queue write that failed, say).
MISSED_AFTER = timedelta(minutes=10)


@huey.task(name="hotline.capture", retries=2, retry_delay=30)
def capture_case(case_id: int) -> None:
    from seawall.config import get_settings
    from seawall.db import default_sessionmaker
    from seawall.hotline.capture import CaptureError, run_capture

    try:
        result = run_capture(default_sessionmaker(), get_settings(), case_id)
    except CaptureError as exc:
        log.warning("case %s not captured: %s", case_id, exc)
        return
    log.info(
        "case %s captured: %s, %d item(s), %d new, %d inherited, %d skipped",
        case_id,
        result.state,
        len(result.items),
        len(result.new_items),
        len(result.inherited),
        len(result.skipped),
    )


@huey.periodic_task(crontab(minute="*/10"), name="hotline.capture_missed")
def capture_missed() -> list[int]:
    """Queue again the captures a stopped worker lost: open URL cases with no initial capture that
    finished (or failed) or is still within its time, i.e. never captured, or whose capture has been
    "running" far longer than a capture may take (its worker died). Failed captures are not retried
    here: they are recorded with their reason, and `seawall reports capture` runs one again."""
    from seawall.config import get_settings
    from seawall.db import default_sessionmaker, utcnow
    from seawall.hotline.capture import LEASE_MARGIN_SECONDS
    from seawall.hotline.models import Capture, Case

    settings = get_settings()
    now = utcnow()
    stale = now - timedelta(seconds=settings.capture_timeout_seconds + LEASE_MARGIN_SECONDS)
    settled = exists().where(
        Capture.case_id == Case.id,
        Capture.purpose == "initial",
        (Capture.state != "running") | (Capture.started_at > stale),
    )
    with default_sessionmaker(writes=False)() as session:
        lost = list(
            session.scalars(
                select(Case.id)
                .where(Case.kind == "url", Case.state == "open", Case.opened_at < now - MISSED_AFTER)
                .where(~settled)
                .order_by(Case.priority.desc(), Case.id)
                .limit(500)
            )
        )
    for case_id in lost:
        capture_case(case_id)
    if lost:
        log.warning("queued %d capture(s) again that a stopped worker had lost", len(lost))
    return lost


# ---- referrals: deliveries to partner hotlines (documents, status updates), and the sweep --------


@huey.task(name="hotline.referrals.deliver")
def deliver_referral(referral_id: int) -> str:
    from seawall.db import default_sessionmaker
    from seawall.hotline import referrals

    return referrals.deliver(default_sessionmaker(), get_settings(), referral_id).state


@huey.periodic_task(cron(get_settings().referral_sweep_cron), name="hotline.referrals.sweep")
def sweep_referrals() -> None:
    """Route referrals waiting for a partner, send referred cases' progress, re-queue due deliveries."""
    from seawall.db import default_sessionmaker
    from seawall.hotline import referrals

    report = referrals.sweep(default_sessionmaker(), get_settings())
    if report.routed or report.progressed or report.queued:
        log.info(
            "referrals: %s routed, %s progressed, %s deliveries queued",
            report.routed,
            report.progressed,
            len(report.queued),
        )


# ---- notices: sending to hosts, re-checks until removed, and the sweep that loses nothing -------


@huey.task(name="hotline.notices.send")
def send_notice(notice_id: int) -> str:
    from seawall.db import default_sessionmaker
    from seawall.hotline import notices

    return notices.send(default_sessionmaker(), get_settings(), notice_id).state


@huey.task(name="hotline.notices.recheck")
def recheck_notice(notice_id: int) -> bool:
    from seawall.db import default_sessionmaker
    from seawall.hotline import notices

    return notices.recheck(default_sessionmaker(), get_settings(), notice_id).gone


@huey.periodic_task(cron(get_settings().notice_sweep_cron), name="hotline.notices.sweep")
def sweep_notices() -> None:
    """Address notices waiting for an abuse contact; queue every send and re-check that is due."""
    from seawall.db import default_sessionmaker
    from seawall.hotline import notices

    report = notices.sweep(default_sessionmaker(), get_settings())
    if report.routed or report.sends or report.checks:
        log.info(
            "notices: %s routed, %s sends and %s re-checks queued", report.routed, len(report.sends), len(report.checks)
        )
