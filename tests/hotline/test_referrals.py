"""Referrals between hotlines, and the law-enforcement package.

Two real Seawall servers on loopback refer a case and send its status back; a real `seawall worker`
retries until the partner is up. Where the test plays the partner hotline, it signs and checks
documents as a partner would from docs/hotline.md (json + cryptography here), never with Seawall's
own helpers. Benign generated pictures only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from hotlines import pair
from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey, AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings, reset_settings
from seawall.db import make_engine, make_sessionmaker, transaction, utcnow
from seawall.hotline import actions, capture, intake, partners, referrals, signing
from seawall.hotline.models import (
    Assessment,
    Capture,
    Case,
    CaseItem,
    Item,
    PartnerHotline,
    Referral,
    Report,
    ReportSignal,
)
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
from seawall.web.app import create_app
from servers import child_environment, free_port, serve

LOOPBACK = ["127.0.0.0/8"]
REFERRAL_KEYS = {"type", "version", "uid", "created_at", "sender", "recipient", "url", "case", "hosting", "capture"}
REFERRAL_KEYS |= {"classification", "items", "timeline"}


# ---- a partner hotline's side, written from the documentation --------------------------------------


def canonical(document: dict[str, Any]) -> bytes:
    """docs/hotline.md: keys sorted, no whitespace, UTF-8, non-ASCII as is."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed(key: Ed25519PrivateKey, document: dict[str, Any]) -> dict[str, Any]:
    return {"document": document, "signature": base64.b64encode(key.sign(canonical(document))).decode()}


def public_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def fingerprint_of(public: str) -> str:
    return hashlib.sha256(base64.b64decode(public.removeprefix("ed25519:"))).hexdigest()


def partner_accepts(public: str, envelope: dict[str, Any]) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("ed25519:")))
    try:
        key.verify(base64.b64decode(envelope["signature"]), canonical(envelope["document"]))
    except Exception:
        return False
    return True


def benign_hashes(tmp_path: Path, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    out = []
    for seed in seeds:
        path = tmp_path / f"benign-{seed}.png"
        benign_image(seed, 96, 72).save(path)
        out.append({**hash_file(path, "md5,sha1,sha256,pdq"), "size": path.stat().st_size, "seed": seed})
    return out


def referral_document(uid: str, sender: str, recipient: str, hashes: list[dict[str, Any]]) -> dict[str, Any]:
    """A referral as another implementation would write it from the documentation (optional parts left out)."""
    return {
        "type": "seawall.referral",
        "version": 1,
        "uid": uid,
        "created_at": "2026-12-01T10:00:00Z",
        "sender": {"name": "Partner hotline GB", "country": "GB", "key": sender},
        "recipient": {"name": "Hotline NL", "country": "NL", "key": recipient},
        "url": "https://images.example.nl/album/7",
        "case": {"reference": "C-AAAAA-00007", "opened_at": "2026-12-01T09:00:00Z"},
        "classification": {
            "outcome": "csam",
            "category": "A",
            "age_band": "7-10",
            "sex": "boy",
            "children": 1,
            "flags": ["commercial"],
            "site_type": "image_host",
            "state": "confirmed",
            "schemes": {},
        },
        "items": [
            {"md5": h["md5"], "sha1": h["sha1"], "sha256": h["sha256"], "pdq": h["pdq"], "media": "image"}
            for h in hashes
        ],
        "timeline": {"referred_at": "2026-12-01T10:00:00Z"},
    }


# ---- fixtures: two instances ------------------------------------------------------------------------


@dataclass
class Instance:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    app: FastAPI
    url: str = ""


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """Deliveries handed to the queue (instead of the task queue): the tests drive attempts."""
    calls: list[tuple[int, float]] = []
    monkeypatch.setattr(referrals, "scheduler", lambda referral_id, delay: calls.append((referral_id, delay)))
    return calls


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    cases: list[int] = []
    monkeypatch.setattr(capture, "scheduler", cases.append)
    return cases


@pytest.fixture
def hotline_a(settings: Settings, engine: Engine, app: FastAPI) -> Instance:
    """The referring hotline (GB): the test's own database and app, on each backend."""
    settings.hotline_name, settings.hotline_country, settings.fetch_allow_networks = "Hotline GB", "GB", LOOPBACK
    return Instance(settings, engine, make_sessionmaker(engine), app)


@pytest.fixture
def hotline_b(tmp_path: Path, sqlite_template: Path) -> Iterator[Instance]:
    """A second Seawall (NL) with a database, home and secret key of its own."""
    folder = tmp_path / "instance-b"
    folder.mkdir()
    shutil.copyfile(sqlite_template, folder / "seawall.db")
    url = f"sqlite+pysqlite:///{folder / 'seawall.db'}"
    settings = Settings(
        home=folder / "home",
        database_url=url,
        secret_key="instance-b-secret-key-not-for-production",
        hotline_name="Hotline NL",
        hotline_country="NL",
        fetch_allow_networks=LOOPBACK,
        queue_immediate=True,
    )
    engine = make_engine(url)
    yield Instance(settings, engine, make_sessionmaker(engine), create_app(settings, engine))
    engine.dispose()


def confirmed_case(
    factory: sessionmaker[Session], settings: Settings, hashes: list[dict[str, Any]], url: str, country: str = "NL"
) -> int:
    """A case as capture, tracing and QA leave it: captured, hosted in ``country``, its items assessed
    and confirmed — the last one as not abuse."""
    with transaction(factory) as session:
        case = intake.submit(session, settings, SYSTEM, intake.ReportIn(channel="public", url=url)).case
        now = utcnow()
        shot = Capture(case_id=case.id, state="done", finished_at=now, final_url=url, http_status=200)
        shot.address, shot.media_found = "192.0.2.10", len(hashes)
        session.add(shot)
        session.flush()
        case.state, case.hosting_ip, case.hosting_country = "confirmed", "192.0.2.10", country
        case.hosting_asn, case.hosting_as_name = 64500, "=Example Hosting B.V."
        for i, h in enumerate(hashes):
            item = Item(
                sha256=h["sha256"],
                md5=h["md5"],
                sha1=h["sha1"],
                pdq=h["pdq"],
                pdq_quality=h["pdq_quality"],
                media="image",
                mime="image/png",
                size=h["size"],
                state="graded",
            )
            session.add(item)
            session.flush()
            session.add(CaseItem(case_id=case.id, item_id=item.id, capture_id=shot.id, media_url=f"{url}/{i}.png"))
            abuse = i < len(hashes) - 1
            graded = Assessment(
                subject="item",
                item_id=item.id,
                assessor="analyst-1",
                outcome="csam" if abuse else "not_csam",
                category="B" if abuse else None,
                age_band="11-13" if abuse else None,
                sex="girl" if abuse else None,
                flags=["self_generated"] if abuse else [],
                state="confirmed",
                confirmations=1,
                decided_at=now,
            )
            session.add(graded)
            session.flush()
            item.assessment_id = graded.id
        session.add(
            Assessment(
                subject="case",
                case_id=case.id,
                assessor="analyst-1",
                outcome="csam",
                category="B",
                age_band="11-13",
                sex="girl",
                children=1,
                flags=["self_generated"],
                site_type="image_host",
                url_level="exact",
                state="confirmed",
                confirmations=1,
                decided_at=now,
            )
        )
        return case.id


def _set_case_state(factory: sessionmaker[Session], case_id: int, state: str) -> None:
    """As the assessment and notice work do on the receiving side."""
    with transaction(factory) as session:
        session.get_one(Case, case_id).state = state


# ---- two servers --------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_case_referred_to_a_second_seawall_becomes_a_report_there_and_its_status_comes_back(
    hotline_a: Instance,
    hotline_b: Instance,
    live_server: Any,
    scheduled: list[tuple[int, float]],
    captured: list[int],
    tmp_path: Path,
) -> None:
    a, b = hotline_a, hotline_b
    a.url = live_server.url
    hashes = benign_hashes(tmp_path, (1, 2, 3))
    with serve(b.app) as b_url:
        b.url = b_url
        pair(a, b)
        case_id = confirmed_case(a.factory, a.settings, hashes, "https://images.example.nl/album/7")
        with transaction(a.factory) as session:
            assert actions.after_confirmation(session, a.settings, SYSTEM, session.get_one(Case, case_id)) == "referral"
        with a.factory() as session:
            out = session.scalars(select(Referral)).one()
            assert (out.direction, out.kind, out.state, out.last_error) == ("out", "hotline", "pending", "")
            assert session.get_one(Case, case_id).state == "referred"
        assert scheduled == [(out.id, 0.0)]  # handed to the worker once committed

        # The document: the URL, hashes and classification — never media; signed as documented.
        document = out.document
        assert set(document) == REFERRAL_KEYS
        assert document["sender"] == {"name": "Hotline GB", "country": "GB", "key": signing.own_fingerprint(a.settings)}
        assert document["recipient"] == {
            "name": "nl-hotline",
            "country": "NL",
            "key": fingerprint_of(signing.public_key_text(b.settings)),
        }
        assert document["url"] == "https://images.example.nl/album/7"
        assert [(i["md5"], i["sha1"], i["sha256"], i["pdq"]) for i in document["items"]] == [
            (h["md5"], h["sha1"], h["sha256"], h["pdq"]) for h in hashes[:2]
        ]  # the item assessed as not abuse is left out
        assert {k: document["classification"][k] for k in ("outcome", "category", "age_band", "sex", "flags")} == {
            "outcome": "csam",
            "category": "B",
            "age_band": "11-13",
            "sex": "girl",
            "flags": ["self_generated"],
        }
        # The same assessment in the schemes partners speak (docs/classification.md).
        assert document["classification"]["schemes"] == {
            "uk_category": "B",
            "age_band": "11-13",
            "industry": "B1",
            "interpol": "baseline",
            "project_vic": 1,
        }
        assert document["hosting"]["country"] == "NL" and document["capture"]["http_status"] == 200
        assert partner_accepts(signing.public_key_text(a.settings), {"document": document, "signature": out.signature})
        assert len(json.dumps(document)) < 4000  # hashes and facts only

        captured.clear()
        delivered = referrals.deliver(a.factory, a.settings, out.id)
        assert (delivered.state, delivered.attempts, delivered.last_error) == ("received", 1, "")
        assert delivered.remote_id is not None and delivered.remote_id.startswith("R-")

        # B has a report in its own queue: channel referral, the URL, the hashes; its case is captured.
        with b.factory() as session:
            report = session.scalars(select(Report)).one()
            assert (report.reference, report.channel, report.url) == (
                delivered.remote_id,
                "referral",
                "https://images.example.nl/album/7",
            )
            assert (report.partner, report.external_id, report.content_type) == (
                "hotline:gb-hotline",
                out.uid,
                "images",
            )
            assert (
                report.description.startswith("Referred by partner hotline gb-hotline (GB), their case C-")
                and "Their assessment: csam, category B, age 11-13, girl; flags self_generated." in report.description
            )
            stored = {(t, v) for t, v in session.execute(select(ReportSignal.signal_type, ReportSignal.value))}
            assert stored == {(kind, h[kind]) for h in hashes[:2] for kind in ("md5", "sha1", "sha256", "pdq")}
            incoming = session.scalars(select(Referral)).one()
            assert (incoming.direction, incoming.remote_id, incoming.state, incoming.reported_state) == (
                "in",
                out.uid,
                "received",
                "received",
            )
            b_case = session.get_one(Case, report.case_id)
            assert incoming.case_id == b_case.id and captured == [b_case.id]  # B captures the page itself
            assert audit.verify(session).ok

        # A replay of the same document is refused; the sender's retry learns the reference.
        envelope = {"document": document, "signature": out.signature}
        with transaction(a.factory) as session:
            key = partners.api_key_of(a.settings, partners.get_partner(session, "nl-hotline"))
        replay = httpx.post(f"{b_url}/v1/referrals", json=envelope, headers={"authorization": f"Bearer {key}"})
        assert (replay.status_code, replay.json()) == (
            409,
            {"detail": f"referral {out.uid} was received already", "reference": delivered.remote_id},
        )
        with b.factory() as session:
            assert session.scalar(select(func.count()).select_from(Report)) == 1

        # B's case moves on; each sweep sends what changed, and A records it.
        scheduled.clear()
        for state, expected in (("assessed", "assessed"), ("notified", "actioned"), ("removed", "removed")):
            _set_case_state(b.factory, b_case.id, state)
            swept = referrals.sweep(b.factory, b.settings)
            assert (swept.progressed, swept.queued) == (1, [incoming.id])
            sent = referrals.deliver(b.factory, b.settings, incoming.id)
            assert (sent.state, sent.reported_state, sent.last_error) == (expected, expected, "")
            with a.factory() as session:
                assert session.get_one(Referral, out.id).state == expected
        assert referrals.sweep(b.factory, b.settings).queued == []  # nothing left to say
    with a.factory() as session:
        assert session.get_one(Case, case_id).state == "removed"
        changes = session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.status")).all()
        assert [(e.details["from"], e.details["to"]) for e in changes] == [
            ("received", "assessed"),
            ("assessed", "actioned"),
            ("actioned", "removed"),
        ]
        assert audit.verify(session).ok


# ---- refusals, as the receiving hotline ----------------------------------------------------------


def test_forged_unknown_misaddressed_and_replayed_referrals_are_refused(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path, captured: list[int]
) -> None:
    settings.hotline_country = "NL"
    theirs, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    new = partners.create_partner(db, settings, SYSTEM, name="gb-hotline", country="GB", public_key=public_text(theirs))
    db.commit()
    assert new.issued_key is not None and new.partner.inbound_key == "partner-gb-hotline"
    headers = {"authorization": f"Bearer {new.issued_key}"}
    ours = fingerprint_of(client.get("/v1/referrals/key", headers=_admin(db)).json()["public_key"])
    hashes = benign_hashes(tmp_path, (4,))
    document = referral_document(str(uuid.uuid4()), fingerprint_of(public_text(theirs)), ours, hashes)

    accepted = client.post("/v1/referrals", json=signed(theirs, document), headers=headers)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["status"] == "received" and accepted.json()["reference"].startswith("R-")

    def refused(envelope: dict[str, Any], with_headers: dict[str, str] = headers) -> tuple[int, str]:
        answer = client.post("/v1/referrals", json=envelope, headers=with_headers)
        return answer.status_code, answer.json()["detail"]

    fresh = {**document, "uid": str(uuid.uuid4())}
    tampered = signed(theirs, fresh)
    tampered["document"] = {**fresh, "url": "https://elsewhere.example/"}
    assert refused(tampered) == (
        422,
        "the signature does not verify (checked against the key registered for gb-hotline)",
    )
    assert refused(signed(stranger, fresh)) == (
        422,
        "the signature does not verify (checked against the key registered for gb-hotline)",
    )
    assert refused({**signed(theirs, fresh), "signature": "not base64!"}) == (
        422,
        "the signature is not valid base64 (checked against the key registered for gb-hotline)",
    )
    misaddressed = {**fresh, "recipient": {"country": "BE", "key": "0" * 64}}
    assert refused(signed(theirs, misaddressed)) == (
        422,
        "the document is addressed to another hotline (its recipient key is not ours)",
    )
    assert refused(signed(theirs, {**fresh, "version": 2}))[1].startswith("not a referral document: version:")
    # A key that is no partner's (even one with the scope), and a key without the scope.
    other = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["referrals:write", "reports:write"])
    lacking = auth_service.create_api_key(db, SYSTEM, name="matcher", scopes=["match"])
    db.commit()
    assert refused(signed(theirs, fresh), {"authorization": f"Bearer {other.secret}"}) == (
        422,
        "unknown sender: this credential is no partner hotline's key here",
    )
    assert refused(signed(theirs, fresh), {"authorization": f"Bearer {lacking.secret}"}) == (
        403,
        "this credential lacks the 'referrals:write' scope",
    )
    # Replays: the same document (its reference told), or other contents under a used uid.
    replay = client.post("/v1/referrals", json=signed(theirs, document), headers=headers)
    assert (replay.status_code, replay.json()["reference"]) == (409, accepted.json()["reference"])
    reused = {**document, "url": "https://images.example.nl/album/8"}
    assert refused(signed(theirs, reused)) == (
        409,
        f"referral {document['uid']} was received already, with other contents",
    )
    partners.update_partner(db, settings, SYSTEM, "gb-hotline", enabled=False)
    db.commit()
    assert refused(signed(theirs, fresh)) == (422, "partner hotline 'gb-hotline' is disabled here")

    db.rollback()
    assert db.scalar(select(func.count()).select_from(Report)) == 1
    assert db.scalar(select(func.count()).select_from(Referral)) == 1
    report = db.scalars(select(Report)).one()
    assert (report.channel, report.external_id) == ("referral", document["uid"])
    assert {v for _, v in db.execute(select(ReportSignal.signal_type, ReportSignal.value))} == {
        hashes[0][k] for k in ("md5", "sha1", "sha256", "pdq")
    }


def _admin(db: Session) -> dict[str, str]:
    key = auth_service.create_api_key(db, SYSTEM, name=f"admin-{uuid.uuid4().hex[:6]}", scopes=["admin"])
    db.commit()
    return {"authorization": f"Bearer {key.secret}"}


# ---- status updates, as the referring hotline ---------------------------------------------------


def test_status_updates_only_move_forward_and_only_from_the_hotline_referred_to(
    client: TestClient,
    db: Session,
    hotline_a: Instance,
    tmp_path: Path,
    scheduled: list[tuple[int, float]],
    captured: list[int],
) -> None:
    nl, be = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issued = {}
    for name, country, key in (("nl-hotline", "NL", nl), ("be-hotline", "BE", be)):
        issued[name] = partners.create_partner(
            db,
            hotline_a.settings,
            SYSTEM,
            name=name,
            country=country,
            endpoint=f"https://{name}.example",  # never contacted: the test drives no delivery
            public_key=public_text(key),
            api_key="their-key-for-us",
        ).issued_key
    db.commit()
    case_id = confirmed_case(
        hotline_a.factory, hotline_a.settings, benign_hashes(tmp_path, (5,)), "https://nl.example/a"
    )
    with transaction(hotline_a.factory) as session:
        out = referrals.refer(session, hotline_a.settings, SYSTEM, session.get_one(Case, case_id), "nl")
        uid = out.uid
    ours = signing.own_fingerprint(hotline_a.settings)

    def status(key: Ed25519PrivateKey, name: str, state: str, about: str = uid) -> tuple[int, Any]:
        document = {
            "type": "seawall.referral_status",
            "version": 1,
            "referral": about,
            "reference": "R-NLNLN-00001",
            "status": state,
            "at": "2026-12-02T10:00:00Z",
            "sender": {"country": "NL", "key": fingerprint_of(public_text(key))},
            "recipient": {"country": "GB", "key": ours},
        }
        answer = client.post(
            f"/v1/referrals/{uid}/status",
            json=signed(key, document),
            headers={"authorization": f"Bearer {issued[name]}"},
        )
        return answer.status_code, answer.json()

    assert status(be, "be-hotline", "removed") == (404, {"detail": f"no referral {uid} was sent to 'be-hotline'"})
    assert status(nl, "nl-hotline", "removed", about=str(uuid.uuid4()))[0] == 422
    assert status(be, "nl-hotline", "removed") == (
        422,
        {"detail": "the signature does not verify (checked against the key registered for nl-hotline)"},
    )
    assert status(nl, "nl-hotline", "actioned") == (200, {"referral": uid, "state": "actioned"})
    assert status(nl, "nl-hotline", "received") == (200, {"referral": uid, "state": "actioned"})  # not backwards
    assert status(nl, "nl-hotline", "removed") == (200, {"referral": uid, "state": "removed"})
    assert status(nl, "nl-hotline", "closed") == (200, {"referral": uid, "state": "removed"})
    db.rollback()
    row = db.scalars(select(Referral)).one()
    # A status arriving first (its answer to our POST lost) stops our delivery: it got there.
    assert (row.state, row.remote_id, row.next_attempt_at) == ("removed", "R-NLNLN-00001", None)
    assert db.get_one(Case, case_id).state == "removed"


# ---- waiting for a partner; crash recovery ------------------------------------------------------


def test_a_referral_waits_for_a_partner_and_a_crashed_attempt_is_picked_up_again(
    db: Session,
    hotline_a: Instance,
    tmp_path: Path,
    scheduled: list[tuple[int, float]],
    captured: list[int],
) -> None:
    a = hotline_a
    case_id = confirmed_case(a.factory, a.settings, benign_hashes(tmp_path, (6, 7)), "https://host.example.de/x")
    with transaction(a.factory) as session:
        case = session.get_one(Case, case_id)
        first = referrals.refer(session, a.settings, SYSTEM, case, "DE")
        assert referrals.refer(session, a.settings, SYSTEM, case, "DE").id == first.id  # once per country
    db.rollback()
    waiting = db.get_one(Referral, first.id)
    assert (waiting.state, waiting.partner_id, waiting.signature, waiting.next_attempt_at) == (
        "pending",
        None,
        "",
        None,
    )
    assert waiting.last_error == "no partner hotline for DE yet: add one (seawall partners add NAME --country DE …)"
    assert db.get_one(Case, case_id).state == "referred"
    assert scheduled == [] and referrals.sweep(a.factory, a.settings).queued == []

    de = Ed25519PrivateKey.generate()
    with transaction(a.factory) as session:
        partners.create_partner(
            session, a.settings, SYSTEM, name="de-hotline", country="DE", public_key=public_text(de)
        )
    assert referrals.sweep(a.factory, a.settings).routed == 0  # no endpoint or key yet: still waiting
    db.rollback()
    assert db.get_one(Referral, first.id).last_error == (
        "partner de-hotline has no endpoint or API key yet (seawall partners update de-hotline …)"
    )
    port = free_port()  # nothing listens there: every attempt fails
    with transaction(a.factory) as session:
        partners.update_partner(
            session, a.settings, SYSTEM, "de-hotline", endpoint=f"http://127.0.0.1:{port}", api_key="their-key"
        )
    swept = referrals.sweep(a.factory, a.settings)
    assert (swept.routed, swept.queued) == (1, [first.id])
    db.rollback()
    routed = db.get_one(Referral, first.id)
    assert routed.document["recipient"]["name"] == "de-hotline"
    assert partner_accepts(
        signing.public_key_text(a.settings), {"document": routed.document, "signature": routed.signature}
    )

    # An attempt whose worker died holds the row until its lease ends; then the sweep queues it again.
    start = utcnow()
    scheduled.clear()
    failed = referrals.deliver(a.factory, a.settings, first.id, now=start)
    assert (failed.state, failed.attempts) == ("pending", 1)
    assert failed.last_error.startswith("ConnectError:") and "refused" in failed.last_error.lower()
    assert scheduled == [(first.id, 60.0)]  # the first back-off
    with transaction(a.factory) as session:  # a second worker claims, then dies mid-request
        session.get_one(Referral, first.id).next_attempt_at = start
    with transaction(a.factory) as session:
        claim = referrals._claim(session, a.settings, first.id, start)
    assert claim is not None and claim.attempt == 2
    assert referrals.sweep(a.factory, a.settings, now=start).queued == []  # its lease still runs
    later = claim.lease + (claim.lease - start)
    assert referrals.sweep(a.factory, a.settings, now=later).queued == [first.id]
    a.settings.referral_max_attempts = 3
    gone = referrals.deliver(a.factory, a.settings, first.id, now=later)
    assert (gone.state, gone.attempts, gone.next_attempt_at) == ("failed", 3, None)
    # Referred again (a second confirmation, or `referrals retry`): tried afresh, not duplicated.
    with transaction(a.factory) as session:
        again = referrals.refer(session, a.settings, SYSTEM, session.get_one(Case, case_id), "DE")
        assert (again.id, again.state, again.attempts) == (first.id, "pending", 0)
    assert db.scalar(select(func.count()).select_from(Referral)) == 1


# ---- the worker, for real ---------------------------------------------------------------------------


@pytest.fixture
def worker_env(hotline_a: Instance, database_url: str) -> dict[str, str]:
    env = child_environment(
        SEAWALL_HOME=str(hotline_a.settings.ensure_home()),
        SEAWALL_DATABASE_URL=database_url,
        SEAWALL_SECRET_KEY=hotline_a.settings.effective_secret_key(),
        SEAWALL_FETCH_ALLOW_NETWORKS=json.dumps(LOOPBACK),
        SEAWALL_REFERRAL_RETRY_BASE_SECONDS="0.2",
        SEAWALL_REFERRAL_MAX_ATTEMPTS="40",
        SEAWALL_REFERRAL_TIMEOUT_SECONDS="5",
        SEAWALL_LOG_JSON="true",
    )
    return env


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_worker_retries_until_the_partner_is_up(
    hotline_a: Instance,
    hotline_b: Instance,
    worker_env: dict[str, str],
    tmp_path: Path,
    scheduled: list[tuple[int, float]],
    captured: list[int],
) -> None:
    a, b = hotline_a, hotline_b
    port = free_port()  # B is down: nothing listens there yet
    a.url, b.url = "http://127.0.0.1:9", f"http://127.0.0.1:{port}"
    pair(a, b)
    case_id = confirmed_case(a.factory, a.settings, benign_hashes(tmp_path, (8, 9)), "https://img.example.nl/p/1")
    with transaction(a.factory) as session:
        uid = referrals.refer(session, a.settings, SYSTEM, session.get_one(Case, case_id), "NL").uid
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "seawall", "worker", "--workers", "2", "--no-periodic"],
            env=worker_env,
            stdout=log,
            stderr=log,
        )
    try:
        # As the worker's periodic sweep would: here the test's scheduler kept the referral off the queue.
        queued = subprocess.run(
            [sys.executable, "-m", "seawall", "referrals", "sync"],
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert queued.returncode == 0, queued.stderr
        assert json.loads(queued.stdout) == {"routed": 0, "progressed": 0, "queued": 1}

        def referral() -> Referral:
            with a.factory() as session:
                return session.scalars(select(Referral).where(Referral.uid == uid)).one()

        deadline = time.monotonic() + 60
        while not referral().last_error and time.monotonic() < deadline:  # a first attempt failed
            time.sleep(0.05)
        down = referral()
        assert down.attempts >= 1 and down.state == "pending", log_path.read_text()[-3000:]
        assert down.last_error.startswith("ConnectError:")
        with serve(b.app, port=port):
            deadline = time.monotonic() + 60
            while referral().state == "pending" and time.monotonic() < deadline:
                time.sleep(0.1)
            up = referral()
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert (up.state, up.last_error) == ("received", ""), log_path.read_text()[-3000:]
    assert up.attempts >= 2 and up.remote_id is not None
    with b.factory() as session:
        report = session.scalars(select(Report)).one()
        assert (report.reference, report.channel, report.external_id) == (up.remote_id, "referral", uid)


# ---- the partner directory: API, CLI, keys -------------------------------------------------------


def test_the_partner_directory_through_the_api_checks_what_it_is_given(
    client: TestClient, db: Session, settings: Settings
) -> None:
    admin = _admin(db)
    theirs = Ed25519PrivateKey.generate()
    body = {
        "name": "nl-hotline",
        "country": "nl",
        "endpoint": "https://hotline.example.nl/",
        "public_key": public_text(theirs),
    }
    for change, message in (
        ({"endpoint": "http://hotline.example.nl"}, "endpoint: use https (plain http only to an address"),
        ({"endpoint": "https://10.1.2.3"}, "endpoint refused: 10.1.2.3 is not a public address"),
        ({"endpoint": "https://someone.example:pw@hotline.example.nl"}, "endpoint: no credentials, query or fragment"),
        ({"public_key": "ed25519:AAAA"}, "public key: an Ed25519 public key is 32 bytes, this one is 3"),
        ({"country": "NLD"}, "String should have at most 2 characters"),
        ({"name": "no spaces please"}, "a partner's name is 1 to 100 letters"),
    ):
        answer = client.post("/v1/partners", json={**body, **change}, headers=admin)
        assert answer.status_code == 422, change
        detail = answer.json()["detail"]
        assert (detail if isinstance(detail, str) else detail[0]["msg"]).startswith(message), (change, detail)
    made = client.post("/v1/partners", json={**body, "api_key": "our-secret-key-at-theirs"}, headers=admin)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert shown["issued_key"].startswith("swk_") and shown["inbound_key"] == "partner-nl-hotline"
    assert (shown["country"], shown["endpoint"], shown["has_api_key"]) == ("NL", "https://hotline.example.nl", True)
    assert shown["fingerprint"] == fingerprint_of(public_text(theirs))
    assert "our-secret-key-at-theirs" not in json.dumps(client.get("/v1/partners", headers=admin).json())
    assert client.post("/v1/partners", json=body, headers=admin).status_code == 409
    db.rollback()
    sealed = db.scalars(select(PartnerHotline)).one().api_key_sealed
    assert sealed is not None and "our-secret-key-at-theirs" not in sealed
    events = db.scalars(select(AuditEvent).where(AuditEvent.action.like("partner.%"))).all()
    assert "our-secret-key-at-theirs" not in json.dumps([e.details for e in events])

    patched = client.patch("/v1/partners/nl-hotline", json={"enabled": False, "api_key": None}, headers=admin)
    assert (patched.json()["enabled"], patched.json()["has_api_key"], patched.json()["endpoint"]) == (
        False,
        False,
        "https://hotline.example.nl",
    )
    # Removing a partner revokes the key it called us with.
    issued = {"authorization": f"Bearer {shown['issued_key']}"}
    assert client.post("/v1/referrals", json={"document": {}, "signature": ""}, headers=issued).status_code == 422
    assert client.delete("/v1/partners/nl-hotline", headers=admin).status_code == 200
    auth_service.clear_key_cache()
    answer = client.post("/v1/referrals", json={"document": {}, "signature": ""}, headers=issued)
    assert (answer.status_code, answer.json()["detail"]) == (401, "this API key has been revoked")
    assert client.get("/v1/partners/nl-hotline", headers=admin).status_code == 404


def test_partners_cli_and_the_signing_key_file(
    tmp_path: Path, database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall.cli import app as cli_app

    monkeypatch.setenv("SEAWALL_HOME", str(settings.home))
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_SECRET_KEY", settings.effective_secret_key())
    monkeypatch.setenv("COLUMNS", "200")
    reset_settings()
    runner = CliRunner()
    try:
        key = runner.invoke(cli_app, ["partners", "key"])
        assert key.exit_code == 0, key.output
        public = key.stdout.strip()
        assert public.startswith("ed25519:") and len(base64.b64decode(public.removeprefix("ed25519:"))) == 32
        path = settings.home / "referral-signing.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert runner.invoke(cli_app, ["partners", "key"]).stdout.strip() == public  # made once
        # The private key is in the file only: it signs what the public key printed verifies.
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey) and public_text(private) == public

        theirs = Ed25519PrivateKey.generate()
        (tmp_path / "their.pub").write_text(public_text(theirs))
        (tmp_path / "our-key").write_text("secret-we-hold-at-theirs\n")
        added = runner.invoke(
            cli_app,
            [
                "partners",
                "add",
                "be-hotline",
                "--country",
                "be",
                "--endpoint",
                "https://hotline.example.be",
                "--public-key",
                str(tmp_path / "their.pub"),
                "--api-key-file",
                str(tmp_path / "our-key"),
            ],
        )
        assert added.exit_code == 0, added.output
        assert added.stdout.strip().splitlines()[-1].startswith("swk_")  # the key issued to them, once
        shown = runner.invoke(cli_app, ["partners", "show", "be-hotline"])
        assert f"fingerprint: {fingerprint_of(public_text(theirs))}" in shown.stdout
        assert "our API key at its instance: stored (sealed)" in shown.stdout and "secret-we-hold" not in shown.stdout
        assert "be-hotline" in runner.invoke(cli_app, ["partners", "ls"]).stdout
        bad = runner.invoke(cli_app, ["partners", "add", "x", "--country", "FR", "--public-key", "ssh-rsa AAAA"])
        assert bad.exit_code == 2 and "public key: a public key is 'ed25519:<base64>'" in bad.output
        assert runner.invoke(cli_app, ["partners", "remove", "be-hotline"]).exit_code == 0
        assert runner.invoke(cli_app, ["partners", "show", "be-hotline"]).exit_code == 2

        # A key file others may read is refused, not used.
        path.chmod(0o640)
        refused = runner.invoke(cli_app, ["partners", "key"])
        assert refused.exit_code != 0 and "may be read by other users" in str(refused.exception)
    finally:
        reset_settings()
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        revoked = session.scalars(select(ApiKey).where(ApiKey.name == "partner-be-hotline")).one()
        assert revoked.revoked_at is not None
    engine.dispose()


# ---- the law-enforcement package ----------------------------------------------------------------


def test_the_law_enforcement_package_parses_is_signed_and_holds_no_media(
    tmp_path: Path,
    database_url: str,
    settings: Settings,
    hotline_a: Instance,
    monkeypatch: pytest.MonkeyPatch,
    scheduled: list[tuple[int, float]],
    captured: list[int],
) -> None:
    from seawall.cli import app as cli_app

    hashes = benign_hashes(tmp_path, (10, 11, 12))
    case_id = confirmed_case(hotline_a.factory, settings, hashes, "https://files.example.ru/a", country="RU")
    with hotline_a.factory() as session:
        case = session.get_one(Case, case_id)
        reference = case.reference
        report = session.scalars(select(Report).where(Report.case_id == case_id)).one().reference
    monkeypatch.setenv("SEAWALL_HOME", str(settings.home))
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_SECRET_KEY", settings.effective_secret_key())
    monkeypatch.setenv("SEAWALL_HOTLINE_NAME", "Hotline GB")
    monkeypatch.setenv("COLUMNS", "200")
    reset_settings()
    out = tmp_path / "handover"
    try:
        made = CliRunner().invoke(cli_app, ["referrals", "export-le", reference.lower(), report, "--out", str(out)])
        again = CliRunner().invoke(cli_app, ["referrals", "export-le", reference, "--out", str(out)])
        missing = CliRunner().invoke(cli_app, ["referrals", "export-le", "C-00000-00000", "--out", str(tmp_path / "x")])
    finally:
        reset_settings()
    assert made.exit_code == 0, made.output
    assert again.exit_code == 2 and "exists and is not an empty folder" in again.output
    assert missing.exit_code == 2 and "no case or report 'C-00000-00000'" in missing.output
    line = json.loads(made.stdout)
    assert line["cases"] == [reference]  # the case and its report name one case
    names = sorted(p.name for p in out.iterdir())
    assert names == ["captures.csv", "cases.csv", "items.csv", "referral.json", "timeline.csv", "urls.csv"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o600}
    assert not list(tmp_path.glob(".handover.partial-*"))

    package = json.loads((out / "referral.json").read_text())
    assert partner_accepts(package["public_key"], package)
    assert package["public_key"] == signing.public_key_text(settings)
    document = package["document"]
    assert (document["type"], document["sender"]["name"], document["sender"]["country"]) == (
        "seawall.law_enforcement_referral",
        "Hotline GB",
        "GB",
    )
    for name in ("cases.csv", "urls.csv", "captures.csv", "items.csv", "timeline.csv"):
        assert document["files"][name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    [record] = document["cases"]
    assert (record["reference"], record["url"], record["hosting"]["country"]) == (
        reference,
        "https://files.example.ru/a",
        "RU",
    )
    assert [i["sha256"] for i in record["items"]] == [h["sha256"] for h in hashes]  # every item, each graded
    assert [i["classification"]["outcome"] for i in record["items"]] == ["csam", "csam", "not_csam"]
    assert record["classification"]["category"] == "B" and record["captures"][0]["http_status"] == 200
    assert [e["event"] for e in record["timeline"]][:2] == ["case opened", "report received"]

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO((out / name).read_text())))

    items = rows("items.csv")
    assert [(r["case"], r["sha256"], r["md5"], r["pdq"], r["outcome"]) for r in items] == [
        (reference, h["sha256"], h["md5"], h["pdq"], o)
        for h, o in zip(hashes, ("csam", "csam", "not_csam"), strict=True)
    ]
    [case_row] = rows("cases.csv")
    # A cell a spreadsheet would run as a formula is quoted; referral.json keeps the value as it is.
    assert (
        case_row["hosting_as_name"] == "'=Example Hosting B.V."
        and record["hosting"]["as_name"] == "=Example Hosting B.V."
    )
    assert {r["kind"] for r in rows("urls.csv")} == {"case", "reported", "final", "media"}
    assert rows("timeline.csv")[0]["event"] == "case opened"

    # No media: no file holds any of the pictures' bytes, whole or in part, raw or in base64.
    blobs = b"".join(p.read_bytes() for p in out.iterdir())
    for h in hashes:
        picture = (tmp_path / f"benign-{h['seed']}.png").read_bytes()
        for chunk in (picture[64:128], picture[-64:], base64.b64encode(picture[96:192])):
            assert chunk not in blobs
    assert len(blobs) < 40_000

    with hotline_a.factory() as session:
        recorded = session.scalars(select(Referral).where(Referral.kind == "law_enforcement")).one()
        assert (recorded.direction, recorded.state, recorded.case_id, recorded.remote_id) == (
            "out",
            "exported",
            case_id,
            line["package"],
        )
        assert recorded.document["files"] == document["files"]
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.export_le")).one()


def test_referrals_cli_sends_lists_shows_and_retries(
    tmp_path: Path,
    database_url: str,
    hotline_a: Instance,
    monkeypatch: pytest.MonkeyPatch,
    scheduled: list[tuple[int, float]],
    captured: list[int],
) -> None:
    from seawall.cli import app as cli_app

    settings = hotline_a.settings
    case_id = confirmed_case(hotline_a.factory, settings, benign_hashes(tmp_path, (13,)), "https://unknown.example/q")
    with hotline_a.factory() as session:
        reference = session.get_one(Case, case_id).reference
    for name, value in (
        ("SEAWALL_HOME", str(settings.home)),
        ("SEAWALL_DATABASE_URL", database_url),
        ("SEAWALL_SECRET_KEY", settings.effective_secret_key()),
        ("SEAWALL_FETCH_ALLOW_NETWORKS", json.dumps(LOOPBACK)),
        ("COLUMNS", "200"),
    ):
        monkeypatch.setenv(name, value)
    reset_settings()
    runner = CliRunner()
    try:
        sent = runner.invoke(cli_app, ["referrals", "send", reference, "--country", "se"])
        assert sent.exit_code == 0, sent.output
        line = json.loads(sent.stdout)
        assert (line["state"], line["last_error"]) == (
            "pending",
            "no partner hotline for SE yet: add one (seawall partners add NAME --country SE …)",
        )
        assert runner.invoke(cli_app, ["referrals", "send", "C-00000-00000", "--country", "SE"]).exit_code == 2
        listed = runner.invoke(cli_app, ["referrals", "ls", "--direction", "out"])
        assert line["uid"] in listed.stdout and reference in listed.stdout and "pending" in listed.stdout
        shown = json.loads(runner.invoke(cli_app, ["referrals", "show", line["uid"]]).stdout)
        assert (shown["document"]["uid"], shown["document"]["recipient"], shown["signature"]) == (
            line["uid"],
            {"name": None, "country": "SE", "key": None},
            "",  # signed once it is addressed to a partner
        )
        with transaction(hotline_a.factory) as session:
            partners.create_partner(
                session,
                settings,
                SYSTEM,
                name="se-hotline",
                country="SE",
                endpoint=f"http://127.0.0.1:{free_port()}",
                public_key=public_text(Ed25519PrivateKey.generate()),
                api_key="their-key",
            )
        synced = runner.invoke(cli_app, ["referrals", "sync"])
        assert json.loads(synced.stdout) == {"routed": 1, "progressed": 0, "queued": 1}
        assert runner.invoke(cli_app, ["referrals", "retry", line["uid"]]).exit_code == 0
        with transaction(hotline_a.factory) as session:
            session.scalars(select(Referral)).one().state = "received"
        refused = runner.invoke(cli_app, ["referrals", "retry", line["uid"]])
        assert (
            refused.exit_code == 2 and f"referral {line['uid']} was received by the partner already" in refused.output
        )
    finally:
        reset_settings()
    with hotline_a.factory() as session:
        referral = session.scalars(select(Referral)).one()
        assert scheduled == [(referral.id, 0.0), (referral.id, 0.0)]  # the sync, then the retry
        retried = session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.retry")).one()
        assert retried.details == {"uid": line["uid"]} and retried.actor_type == "cli"
