"""Referrals: a confirmed case hosted elsewhere goes to the partner hotline of that country as a
signed document; a second Seawall receives it as a report. (Filled in by the referral work.)"""

from __future__ import annotations

from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline.models import Case


def refer(session: Session, settings: Settings, actor: Principal, case: Case, country: str) -> None:
    """Create the referral of a confirmed case to the partner hotline of ``country`` (sent by the worker)."""
    raise NotImplementedError("referrals are not built yet")
