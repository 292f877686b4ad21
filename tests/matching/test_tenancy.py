"""A shared instance: no partner changes what another gets (list settings, allowlists, quarantine),
list-limited keys see only their lists everywhere, deleted lists retract and never collide."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import utcnow
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service as exchanges_service
from seawall.lists.models import Entry, HashList, ListChange
from seawall.lists.records import EntryRecord
from seawall.matching import policies
from seawall.matching.models import EntryMatchBucket, EntryQuarantine

PDQ = hashlib.sha256(b"benign harbour at dusk").hexdigest()
MD5 = hashlib.md5(b"benign kite").hexdigest()


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _list(db: Session, name: str, records: list[EntryRecord] | None = None, **kw: Any) -> HashList:
    hl = lists_service.create_list(db, SYSTEM, name=name, kind=kw.pop("kind", "hash"), **kw)
    if records:
        lists_service.add_entries(db, SYSTEM, hl, records)
    db.commit()
    return hl


def _refresh(client: TestClient) -> None:
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]


def _flip(hex_value: str, count: int) -> str:
    return f"{int(hex_value, 16) ^ ((1 << count) - 1):064x}"


def _lookup(client: TestClient, headers: dict[str, str], value: str, signal_type: str = "pdq") -> dict[str, Any]:
    answer = client.get("/v1/match", params={"signal_type": signal_type, "value": value}, headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# ---- list settings ---------------------------------------------------------------------------


def test_a_curator_key_cannot_switch_enforcement_off_for_others(client: TestClient, db: Session) -> None:
    _list(db, "known", [EntryRecord("pdq", PDQ)])
    _list(db, "hidden", [EntryRecord("md5", MD5)])
    policies.upsert_policy(db, SYSTEM, name="block", conditions={}, actions=[{"type": "block"}])
    db.commit()
    curator = _key(db, "curator", ["lists:read", "lists:write", "match"], lists=["mine"])
    other = _key(db, "other-platform", ["match"])
    admin = _key(db, "operator", ["admin", "lists:read", "lists:write", "match"])

    # Creating: an allowlist is the operator's; a hidden list's existence is not revealed (no 409).
    allow = client.post("/v1/lists", json={"name": "mine", "kind": "hash", "allowlist": True}, headers=curator)
    assert allow.status_code == 403
    assert allow.json() == {"detail": "only an admin may create an allowlist: it changes matching for every caller"}
    hidden = client.post("/v1/lists", json={"name": "hidden", "kind": "hash"}, headers=curator)
    assert hidden.json() == {"detail": "this key may only create the lists it is limited to (mine)"}
    assert hidden.status_code == 403
    wide = client.post("/v1/lists", json={"name": "mine", "kind": "hash", "thresholds": {"pdq": 256}}, headers=curator)
    assert (wide.status_code, wide.json()["detail"]) == (
        403,
        "only an admin may set a pdq threshold above 31: it changes matching for every caller",
    )
    assert client.post("/v1/lists", json={"name": "mine", "kind": "hash"}, headers=curator).status_code == 201

    # Updating: every setting that changes matching for others needs admin; the rest does not.
    for change, what in [
        ({"allowlist": True}, "make a list an allowlist or stop it being one"),
        ({"thresholds": {"pdq": 32}}, "set a pdq threshold above 31"),
        ({"dihedral": False}, "switch a list's dihedral search"),
        ({"enabled": False}, "enable or disable a list"),
    ]:
        refused = client.patch("/v1/lists/mine", json=change, headers=curator)
        assert (refused.status_code, refused.json()) == (
            403,
            {"detail": f"only an admin may {what}: it changes matching for every caller"},
        ), change
    assert client.patch("/v1/lists/mine", json={"thresholds": {"pdq": 20}}, headers=curator).status_code == 200
    assert client.patch("/v1/lists/mine", json={"description": "ours"}, headers=curator).json()["description"] == "ours"
    assert client.patch("/v1/lists/known", json={"enabled": False}, headers=curator).status_code == 404
    stored = db.scalar(select(HashList).where(HashList.name == "mine"))
    assert stored is not None and (stored.allowlist, stored.enabled, stored.dihedral) == (False, True, True)
    assert stored.thresholds == {"pdq": 20}

    # After all that, another platform's upload is still blocked.
    _refresh(client)
    assert _lookup(client, other, _flip(PDQ, 3))["actions"] == [{"type": "block", "rule": "block"}]
    # The operator may.
    assert client.patch("/v1/lists/mine", json={"enabled": False, "dihedral": False}, headers=admin).status_code == 200
    made = client.post(
        "/v1/lists",
        json={"name": "memes", "kind": "hash", "allowlist": True, "allowlist_scope": ["known"]},
        headers=admin,
    )
    assert (made.status_code, made.json()["allowlist_scope"]) == (201, ["known"])
    unknown = client.patch("/v1/lists/memes", json={"allowlist_scope": ["nope"]}, headers=admin)
    assert (unknown.status_code, unknown.json()) == (422, {"detail": "allowlist scope names unknown list(s): nope"})
    everywhere = client.patch("/v1/lists/memes", json={"allowlist_scope": None}, headers=admin)
    assert everywhere.json()["allowlist_scope"] is None


def test_an_allowlist_suppresses_only_the_lists_in_its_scope(client: TestClient, db: Session) -> None:
    _list(db, "KNOWN_A", [EntryRecord("md5", MD5)])
    _list(db, "KNOWN_B", [EntryRecord("md5", MD5)])
    memes = _list(db, "memes", [EntryRecord("md5", MD5)], allowlist=True, allowlist_scope=["KNOWN_A"])
    policies.upsert_policy(db, SYSTEM, name="block", conditions={}, actions=[{"type": "block"}])
    db.commit()
    _refresh(client)
    partner = _key(db, "platform", ["match", "lists:read"])
    body = _lookup(client, partner, MD5, "md5")
    assert sorted(m["list"] for m in body["matches"]) == ["KNOWN_A", "KNOWN_B", "memes"]
    assert body["allowlisted"] is True and body["suppressed_lists"] == ["KNOWN_A"]
    assert body["actions"] == [{"type": "block", "rule": "block"}]
    assert (
        body["reasons"][0].startswith("allowlisted (list=memes")
        and "matches on KNOWN_A are not acted on" in (body["reasons"][0])
    )
    # HMA clients act on any bank in the answer: the suppressed bank is left out.
    raw = client.get("/m/lookup", params={"signal_type": "video_md5", "signal": MD5}, headers=partner).json()
    assert list(raw) == ["KNOWN_B"]

    # Scoped to every list: nothing is acted on, as before.
    lists_service.update_list(db, SYSTEM, memes, allowlist_scope=None)
    db.commit()
    _refresh(client)
    body = _lookup(client, partner, MD5, "md5")
    assert (body["actions"], body["suppressed_lists"]) == ([], ["KNOWN_A", "KNOWN_B"])

    # A key limited to KNOWN_B is covered by the operator's allowlist without learning its name;
    # a key that sees none of the matched lists learns nothing at all (a miss to it).
    limited = _key(db, "limited", ["match"], lists=["KNOWN_B"])
    body = _lookup(client, limited, MD5, "md5")
    assert [m["list"] for m in body["matches"]] == ["KNOWN_B"]
    assert (body["allowlisted"], body["actions"]) == (True, [])
    assert body["reasons"] == ["allowlisted by an operator allowlist: no action is taken"]
    elsewhere = _key(db, "elsewhere", ["match"], lists=["nothing-here"])
    miss = _lookup(client, elsewhere, MD5, "md5")
    assert (miss["matches"], miss["allowlisted"], miss["reasons"]) == ([], False, [])


# ---- quarantine ------------------------------------------------------------------------------


@pytest.fixture
def hot(client: TestClient, db: Session) -> int:
    """A listed PDQ with a quiet week behind it (2 distinct contents an hour), and tiny limits."""
    hl = _list(db, "known", [EntryRecord("pdq", PDQ)])
    policies.upsert_policy(db, SYSTEM, name="block", conditions={}, actions=[{"type": "block"}])
    [entry] = lists_service.find_entries(db, hl, PDQ, "pdq")
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    for h in range(1, 169):
        db.add(EntryMatchBucket(entry_id=entry.id, hour=hour - timedelta(hours=h), count=2))
    db.commit()
    client.app.state.settings.quarantine_min_matches = 6  # type: ignore[attr-defined]
    client.app.state.settings.quarantine_factor = 3.0  # type: ignore[attr-defined]
    _refresh(client)
    return entry.id


BLOCK = [{"type": "block", "rule": "block"}]


def test_repeating_one_hash_never_quarantines(client: TestClient, db: Session, hot: int) -> None:
    caller = _key(db, "platform-a", ["match"])
    for _ in range(30):
        assert _lookup(client, caller, PDQ)["actions"] == BLOCK
    batch = client.post(
        "/v1/match/batch", json={"signals": [{"signal_type": "pdq", "value": PDQ}] * 200}, headers=caller
    )
    assert all(r["actions"] == BLOCK for r in batch.json()["results"])
    # 200 different near copies in one request count once too.
    near = [{"signal_type": "pdq", "value": _flip(PDQ, n)} for n in range(1, 31)]
    client.post("/v1/match/batch", json={"signals": near}, headers=caller)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(EntryQuarantine)) == 0
    assert _lookup(client, caller, PDQ)["actions"] == BLOCK
    # one content for the hash however often it came, one for the request of near copies
    assert db.scalar(select(EntryMatchBucket.count).where(EntryMatchBucket.hour >= utcnow() - timedelta(hours=1))) == 2


def test_a_quarantine_pauses_only_the_callers_in_the_spike_unless_an_admin_widens_it(
    client: TestClient, db: Session, hot: int
) -> None:
    a = _key(db, "platform-a", ["match", "lists:read"])
    b = _key(db, "platform-b", ["match", "lists:read"])
    admin = _key(db, "operator", ["admin", "lists:read", "lists:write", "match"])
    elsewhere = _key(db, "elsewhere", ["lists:read"], lists=["other"])
    answers = [_lookup(client, a, _flip(PDQ, n)) for n in range(1, 7)]  # six distinct contents
    assert all(x["actions"] == BLOCK for x in answers)
    assert any(f"entries {hot} quarantined" in r for r in answers[-1]["reasons"])
    db.rollback()
    paused = _lookup(client, a, PDQ)
    assert (
        paused["actions"] == []
        and f"entry {hot} is quarantined: its actions are paused pending review" in (paused["reasons"])
    )
    assert _lookup(client, b, PDQ)["actions"] == BLOCK  # b did not cause the spike

    seen_by_a = client.get("/v1/quarantine", headers=a).json()
    seen_by_b = client.get("/v1/quarantine", headers=b).json()
    seen_by_admin = client.get("/v1/quarantine", headers=admin).json()
    assert [(q["entry_id"], q["list"], q["applies_to_you"], q["callers"]) for q in seen_by_a] == [
        (hot, "known", True, None)
    ]
    assert [(q["applies_to_you"], q["everyone"]) for q in seen_by_b] == [(False, False)]
    assert seen_by_admin[0]["callers"] == ["key:platform-a"]
    assert "6 distinct contents matched this hour" in seen_by_admin[0]["reason"]
    assert client.get("/v1/quarantine", headers=elsewhere).json() == []

    for who in (a, b):  # the operator's decision, not a partner's
        assert client.post(f"/v1/quarantine/{hot}/release", headers=who).status_code == 403
        assert client.post(f"/v1/quarantine/{hot}/everyone", headers=who).status_code == 403
    assert client.post(f"/v1/quarantine/{hot}/everyone", headers=admin).status_code == 204
    assert _lookup(client, b, PDQ)["actions"] == []
    assert client.post(f"/v1/quarantine/{hot}/release", headers=admin).status_code == 204
    assert client.post(f"/v1/quarantine/{hot}/release", headers=admin).status_code == 404
    assert _lookup(client, a, PDQ)["actions"] == BLOCK
    assert _lookup(client, b, PDQ)["actions"] == BLOCK


# ---- list limits on every route -------------------------------------------------------------


def test_limited_keys_see_only_their_own_lists_exchanges_and_index_sizes(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    _list(db, "mine", [EntryRecord("pdq", PDQ)])
    _list(db, "theirs", [EntryRecord("pdq", _flip(PDQ, 200)), EntryRecord("md5", MD5)])
    source = tmp_path / "one.csv"
    source.write_text(f"signal_type,value\npdq,{PDQ}\n")
    for name, target in (("mine-feed", "mine"), ("theirs-feed", "theirs")):
        exchanges_service.create_exchange(
            db, settings, SYSTEM, name=name, type="file", list_name=target, config={"location": str(source)}
        )
    db.commit()
    _refresh(client)
    curator = _key(db, "curator", ["lists:read", "lists:write", "match"], lists=["mine"])
    assert [e["name"] for e in client.get("/v1/exchanges", headers=curator).json()] == ["mine-feed"]
    assert client.get("/v1/exchanges/theirs-feed", headers=curator).status_code == 404
    refused = client.post("/v1/exchanges/theirs-feed/sync?wait=true", headers=curator)
    assert (refused.status_code, refused.json()) == (404, {"detail": "no exchange named 'theirs-feed'"})
    assert client.post("/v1/exchanges/mine-feed/sync?wait=true", headers=curator).json()["ok"] is True
    sizes = client.get("/m/index/status", headers=curator).json()
    assert (sizes["pdq"]["size"], sizes["video_md5"]["size"]) == (1, 0)
    everything = client.get("/m/index/status", headers=_key(db, "all", ["match"])).json()
    assert (everything["pdq"]["size"], everything["video_md5"]["size"]) == (2, 1)


# ---- deleting lists --------------------------------------------------------------------------


def test_a_deleted_bank_retracts_for_followers_and_its_successor_never_maps_its_index(
    client: TestClient, db: Session
) -> None:
    curator = _key(db, "coop", ["match", "lists:read", "lists:write"])
    client.post("/c/banks", json={"name": "BANK"}, headers=curator)
    old = client.post("/c/bank/BANK/signal", json={"pdq": PDQ}, headers=curator).json()["id"]
    _refresh(client)
    indexes = client.app.state.match_indexes  # type: ignore[attr-defined]
    [loaded] = [i for i in indexes.lists.values() if i.name == "BANK"]
    indexes.wait_for_saves()  # a save of the list's first load may hold the folder's lock
    assert indexes.save(loaded)
    folder: Path = indexes.folder
    first = db.scalar(select(HashList).where(HashList.name == "BANK"))
    assert first is not None and (folder / f"list-{first.uid}" / "pdq" / "manifest.json").exists()
    followed = client.get("/v1/lists/BANK/feed", headers=curator).json()

    assert client.delete("/c/bank/BANK", headers=curator).json() == {"message": "Done"}
    # Followers still read the deleted list's feed by its name: every entry retracted, then the end.
    after = client.get("/v1/lists/BANK/feed", params={"since": followed["next_since"]}, headers=curator).json()
    assert (after["deleted"], after["list_uid"]) == (True, first.uid)
    assert [(c["op"], c["status"]) for c in after["changes"]] == [("list", None), ("status", "retracted")]
    db.rollback()
    assert db.scalar(select(Entry.status).where(Entry.id == old)) == "retracted"

    client.post("/c/banks", json={"name": "BANK"}, headers=curator)
    new_pdq = _flip(PDQ, 128)
    new = client.post("/c/bank/BANK/signal", json={"pdq": new_pdq}, headers=curator).json()["id"]
    db.rollback()  # a new read: SQLite reads from the snapshot of the last one
    second = db.scalar(select(HashList).where(HashList.name == "BANK"))
    assert second is not None and second.id > first.id and second.uid != first.uid and new > old
    _refresh(client)
    assert client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": PDQ}, headers=curator).json() == {
        "matches": []
    }
    assert client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": new_pdq}, headers=curator).json() == {
        "matches": [new]
    }
    assert not (folder / f"list-{first.uid}").exists()  # the deleted list's segments are gone
    feed = client.get("/v1/lists/BANK/feed", headers=curator).json()
    assert (feed["deleted"], feed["list_uid"]) == (False, second.uid)


def test_list_ids_are_never_reused(db: Session) -> None:
    last = _list(db, "short-lived")
    db.execute(text("DELETE FROM lists WHERE id = :id"), {"id": last.id})  # as an older version's hard delete did
    db.commit()
    again = _list(db, "short-lived")
    assert again.id > last.id


def test_deleting_a_list_through_the_api_and_the_worker_finishing_the_retractions(
    client: TestClient, db: Session
) -> None:
    hl = _list(db, "big", [EntryRecord("md5", hashlib.md5(str(i).encode()).hexdigest()) for i in range(12)])
    _list(db, "allowed", [EntryRecord("md5", MD5)], allowlist=True)
    curator = _key(db, "curator", ["lists:read", "lists:write"])
    refused = client.delete("/v1/lists/allowed", headers=curator)
    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "only an admin may delete an allowlist: it changes matching for every caller"},
    )
    # A crash after marking the list deleted leaves its entries live: the periodic task finishes.
    lists_service.delete_list(db, SYSTEM, hl)
    db.commit()
    assert client.get("/v1/lists/big", headers=curator).status_code == 404
    from seawall.db import make_sessionmaker

    factory = make_sessionmaker(db.get_bind())  # type: ignore[arg-type]
    assert lists_service.retract_deleted(factory, SYSTEM, batch=5) == 12
    assert lists_service.retract_deleted(factory, SYSTEM, batch=5) == 0
    db.rollback()
    changes = db.scalars(select(ListChange.status).where(ListChange.list_id == hl.id, ListChange.op == "status"))
    assert list(changes).count("retracted") == 12
    assert client.delete("/v1/lists/big", headers=curator).status_code == 404
    assert client.post("/v1/lists", json={"name": "big", "kind": "url"}, headers=curator).status_code == 201


# ---- keyword entries ------------------------------------------------------------------------


def test_a_keyword_entry_is_validated_by_its_engine_and_one_bad_entry_never_breaks_matching(
    client: TestClient, db: Session
) -> None:
    hl = _list(db, "words", [EntryRecord("keyword", "bluebird")], kind="keyword")
    curator = _key(db, "curator", ["lists:write", "match"])
    refused = client.post("/v1/lists/words/entries", json={"entries": [{"value": "re:[[]"}]}, headers=curator)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "nothing was added: entry line 1: invalid regular expression: unterminated character set at position 3"
    )
    # An entry stored by an older version (before this validation) is left out, the others match.
    for bad in ("re:[[]", "!!!"):
        db.add(Entry(list_id=hl.id, signal_type="keyword", value=bad, external_id=bad, revision=0))
    db.commit()
    _refresh(client)
    found = client.post("/v1/match/text", json={"text": "a blue bird sang"}, headers=curator)
    assert found.status_code == 200
    assert [(m["term"], m["start"], m["end"]) for m in found.json()["matches"]] == [("bluebird", 2, 11)]
