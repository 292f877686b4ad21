"""Notice and takedown: XARF notices to hosts, re-checks until the content is gone, escalation.
(Filled in by the notice work.)"""

from __future__ import annotations

from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline.models import Case


def open_notice(session: Session, settings: Settings, actor: Principal, case: Case) -> None:
    """Create the notice for a confirmed case hosted in the hotline's country (sent by the worker)."""
    raise NotImplementedError("notices are not built yet")
