"""Background work of the evidence store: removing files no object accounts for."""

from __future__ import annotations

from huey import crontab

from seawall.tasks import huey


@huey.periodic_task(crontab(minute="23", hour="4"), name="evidence.sweep")
def sweep_evidence() -> int:
    """Remove evidence files that no live object accounts for (a crash between file and row)."""
    from seawall.config import get_settings
    from seawall.db import default_sessionmaker
    from seawall.evidence import service

    with default_sessionmaker(writes=False)() as session:
        return service.sweep(session, get_settings())
