"""Seawall as a drop-in for HMA, over HTTP: a real server on 127.0.0.1, called as HMA's clients
(ROOST's Coop among them) call HMA, with an API key. The behaviours HMA's own API tests check
(test_api.py, test_api_banks.py, test_match_api.py, test_e2e_workflow.py, test_hashing.py), written
anew against Seawall's mapping: banks are lists, exchanges are Seawall's exchanges."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey, AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import transaction
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service as exchanges_service
from seawall.lists.exchanges.sample import SAMPLE_SIGNALS
from seawall.lists.models import HashList
from seawall.lists.records import EntryRecord
from seawall.matching import policies, service
from seawall.matching.models import Policy
from seawall.signals.hashing import hash_file
from webhost import png, served_host

PDQ = hashlib.sha256(b"benign hma drop-in meadow").hexdigest()


@contextmanager
def _writing(live_server: Any) -> Iterator[Session]:
    """A write session of the served app's own: on SQLite it takes the write lock when it begins,
    so a write made mid-test waits for the server's (a key's "last used" stamp after a response)
    instead of failing on a stale read snapshot as the test's deferred session can."""
    with transaction(live_server.app.state.sessionmaker) as session:
        yield session


def _key(live_server: Any, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    with _writing(live_server) as session:
        new = auth_service.create_api_key(session, SYSTEM, name=name, scopes=scopes, lists=lists)
    return {"authorization": f"Bearer {new.secret}"}


@pytest.fixture
def http(live_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def _refresh(live_server: Any) -> None:
    live_server.app.state.match_indexes.refresh()


def _pdq_of(data: bytes, tmp_path: Any) -> str:
    path = tmp_path / "image.png"
    path.write_bytes(data)
    return str(hash_file(path)["pdq"])


def test_coop_flow_banks_contents_notes_rename_and_an_exchange(
    http: httpx.Client, live_server: Any, db: Session, settings: Settings, tmp_path: Any
) -> None:
    curator = _key(
        live_server, "coop", ["match", "hash", "lists:read", "lists:write"], lists=["COOP_BANK", "RENAMED_BANK"]
    )
    admin = _key(live_server, "operator", ["admin", "match", "hash", "lists:read", "lists:write"])
    # Create a bank.
    created = http.post("/c/banks", json={"name": "COOP_BANK"}, headers=curator)
    assert (created.status_code, created.json()) == (201, {"name": "COOP_BANK", "matching_enabled_ratio": 1.0})

    # Add content by URL (fetched by the SSRF-safe fetcher: loopback allowed for this test only), with metadata.
    settings.fetch_allow_networks = ["127.0.0.1/32"]
    by_url, by_upload = png(31), png(32)
    with served_host() as host:
        host.file("/post/7.png", by_url, "image/png")
        added = http.post(
            "/c/bank/COOP_BANK/content",
            params={"url": f"{host.url}/post/7.png", "content_type": "photo"},
            json={
                "metadata": {"content_id": "post-7", "content_uri": "https://platform.example/p/7", "json": {"k": 1}},
                "note": "benign test image",
            },
            headers=curator,
        )
    assert added.status_code == 200, added.text
    url_id = added.json()["id"]
    assert added.json() == {"id": url_id, "signals": {"pdq": _pdq_of(by_url, tmp_path)}}
    shown = http.get(f"/c/bank/COOP_BANK/content/{url_id}", headers=curator).json()
    assert shown["metadata"] == {
        "content_id": "post-7",
        "content_uri": "https://platform.example/p/7",
        "json": {"k": 1},
    }
    assert (shown["note"], shown["original_media_uri"], shown["disable_until_ts"]) == (
        "benign test image",
        "https://platform.example/p/7",
        1,
    )

    # Add content by upload, as Coop sends it: the file under its content type, metadata as form fields.
    uploaded = http.post(
        "/c/bank/COOP_BANK/content",
        files={"photo": ("p.png", by_upload, "image/png")},
        data={"content_id": "post-8", "metadata": '{"reviewer": "r1"}', "note": "second"},
        headers=curator,
    )
    upload_id = uploaded.json()["id"]
    upload_pdq = _pdq_of(by_upload, tmp_path)
    assert uploaded.json() == {"id": upload_id, "signals": {"pdq": upload_pdq}}
    shown = http.get(f"/c/bank/COOP_BANK/content/{upload_id}", headers=curator).json()
    assert (shown["metadata"], shown["note"]) == (
        {"content_id": "post-8", "content_uri": None, "json": {"reviewer": "r1"}},
        "second",
    )

    # Signals directly, with a note beside them (HMA's /signal takes it in the same object).
    signal = http.post("/c/bank/COOP_BANK/signal", json={"pdq": PDQ, "note": "by hash"}, headers=curator)
    assert signal.status_code == 200, signal.text
    signal_id = signal.json()["id"]
    assert signal.json() == {"id": signal_id, "signals": {"pdq": PDQ}}
    # The note is changed and cleared by PUT, which answers HMA's stored record.
    noted = http.put(f"/c/bank/COOP_BANK/content/{signal_id}", json={"note": "reviewed"}, headers=curator)
    assert noted.json() == {
        "id": signal_id,
        "disable_until_ts": 1,
        "collab_metadata": {},
        "original_media_uri": None,
        "bank": {"name": "COOP_BANK", "matching_enabled_ratio": 1.0},
        "user_metadata": None,
        "note": "reviewed",
    }
    cleared = http.put(f"/c/bank/COOP_BANK/content/{signal_id}", json={"note": ""}, headers=curator)
    assert cleared.json()["note"] is None
    assert http.get(f"/c/bank/COOP_BANK/content/{signal_id}", headers=curator).json()["note"] is None
    # Metadata survives a note change; a note too long is refused and changes nothing.
    kept = http.put(f"/c/bank/COOP_BANK/content/{url_id}", json={"note": "re-checked"}, headers=curator).json()
    assert (kept["user_metadata"]["content_id"], kept["note"]) == ("post-7", "re-checked")
    long = http.put(f"/c/bank/COOP_BANK/content/{url_id}", json={"note": "x" * 256}, headers=curator)
    assert (long.status_code, long.json()) == (400, {"message": "note must be a string of at most 255 characters"})

    # Look up: by signal and by upload.
    _refresh(live_server)
    found = http.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ}, headers=curator)
    assert found.json() == {"COOP_BANK": [{"bank_content_id": signal_id, "distance": "0"}]}
    looked = http.post("/m/lookup", files={"photo": ("q.png", by_upload, "image/png")}, headers=curator)
    assert looked.json()["pdq"]["COOP_BANK"][0]["bank_content_id"] == upload_id

    # Disable until a time, then for good (HMA's 0), then enable again (HMA's 1).
    until = int((datetime.now(UTC) + timedelta(days=30)).timestamp())
    paused = http.put(f"/c/bank/COOP_BANK/content/{signal_id}", json={"disable_until_ts": until}, headers=curator)
    assert paused.json()["disable_until_ts"] == until
    _refresh(live_server)
    assert http.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ}, headers=curator).json() == {}
    for_good = http.put(f"/c/bank/COOP_BANK/content/{signal_id}", json={"disable_until_ts": 0}, headers=curator)
    assert for_good.json()["disable_until_ts"] == 0
    shown = http.get(f"/c/bank/COOP_BANK/content/{signal_id}", headers=curator).json()
    assert (shown["enabled"], shown["disable_until_ts"]) == (False, 0)
    # The worker re-enables only what was disabled until a time: 0 stays disabled.
    with _writing(live_server) as session:
        assert lists_service.reenable_expired(session, SYSTEM, now=datetime.now(UTC) + timedelta(days=3650)) == 0
    again = http.put(f"/c/bank/COOP_BANK/content/{signal_id}", json={"disable_until_ts": 1}, headers=curator)
    assert again.json()["disable_until_ts"] == 1

    # Rename: an admin's act (it changes what every caller sees). Keys' limits and policies follow.
    partner = _key(live_server, "partner", ["lists:read"], lists=["COOP_BANK"])  # follows the bank's feed
    with _writing(live_server) as session:
        policies.upsert_policy(
            session, SYSTEM, name="coop-review", conditions={"lists": ["COOP_BANK"]}, actions=[{"type": "review"}]
        )
        lists_service.create_list(
            session, SYSTEM, name="coop-allow", kind="hash", allowlist=True, allowlist_scope=["COOP_BANK"]
        )
        exchanges_service.create_exchange(
            session, settings, SYSTEM, name="coop-feed", type="sample", list_name="COOP_BANK"
        )
    refused = http.put("/c/bank/COOP_BANK", json={"name": "RENAMED_BANK"}, headers=curator)
    assert refused.status_code == 403
    taken = http.post("/c/banks", json={"name": "TAKEN_BANK"}, headers=admin)
    assert taken.status_code == 201
    clash = http.put("/c/bank/COOP_BANK", json={"name": "TAKEN_BANK"}, headers=admin)
    assert (clash.status_code, clash.json()) == (403, {"message": "Bank name already exists"})
    renamed = http.put("/c/bank/COOP_BANK", json={"name": "RENAMED_BANK"}, headers=admin)
    assert (renamed.status_code, renamed.json()) == (200, {"name": "RENAMED_BANK", "matching_enabled_ratio": 1.0})
    assert http.get("/c/bank/COOP_BANK", headers=curator).status_code == 404
    db.rollback()
    coop_key = db.scalar(select(ApiKey).where(ApiKey.name == "coop"))
    assert coop_key is not None and coop_key.lists == ["RENAMED_BANK"]
    rule = db.scalar(select(Policy).where(Policy.name == "coop-review"))
    assert rule is not None and rule.conditions["lists"] == ["RENAMED_BANK"]
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "list.rename"))
    assert event is not None and event.details == {
        "from": "COOP_BANK",
        "to": "RENAMED_BANK",
        "api_keys": ["coop", "partner"],
        "policies": ["coop-review"],
        "allowlists": ["coop-allow"],
    }
    assert lists_service.get_list(db, "coop-allow").allowlist_scope == ["RENAMED_BANK"]
    assert http.get("/c/exchange/coop-feed", headers=admin).json()["bank"] == "RENAMED_BANK"  # by id: it follows
    # The running index answers under the new name at once; a feed follower of the old name follows it.
    moved = http.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ}, headers=curator)
    assert moved.json() == {"RENAMED_BANK": [{"bank_content_id": signal_id, "distance": "0"}]}
    assert lists_service.feed_list(db, "COOP_BANK").name == "RENAMED_BANK"
    followed = http.get("/v1/lists/COOP_BANK/feed", headers=partner)
    assert followed.status_code == 200 and followed.json()["list_uid"] == lists_service.get_list(db, "RENAMED_BANK").uid
    db.rollback()
    # A key limited to some lists renames only to a name within them (else another tenant's key could gain it).
    limited_admin = _key(live_server, "limited-admin", ["admin", "lists:read", "lists:write"], lists=["RENAMED_BANK"])
    elsewhere = http.put("/c/bank/RENAMED_BANK", json={"name": "ELSEWHERE"}, headers=limited_admin)
    assert elsewhere.status_code == 403 and "limited to (RENAMED_BANK)" in elsewhere.json()["message"]

    # Configure an exchange (HMA's sample type), fetch, see its status; delete it.
    exchange = http.post("/c/exchanges", json={"bank": "SAMPLE", "api": "sample", "api_json": {}}, headers=admin)
    assert (exchange.status_code, exchange.json()) == (201, {"message": "Created successfully"})
    assert http.get("/c/exchanges", headers=admin).json() == ["SAMPLE", "coop-feed"]
    status = http.get("/c/exchange/SAMPLE/status", headers=admin).json()
    assert (status["last_fetch_succeeded"], status["fetched_items"], status["up_to_date"]) == (None, 0, False)
    report = exchanges_service.run_sync(live_server.app.state.sessionmaker, settings, "SAMPLE")
    assert report.ok and report.added == len(SAMPLE_SIGNALS)
    status = http.get("/c/exchange/SAMPLE/status", headers=admin).json()
    assert (status["last_fetch_succeeded"], status["fetched_items"], status["success"]) == (
        True,
        len(SAMPLE_SIGNALS),
        True,
    )
    assert status["checkpoint_ts"] and status["checkpoint_ts"] == status["checkpoint_time"]
    _refresh(live_server)
    for kind, value, _ in SAMPLE_SIGNALS:  # as HMA's test_match_api: each sample signal is found
        hma_type = "video_md5" if kind == "md5" else kind
        raw = http.get(
            "/m/raw_lookup",
            params={"signal_type": hma_type, "signal": value, "include_distance": "true"},
            headers=admin,
        )
        assert len(raw.json()["matches"]) == 1 and raw.json()["matches"][0]["distance"] == "0"
    described = http.get("/c/exchange/SAMPLE", headers=admin).json()
    assert (described["name"], described["api"], described["enabled"], described["bank"]) == (
        "SAMPLE",
        "sample",
        True,
        "SAMPLE",
    )
    off = http.put("/c/exchange/SAMPLE", json={"enabled": False}, headers=admin)
    assert off.json()["enabled"] is False
    gone = http.delete("/c/exchange/SAMPLE", headers=admin)
    assert (gone.status_code, gone.json()) == (200, {"message": "Exchange deleted"})
    assert http.get("/c/exchange/SAMPLE", headers=admin).json() == {"message": "Exchange 'SAMPLE' not found"}
    assert http.get("/c/bank/SAMPLE", headers=admin).status_code == 404  # its bank went with it
    assert http.delete("/c/exchange/SAMPLE", headers=admin).json() == {"message": "Exchange deleted"}


def test_exchange_apis_schemas_credentials_and_errors(http: httpx.Client, live_server: Any, db: Session) -> None:
    admin = _key(live_server, "operator", ["admin", "lists:read", "lists:write"])
    curator = _key(live_server, "curator", ["lists:read", "lists:write"])
    assert http.get("/c/exchanges/apis", headers=curator).json() == ["file", "seawall", "ncmec", "stopncii", "sample"]
    assert http.get("/c/exchanges/api/sample", headers=curator).json() == {
        "supports_authentification": False,
        "has_set_authentification": False,
    }
    assert http.get("/c/exchanges/api/ncmec", headers=curator).json() == {
        "supports_authentification": True,
        "has_set_authentification": False,
    }
    unknown = http.get("/c/exchanges/api/fb_threatexchange", headers=curator)
    assert (unknown.status_code, unknown.json()) == (400, {"message": "no such Exchange API 'fb_threatexchange'"})
    schema = http.get("/c/exchanges/api/ncmec/schema", headers=curator).json()
    assert [f["name"] for f in schema["config_schema"]["fields"]] == [
        "base_url",
        "username",
        "start_timestamp",
        "negative_reason_id",
    ]
    assert schema["credentials_schema"] == {
        "fields": [
            {"name": "password", "type": "string", "required": True, "default": None, "help": "", "choices": None}
        ]
    }
    assert http.get("/c/exchanges/api/sample/schema", headers=curator).json() == {
        "config_schema": {"fields": []},
        "credentials_schema": None,
    }
    # Credentials per API type: Seawall keeps them per exchange and says so.
    per_api = http.post("/c/exchanges/api/ncmec", json={"credential_json": {"password": "x"}}, headers=admin)
    assert per_api.status_code == 400 and "per exchange" in per_api.json()["message"]
    assert http.post("/c/exchanges/api/ncmec", json={"credential_json": {}}, headers=admin).status_code == 200

    # Creating: admin only; HMA's validation messages; secrets never echoed.
    body = {"bank": "NCMEC_HASHES", "api": "ncmec", "api_json": {"username": "hotline"}}
    assert http.post("/c/exchanges", json=body, headers=curator).json() == {
        "message": "this credential lacks the 'admin' scope"
    }
    checks: list[tuple[dict[str, Any], str]] = [
        ({"api": "sample"}, "bank is required"),
        ({"bank": "lower", "api": "sample"}, "Field `bank` must match /^[A-Z0-9_]+$/"),
        ({"bank": "OK_NAME", "api": "sample", "api_json": []}, "Field `api_json` must be object"),
        ({"bank": "OK_NAME"}, "Field `api_type` is required"),
        ({"bank": "OK_NAME", "api": "nope"}, "No such exchange type 'nope'"),
    ]
    for sent, message in checks:
        answer = http.post("/c/exchanges", json=sent, headers=admin)
        assert (answer.status_code, answer.json()) == (400, {"message": message})
    secret = "fake-secret-must-not-echo"
    for credentials in ({"password": secret, secret: secret}, {"password": [secret]}, secret):
        answer = http.post("/c/exchanges", json={**body, "credential_json": credentials}, headers=admin)
        assert answer.status_code == 400 and secret not in answer.text
        assert http.get("/c/exchange/NCMEC_HASHES", headers=admin).status_code == 404  # nothing made
    no_creds = http.post(
        "/c/exchanges", json={"bank": "S2", "api": "sample", "credential_json": {"t": secret}}, headers=admin
    )
    assert no_creds.status_code == 400 and secret not in no_creds.text
    missing = http.post("/c/exchanges", json=body, headers=admin)  # ncmec needs its password
    assert missing.status_code == 400 and missing.json()["message"].startswith("Failed to parse `api_json`")
    assert http.get("/c/bank/NCMEC_HASHES", headers=admin).status_code == 404  # the bank was not kept either

    made = http.post("/c/exchanges", json={**body, "credential_json": {"password": secret}}, headers=admin)
    assert made.status_code == 201, made.text
    for path in ("/c/exchanges", "/c/exchange/NCMEC_HASHES", "/c/exchange/NCMEC_HASHES/credentials"):
        assert secret not in http.get(path, headers=admin).text
    assert http.get("/c/exchange/NCMEC_HASHES/credentials", headers=curator).json() == {
        "supports_auth": True,
        "has_credentials": True,
        "source": "exchange",
    }
    shown = http.get("/c/exchange/NCMEC_HASHES", headers=curator).json()
    assert (shown["username"], "password" in shown) == ("hotline", False)
    again = http.post("/c/exchanges", json={**body, "credential_json": {"password": secret}}, headers=admin)
    assert (again.status_code, again.json()) == (
        403,
        {"message": "a bank or exchange named 'NCMEC_HASHES' exists already"},
    )
    changed = http.post(
        "/c/exchange/NCMEC_HASHES/credentials", json={"credential_json": {"password": "another"}}, headers=admin
    )
    assert changed.json()["has_credentials"] is True
    # NCMEC cannot run without its password: clearing it is refused, and keeps it.
    cleared = http.post("/c/exchange/NCMEC_HASHES/credentials", json={"credential_json": None}, headers=admin)
    assert cleared.status_code == 400 and "another" not in cleared.text
    extra = http.post(
        "/c/exchange/NCMEC_HASHES/credentials", json={"credential_json": {"password": "x"}, "other": 1}, headers=admin
    )
    assert extra.status_code == 400
    assert http.get("/c/exchange/NO_SUCH/credentials", headers=admin).status_code == 404

    # A key limited to other lists learns nothing of this exchange.
    limited = _key(live_server, "limited", ["lists:read", "lists:write", "admin"], lists=["OTHER"])
    assert http.get("/c/exchanges", headers=limited).json() == []
    hidden = http.get("/c/exchange/NCMEC_HASHES/status", headers=limited)
    assert (hidden.status_code, hidden.json()) == (404, {"message": "Exchange 'NCMEC_HASHES' not found"})
    assert http.delete("/c/exchange/NCMEC_HASHES", headers=limited).json() == {"message": "Exchange deleted"}
    assert http.get("/c/exchange/NCMEC_HASHES", headers=admin).status_code == 200  # still there
    kept = http.delete("/c/exchange/NCMEC_HASHES?delete_bank=false", headers=admin)
    assert kept.json() == {"message": "Exchange deleted"}
    assert http.get("/c/bank/NCMEC_HASHES", headers=admin).status_code == 200  # the bank was asked to stay
    db.rollback()
    actions = db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("exchange.%"))).all()
    assert sorted(actions) == ["exchange.create", "exchange.delete", "exchange.update"]


def test_enabled_ratio_is_stored_and_honoured_by_content(http: httpx.Client, live_server: Any, db: Session) -> None:
    admin = _key(live_server, "operator", ["admin", "match", "lists:read", "lists:write"])
    matcher = _key(live_server, "matcher", ["match", "lists:read"])
    half = http.post("/c/banks", json={"name": "HALF_BANK", "enabled_ratio": 0.5}, headers=admin)
    assert half.json() == {"name": "HALF_BANK", "matching_enabled_ratio": 0.5}
    values = [hashlib.sha256(f"benign ratio sample {i}".encode()).hexdigest() for i in range(24)]
    hash_list = db.scalar(select(HashList).where(HashList.name == "HALF_BANK"))
    assert hash_list is not None and hash_list.enabled_ratio == 0.5
    created = db.scalar(select(AuditEvent).where(AuditEvent.action == "list.create"))
    assert created is not None and created.details["enabled_ratio"] == 0.5
    # Each its own content (added here, not one request each: the HMA routes are tested above).
    with _writing(live_server) as session:
        half_bank = lists_service.get_list(session, "HALF_BANK")
        lists_service.add_entries(session, SYSTEM, half_bank, [EntryRecord("pdq", v) for v in values])
    db.rollback()
    _refresh(live_server)

    def found(value: str, headers: dict[str, str], **extra: str) -> bool:
        answer = http.get("/m/lookup", params={"signal_type": "pdq", "signal": value, **extra}, headers=headers)
        return "HALF_BANK" in answer.json()

    first = [found(v, matcher) for v in values]
    assert 4 <= sum(first) <= 20  # about half the contents, not all, not none
    # The same content is always in or always out, whichever route asks (raw_lookup here).
    raw = [
        bool(http.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": v}, headers=matcher).json()["matches"])
        for v in values
    ]
    assert raw == first
    # ... and so does the batch search behind /v1's many-signal matching.
    batch = service.search_signals(live_server.app.state.match_indexes, [("pdq", v) for v in values])
    assert [bool(hits) for hits in batch] == first
    # HMA's seed (the caller's content id) names the content instead: one answer for every signal of it.
    assert len({found(v, matcher, seed="post-1") for v in values[:6]}) == 1
    # bypass_coinflip: an admin's lookup searches every content; anyone else's is sampled still.
    assert all(found(v, admin, bypass_coinflip="true") for v in values)
    assert [found(v, matcher, bypass_coinflip="true") for v in values] == first
    # Back to 1.0: every content.
    assert (
        http.put("/c/bank/HALF_BANK", json={"enabled_ratio": 1}, headers=admin).json()["matching_enabled_ratio"] == 1.0
    )
    _refresh(live_server)
    assert all(found(v, matcher) for v in values)
    db.rollback()
    changed = db.scalars(select(AuditEvent.details).where(AuditEvent.action == "list.update")).all()
    assert changed == [{"name": "HALF_BANK", "enabled_ratio": 1.0}]
    # 0 turns the bank off; out of range is refused.
    assert (
        http.put("/c/bank/HALF_BANK", json={"enabled_ratio": 0}, headers=admin).json()["matching_enabled_ratio"] == 0.0
    )
    wrong = http.put("/c/bank/HALF_BANK", json={"enabled_ratio": 1.5}, headers=admin)
    assert (wrong.status_code, wrong.json()) == (400, {"message": "enabled_ratio must be between 0.0 and 1.0"})


def test_status_openapi_unknown_routes_and_signal_types(
    http: httpx.Client, live_server: Any, db: Session, settings: Settings
) -> None:
    reader = _key(live_server, "reader", ["lists:read", "match"])
    spec = http.get("/openapi/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Open Media Match API"
    paths = spec.json()["paths"]
    assert {"/m/lookup", "/c/banks", "/c/exchanges", "/h/hash", "/status"} <= set(paths)
    assert not [p for p in paths if p.startswith("/v1/")]

    assert (http.get("/status/live").status_code, http.get("/status/live").text) == (200, "I-AM-ALIVE")
    indexes = live_server.app.state.match_indexes
    _refresh(live_server)
    assert (http.get("/status").status_code, http.get("/status").text) == (200, "I-AM-ALIVE")
    settings.hma_index_stale_seconds = 0.0  # any age is too old: as if refreshing had stopped
    indexes.last_refresh -= 1.0
    stale = http.get("/status")
    assert (stale.status_code, stale.text) == (503, "INDEX-STALE")
    assert http.get("/status/live").status_code == 200  # alive, though not ready
    settings.hma_index_stale_seconds = 60.0

    # An unknown route under HMA's prefixes answers in HMA's shape.
    for path in ("/c/no_such_thing", "/m/nothing", "/h/none"):
        missing = http.get(path, headers=reader)
        assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    wrong_method = http.patch("/c/banks", headers=reader)
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"message": "Method Not Allowed"})

    # Hashing a URL (HMA's test_hashing): only http(s), and a body over the limit is 413 "Content too large".
    hasher = _key(live_server, "hasher", ["hash"])
    for bad in ("ftp://example.org/a.jpg", "file:///etc/passwd", "javascript:alert(1)", "not a url"):
        refused_url = http.get("/h/hash", params={"url": bad}, headers=hasher)
        assert refused_url.status_code == 400 and refused_url.json()["message"].startswith("Invalid or unsafe URL")
    settings.fetch_allow_networks = ["127.0.0.1/32"]
    settings.fetch_max_bytes = 2000
    with served_host() as host:
        host.file("/big.png", png(33, 400, 300), "image/png")
        big = http.get("/h/hash", params={"url": f"{host.url}/big.png"}, headers=hasher)
    assert (big.status_code, big.json()) == (413, {"message": "Content too large"})

    # The signal types shown: HMA's default set, or the operator's choice; /v1 keeps every type.
    assert http.get("/c/signal_type", headers=reader).json() == [
        {"name": "pdq", "enabled_ratio": 1.0},
        {"name": "video_md5", "enabled_ratio": 1.0},
    ]
    sha = hashlib.sha256(b"benign bytes").hexdigest()
    refused = http.get("/m/lookup", params={"signal_type": "sha256", "signal": sha}, headers=reader)
    assert (refused.status_code, refused.json()) == (400, {"message": "No such SignalType 'sha256'"})
    settings.hma_signal_types = ["pdq", "sha256"]
    assert [t["name"] for t in http.get("/c/signal_type", headers=reader).json()] == ["pdq", "sha256"]
    assert http.get("/m/lookup", params={"signal_type": "sha256", "signal": sha}, headers=reader).json() == {}
    assert set(http.get("/m/index/status", headers=reader).json()) == {"pdq", "sha256"}
    # HMA's database-against-index status, for the lists the key may use.
    admin = _key(live_server, "operator", ["admin", "lists:read", "lists:write"])
    assert http.post("/c/banks", json={"name": "INDEXED"}, headers=admin).status_code == 201
    assert http.post("/c/bank/INDEXED/signal", json={"pdq": PDQ}, headers=admin).status_code == 200
    _refresh(live_server)
    index = http.get("/c/signal_type/index", headers=reader).json()
    assert {k: (v["db_size"], v["index_size"], v["index_out_of_date"]) for k, v in index.items()} == {
        "pdq": (1, 1, False),
        "sha256": (0, 0, False),
    }
    assert index["pdq"]["newest_db_item"] > 0 and index["pdq"]["index_built_to"] > 0
    wrong = http.get("/c/signal_type/index?signal_type=tmk", headers=reader)
    assert (wrong.status_code, wrong.json()) == (400, {"message": "No such signal type 'tmk'"})
    sha1 = hashlib.sha1(b"benign bytes").hexdigest()
    assert http.get("/v1/match", params={"signal_type": "sha1", "value": sha1}, headers=reader).status_code == 200
