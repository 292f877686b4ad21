"""Background work of authority reporting: submissions (with back-off), the ones a lost task left
behind, and the daily evidence purge."""

from __future__ import annotations

import logging

from seawall.config import get_settings
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)


@huey.task(name="reporting.submit")
def submit_authority_report(report_id: int) -> str:
    from seawall.db import default_sessionmaker
    from seawall.reporting import service

    return service.advance(default_sessionmaker(), get_settings(), report_id).state


@huey.periodic_task(cron("*/5 * * * *"), name="reporting.requeue_overdue")
def requeue_overdue_submissions() -> int:
    from seawall.db import default_sessionmaker
    from seawall.reporting import service

    with default_sessionmaker(writes=False)() as session:
        return len(service.requeue_overdue(session))


@huey.periodic_task(cron(get_settings().evidence_purge_cron), name="reporting.purge_evidence")
def purge_evidence() -> int:
    from seawall.db import default_sessionmaker
    from seawall.reporting import retention

    result = retention.purge(default_sessionmaker(), get_settings())
    log.info("evidence purge: %d object(s) destroyed, %d kept under a legal hold", result.purged, result.held)
    return result.purged
