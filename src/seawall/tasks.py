"""The task queue (huey): SQLite file store by default, Redis at scale; ``seawall worker`` consumes it.

Domains declare their tasks in their own ``tasks.py`` on the ``huey`` instance below; the worker
imports every one of those modules (``TASK_MODULES``) so periodic tasks are registered.
"""

from __future__ import annotations

import importlib

from huey import Huey, RedisHuey, SqliteHuey, crontab

from seawall.config import Settings, get_settings

TASK_MODULES = [
    "seawall.auth.tasks",
    "seawall.lists.tasks",
    "seawall.lists.exchanges.tasks",
    "seawall.matching.tasks",
    "seawall.hotline.tasks",
    "seawall.evidence.tasks",
    "seawall.reporting.tasks",
]


def build_huey(settings: Settings) -> Huey:
    url = settings.queue_url
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("seawall", url=url, immediate=settings.queue_immediate)
    if url and not url.startswith("sqlite:///"):
        raise ValueError(f"unsupported SEAWALL_QUEUE_URL {url!r}: use redis://… or sqlite:///path")
    path = url.removeprefix("sqlite:///") if url else str(settings.ensure_home() / "queue.db")
    return SqliteHuey("seawall", filename=path, immediate=settings.queue_immediate)


def cron(expression: str) -> crontab:
    """A huey schedule from a five-field cron expression (minute hour day month weekday)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), got {expression!r}")
    minute, hour, day, month, day_of_week = fields
    return crontab(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week)


huey: Huey = build_huey(get_settings())


def load_task_modules() -> None:
    for name in TASK_MODULES:
        importlib.import_module(name)
