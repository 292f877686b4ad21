"""Background work of the auth domain: the nightly audit-chain verification."""

from __future__ import annotations

import logging

from seawall.auth import audit
from seawall.config import get_settings
from seawall.db import default_sessionmaker
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)


def verify_audit_chain_now() -> audit.ChainReport:
    with default_sessionmaker()() as session:
        report = audit.verify(session)
    if report.ok:
        log.info(report.describe(), extra={"audit_events": report.checked})
    else:
        log.error(report.describe(), extra={"audit_events": report.checked, "audit_seq": report.seq})
    return report


@huey.periodic_task(cron(get_settings().audit_verify_cron), name="audit.verify_chain")
def verify_audit_chain() -> None:
    verify_audit_chain_now()


@huey.task(name="audit.verify_chain_once")
def verify_audit_chain_once() -> dict[str, object]:
    """The same check on demand (``seawall audit verify --queue``); returns the report."""
    report = verify_audit_chain_now()
    return {"ok": report.ok, "checked": report.checked, "seq": report.seq, "problem": report.problem}
