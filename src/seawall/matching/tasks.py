"""Background work of the matching domain: webhook deliveries with back-off."""

from __future__ import annotations

from seawall.config import get_settings
from seawall.db import default_sessionmaker
from seawall.matching import webhooks
from seawall.tasks import huey


@huey.task(name="webhooks.deliver")
def deliver_webhook(delivery_id: int) -> str:
    return webhooks.attempt(default_sessionmaker(), get_settings(), delivery_id).state
