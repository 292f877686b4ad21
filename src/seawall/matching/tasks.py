"""Background work of the matching domain: webhook deliveries with back-off, and every minute the
deliveries a dead worker or process left behind."""

from __future__ import annotations

from seawall.config import get_settings
from seawall.db import default_sessionmaker
from seawall.matching import webhooks
from seawall.tasks import cron, huey


@huey.task(name="webhooks.deliver")
def deliver_webhook(delivery_id: int) -> str:
    return webhooks.attempt(default_sessionmaker(), get_settings(), delivery_id).state


@huey.periodic_task(cron("* * * * *"), name="webhooks.requeue_overdue")
def requeue_overdue_deliveries() -> int:
    with default_sessionmaker(writes=False)() as session:
        return len(webhooks.requeue_overdue(session))
