"""The law-enforcement referral: a package an operator hands over (no outside host is contacted).

``export`` writes, into a new private folder, ``referral.json`` (every case: its URLs, reports,
captures, items with their hashes and classification, and its timeline; signed with the instance's
key, and naming the SHA-256 of each CSV so the signature covers them too) and the same facts as CSV
for reading: ``cases.csv``, ``urls.csv``, ``captures.csv``, ``items.csv``, ``timeline.csv``. No media
and no reporter's contact address, ever: media stay in the evidence store for the authority to
request, the contact is given only on a legal request. Each case exported gets a ``Referral`` of kind
``law_enforcement`` (state ``exported``) recording the package.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.hotline import intake, signing
from seawall.hotline.models import Assessment, Capture, Case, Notice, QaDecision, Referral, Report
from seawall.hotline.referrals import (
    LAW_ENFORCEMENT,
    OUT,
    case_assessment,
    case_items,
    classification_of,
)

PACKAGE_TYPE = "seawall.law_enforcement_referral"
CSV_FILES = ("cases.csv", "urls.csv", "captures.csv", "items.csv", "timeline.csv")
# A cell a spreadsheet would run as a formula (a reported URL is anyone's text) is written with a
# leading apostrophe; referral.json keeps every value exactly.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(ValueError):
    pass


@dataclass(frozen=True)
class Package:
    uid: str
    folder: Path
    cases: list[str]
    files: dict[str, str]  # name -> SHA-256


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment is not None else None


def resolve_cases(session: Session, references: Sequence[str]) -> list[Case]:
    """Cases by case reference (C-…) or by the reference of one of their reports (R-…)."""
    cases: list[Case] = []
    for reference in references:
        wanted = reference.strip().upper()
        case = session.scalar(select(Case).where(Case.reference == wanted))
        if case is None:
            report = intake.get_report(session, wanted)
            case = session.get(Case, report.case_id) if report is not None and report.case_id is not None else None
        if case is None:
            raise ExportError(f"no case or report {reference!r}")
        if case not in cases:
            cases.append(case)
    if not cases:
        raise ExportError("name at least one case")
    return cases


def case_record(session: Session, case: Case) -> dict[str, Any]:
    """Everything the package says of one case (JSON-ready)."""
    reports = session.scalars(select(Report).where(Report.case_id == case.id).order_by(Report.id)).all()
    captures = session.scalars(select(Capture).where(Capture.case_id == case.id).order_by(Capture.id)).all()
    items = case_items(session, case)
    assessment = case_assessment(session, case)
    classification = classification_of(assessment)
    return {
        "reference": case.reference,
        "state": case.state,
        "url": case.url,
        "opened_at": _when(case.opened_at),
        "closed_at": _when(case.closed_at),
        "hosting": {
            "address": case.hosting_ip,
            "asn": case.hosting_asn,
            "as_name": case.hosting_as_name,
            "country": case.hosting_country,
            "behind_cdn": case.hosting_behind_cdn,
        },
        "classification": classification.model_dump(mode="json") if classification is not None else None,
        "reports": [
            {
                "reference": r.reference,
                "channel": r.channel,
                "reported_at": _when(r.reported_at),
                "url": r.url,
                "content_type": r.content_type,
                "site_type": r.site_type,
                "description": r.description,
                "withdrawn_at": _when(r.withdrawn_at),
            }
            for r in reports
        ],
        "captures": [
            {
                "purpose": c.purpose,
                "state": c.state,
                "started_at": _when(c.started_at),
                "finished_at": _when(c.finished_at),
                "final_url": c.final_url,
                "redirects": list(c.redirects or []),
                "http_status": c.http_status,
                "headers": dict(c.headers or {}),
                "address": c.address,
                "tls": c.tls,
                "error": c.error,
                "media_found": c.media_found,
            }
            for c in captures
        ],
        "items": [
            {
                "sha256": item.sha256,
                "md5": item.md5,
                "sha1": item.sha1,
                "pdq": item.pdq,
                "media": item.media,
                "mime": item.mime,
                "size": item.size,
                "media_url": case_item.media_url,
                "found_as": case_item.found_as,
                "first_seen_at": _when(item.first_seen_at),
                "classification": c.model_dump(mode="json") if (c := classification_of(applied)) is not None else None,
            }
            for case_item, item, applied in items
        ],
        "timeline": _timeline(session, case, reports, captures, [item.id for _, item, _ in items]),
    }


def _timeline(
    session: Session, case: Case, reports: Sequence[Report], captures: Sequence[Capture], item_ids: list[int]
) -> list[dict[str, Any]]:
    events: list[tuple[datetime, str, str]] = [(case.opened_at, "case opened", case.url or "(hashes)")]
    events += [(r.reported_at, "report received", f"{r.reference} via {r.channel}") for r in reports]
    for c in captures:
        events.append((c.started_at, f"{c.purpose} capture started", c.final_url or ""))
        if c.finished_at is not None:
            status = f"HTTP {c.http_status}" if c.http_status is not None else c.error
            events.append((c.finished_at, f"{c.purpose} capture {c.state}", f"{status}; {c.media_found} media"))
    subject = Assessment.case_id == case.id
    if item_ids:
        subject = subject | Assessment.item_id.in_(item_ids)
    assessments = session.scalars(select(Assessment).where(subject).order_by(Assessment.id)).all()
    for a in assessments:
        what = f"{a.subject} assessed {a.outcome}" + (f", category {a.category}" if a.category else "")
        events.append((a.assessed_at, "assessment", f"{what} by {a.assessor}"))
    if assessments:
        decisions = session.scalars(
            select(QaDecision).where(QaDecision.assessment_id.in_([a.id for a in assessments]))
        ).all()
        events += [(d.decided_at, f"QA {d.decision}", f"by {d.reviewer}") for d in decisions]
    for n in session.scalars(select(Notice).where(Notice.case_id == case.id).order_by(Notice.id)):
        events.append((n.created_at, "notice opened", f"{n.channel} to {n.recipient}"))
        for moment, what in (
            (n.sent_at, "notice sent"),
            (n.escalated_at, "notice escalated"),
            (n.removed_at, "content removed"),
        ):
            if moment is not None:
                events.append((moment, what, f"notice {n.id}"))
    for ref in session.scalars(select(Referral).where(Referral.case_id == case.id).order_by(Referral.id)):
        to = ref.document.get("recipient", {}) if ref.kind != LAW_ENFORCEMENT else {}
        label = "law enforcement" if ref.kind == LAW_ENFORCEMENT else f"{to.get('name') or to.get('country')}"
        events.append((ref.created_at, f"referral {ref.direction}", f"{label}: {ref.state}"))
    if case.closed_at is not None:
        events.append((case.closed_at, "case closed", ""))
    events.sort(key=lambda e: e[0])
    return [{"at": _when(at), "event": what, "detail": detail} for at, what, detail in events]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


def _csv_files(records: list[dict[str, Any]]) -> dict[str, bytes]:
    def classified(record: dict[str, Any]) -> list[Any]:
        c = record.get("classification") or {}
        return [c.get("outcome"), c.get("category"), c.get("age_band"), c.get("sex"), c.get("children"), c.get("flags")]

    urls: list[list[Any]] = []
    for r in records:
        urls.append([r["reference"], "case", r["url"], r["opened_at"]])
        urls += [[r["reference"], "reported", rep["url"], rep["reported_at"]] for rep in r["reports"] if rep["url"]]
        for cap in r["captures"]:
            urls += [[r["reference"], "redirect", hop, cap["started_at"]] for hop in cap["redirects"]]
            if cap["final_url"]:
                urls.append([r["reference"], "final", cap["final_url"], cap["finished_at"]])
        urls += [[r["reference"], "media", i["media_url"], i["first_seen_at"]] for i in r["items"] if i["media_url"]]
    return {
        "cases.csv": _csv(
            [
                "case",
                "state",
                "url",
                "opened_at",
                "closed_at",
                "hosting_address",
                "hosting_asn",
                "hosting_as_name",
                "hosting_country",
                "behind_cdn",
                "outcome",
                "category",
                "age_band",
                "sex",
                "children",
                "flags",
                "reports",
                "items",
            ],
            (
                [
                    r["reference"],
                    r["state"],
                    r["url"],
                    r["opened_at"],
                    r["closed_at"],
                    *r["hosting"].values(),
                    *classified(r),
                    len(r["reports"]),
                    len(r["items"]),
                ]
                for r in records
            ),
        ),
        "urls.csv": _csv(["case", "kind", "url", "seen_at"], urls),
        "captures.csv": _csv(
            [
                "case",
                "purpose",
                "state",
                "started_at",
                "finished_at",
                "http_status",
                "final_url",
                "address",
                "redirects",
                "tls",
                "error",
                "media_found",
            ],
            (
                [
                    r["reference"],
                    c["purpose"],
                    c["state"],
                    c["started_at"],
                    c["finished_at"],
                    c["http_status"],
                    c["final_url"],
                    c["address"],
                    c["redirects"],
                    c["tls"],
                    c["error"],
                    c["media_found"],
                ]
                for r in records
                for c in r["captures"]
            ),
        ),
        "items.csv": _csv(
            [
                "case",
                "sha256",
                "md5",
                "sha1",
                "pdq",
                "media",
                "mime",
                "size",
                "media_url",
                "found_as",
                "outcome",
                "category",
                "age_band",
                "sex",
                "children",
                "flags",
            ],
            (
                [
                    r["reference"],
                    i["sha256"],
                    i["md5"],
                    i["sha1"],
                    i["pdq"],
                    i["media"],
                    i["mime"],
                    i["size"],
                    i["media_url"],
                    i["found_as"],
                    *classified(i),
                ]
                for r in records
                for i in r["items"]
            ),
        ),
        "timeline.csv": _csv(
            ["case", "at", "event", "detail"],
            ([r["reference"], e["at"], e["event"], e["detail"]] for r in records for e in r["timeline"]),
        ),
    }


def _write_private(folder: Path, name: str, data: bytes) -> None:
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def export(
    factory: sessionmaker[Session], settings: Settings, actor: Principal, references: Sequence[str], out: Path
) -> Package:
    """Write the package for ``references`` into ``out`` (a folder that must not exist yet, or be
    empty), then record it. The files appear whole or not at all: they are written into a private
    folder beside ``out`` and moved into place."""
    out = out.expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder: name a new one")
    uid = str(uuid.uuid4())
    now = utcnow()
    with factory() as session:
        cases = resolve_cases(session, references)
        case_ids = {c.reference: c.id for c in cases}
        records = [case_record(session, case) for case in cases]
    files = _csv_files(records)
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    document = {
        "type": PACKAGE_TYPE,
        "version": 1,
        "uid": uid,
        "created_at": _when(now.replace(microsecond=0)),
        "sender": {
            "name": settings.hotline_name,
            "country": settings.hotline_country.upper(),
            "key": signing.own_fingerprint(settings),
        },
        "exported_by": actor.name,
        "files": checksums,
        "cases": records,
    }
    signature = signing.sign(settings, document)
    package = {"document": document, "signature": signature, "public_key": signing.public_key_text(settings)}
    files["referral.json"] = json.dumps(package, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{uid}"
    partial.mkdir(mode=0o700)
    try:
        for name, data in files.items():
            _write_private(partial, name, data)
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    with transaction(factory) as session:
        for record in records:
            referral = Referral(
                uid=str(uuid.uuid4()),
                direction=OUT,
                kind=LAW_ENFORCEMENT,
                case_id=case_ids[record["reference"]],
                document={"type": PACKAGE_TYPE, "package": uid, "folder": str(out), "files": checksums, "case": record},
                signature=signature,
                remote_id=uid,
                state="exported",
                created_at=now,
                sent_at=now,
                updated_at=now,
            )
            session.add(referral)
            session.flush()
            audit.record(
                session,
                actor,
                "referral.export_le",
                "referral",
                referral.id,
                {"uid": referral.uid, "package": uid, "case": record["reference"], "files": checksums},
            )
    return Package(
        uid, out, [r["reference"] for r in records], {**checksums, "referral.json": _sha(files["referral.json"])}
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
