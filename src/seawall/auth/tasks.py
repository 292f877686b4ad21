"""Background work of the auth domain: the nightly audit-chain verification and the signed checkpoints."""

from __future__ import annotations

import json
import logging
from typing import Any

from seawall.auth import audit
from seawall.config import get_settings
from seawall.db import default_sessionmaker
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)


def verify_audit_chain_now() -> dict[str, Any]:
    try:
        with default_sessionmaker()() as session:
            report = audit.verify(session)
    except audit.AuditKeyError as exc:
        log.error("audit chain not verified: %s", exc)
        return {"ok": False, "checked": 0, "seq": None, "problem": None, "error": str(exc)}
    if report.ok:
        log.info(report.describe(), extra={"audit_events": report.checked})
    else:
        log.error(report.describe(), extra={"audit_events": report.checked, "audit_seq": report.seq})
    return {"ok": report.ok, "checked": report.checked, "seq": report.seq, "problem": report.problem}


def write_checkpoint_now() -> dict[str, Any]:
    """Sign the head into the checkpoint file and the log (the log line carries the same fields, so
    a copy shipped elsewhere can be checked with the public key alone)."""
    try:
        with default_sessionmaker()() as session:
            outcome = audit.write_checkpoint(session)
    except audit.AuditKeyError as exc:
        log.error("audit checkpoint not written: %s", exc)
        return {"written": False, "ok": False, "message": str(exc)}
    if outcome.checkpoint is not None:
        # The line itself in the message too, so plain-text logs carry it as well as JSON ones.
        line = json.dumps(outcome.checkpoint.as_dict(), sort_keys=True)
        log.info("audit checkpoint %s", line, extra={"audit_checkpoint": outcome.checkpoint.as_dict()})
    elif not outcome.report.ok:
        log.error(outcome.message, extra={"audit_seq": outcome.report.seq})
    else:
        log.info(outcome.message)
    return {"written": outcome.checkpoint is not None, "ok": outcome.report.ok, "message": outcome.message}


@huey.periodic_task(cron(get_settings().audit_verify_cron), name="audit.verify_chain")
def verify_audit_chain() -> None:
    verify_audit_chain_now()


@huey.task(name="audit.verify_chain_once")
def verify_audit_chain_once() -> dict[str, Any]:
    """The same check on demand (``seawall audit verify --queue``); returns the report."""
    return verify_audit_chain_now()


@huey.periodic_task(cron(get_settings().audit_checkpoint_cron), name="audit.checkpoint")
def write_checkpoint() -> None:
    write_checkpoint_now()


@huey.task(name="audit.checkpoint_once")
def write_checkpoint_once() -> dict[str, Any]:
    """A checkpoint on demand, by the worker; returns what happened."""
    return write_checkpoint_now()
