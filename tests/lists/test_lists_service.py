"""Lists and entries: validation, idempotent adds, revisions and changes, opinions, the API, the feed."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.db import make_sessionmaker, utcnow
from seawall.lists import service
from seawall.lists.models import ListChange
from seawall.lists.records import EntryRecord, FormatError, ParsedLine
from seawall.lists.tasks import reenable_expired

PDQ_A = "f" * 32 + "0" * 32
PDQ_B = "0f" * 32


def md5(n: int) -> str:
    return hashlib.md5(f"benign-{n}".encode()).hexdigest()


def sha256(n: int) -> str:
    return hashlib.sha256(f"benign-{n}".encode()).hexdigest()


def _hash_list(db: Session, name: str = "known") -> service.HashList:
    hl = service.create_list(db, SYSTEM, name=name, kind="hash", description="benign stand-ins")
    db.commit()
    return hl


def test_entries_are_validated_by_signal_type(db: Session) -> None:
    hl = _hash_list(db)
    result = service.add_entries(
        db,
        SYSTEM,
        hl,
        [
            EntryRecord("md5", md5(1).upper(), category="A", labels=("x", " y ", "x")),
            EntryRecord("", md5(2)),  # 32 hex: md5 by length
            EntryRecord("pdq", PDQ_A),
            EntryRecord("sha256", sha256(1)),
        ],
    )
    db.commit()
    assert (result.added, result.updated, result.unchanged, result.revision) == (4, 0, 0, 4)
    stored = list(service.iter_entries(db, hl))
    assert [(e.signal_type, e.value) for e in stored] == [
        ("md5", md5(1)),
        ("md5", md5(2)),
        ("pdq", PDQ_A),
        ("sha256", sha256(1)),
    ]
    assert stored[0].labels == ["x", "y"] and stored[0].category == "A" and stored[0].added_by == "system"
    with pytest.raises(service.InvalidEntries, match=r"line 1: cannot tell the signal type of a 64-character value"):
        service.add_entries(db, SYSTEM, hl, [EntryRecord("", sha256(2))])
    db.rollback()
    with pytest.raises(service.InvalidEntries, match=r"line 2: .*expected 64 hex digits"):
        service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", PDQ_B), EntryRecord("pdq", "abc")])
    db.rollback()
    with pytest.raises(service.InvalidEntries, match="unknown signal type 'photodna2'"):
        service.add_entries(db, SYSTEM, hl, [EntryRecord("photodna2", "00")])
    db.rollback()
    assert service.count_entries(db, hl) == {"active": 4, "disabled": 0, "retracted": 0}


def test_adds_are_idempotent_and_updates_are_changes(db: Session) -> None:
    hl = _hash_list(db)
    records = [EntryRecord("md5", md5(i), category="B", external_id=f"x{i}") for i in range(5)]
    first = service.add_entries(db, SYSTEM, hl, records, batch_size=2)
    db.commit()
    again = service.add_entries(db, SYSTEM, hl, records, batch_size=3)
    db.commit()
    assert (first.added, again.added, again.unchanged, again.revision) == (5, 0, 5, 5)
    # Same hash, another external id: a separate entry. Same identity, new category: an update.
    third = service.add_entries(
        db,
        SYSTEM,
        hl,
        [EntryRecord("md5", md5(0), external_id="other"), EntryRecord("md5", md5(1), category="A", external_id="x1")],
    )
    db.commit()
    assert (third.added, third.updated, third.revision) == (1, 1, 7)
    changes = service.changes_since(db, hl, 5)
    assert [(c.revision, c.op, c.details) for c in changes] == [(6, "add", {}), (7, "update", {"category": "A"})]
    assert db.scalar(select(func.count()).select_from(ListChange)) == 7
    # One audit event per batch call that changed something, not per entry.
    actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions == ["list.create", "list.entries", "list.entries"]


def test_skip_invalid_counts_and_reports_the_first_errors(db: Session) -> None:
    hl = _hash_list(db)
    lines = [
        ParsedLine(1, EntryRecord("md5", md5(1))),
        ParsedLine(2, error=FormatError(2, "expected 7 columns, got 3")),
        ParsedLine(3, EntryRecord("md5", "xyz")),
        ParsedLine(4, EntryRecord("sha1", hashlib.sha1(b"benign").hexdigest())),
    ]
    with pytest.raises(service.InvalidEntries) as caught:
        service.add_entries(db, SYSTEM, hl, lines)
    assert str(caught.value) == "line 2: expected 7 columns, got 3"
    db.rollback()
    assert service.count_entries(db, hl)["active"] == 0
    result = service.add_entries(db, SYSTEM, hl, lines, skip_invalid=True)
    db.commit()
    assert (result.added, result.invalid) == (2, 2)
    assert [str(e) for e in result.errors] == [
        "line 2: expected 7 columns, got 3",
        "line 3: md5: expected 32 hex digits, got 3",
    ]


def test_retire_and_opinions_disable_after_threshold(db: Session) -> None:
    hl = _hash_list(db)
    service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", PDQ_A), EntryRecord("pdq", PDQ_B)])
    db.commit()
    [entry_a] = service.find_entries(db, hl, PDQ_A.upper(), "pdq")
    assert service.set_status(db, SYSTEM, [entry_a], "retracted", reason="wrong image") == 1
    assert service.set_status(db, SYSTEM, [entry_a], "retracted") == 0  # already retracted
    db.commit()
    [entry_b] = service.find_entries(db, hl, PDQ_B, "pdq")
    for i in range(2):
        service.add_opinion(db, SYSTEM, entry_b, "false_positive", f"meme {i}", false_positive_threshold=3)
    assert entry_b.status == "active"
    service.add_opinion(db, SYSTEM, entry_b, "true_positive", false_positive_threshold=3)
    service.add_opinion(db, SYSTEM, entry_b, "false_positive", false_positive_threshold=3)
    db.commit()
    assert entry_b.status == "disabled"
    changes = service.changes_since(db, hl, 2)
    assert [(c.op, c.status, c.details.get("reason")) for c in changes] == [
        ("status", "retracted", "wrong image"),
        ("status", "disabled", "3 false-positive opinions; pending review"),
    ]
    assert [o.verdict for o in service.opinions(db, entry_b)] == [
        "false_positive",
        "false_positive",
        "true_positive",
        "false_positive",
    ]
    with pytest.raises(service.ListError, match="unknown verdict 'maybe'"):
        service.add_opinion(db, SYSTEM, entry_b, "maybe")


def test_list_settings_validation(db: Session) -> None:
    with pytest.raises(service.ListError, match="unknown list kind 'image'"):
        service.create_list(db, SYSTEM, name="x", kind="image")
    with pytest.raises(service.ListError, match="a list name is"):
        service.create_list(db, SYSTEM, name="has space", kind="hash")
    with pytest.raises(service.ListError, match="pdq threshold must be a whole number from 0 to 256"):
        service.create_list(db, SYSTEM, name="x", kind="hash", thresholds={"pdq": 300})
    with pytest.raises(service.ListError, match="md5 is matched exactly"):
        service.create_list(db, SYSTEM, name="x", kind="hash", thresholds={"md5": 1})
    hl = service.create_list(db, SYSTEM, name="x", kind="hash", thresholds={"pdq": 52})
    service.update_list(db, SYSTEM, hl, enabled=False, dihedral=False)
    db.commit()
    assert (hl.enabled, hl.dihedral, hl.thresholds, hl.revision) == (False, False, {"pdq": 52}, 1)
    [change] = service.changes_since(db, hl, 0)
    assert (change.op, change.details) == ("list", {"enabled": False, "dihedral": False})


# ---- API -------------------------------------------------------------------------------------


def _bearer(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def test_api_lists_entries_paging_filters_and_scopes(client: TestClient, db: Session) -> None:
    writer = _bearer(db, "curator", ["lists:write", "lists:read"])
    reader = _bearer(db, "platform", ["lists:read"], lists=["known"])
    assert client.post("/v1/lists", json={"name": "known", "kind": "hash"}, headers=writer).status_code == 201
    assert client.post("/v1/lists", json={"name": "secret", "kind": "hash"}, headers=writer).status_code == 201
    assert client.post("/v1/lists", json={"name": "known", "kind": "hash"}, headers=writer).status_code == 409
    assert client.post("/v1/lists", json={"name": "k2", "kind": "hash"}, headers=reader).status_code == 403
    entries = [
        {"signal_type": "md5", "value": md5(i), "category": "A" if i % 2 else "C", "labels": ["l"] if i < 3 else []}
        for i in range(7)
    ]
    added = client.post("/v1/lists/known/entries", json={"entries": entries}, headers=writer).json()
    assert added == {"added": 7, "updated": 0, "unchanged": 0, "invalid": 0, "errors": [], "revision": 7}
    bad = client.post(
        "/v1/lists/known/entries",
        json={"entries": [{"value": md5(9)}, {"signal_type": "pdq", "value": "zz"}]},
        headers=writer,
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("nothing was added: entry line 2: pdq:")
    # The key limited to "known" sees only it; the other list does not exist for it.
    assert [x["name"] for x in client.get("/v1/lists", headers=reader).json()] == ["known"]
    assert client.get("/v1/lists/secret", headers=reader).status_code == 404
    shown = client.get("/v1/lists/known", headers=reader).json()
    assert shown["counts"] == {"active": 7, "disabled": 0, "retracted": 0} and shown["revision"] == 7
    page1 = client.get("/v1/lists/known/entries?limit=3", headers=reader).json()
    page2 = client.get(f"/v1/lists/known/entries?limit=3&after={page1['next_after']}", headers=reader).json()
    page3 = client.get(f"/v1/lists/known/entries?limit=3&after={page2['next_after']}", headers=reader).json()
    values = [e["value"] for p in (page1, page2, page3) for e in p["entries"]]
    assert values == [md5(i) for i in range(7)] and page3["next_after"] is None
    only_a = client.get("/v1/lists/known/entries?category=A", headers=reader).json()["entries"]
    assert [e["value"] for e in only_a] == [md5(1), md5(3), md5(5)]
    labelled = client.get("/v1/lists/known/entries?label=l", headers=reader).json()["entries"]
    assert [e["value"] for e in labelled] == [md5(0), md5(1), md5(2)]
    retired = client.post("/v1/lists/known/entries/status", json={"values": [md5(0)], "reason": "test"}, headers=writer)
    assert retired.json() == {"changed": 1, "revision": 8}
    assert client.post("/v1/lists/known/entries/status", json={"values": [md5(99)]}, headers=writer).status_code == 404
    entry_id = page1["entries"][1]["id"]
    opinion = client.post(
        f"/v1/lists/known/entries/{entry_id}/opinions", json={"verdict": "disputed", "comment": "?"}, headers=writer
    )
    assert opinion.status_code == 201 and opinion.json()["entry_status"] == "active"


def test_feed_pages_across_concurrent_changes(client: TestClient, db: Session) -> None:
    writer = _bearer(db, "curator", ["lists:write", "lists:read"])
    follower = _bearer(db, "partner-hotline", ["lists:read"], lists=["known"])
    client.post("/v1/lists", json={"name": "known", "kind": "hash"}, headers=writer)
    client.post(
        "/v1/lists/known/entries",
        json={"entries": [{"signal_type": "md5", "value": md5(i)} for i in range(5)]},
        headers=writer,
    )
    seen: dict[str, str] = {}
    since = 0
    first = client.get(f"/v1/lists/known/feed?since={since}&limit=3", headers=follower).json()
    assert (first["more"], first["next_since"], first["revision"]) == (True, 3, 5)
    for change in first["changes"]:
        seen[change["entry"]["value"]] = change["entry"]["status"]
    since = first["next_since"]
    # Changes land between pages: more adds and a retraction of an entry already seen.
    client.post(
        "/v1/lists/known/entries",
        json={"entries": [{"signal_type": "md5", "value": md5(i)} for i in range(5, 8)]},
        headers=writer,
    )
    client.post("/v1/lists/known/entries/status", json={"values": [md5(1)]}, headers=writer)
    while True:
        page = client.get(f"/v1/lists/known/feed?since={since}&limit=3", headers=follower).json()
        for change in page["changes"]:
            seen[change["entry"]["value"]] = change["entry"]["status"]
        since = page["next_since"]
        if not page["more"]:
            break
    assert since == 9
    assert seen == {md5(i): ("retracted" if i == 1 else "active") for i in range(8)}
    assert client.get("/v1/lists/known/feed?since=9", headers=follower).json()["changes"] == []
    no_scope = _bearer(db, "matcher", ["match"])
    assert client.get("/v1/lists/known/feed", headers=no_scope).status_code == 403


def test_entries_disabled_until_a_past_moment_come_back(db: Session, engine: Engine) -> None:
    hl = service.create_list(db, SYSTEM, name="timed", kind="hash")
    values = [hashlib.md5(f"benign {i}".encode()).hexdigest() for i in range(4)]
    service.add_entries(db, SYSTEM, hl, [EntryRecord("md5", v) for v in values])
    ended, later, open_ended, active = (service.find_entries(db, hl, v, "md5")[0] for v in values)
    now = utcnow()
    service.set_status(db, SYSTEM, [ended], "disabled", disabled_until=now - timedelta(minutes=1))
    service.set_status(db, SYSTEM, [later], "disabled", disabled_until=now + timedelta(hours=1))
    service.set_status(db, SYSTEM, [open_ended], "disabled")
    db.commit()
    revision = hl.revision

    assert reenable_expired(make_sessionmaker(engine)) == 1
    db.rollback()  # a new read, after the worker's write
    assert [e.status for e in (ended, later, open_ended, active)] == ["active", "disabled", "disabled", "active"]
    assert ended.disabled_until is None and later.disabled_until is not None
    change = db.scalars(select(ListChange).where(ListChange.list_id == hl.id).order_by(ListChange.revision)).all()[-1]
    assert (change.revision, change.entry_id, change.op, change.status) == (revision + 1, ended.id, "status", "active")
    assert change.details == {"reason": "the time it was disabled until has passed"}
    assert reenable_expired(make_sessionmaker(engine)) == 0  # nothing more is due
    assert service.reenable_expired(db, SYSTEM, now=now + timedelta(hours=2)) == 1
    db.commit()
    assert later.status == "active"


def test_the_worker_re_enables_every_minute() -> None:
    from seawall.tasks import huey, load_task_modules

    load_task_modules()
    due = {t.name for t in huey.read_periodic(datetime(2026, 11, 26, 12, 34))}
    assert "lists.reenable_expired" in due
