"""Capture: fetch a case's page with the SSRF-safe fetcher, find the media it shows, hash, match and
keep each item in the evidence store. (Filled in by the capture work; intake only schedules it.)"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session


def queue_capture(case_id: int) -> None:
    """Hand a case to the task queue (tests replace ``scheduler`` to run captures themselves)."""
    from seawall.hotline.tasks import capture_case

    capture_case(case_id)


scheduler: Callable[[int], None] = queue_capture


def schedule_after_commit(session: Session, case_id: int) -> None:
    """Capture the case once this transaction commits (before, a worker could not see it)."""
    event.listen(session, "after_commit", lambda _s: scheduler(case_id), once=True)
