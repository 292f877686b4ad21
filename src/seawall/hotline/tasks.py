"""Background work of the hotline: capturing reported pages; delivering referrals."""

from __future__ import annotations

import logging

from seawall.config import get_settings
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)


@huey.task(name="hotline.capture")
def capture_case(case_id: int) -> None:
    log.info("capture of case %s queued (capture not built yet)", case_id)


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
