"""What follows a confirmed case: the hash and URL list additions (assessment), then a notice to the
host when the content is hosted in the hotline's own country, else a referral to the partner
hotline of the hosting country."""

from __future__ import annotations

from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.hotline.models import Case


def after_confirmation(session: Session, settings: Settings, actor: Principal, case: Case) -> str:
    """Open the notice or referral a confirmed ``csam`` case needs (in the caller's transaction);
    returns what was done: "notice", "referral" or "none" (hosting country unknown: an analyst decides)."""
    from seawall.hotline import notices, referrals

    country = (case.hosting_country or "").upper()
    if not country:
        return "none"
    if country == settings.hotline_country.upper():
        notices.open_notice(session, settings, actor, case)
        return "notice"
    referrals.refer(session, settings, actor, case, country)
    return "referral"
