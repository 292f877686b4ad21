"""HMA-compatible endpoints: HMA's request and response shapes, scopes, and Seawall's mapping of banks."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.lists import service as lists_service
from seawall.lists.models import Entry
from seawall.lists.records import EntryRecord
from seawall.matching.models import MatchEvent
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file

PDQ_A = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
PDQ_B = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"  # 9 bits from PDQ_A
MD5 = hashlib.md5(b"benign video bytes").hexdigest()


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


@pytest.fixture
def curator(db: Session) -> dict[str, str]:
    return _key(db, "coop", ["match", "hash", "lists:read", "lists:write"])


def _refresh(client: TestClient) -> None:
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]


def _flip(hex_value: str, count: int) -> str:
    return f"{int(hex_value, 16) ^ ((1 << count) - 1):064x}"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_bank_curation_in_hma_shapes(client: TestClient, db: Session, curator: dict[str, str]) -> None:
    assert client.get("/c/banks", headers=curator).json() == []
    for bad in ("01_TEST_BANK", "my_test_bank"):
        refused = client.post("/c/banks", json={"name": bad}, headers=curator)
        assert (refused.status_code, refused.json()) == (400, {"message": "Bank names must be UPPER_WITH_UNDERSCORE"})
    created = client.post("/c/banks", json={"name": "MY_TEST_BANK", "enabled_ratio": "1"}, headers=curator)
    assert (created.status_code, created.json()) == (201, {"name": "MY_TEST_BANK", "matching_enabled_ratio": 1.0})
    again = client.post("/c/banks", json={"name": "MY_TEST_BANK"}, headers=curator)
    assert (again.status_code, again.json()) == (403, {"message": "Bank already exists"})
    assert client.get("/c/banks", headers=curator).json() == [created.json()]
    assert client.get("/c/bank/MY_TEST_BANK", headers=curator).json() == created.json()
    missing = client.get("/c/bank/NO_SUCH_BANK", headers=curator)
    assert (missing.status_code, missing.json()) == (404, {"message": "bank 'NO_SUCH_BANK' not found"})

    # Switching a bank off changes matching for every caller of a shared instance: admin only.
    refused = client.put("/c/bank/MY_TEST_BANK", json={"enabled": False}, headers=curator)
    assert (refused.status_code, refused.json()) == (
        403,
        {"message": "only an admin may enable or disable a list: it changes matching for every caller"},
    )
    admin = _key(db, "operator", ["admin", "lists:read", "lists:write"])
    off = client.put("/c/bank/MY_TEST_BANK", json={"enabled": False}, headers=admin)
    assert off.json() == {"name": "MY_TEST_BANK", "matching_enabled_ratio": 0.0}
    sampled = client.put("/c/bank/MY_TEST_BANK", json={"enabled_ratio": 0.5}, headers=admin)
    assert sampled.json() == {"name": "MY_TEST_BANK", "matching_enabled_ratio": 0.5}
    ratio = client.put("/c/bank/MY_TEST_BANK", json={"enabled_ratio": 0.25}, headers=curator)
    assert ratio.json() == {
        "message": "only an admin may change the share of contents a list is matched for: "
        "it changes matching for every caller"
    }
    renamed = client.put("/c/bank/MY_TEST_BANK", json={"name": "OTHER_NAME"}, headers=curator)
    assert renamed.json() == {"message": "only an admin may rename a list: it changes matching for every caller"}
    bad_name = client.put("/c/bank/MY_TEST_BANK", json={"name": "1_invalid_name"}, headers=admin)
    assert (bad_name.status_code, bad_name.json()) == (400, {"message": "Bank names must be UPPER_WITH_UNDERSCORE"})
    back_on = client.put("/c/bank/MY_TEST_BANK", json={"enabled": True}, headers=admin)
    assert back_on.json() == {"name": "MY_TEST_BANK", "matching_enabled_ratio": 1.0}
    bad_ratio = client.put("/c/bank/MY_TEST_BANK", json={"enabled_ratio": "lots"}, headers=curator)
    assert (bad_ratio.status_code, bad_ratio.json()) == (400, {"message": "Invalid float: 'lots'"})

    assert client.delete("/c/bank/MY_TEST_BANK", headers=curator).json() == {"message": "Done"}
    assert client.get("/c/bank/MY_TEST_BANK", headers=curator).status_code == 404
    assert client.delete("/c/bank/MY_TEST_BANK", headers=curator).json() == {"message": "Done"}
    assert client.get("/c/banks", headers=curator).json() == []


def test_signals_content_and_lookups(client: TestClient, db: Session, curator: dict[str, str]) -> None:
    client.post("/c/banks", json={"name": "TEST_BANK"}, headers=curator)
    client.post("/c/banks", json={"name": "OTHER_BANK"}, headers=curator)
    added = client.post("/c/bank/TEST_BANK/signal", json={"pdq": PDQ_A.upper(), "video_md5": MD5}, headers=curator)
    assert added.status_code == 200
    content_id = added.json()["id"]
    assert added.json() == {"id": content_id, "signals": {"pdq": PDQ_A, "video_md5": MD5}}
    # One Seawall entry per signal, grouped; the content id is the group's first entry.
    entries = db.scalars(select(Entry).order_by(Entry.id)).all()
    assert [(e.id, e.signal_type, e.value) for e in entries] == [
        (content_id, "pdq", PDQ_A),
        (content_id + 1, "md5", MD5),
    ]
    assert entries[0].external_id == entries[1].external_id and entries[0].external_id.startswith("hma-content-")
    bad = client.post("/c/bank/TEST_BANK/signal", json={"pdq": "banana"}, headers=curator)
    assert (bad.status_code, bad.json()) == (400, {"message": "Invalid pdq signal: pdq: expected 64 hex digits, got 6"})
    unknown = client.post("/c/bank/TEST_BANK/signal", json={"tlsh": "00"}, headers=curator)
    assert (unknown.status_code, unknown.json()) == (400, {"message": "No such signal type tlsh"})

    bank = {"name": "TEST_BANK", "matching_enabled_ratio": 1.0}
    shown = client.get(f"/c/bank/TEST_BANK/content/{content_id}", headers=curator).json()
    assert shown == {
        "id": content_id,
        "bank": bank,
        "enabled": True,
        "disable_until_ts": 1,
        "collab_metadata": {},
        "original_media_uri": None,
        "metadata": None,
        "note": None,
    }
    with_signals = client.get(f"/c/bank/TEST_BANK/content/{content_id}?include_signals=true", headers=curator)
    assert with_signals.json()["signals"] == {"pdq": PDQ_A, "video_md5": MD5}
    only_pdq = client.get(f"/c/bank/TEST_BANK/content/{content_id}?signal_type=pdq", headers=curator)
    assert only_pdq.json()["signals"] == {"pdq": PDQ_A}
    invalid = client.get(f"/c/bank/TEST_BANK/content/{content_id}?signal_type=invalid", headers=curator)
    assert (invalid.status_code, invalid.json()) == (400, {"message": "No such signal type 'invalid'"})
    for wrong in (f"/c/bank/OTHER_BANK/content/{content_id}", f"/c/bank/TEST_BANK/content/{content_id + 1}"):
        assert client.get(wrong, headers=curator).status_code == 404

    _refresh(client)
    near = client.get("/m/lookup", params={"signal_type": "pdq", "signal": _flip(PDQ_A, 31)}, headers=curator)
    assert near.json() == {"TEST_BANK": [{"bank_content_id": content_id, "distance": "31"}]}
    assert near.headers["x-seawall-match-id"] and near.headers["x-seawall-allowlisted"] == "false"
    far = client.get("/m/lookup", params={"signal_type": "pdq", "signal": _flip(PDQ_A, 32)}, headers=curator)
    assert far.json() == {}
    by_md5 = client.get("/m/lookup", params={"signal_type": "video_md5", "signal": MD5}, headers=curator)
    assert by_md5.json() == {"TEST_BANK": [{"bank_content_id": content_id, "distance": "0"}]}
    elsewhere = client.get(
        "/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A, "banks": "OTHER_BANK"}, headers=curator
    )
    assert elsewhere.json() == {}
    raw = client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": PDQ_B}, headers=curator)
    assert raw.json() == {"matches": [content_id]}
    raw_d = client.get(
        "/m/raw_lookup", params={"signal_type": "pdq", "signal": PDQ_B, "include_distance": "true"}, headers=curator
    )
    assert raw_d.json() == {"matches": [{"bank_content_id": content_id, "distance": "9"}]}
    missing = client.get("/m/raw_lookup", params={"signal_type": "pdq"}, headers=curator)
    assert (missing.status_code, missing.json()) == (400, {"message": "signal is required"})
    neither = client.get("/m/lookup", headers=curator)
    assert neither.json() == {"message": "Either url or both signal and signal_type are required"}
    no_type = client.get("/m/lookup", params={"signal_type": "vpdq", "signal": PDQ_A}, headers=curator)
    assert (no_type.status_code, no_type.json()) == (400, {"message": "No such SignalType 'vpdq'"})
    # Lookups are Seawall matches: each one that matched (4 of them) is in the match log.
    db.rollback()
    assert db.scalar(select(func.count()).select_from(MatchEvent)) == 4

    until = int((datetime.now(UTC) + timedelta(days=365)).timestamp())
    disabled = client.put(
        f"/c/bank/TEST_BANK/content/{content_id}", json={"disable_until_ts": until}, headers=curator
    ).json()
    assert disabled["disable_until_ts"] == until
    _refresh(client)
    assert client.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A}, headers=curator).json() == {}
    too_far = client.put(
        f"/c/bank/TEST_BANK/content/{content_id}", json={"disable_until_ts": 9999999999}, headers=curator
    )
    assert too_far.json() == {"message": "disable_until_ts must be less than 5 years in the future"}
    for_good = client.put(f"/c/bank/TEST_BANK/content/{content_id}", json={"disable_until_ts": 0}, headers=curator)
    assert for_good.json()["disable_until_ts"] == 0  # HMA: 0 is disabled for good
    shown = client.get(f"/c/bank/TEST_BANK/content/{content_id}", headers=curator).json()
    assert (shown["enabled"], shown["disable_until_ts"]) == (False, 0)
    enabled = client.put(f"/c/bank/TEST_BANK/content/{content_id}", json={"disable_until_ts": 1}, headers=curator)
    assert enabled.json()["disable_until_ts"] == 1

    assert client.delete(f"/c/bank/TEST_BANK/content/{content_id}", headers=curator).json() == {"deleted": 1}
    assert client.delete(f"/c/bank/TEST_BANK/content/{content_id}", headers=curator).json() == {"deleted": 0}
    assert client.get(f"/c/bank/TEST_BANK/content/{content_id}", headers=curator).status_code == 404
    _refresh(client)
    assert client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": PDQ_A}, headers=curator).json() == {
        "matches": []
    }
    assert client.delete("/c/bank/TEST_BANK", headers=curator).json() == {"message": "Done"}
    db.rollback()
    # The bank's entries are retracted (feed followers see it), its row a tombstone, its name free.
    statuses = db.execute(select(Entry.status, func.count()).group_by(Entry.status)).all()
    assert dict(statuses) == {"retracted": 2}
    assert client.get("/c/bank/TEST_BANK", headers=curator).status_code == 404
    assert client.post("/c/banks", json={"name": "TEST_BANK"}, headers=curator).status_code == 201


def test_hash_upload_bank_by_file_and_lookup_a_mirrored_copy(
    client: TestClient, db: Session, curator: dict[str, str], tmp_path: Path, settings: Settings
) -> None:
    original = benign_image(11)
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png(original))
    expected = hash_file(photo)["pdq"]
    hashed = client.post("/h/hash", files={"photo": ("photo.png", photo.read_bytes(), "image/png")}, headers=curator)
    assert (hashed.status_code, hashed.json()) == (200, {"pdq": expected})
    refused = client.post(
        "/h/hash?types=pdq,sha256", files={"photo": ("photo.png", photo.read_bytes(), "image/png")}, headers=curator
    )
    assert refused.json() == {"message": "signal type 'sha256' doesn't exist or is disabled"}
    settings.hma_signal_types = ["pdq", "video_md5", "sha256"]  # the operator shows SHA-256 too
    extra = client.post(
        "/h/hash?types=pdq,sha256",
        files={"photo": ("photo.png", photo.read_bytes(), "image/png")},
        headers=curator,
    )
    assert extra.json() == {"pdq": expected, "sha256": hashlib.sha256(photo.read_bytes()).hexdigest()}
    two = client.post("/h/hash", files=[("photo", ("a.png", b"x")), ("photo", ("b.png", b"y"))], headers=curator)
    assert (two.status_code, two.json()) == (400, {"message": "Only one file allowed per request"})
    audio = client.post("/h/hash", files={"audio": ("a.mp3", b"x")}, headers=curator)
    assert (audio.status_code, audio.json()) == (400, {"message": "no such content_type: 'audio'"})
    junk = client.post("/h/hash", files={"photo": ("a.png", b"not an image")}, headers=curator)
    assert junk.status_code == 400 and junk.json()["message"].startswith("cannot hash a.png:")

    client.post("/c/banks", json={"name": "PHOTO_BANK"}, headers=curator)
    banked = client.post(  # Coop's form: the file under its content type, metadata as plain fields
        "/c/bank/PHOTO_BANK/content",
        files={"photo": ("photo.png", photo.read_bytes(), "image/png")},
        data={"content_id": "post-42", "content_uri": "https://platform.example/p/42", "note": "benign test"},
        headers=curator,
    )
    assert banked.status_code == 200
    content_id = banked.json()["id"]
    assert banked.json() == {"id": content_id, "signals": {"pdq": expected}}
    shown = client.get(f"/c/bank/PHOTO_BANK/content/{content_id}", headers=curator).json()
    assert shown["original_media_uri"] == "https://platform.example/p/42"
    nothing = client.post("/c/bank/PHOTO_BANK/content", headers=curator)
    assert nothing.json() == {"message": "Neither `url` nor multipart file upload was received"}

    _refresh(client)
    mirrored = tmp_path / "mirrored.png"
    mirrored.write_bytes(_png(ImageOps.mirror(original)))
    variants = hash_file(mirrored, dihedral=True)["pdq_dihedral"]
    distance = min((int(v, 16) ^ int(expected, 16)).bit_count() for v in variants)
    looked = client.post("/m/lookup", files={"photo": ("m.png", mirrored.read_bytes(), "image/png")}, headers=curator)
    assert looked.json() == {"pdq": {"PHOTO_BANK": [{"bank_content_id": content_id, "distance": str(distance)}]}}


class _Files(BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:
        content_type, body = self.routes.get(self.path, ("text/plain", b"missing"))
        self.send_response(200 if self.path in self.routes else 404)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def media_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_hashing_is_ssrf_safe_and_feeds_lookup_and_banking(
    client: TestClient, settings: Settings, curator: dict[str, str], media_server: str, tmp_path: Path
) -> None:
    png = _png(benign_image(12))
    _Files.routes = {"/photo.png": ("image/png", png), "/notes.txt": ("text/plain", b"hello")}
    url = f"{media_server}/photo.png"
    refused = client.get("/h/hash", params={"url": url}, headers=curator)
    assert refused.status_code == 400
    assert refused.json()["message"] == "Invalid or unsafe URL provided: refused: 127.0.0.1 is not a public address"
    assert client.get("/h/hash", headers=curator).json() == {"message": "url is required"}

    settings.fetch_allow_networks = ["127.0.0.1/32"]  # a test-only exception for the loopback server
    expected = hash_file(_write(png, tmp_path))["pdq"]
    assert client.get("/h/hash", params={"url": url}, headers=curator).json() == {"pdq": expected}
    text = client.get("/h/hash", params={"url": f"{media_server}/notes.txt"}, headers=curator)
    assert text.json()["message"].startswith("unsupported url ContentType: 'text/plain'")
    gone = client.get("/h/hash", params={"url": f"{media_server}/gone.png"}, headers=curator)
    assert gone.json() == {"message": "Failed to fetch URL: HTTP 404"}

    client.post("/c/banks", json={"name": "URL_BANK"}, headers=curator)
    banked = client.post(
        "/c/bank/URL_BANK/content",
        params={"url": url, "content_type": "photo"},
        json={"metadata": {"content_id": "1197433091", "json": {"asdf": {}}}},
        headers=curator,
    )
    assert banked.json() == {"id": banked.json()["id"], "signals": {"pdq": expected}}
    bad_meta = client.post(
        "/c/bank/URL_BANK/content", params={"url": url}, json={"metadata": {"invalid_metadata": 5}}, headers=curator
    )
    assert bad_meta.json() == {"message": "metadata contains unexpected keys: invalid_metadata"}
    _refresh(client)
    found = client.get("/m/lookup", params={"url": url}, headers=curator)
    assert found.json() == {"pdq": {"URL_BANK": [{"bank_content_id": banked.json()["id"], "distance": "0"}]}}
    elided = client.get("/m/lookup", params={"url": url, "signal_type": "pdq"}, headers=curator)
    assert elided.json() == {"URL_BANK": [{"bank_content_id": banked.json()["id"], "distance": "0"}]}


def _write(data: bytes, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fetched.png"
    path.write_bytes(data)
    return path


def test_scopes_list_limits_allowlists_and_errors_in_hma_shape(client: TestClient, db: Session) -> None:
    hl = lists_service.create_list(db, SYSTEM, name="KNOWN", kind="hash")
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", PDQ_A)])
    lists_service.create_list(db, SYSTEM, name="SECRET", kind="hash")
    db.commit()
    matcher = _key(db, "matcher", ["match"])
    hasher = _key(db, "hasher", ["hash"])
    reader = _key(db, "reader", ["lists:read"], lists=["KNOWN"])
    _refresh(client)

    anonymous = client.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A})
    assert (anonymous.status_code, anonymous.json()) == (401, {"message": "authentication required"})
    bad_scheme = client.get("/c/banks", headers={"authorization": "Basic abc"})
    assert bad_scheme.json() == {"message": "use 'Authorization: Bearer <API key>'"}
    lacking = {
        ("GET", "/m/lookup", "match"): hasher,
        ("GET", "/m/raw_lookup", "match"): hasher,
        ("POST", "/m/compare", "match"): hasher,
        ("GET", "/h/hash", "hash"): matcher,
        ("POST", "/h/hash", "hash"): matcher,
        ("GET", "/c/banks", "lists:read"): matcher,
        ("POST", "/c/banks", "lists:write"): reader,
        ("POST", "/c/bank/KNOWN/signal", "lists:write"): reader,
        ("DELETE", "/c/bank/KNOWN", "lists:write"): reader,
    }
    for (method, path, scope), headers in lacking.items():
        answer = client.request(method, path, headers=headers)
        assert (answer.status_code, answer.json()) == (403, {"message": f"this credential lacks the '{scope}' scope"})

    ok = client.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A}, headers=matcher)
    assert [m["distance"] for m in ok.json()["KNOWN"]] == ["0"]
    # A key limited to some lists sees only those banks.
    assert client.get("/c/banks", headers=reader).json() == [{"name": "KNOWN", "matching_enabled_ratio": 1.0}]
    assert client.get("/c/bank/SECRET", headers=reader).status_code == 404

    # An allowlist suppresses: HMA clients act on any bank match, so they get none, and the header says why.
    allow = lists_service.create_list(db, SYSTEM, name="benign_memes", kind="hash", allowlist=True)
    lists_service.add_entries(db, SYSTEM, allow, [EntryRecord("pdq", PDQ_A)])
    db.commit()
    _refresh(client)
    suppressed = client.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A}, headers=matcher)
    assert suppressed.json() == {} and suppressed.headers["x-seawall-allowlisted"] == "true"
    assert "benign_memes" not in [
        b["name"] for b in client.get("/c/banks", headers=_key(db, "r2", ["lists:read"])).json()
    ]


def test_compare_index_status_and_configuration(client: TestClient, db: Session, curator: dict[str, str]) -> None:
    compared = client.post("/m/compare", json={"pdq": [PDQ_A, PDQ_B], "video_md5": [MD5, MD5]}, headers=curator)
    assert compared.json() == {"pdq": [True, {"distance": 9}], "video_md5": [True, {"distance": 0}]}
    far = client.post("/m/compare", json={"pdq": [PDQ_A, _flip(PDQ_A, 32)]}, headers=curator)
    assert far.json() == {"pdq": [False, {"distance": 32}]}
    bad_inputs: list[Any] = [["banana"], {"pdq": "banana"}, {"pdq": []}, {"pdq": ["x", "x"]}, {"pdq": [PDQ_A] * 3}]
    messages = [client.post("/m/compare", json=bad, headers=curator).json()["message"] for bad in bad_inputs]
    assert messages == [
        "Request input was not a dict",
        "Comparison hashes for pdq was not a list",
        "Comparison hash list length must be exactly 2",
        "Invalid pdq hash: pdq: expected 64 hex digits, got 1",
        "Comparison hash list length must be exactly 2",
    ]

    hl = lists_service.create_list(db, SYSTEM, name="SIZED", kind="hash")
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", PDQ_A), EntryRecord("md5", MD5)])
    db.commit()
    _refresh(client)
    status = client.get("/m/index/status", headers=curator).json()
    assert {k: (v["present"], v["size"]) for k, v in status.items()} == {
        "pdq": (True, 1),
        "video_md5": (True, 1),
    }
    assert client.get("/m/index/status?signal_type=nope", headers=curator).json() == {
        "message": "No such signal type 'nope'"
    }
    assert client.get("/c/signal_type", headers=curator).json() == [
        {"name": "pdq", "enabled_ratio": 1.0},
        {"name": "video_md5", "enabled_ratio": 1.0},
    ]
    assert client.get("/c/content_type", headers=curator).json() == [
        {"name": "photo", "enabled": True},
        {"name": "video", "enabled": True},
    ]
    alive = client.get("/status")
    assert (alive.status_code, alive.text) == (200, "I-AM-ALIVE")
