"""Background work of the lists domain: entries disabled until a moment come back when it passes;
deleted lists finish retracting their entries."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from seawall.auth.permissions import SYSTEM
from seawall.db import default_sessionmaker, transaction
from seawall.lists import service
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)


def reenable_expired(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as session:
        count = service.reenable_expired(session, SYSTEM)
    if count:
        log.info("re-enabled %d entries whose disabled-until time has passed", count)
    return count


@huey.periodic_task(cron("* * * * *"), name="lists.reenable_expired")
def reenable_expired_entries() -> int:
    return reenable_expired(default_sessionmaker())


@huey.periodic_task(cron("* * * * *"), name="lists.retract_deleted")
def retract_deleted_lists() -> int:
    """Finish the retractions of deleted lists that a crash or a restart interrupted."""
    count = service.retract_deleted(default_sessionmaker(), SYSTEM)
    if count:
        log.info("retracted %d entries of deleted lists", count)
    return count
