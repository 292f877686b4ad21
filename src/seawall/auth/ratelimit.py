"""Fixed-window rate limits per client for public pages, counted in the database so that every
server process shares them. Clients are known by a keyed hash of their address: the address
itself is never stored (a reporter's privacy)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth.models import RateLimitWindow
from seawall.config import Settings
from seawall.db import transaction, utcnow


def client_key(settings: Settings, action: str, client: str) -> str:
    secret = settings.effective_secret_key().encode()
    return hmac.new(secret, f"{action}\x00{client}".encode(), hashlib.sha256).hexdigest()


def allow(
    factory: sessionmaker[Session], settings: Settings, action: str, client: str, *, limit: int, window_seconds: int
) -> bool:
    """Count one ``action`` by ``client`` in the current window; False once over ``limit``."""
    if limit <= 0:
        return True
    now = utcnow()
    start = now.replace(microsecond=0) - timedelta(seconds=int(now.timestamp()) % window_seconds)
    key = client_key(settings, action, client)
    with transaction(factory) as session:
        insert_fn = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert_fn(RateLimitWindow)
            .values(key=key, window_start=start, count=0)
            .on_conflict_do_nothing(index_elements=["key", "window_start"])
        )
        session.execute(
            update(RateLimitWindow)
            .where(RateLimitWindow.key == key, RateLimitWindow.window_start == start)
            .values(count=RateLimitWindow.count + 1)
        )
        count = session.scalar(
            select(RateLimitWindow.count).where(RateLimitWindow.key == key, RateLimitWindow.window_start == start)
        )
        # Old windows are of no use: a few rows go each time, so the table stays small.
        session.execute(delete(RateLimitWindow).where(RateLimitWindow.window_start < now - timedelta(days=1)))
    return int(count or 0) <= limit
