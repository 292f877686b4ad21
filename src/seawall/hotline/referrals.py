"""Referrals between hotlines: a confirmed case hosted in another country goes to the partner hotline
of that country as a signed document; a second Seawall receives it as a report in its own queue and
sends back what became of it.

**Out.** ``refer`` builds the document (the URL, the case reference, hosting and capture facts, each
item's hashes, the classification; never media), signs it with the instance's key
(``hotline.signing``) and records a ``Referral`` (out, pending) in the caller's transaction; the case
becomes ``referred``. Once that commits, the worker POSTs it to the partner's ``/v1/referrals`` through
the SSRF-safe client, with retries and back-off; the partner's answer (its report reference) makes it
``received``. With no partner for the country yet, the referral waits (unsigned) until one is added.

**In.** ``receive`` checks that the calling API key is a partner's, that the signature is that
partner's and the document is addressed to us, refuses a uid it has seen from that partner (replay),
and files a report with channel ``referral`` through ``intake.submit``.

**Status.** The receiving hotline learns of its own case's progress by comparison, not by hooks:
``sweep`` (every minute in the worker) maps each incoming referral's case state to a status
(received → assessed → actioned → removed, or closed) and, when it has moved on, sends it to the
referring hotline's ``/v1/referrals/{uid}/status``, signed the same way. Whoever changes a case's state
(assessment, notices, an analyst), the next sweep sees it; nothing is lost to a crash, because the
state to send is in the database until the other side has acknowledged it. A status only moves
forward, so a replayed or late update changes nothing.

**Delivery** is one mechanism for both directions: a row with something to send has
``next_attempt_at`` set. An attempt claims the row (compare-and-set on the attempt count, which also
moves ``next_attempt_at`` past the request's timeout), POSTs with no transaction open, then records
the outcome only if the claim is still its own. ``sweep`` re-queues whatever is due, so a crashed
worker or a lost queue entry only delays a delivery.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import and_, event, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.fetch import AddressRules, FetchError, safe_client
from seawall.hotline import intake, partners, signing
from seawall.hotline.models import (
    SITE_TYPES,
    Assessment,
    Capture,
    Case,
    CaseItem,
    Item,
    Notice,
    PartnerHotline,
    Referral,
    Report,
)
from seawall.hotline.schemas import (
    CaptureFacts,
    CaseFacts,
    Classification,
    Hosting,
    ItemFacts,
    Party,
    ReferralDocument,
    StatusDocument,
    Timeline,
)
from seawall.redact import redact_text

log = logging.getLogger(__name__)

OUT, IN = "out", "in"
HOTLINE, LAW_ENFORCEMENT = "hotline", "law_enforcement"
DOCUMENT_TYPE, STATUS_TYPE = "seawall.referral", "seawall.referral_status"
# What the partner's case has come to, in order: a referral's state only moves forward.
STATUS_RANK = {"pending": 0, "failed": 0, "received": 1, "assessed": 2, "actioned": 3, "removed": 4, "closed": 4}
FINAL_STATES = ("removed", "closed")
# The status an incoming referral's case state shows the referring hotline ("closed" is worked out apart).
CASE_STATUS = {
    "open": "received",
    "captured": "received",
    "assessed": "assessed",
    "confirmed": "assessed",
    "notified": "actioned",
    "referred": "actioned",
    "removed": "removed",
}
# Case states a referral moves on to "referred" (a case further on keeps its state).
_BEFORE_REFERRED = ("open", "captured", "assessed", "confirmed")
#: An attempt in flight keeps others off the row this long past the partner's timeout.
LEASE_MARGIN_SECONDS = 60.0
#: A retry may start this much before its time (workers' clocks differ a little).
CLOCK_SLACK_SECONDS = 5.0
_MAX_ITEMS = 1000


class ReferralError(ValueError):
    """A referral that cannot be made as asked; the message says why."""


class ReferralRefused(Exception):
    """An incoming document refused: ``status`` is the HTTP answer, ``message`` says why."""

    def __init__(self, status: int, message: str, reference: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reference = status, message, reference


# ---- what a referral says ----------------------------------------------------------------------


def mapped_schemes(assessment: Assessment) -> dict[str, Any]:
    """The assessment in the schemes partners speak (industry A1/A2/B1/B2, INTERPOL baseline/national,
    Project VIC; docs/classification.md), keyed by scheme; a scheme with no answer is left out."""
    from seawall.hotline import classification

    mapped = classification.classify(
        assessment.outcome, assessment.category, assessment.age_band, assessment.flags or []
    ).as_dict()
    return {scheme: value for scheme, value in mapped.items() if value is not None}


def _iso(moment: datetime | None) -> datetime | None:
    # Whole seconds: what a partner or an investigator needs, and the same on every backend.
    return moment.astimezone(UTC).replace(microsecond=0) if moment is not None else None


def classification_of(assessment: Assessment | None) -> Classification | None:
    if assessment is None:
        return None
    return Classification(
        outcome=assessment.outcome,
        category=assessment.category,
        age_band=assessment.age_band,
        sex=assessment.sex,
        children=assessment.children,
        flags=list(assessment.flags or []),
        site_type=assessment.site_type,
        state=assessment.state,
        assessed_at=_iso(assessment.assessed_at),
        confirmed_at=_iso(assessment.decided_at) if assessment.state == "confirmed" else None,
        schemes=mapped_schemes(assessment),
    )


def case_assessment(session: Session, case: Case) -> Assessment | None:
    """The case's assessment that stands: the latest confirmed one, else the latest not yet decided."""
    for states in (("confirmed",), ("submitted",)):
        found = session.scalar(
            select(Assessment)
            .where(Assessment.subject == "case", Assessment.case_id == case.id, Assessment.state.in_(states))
            .order_by(Assessment.id.desc())
            .limit(1)
        )
        if found is not None:
            return found
    return None


def case_items(session: Session, case: Case) -> list[tuple[CaseItem, Item, Assessment | None]]:
    """The items the case's page showed, each with the assessment that applies to it."""
    rows = session.execute(
        select(CaseItem, Item)
        .join(Item, Item.id == CaseItem.item_id)
        .where(CaseItem.case_id == case.id)
        .order_by(CaseItem.id)
    ).all()
    ids = {item.assessment_id for _, item in rows if item.assessment_id is not None}
    assessments = {a.id: a for a in session.scalars(select(Assessment).where(Assessment.id.in_(ids)))} if ids else {}
    return [(ci, item, assessments.get(item.assessment_id or 0)) for ci, item in rows]


def last_capture(session: Session, case: Case) -> Capture | None:
    return session.scalar(
        select(Capture)
        .where(Capture.case_id == case.id, Capture.state.in_(("done", "gone")))
        .order_by(Capture.id.desc())
        .limit(1)
    )


def _party(settings: Settings) -> Party:
    if not re.fullmatch(r"[A-Za-z]{2}", settings.hotline_country):
        raise ReferralError(
            f"SEAWALL_HOTLINE_COUNTRY is an ISO 3166 alpha-2 code such as GB, not {settings.hotline_country!r}"
        )
    return Party(
        name=settings.hotline_name, country=settings.hotline_country.upper(), key=signing.own_fingerprint(settings)
    )


def _partner_party(partner: PartnerHotline) -> Party:
    return Party(
        name=partner.name,
        country=partner.country,
        key=signing.fingerprint(partner.public_key) if partner.public_key else None,
    )


def build_document(
    session: Session, settings: Settings, case: Case, uid: str, country: str, now: datetime
) -> dict[str, Any]:
    """The referral document of a case, its recipient named by country only (``_route`` names the partner)."""
    assessment = case_assessment(session, case)
    items = [
        ItemFacts(
            md5=item.md5,
            sha1=item.sha1,
            sha256=item.sha256,
            pdq=item.pdq,
            media=item.media,
            mime=item.mime,
            size=item.size,
            classification=classification_of(applied),
        )
        for _, item, applied in case_items(session, case)
        # Content assessed as not abuse is no partner's business.
        if applied is None or applied.outcome != "not_csam"
    ][:_MAX_ITEMS]
    capture = last_capture(session, case)
    first_report = session.scalar(
        select(Report.reported_at).where(Report.case_id == case.id).order_by(Report.id).limit(1)
    )
    document = ReferralDocument(
        type=DOCUMENT_TYPE,
        version=1,
        uid=uid,
        created_at=_iso(now) or now,
        sender=_party(settings),
        recipient=Party(country=country),
        url=case.url,
        case=CaseFacts(reference=case.reference, opened_at=_iso(case.opened_at)),
        hosting=Hosting(
            address=case.hosting_ip,
            asn=case.hosting_asn,
            as_name=case.hosting_as_name,
            country=case.hosting_country,
            behind_cdn=case.hosting_behind_cdn,
        ),
        capture=CaptureFacts(
            at=_iso(capture.finished_at),
            final_url=capture.final_url,
            http_status=capture.http_status,
            address=capture.address,
        )
        if capture is not None
        else None,
        classification=classification_of(assessment),
        items=items,
        timeline=Timeline(
            reported_at=_iso(first_report),
            captured_at=_iso(capture.finished_at) if capture is not None else None,
            assessed_at=_iso(assessment.assessed_at) if assessment is not None else None,
            confirmed_at=_iso(assessment.decided_at)
            if assessment is not None and assessment.state == "confirmed"
            else None,
            referred_at=_iso(now),
        ),
    )
    return document.model_dump(mode="json")


# ---- out: refer a case --------------------------------------------------------------------------


def refer(session: Session, settings: Settings, actor: Principal, case: Case, country: str) -> Referral:
    """Refer a confirmed case to the partner hotline of ``country`` (in the caller's transaction; the
    worker sends it once this commits). Referring the same case to the same country again returns the
    referral there is (one that failed for good is tried afresh)."""
    try:
        country = partners.check_country(country)
    except partners.PartnerError as exc:
        raise ReferralError(str(exc)) from None
    if not case.url:
        raise ReferralError(f"case {case.reference} has no URL to refer")
    now = utcnow()
    for existing in session.scalars(
        select(Referral).where(Referral.case_id == case.id, Referral.direction == OUT, Referral.kind == HOTLINE)
    ):
        if existing.document.get("recipient", {}).get("country") == country:
            if existing.state == "failed":
                existing.state, existing.attempts, existing.next_attempt_at = "pending", 0, now
                existing.last_error, existing.updated_at = "", now
                audit.record(session, actor, "referral.retry", "referral", existing.id, {"uid": existing.uid})
                if existing.partner_id is not None:
                    after_commit(session, existing.id)
            return existing
    uid = str(uuid.uuid4())
    referral = Referral(
        uid=uid,
        direction=OUT,
        kind=HOTLINE,
        case_id=case.id,
        document=build_document(session, settings, case, uid, country, now),
        state="pending",
        created_at=now,
        updated_at=now,
    )
    session.add(referral)
    session.flush()
    routed = _route(session, settings, referral, partners.partner_for_country(session, country), now)
    if case.state in _BEFORE_REFERRED:
        case.state, case.updated_at, case.version = "referred", now, case.version + 1
    audit.record(
        session,
        actor,
        "referral.create",
        "referral",
        referral.id,
        {"uid": uid, "case": case.reference, "country": country, "partner": referral.document["recipient"]["name"]},
    )
    if routed:
        after_commit(session, referral.id)
    return referral


def _route(
    session: Session, settings: Settings, referral: Referral, partner: PartnerHotline | None, now: datetime
) -> bool:
    """Address the referral to ``partner`` and sign it; False (and why, in ``last_error``) when it cannot go yet."""
    country = referral.document["recipient"]["country"]
    if partner is None:
        referral.last_error = (
            f"no partner hotline for {country} yet: add one (seawall partners add NAME --country {country} …)"
        )
        return False
    missing = [
        what
        for what, present in (
            ("endpoint", partner.endpoint),
            ("public key", partner.public_key),
            ("API key", partner.api_key_sealed),
        )
        if not present
    ]
    if missing:
        referral.last_error = (
            f"partner {partner.name} has no {' or '.join(missing)} yet (seawall partners update {partner.name} …)"
        )
        return False
    document = dict(referral.document)
    document["recipient"] = _partner_party(partner).model_dump(mode="json")
    referral.document = document
    referral.signature = signing.sign(settings, document)
    referral.partner_id, referral.next_attempt_at, referral.last_error, referral.updated_at = partner.id, now, "", now
    return True


# ---- in: a partner's referral becomes a report ---------------------------------------------------


@dataclass(frozen=True)
class Received:
    referral: Referral
    report: Report


def _calling_partner(session: Session, principal: Principal) -> PartnerHotline:
    partner = partners.partner_for_principal(session, principal)
    if partner is None:
        raise ReferralRefused(422, "unknown sender: this credential is no partner hotline's key here")
    if not partner.enabled:
        raise ReferralRefused(422, f"partner hotline {partner.name!r} is disabled here")
    if not partner.public_key:
        raise ReferralRefused(
            422, f"no public key is registered here for {partner.name!r}: nothing it signs can be checked"
        )
    return partner


def _check_signed(partner: PartnerHotline, document: dict[str, Any], signature: str) -> None:
    try:
        signing.verify(partner.public_key or "", document, signature)
    except signing.SignatureError as exc:
        raise ReferralRefused(422, f"{exc} (checked against the key registered for {partner.name})") from None


def _check_parties(settings: Settings, partner: PartnerHotline, sender: Party, recipient: Party) -> None:
    if recipient.key != signing.own_fingerprint(settings):
        raise ReferralRefused(422, "the document is addressed to another hotline (its recipient key is not ours)")
    if sender.key != signing.fingerprint(partner.public_key or ""):
        raise ReferralRefused(422, f"the document names a sender other than {partner.name!r}")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", ""))


def receive(
    session: Session, settings: Settings, principal: Principal, document: dict[str, Any], signature: str
) -> Received:
    """Take a partner's signed referral in as a report (the caller commits); ReferralRefused otherwise."""
    partner = _calling_partner(session, principal)
    _check_signed(partner, document, signature)
    try:
        doc = ReferralDocument.model_validate(document)
    except ValidationError as exc:
        raise ReferralRefused(422, f"not a referral document: {_first_error(exc)}") from None
    _check_parties(settings, partner, doc.sender, doc.recipient)
    _refuse_replay(session, partner, doc.uid, document)
    now = utcnow()
    referral = Referral(
        uid=str(uuid.uuid4()),
        direction=IN,
        kind=HOTLINE,
        partner_id=partner.id,
        remote_id=doc.uid,
        document=document,
        signature=signature,
        state="received",
        reported_state="received",  # the answer to this request says so
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(referral)
            session.flush()
    except IntegrityError:  # the same referral, committed by a concurrent request a moment ago
        _refuse_replay(session, partner, doc.uid, document)
        raise
    try:
        done = intake.submit(
            session, settings, principal, _report_of(partner, doc, referral), partner=reporter_of(partner)
        )
    except intake.IntakeError as exc:
        raise ReferralRefused(422, f"the referral cannot be taken as a report: {exc}") from None
    referral.case_id = done.case.id
    audit.record(
        session,
        principal,
        "referral.receive",
        "referral",
        referral.id,
        {"uid": referral.uid, "remote_uid": doc.uid, "partner": partner.name, "report": done.report.reference},
    )
    return Received(referral, done.report)


def reporter_of(partner: PartnerHotline) -> str:
    """How the reports a partner hotline refers to us record who filed them."""
    return f"hotline:{partner.name}"[:120]


def _refuse_replay(session: Session, partner: PartnerHotline, remote_uid: str, document: dict[str, Any]) -> None:
    seen = session.scalar(
        select(Referral).where(
            Referral.partner_id == partner.id, Referral.direction == IN, Referral.remote_id == remote_uid
        )
    )
    if seen is None:
        return
    # The sender's own retry (its first attempt got through, the answer did not) learns its reference.
    same = seen.document == document
    report = _report_for(session, partner, remote_uid) if same else None
    raise ReferralRefused(
        409,
        f"referral {remote_uid} was received already" + ("" if same else ", with other contents"),
        reference=report.reference if report is not None else None,
    )


def _report_for(session: Session, partner: PartnerHotline, remote_uid: str) -> Report | None:
    return session.scalar(
        select(Report).where(Report.partner == reporter_of(partner), Report.external_id == remote_uid)
    )


def _report_of(partner: PartnerHotline, doc: ReferralDocument, referral: Referral) -> intake.ReportIn:
    signals: list[tuple[str, str]] = []
    for item in doc.items:
        for kind in ("pdq", "md5", "sha1", "sha256"):
            value = getattr(item, kind)
            if value and (kind, value) not in signals:
                signals.append((kind, value))
    kept = signals[: intake.MAX_SIGNALS]
    media = {item.media for item in doc.items}
    c = doc.classification
    said = [f"Referred by partner hotline {partner.name} ({partner.country}), their case {doc.case.reference}."]
    if c is not None:
        facts = [c.outcome, c.category and f"category {c.category}", c.age_band and f"age {c.age_band}", c.sex]
        said.append(
            "Their assessment: "
            + ", ".join(f for f in facts if f)
            + (f"; flags {', '.join(c.flags)}" if c.flags else "")
            + "."
        )
    said.append(f"{len(doc.items)} item(s) hashed.")
    if len(signals) > len(kept):
        said.append(f"{len(signals) - len(kept)} more hashes are in referral {referral.uid}.")
    site_type = c.site_type if c is not None and c.site_type in SITE_TYPES else None
    return intake.ReportIn(
        channel="referral",
        url=doc.url,
        content_type="videos" if "video" in media else "images" if media else None,
        site_type=site_type,
        description=" ".join(said),
        external_id=doc.uid,
        signals=kept,
    )


# ---- status updates --------------------------------------------------------------------------


def case_status(session: Session, case: Case) -> str:
    """What an incoming referral's case has come to, as the referring hotline is told."""
    if case.state == "closed":
        removed = session.scalar(
            select(Notice.id).where(Notice.case_id == case.id, Notice.removed_at.is_not(None)).limit(1)
        )
        return "removed" if removed is not None else "closed"
    return CASE_STATUS.get(case.state, "received")


def receive_status(
    session: Session, settings: Settings, principal: Principal, uid: str, document: dict[str, Any], signature: str
) -> Referral:
    """Record a partner's signed status update of a referral we sent it (the caller commits)."""
    partner = _calling_partner(session, principal)
    _check_signed(partner, document, signature)
    try:
        doc = StatusDocument.model_validate(document)
    except ValidationError as exc:
        raise ReferralRefused(422, f"not a referral status document: {_first_error(exc)}") from None
    _check_parties(settings, partner, doc.sender, doc.recipient)
    if doc.referral != uid:
        raise ReferralRefused(422, f"the document is about referral {doc.referral}, not {uid}")
    referral = session.scalar(
        select(Referral).where(Referral.uid == uid, Referral.direction == OUT, Referral.kind == HOTLINE)
    )
    if referral is None or referral.partner_id != partner.id:
        raise ReferralRefused(404, f"no referral {uid} was sent to {partner.name!r}")
    if STATUS_RANK[doc.status] > STATUS_RANK.get(referral.state, 0):
        before, now = referral.state, utcnow()
        referral.state, referral.updated_at = doc.status, now
        if referral.remote_id is None and doc.reference and not _remote_id_taken(session, partner, doc.reference):
            referral.remote_id = doc.reference
        referral.next_attempt_at = None  # it got there, whatever our delivery thought
        case = session.get(Case, referral.case_id) if referral.case_id is not None else None
        if case is not None and doc.status == "removed" and case.state == "referred":
            case.state, case.updated_at, case.version = "removed", now, case.version + 1
        audit.record(
            session,
            principal,
            "referral.status",
            "referral",
            referral.id,
            {"uid": uid, "from": before, "to": doc.status, "partner": partner.name},
        )
    return referral


def _remote_id_taken(session: Session, partner: PartnerHotline, remote_id: str) -> bool:
    return (
        session.scalar(
            select(Referral.id).where(
                Referral.partner_id == partner.id, Referral.direction == OUT, Referral.remote_id == remote_id
            )
        )
        is not None
    )


def _status_document(
    session: Session, settings: Settings, referral: Referral, partner: PartnerHotline
) -> dict[str, Any]:
    report = _report_for(session, partner, referral.remote_id or "")
    return StatusDocument(
        type=STATUS_TYPE,
        version=1,
        referral=referral.remote_id or "",
        reference=report.reference if report is not None else None,
        status=referral.state,  # an incoming referral is in one of the statuses
        at=_iso(referral.updated_at) or referral.updated_at,
        sender=_party(settings),
        recipient=_partner_party(partner),
    ).model_dump(mode="json")


# ---- delivery (both directions) ------------------------------------------------------------------


def queue_delivery(referral_id: int, delay: float) -> None:
    """Hand a delivery to the task queue (tests replace ``scheduler`` to drive attempts themselves)."""
    from seawall.hotline.tasks import deliver_referral

    if delay > 0:
        deliver_referral.schedule((referral_id,), delay=delay)
    else:
        deliver_referral(referral_id)


scheduler: Callable[[int, float], None] = queue_delivery


def after_commit(session: Session, referral_id: int) -> None:
    """Deliver once this transaction commits (before, a worker could not see the row)."""
    event.listen(session, "after_commit", lambda _s: scheduler(referral_id, 0.0), once=True)


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: base, 2 base, 4 base … capped at 6 hours."""
    return float(min(settings.referral_retry_base_seconds * (2 ** max(0, attempts - 1)), 6 * 3600))


@dataclass(frozen=True)
class _Outgoing:
    """What one attempt sends, read in the claiming transaction."""

    url: str | None  # None: cannot be sent (``problem`` says why)
    body: bytes
    api_key: str
    attempt: int
    lease: datetime
    status: str | None  # an incoming referral's status being reported
    problem: str = ""


@dataclass(frozen=True)
class _Answer:
    ok: bool
    error: str
    reference: str | None = None


def _claim(session: Session, settings: Settings, referral_id: int, now: datetime) -> _Outgoing | None:
    referral = session.get(Referral, referral_id)
    if referral is None:
        raise LookupError(f"no referral {referral_id}")
    if referral.kind != HOTLINE or referral.partner_id is None or referral.next_attempt_at is None:
        return None
    if referral.next_attempt_at > now + timedelta(seconds=CLOCK_SLACK_SECONDS):
        return None  # not due, or another attempt is in flight
    if referral.direction == OUT and referral.state != "pending":
        return None
    if referral.direction == IN and referral.reported_state == referral.state:
        return None
    lease = now + timedelta(seconds=settings.referral_timeout_seconds + LEASE_MARGIN_SECONDS)
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Referral)
        .where(Referral.id == referral_id, Referral.attempts == referral.attempts)
        .values(attempts=referral.attempts + 1, next_attempt_at=lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    attempt = referral.attempts + 1
    partner = session.get_one(PartnerHotline, referral.partner_id)
    try:
        api_key = partners.api_key_of(settings, partner)
    except ValueError as exc:  # sealed under another SEAWALL_SECRET_KEY: the operator must store it again
        return _Outgoing(None, b"", "", attempt, lease, None, f"our API key at {partner.name}: {exc}")
    if not partner.enabled:
        return _Outgoing(None, b"", "", attempt, lease, None, f"partner {partner.name} is disabled")
    if not partner.endpoint or not api_key or not partner.public_key:
        problem = (
            f"partner {partner.name} has no endpoint, API key or public key (seawall partners update {partner.name} …)"
        )
        return _Outgoing(None, b"", "", attempt, lease, None, problem)
    if referral.direction == OUT:
        url, status = f"{partner.endpoint}/v1/referrals", None
        payload = {"document": referral.document, "signature": referral.signature}
    else:
        url, status = f"{partner.endpoint}/v1/referrals/{referral.remote_id}/status", referral.state
        document = _status_document(session, settings, referral, partner)
        payload = {"document": document, "signature": signing.sign(settings, document)}
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _Outgoing(url, body, api_key, attempt, lease, status)


def _post(settings: Settings, outgoing: _Outgoing) -> _Answer:
    if outgoing.url is None:
        return _Answer(False, outgoing.problem)
    headers = {
        "authorization": f"Bearer {outgoing.api_key}",
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": "Seawall-Referral",
    }
    try:
        # No redirects: a POST carrying our key and a referral goes where the directory says, or nowhere.
        with safe_client(AddressRules.from_settings(settings), timeout=settings.referral_timeout_seconds) as client:
            response = client.post(outgoing.url, content=outgoing.body, headers=headers)
    except FetchError as exc:
        return _Answer(False, str(exc))
    except httpx.HTTPError as exc:
        return _Answer(False, redact_text(f"{type(exc).__name__}: {exc}"))
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    reference = answer.get("reference") if isinstance(answer.get("reference"), str) else None
    if outgoing.status is None and (response.status_code in (200, 201) or response.status_code == 409) and reference:
        return _Answer(True, "", reference[:64])  # 409 with a reference: an earlier attempt got through
    if outgoing.status is not None and response.status_code == 200:
        return _Answer(True, "")
    detail = answer.get("detail") if "detail" in answer else response.text[:200]
    return _Answer(False, redact_text(f"HTTP {response.status_code}: {str(detail)[:300]}"))


def _record(
    factory: sessionmaker[Session], settings: Settings, referral_id: int, outgoing: _Outgoing, answer: _Answer
) -> float | None:
    """Store the attempt's outcome, if the claim is still this attempt's; the delay before a retry, or None."""
    with transaction(factory) as session:
        referral = session.get_one(Referral, referral_id)
        if referral.attempts != outgoing.attempt or referral.next_attempt_at != outgoing.lease:
            return None
        now = utcnow()
        referral.updated_at = now
        if answer.ok:
            referral.last_error, referral.next_attempt_at = "", None
            if referral.direction == OUT:
                partner = session.get(PartnerHotline, referral.partner_id) if referral.partner_id else None
                # The partner's answer, unchecked: a reference another of our referrals has is not taken.
                fresh = (
                    partner is not None
                    and answer.reference
                    and not _remote_id_taken(session, partner, answer.reference)
                )
                if referral.remote_id is None and fresh:
                    referral.remote_id = answer.reference
                referral.sent_at = referral.sent_at or now
                if STATUS_RANK.get(referral.state, 0) < STATUS_RANK["received"]:
                    referral.state = "received"
            else:
                referral.reported_state, referral.attempts = outgoing.status, 0
            return None
        referral.last_error = answer.error
        if outgoing.attempt >= settings.referral_max_attempts:
            referral.next_attempt_at = None
            if referral.direction == OUT:
                referral.state = "failed"
            log.warning("referral %s: giving up after %s attempts: %s", referral.uid, outgoing.attempt, answer.error)
            return None
        delay = backoff(settings, outgoing.attempt)
        referral.next_attempt_at = now + timedelta(seconds=delay)
        return delay


def deliver(
    factory: sessionmaker[Session], settings: Settings, referral_id: int, now: datetime | None = None
) -> Referral:
    """Try a referral's pending delivery once (its document, or its status); on failure schedule the
    next try. Three steps, so no transaction is open while the partner answers."""
    with transaction(factory) as session:
        outgoing = _claim(session, settings, referral_id, now or utcnow())
    if outgoing is not None:
        answer = _post(settings, outgoing)
        delay = _record(factory, settings, referral_id, outgoing, answer)
        if delay is not None:
            scheduler(referral_id, delay)
    with factory() as session:
        return session.get_one(Referral, referral_id)


# ---- the sweep: route waiting referrals, follow incoming cases, re-queue what is due ---------------


@dataclass(frozen=True)
class SweepReport:
    routed: int
    progressed: int
    queued: list[int]


def sweep(factory: sessionmaker[Session], settings: Settings, now: datetime | None = None) -> SweepReport:
    """One pass (the worker runs it every minute): address referrals waiting for a partner, move incoming
    referrals on with their cases, and queue every delivery that is due."""
    now = now or utcnow()
    with transaction(factory) as session:
        routed = 0
        waiting = session.scalars(
            select(Referral).where(
                Referral.direction == OUT,
                Referral.kind == HOTLINE,
                Referral.state == "pending",
                Referral.partner_id.is_(None),
            )
        ).all()
        for referral in waiting:
            country = referral.document.get("recipient", {}).get("country", "")
            routed += _route(session, settings, referral, partners.partner_for_country(session, country), now)
        progressed = 0
        incoming = session.execute(
            select(Referral, Case)
            .join(Case, Case.id == Referral.case_id)
            .where(Referral.direction == IN, Referral.kind == HOTLINE, Referral.state.not_in(FINAL_STATES))
        ).all()
        for referral, case in incoming:
            status = case_status(session, case)
            if STATUS_RANK[status] > STATUS_RANK.get(referral.state, 0):
                referral.state, referral.updated_at, referral.last_error = status, now, ""
                referral.attempts, referral.next_attempt_at = 0, now
                progressed += 1
        session.flush()
        due = list(
            session.scalars(
                select(Referral.id).where(
                    Referral.kind == HOTLINE,
                    Referral.partner_id.is_not(None),
                    Referral.next_attempt_at <= now + timedelta(seconds=CLOCK_SLACK_SECONDS),
                    or_(
                        and_(Referral.direction == OUT, Referral.state == "pending"),
                        and_(
                            Referral.direction == IN,
                            or_(Referral.reported_state.is_(None), Referral.reported_state != Referral.state),
                        ),
                    ),
                )
            )
        )
    for referral_id in due:
        scheduler(referral_id, 0.0)
    return SweepReport(routed, progressed, due)


def retry(session: Session, actor: Principal, uid: str) -> Referral:
    """Send a referral (or its status) again with a fresh attempt budget, once the caller commits."""
    referral = session.scalar(select(Referral).where(Referral.uid == uid))
    if referral is None:
        raise LookupError(f"no referral {uid!r}")
    if referral.kind != HOTLINE:
        raise ReferralError("a law-enforcement referral is a package handed over, not a delivery")
    if referral.direction == OUT and referral.state not in ("pending", "failed"):
        raise ReferralError(f"referral {uid} was {referral.state} by the partner already")
    if referral.direction == IN and referral.reported_state == referral.state:
        raise ReferralError(f"the partner knows the referral's state ({referral.state}) already")
    now = utcnow()
    if referral.direction == OUT:
        referral.state = "pending"
    referral.attempts, referral.next_attempt_at, referral.last_error, referral.updated_at = 0, now, "", now
    audit.record(session, actor, "referral.retry", "referral", referral.id, {"uid": uid})
    if referral.partner_id is not None:
        after_commit(session, referral.id)
    return referral


def get_referral(session: Session, uid: str) -> Referral | None:
    return session.scalar(select(Referral).where(Referral.uid == uid))


def list_referrals(
    session: Session, *, direction: str | None = None, state: str | None = None, limit: int = 100
) -> list[tuple[Referral, PartnerHotline | None, Case | None]]:
    query = (
        select(Referral, PartnerHotline, Case)
        .outerjoin(PartnerHotline, PartnerHotline.id == Referral.partner_id)
        .outerjoin(Case, Case.id == Referral.case_id)
        .order_by(Referral.id.desc())
        .limit(limit)
    )
    if direction:
        query = query.where(Referral.direction == direction)
    if state:
        query = query.where(Referral.state == state)
    return [(r, p, c) for r, p, c in session.execute(query).all()]
