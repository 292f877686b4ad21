"""Background work of exchanges: every minute, queue a sync of each exchange that is due."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from seawall.config import get_settings
from seawall.db import default_sessionmaker
from seawall.lists.exchanges import service
from seawall.tasks import cron, huey

log = logging.getLogger(__name__)


def enqueue_due(factory: sessionmaker[Session], enqueue: Callable[[str], object]) -> list[str]:
    """Queue a sync of every due exchange; returns their names."""
    with factory() as session:
        names = [e.name for e in service.due_exchanges(session)]
    for name in names:
        enqueue(name)
    return names


def sync_now(factory: sessionmaker[Session], name: str) -> dict[str, object]:
    try:
        report = service.run_sync(factory, get_settings(), name)
    except service.ExchangeBusy as exc:  # another worker got there first: nothing to do
        log.info("%s", exc)
        return {"exchange": name, "ok": True, "busy": True}
    return report.as_dict()


@huey.task(name="exchanges.sync")
def sync_exchange(name: str) -> dict[str, object]:
    return sync_now(default_sessionmaker(), name)


@huey.periodic_task(cron("* * * * *"), name="exchanges.enqueue_due")
def enqueue_due_exchanges() -> None:
    enqueue_due(default_sessionmaker(), sync_exchange)
