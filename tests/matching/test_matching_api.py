"""The matching API: every signal type, thresholds, dihedral variants, allowlists, policies, SSRF, scopes."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.matching import policies
from seawall.matching.models import MatchEvent
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _list(db: Session, name: str, kind: str = "hash", records: list[EntryRecord] | None = None, **kw: Any) -> None:
    hl = lists_service.create_list(db, SYSTEM, name=name, kind=kind, **kw)
    if records:
        lists_service.add_entries(db, SYSTEM, hl, records)
    db.commit()


def _refresh(client: TestClient) -> None:
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _flip_bits(hex_value: str, count: int) -> str:
    value = int(hex_value, 16) ^ ((1 << count) - 1)  # flips the lowest ``count`` bits
    return f"{value:064x}"


@pytest.fixture
def partner(db: Session) -> dict[str, str]:
    return _key(db, "platform", ["match", "hash"])


def test_distance_31_matches_and_32_does_not_and_list_thresholds_are_honoured(
    client: TestClient, db: Session, partner: dict[str, str]
) -> None:
    base = hashlib.sha256(b"benign pattern").hexdigest()
    _list(db, "strict", records=[EntryRecord("pdq", base)], thresholds={"pdq": 10})
    _list(db, "default", records=[EntryRecord("pdq", base)])
    _refresh(client)
    near = client.get("/v1/match", params={"signal_type": "pdq", "value": _flip_bits(base, 31)}, headers=partner).json()
    assert [(m["list"], m["distance"], m["variant"]) for m in near["matches"]] == [("default", 31, "original")]
    far = client.get("/v1/match", params={"signal_type": "pdq", "value": _flip_bits(base, 32)}, headers=partner).json()
    assert far["matches"] == [] and far["actions"] == []
    close = client.get(
        "/v1/match", params={"signal_type": "pdq", "value": _flip_bits(base, 10)}, headers=partner
    ).json()
    assert sorted(m["list"] for m in close["matches"]) == ["default", "strict"]
    only = client.get(
        "/v1/match", params={"signal_type": "pdq", "value": _flip_bits(base, 10), "lists": "strict"}, headers=partner
    ).json()
    assert [m["list"] for m in only["matches"]] == ["strict"]


def test_each_signal_type_matches(client: TestClient, db: Session, partner: dict[str, str], tmp_path: Path) -> None:
    photo = tmp_path / "landscape.png"
    benign_image(7).save(photo)
    hashed = hash_file(photo)
    _list(
        db,
        "known",
        records=[
            EntryRecord("md5", hashed["md5"], category="B"),
            EntryRecord("sha1", hashed["sha1"], category="B"),
            EntryRecord("sha256", hashed["sha256"], category="B"),
            EntryRecord("pdq", hashed["pdq"], category="A", labels=("demo",)),
        ],
    )
    _list(db, "urls", kind="url", records=[EntryRecord("url", "https://gallery.example/albums/", level="prefix")])
    _list(db, "terms", kind="keyword", records=[EntryRecord("keyword", "marmalade")])
    _refresh(client)
    for signal_type in ("md5", "sha1", "sha256", "pdq"):
        body = client.get(
            "/v1/match", params={"signal_type": signal_type, "value": hashed[signal_type]}, headers=partner
        )
        assert body.status_code == 200
        [found] = body.json()["matches"]
        assert (found["list"], found["signal_type"], found["value"], found["distance"]) == (
            "known",
            signal_type,
            hashed[signal_type],
            0,
        )
    upload = client.post(
        "/v1/match", files={"file": ("x.png", photo.read_bytes(), "image/png")}, headers=partner
    ).json()
    assert sorted(m["signal_type"] for m in upload["matches"]) == ["md5", "pdq", "sha1", "sha256"]
    assert upload["signals"]["pdq"] == hashed["pdq"] and len(upload["signals"]["pdq_dihedral"]) == 8
    url = client.post("/v1/match/url", json={"url": "HTTP://Gallery.example:80/albums/2024/x.jpg#top"}, headers=partner)
    assert url.json()["matches"] == [
        {
            "list": "urls",
            "entry_id": url.json()["matches"][0]["entry_id"],
            "value": "https://gallery.example/albums",
            "level": "prefix",
            "category": None,
            "labels": [],
            "allowlist": False,
        }
    ]
    assert client.post("/v1/match/url", json={"url": "https://other.example/albums/"}, headers=partner).json() == {
        "matches": []
    }
    text = "We had toast with M-A-R-M-A-L-A-D-E and tea."
    found_text = client.post("/v1/match/text", json={"text": text}, headers=partner).json()["matches"]
    assert [(m["term"], text[m["start"] : m["end"]]) for m in found_text] == [("marmalade", "M-A-R-M-A-L-A-D-E")]


def test_rotated_and_mirrored_uploads_match_with_their_variant(
    client: TestClient, db: Session, partner: dict[str, str], tmp_path: Path
) -> None:
    original = benign_image(11, 512, 384)
    path = tmp_path / "o.png"
    original.save(path)
    _list(db, "known", records=[EntryRecord("pdq", hash_file(path)["pdq"])])
    _list(db, "plain", records=[EntryRecord("pdq", hash_file(path)["pdq"])], dihedral=False)
    _refresh(client)
    rotated = original.transpose(Image.Transpose.ROTATE_90)
    result = client.post("/v1/match", files={"file": ("r.png", _png(rotated), "image/png")}, headers=partner).json()
    [found] = result["matches"]  # the list with dihedral lookups off does not see it
    assert (found["list"], found["variant"]) == ("known", "rotate270") and found["distance"] <= 31
    mirrored = original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    result = client.post("/v1/match", files={"file": ("m.png", _png(mirrored), "image/png")}, headers=partner).json()
    [found] = result["matches"]
    assert (found["list"], found["variant"]) == ("known", "flipy") and found["distance"] <= 31


def test_allowlist_suppresses_actions_and_says_so(client: TestClient, db: Session, partner: dict[str, str]) -> None:
    value = hashlib.md5(b"benign meme").hexdigest()
    _list(db, "known", records=[EntryRecord("md5", value, category="A")])
    _list(db, "memes", records=[EntryRecord("md5", value)], allowlist=True)
    policies.upsert_policy(db, SYSTEM, name="block-all", conditions={}, actions=[{"type": "block"}])
    db.commit()
    _refresh(client)
    body = client.get("/v1/match", params={"signal_type": "md5", "value": value}, headers=partner).json()
    assert sorted(m["list"] for m in body["matches"]) == ["known", "memes"]
    assert body["allowlisted"] is True and body["actions"] == []
    assert body["reasons"][0].startswith("allowlisted (list=memes")


def test_rules_in_order_with_stop_and_shadow(client: TestClient, db: Session, partner: dict[str, str]) -> None:
    a, c = hashlib.md5(b"benign a").hexdigest(), hashlib.md5(b"benign c").hexdigest()
    _list(db, "known", records=[EntryRecord("md5", a, category="A"), EntryRecord("md5", c, category="C")])
    policies.upsert_policy(
        db,
        SYSTEM,
        name="review-everything",
        position=20,
        conditions={},
        actions=[{"type": "review", "queue": "default"}],
    )
    policies.upsert_policy(
        db,
        SYSTEM,
        name="block-a",
        position=10,
        stop=True,
        conditions={"categories": ["A"], "lists": ["known"]},
        actions=[{"type": "block"}, {"type": "report", "authority": "ncmec"}],
    )
    policies.upsert_policy(
        db,
        SYSTEM,
        name="try-webhook",
        position=5,
        shadow=True,
        conditions={},
        actions=[{"type": "webhook", "target": "ops"}],
    )
    db.commit()
    _refresh(client)
    first = client.get("/v1/match", params={"signal_type": "md5", "value": a}, headers=partner).json()
    assert [x["type"] for x in first["actions"]] == ["block", "report"]
    assert [x["rule"] for x in first["shadow_actions"]] == ["try-webhook"]
    assert first["reasons"][0].startswith("shadow rule 'try-webhook' (position 5) → webhook")
    assert first["reasons"][1].startswith("rule 'block-a' (position 10) → block, report: list=known")
    assert first["reasons"][2] == "rule 'block-a' stops evaluation"
    second = client.get("/v1/match", params={"signal_type": "md5", "value": c}, headers=partner).json()
    assert second["actions"] == [{"type": "review", "queue": "default", "rule": "review-everything"}]
    logged = db.scalars(select(MatchEvent).order_by(MatchEvent.id)).all()
    assert [e.actions[0]["type"] for e in logged] == ["block", "review"]
    assert logged[0].signals == {"md5": [a]} and logged[0].principal == "key:platform"


def test_batch_lookup_and_errors(client: TestClient, db: Session, partner: dict[str, str]) -> None:
    values = [hashlib.md5(f"benign {i}".encode()).hexdigest() for i in range(3)]
    _list(db, "known", records=[EntryRecord("md5", v) for v in values[:2]])
    _refresh(client)
    signals = [{"signal_type": "md5", "value": v} for v in values] + [{"signal_type": "pdq", "value": "zz"}]
    results = client.post("/v1/match/batch", json={"signals": signals}, headers=partner).json()["results"]
    assert [len(r["matches"]) for r in results] == [1, 1, 0, 0]
    assert results[3]["error"] == "pdq: expected 64 hex digits, got 2"
    too_many = client.post("/v1/match/batch", json={"signals": signals * 300}, headers=partner)
    assert too_many.status_code == 422
    assert client.get("/v1/match", params={"signal_type": "nope", "value": "x"}, headers=partner).json() == {
        "detail": "unknown signal type 'nope'"
    }
    bad_upload = client.post(
        "/v1/match", files={"file": ("x.jpg", b"not an image at all", "image/jpeg")}, headers=partner
    )
    assert (
        bad_upload.status_code == 422 and bad_upload.json()["detail"] == "x.jpg: not a supported image or video format"
    )


def test_every_endpoint_needs_a_key_with_the_scope(client: TestClient, db: Session) -> None:
    no_scope = _key(db, "reader", ["lists:read"])
    requests = [
        ("GET", "/v1/match?signal_type=md5&value=" + "0" * 32, None),
        ("POST", "/v1/match", {"signals": {"md5": "0" * 32}}),
        ("POST", "/v1/match/batch", {"signals": []}),
        ("POST", "/v1/match/url", {"url": "https://x.example/"}),
        ("POST", "/v1/match/text", {"text": "hello"}),
        ("POST", "/v1/hash", None),
    ]
    for method, path, body in requests:
        assert client.request(method, path, json=body).status_code == 401, path
        assert client.request(method, path, json=body, headers=no_scope).status_code == 403, path


def test_new_and_retired_entries_take_effect_within_a_second(
    client: TestClient, db: Session, partner: dict[str, str]
) -> None:
    curator = _key(db, "curator", ["lists:write", "lists:read"])
    ops = _key(db, "monitoring", ["ops"])  # readiness details are for 'ops' credentials
    value = hashlib.md5(b"benign late").hexdigest()
    _list(db, "known")
    _refresh(client)

    def matched_within(seconds: float, expected: bool) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            body = client.get("/v1/match", params={"signal_type": "md5", "value": value}, headers=partner).json()
            if bool(body["matches"]) == expected:
                return True
            time.sleep(0.05)
        return False

    added = client.post(
        "/v1/lists/known/entries", json={"entries": [{"signal_type": "md5", "value": value}]}, headers=curator
    )
    assert added.status_code == 200
    assert matched_within(1.0, True)
    client.post("/v1/lists/known/entries/status", json={"values": [value]}, headers=curator)
    assert matched_within(1.0, False)
    deadline = time.monotonic() + 1.0
    while (ready := client.get("/readyz", headers=ops).json()["checks"]["indexes"])["lists"]["known"]["lag"] and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert ready["ready"] is True and ready["lists"]["known"] == {"revision": 2, "lag": 0}


def test_match_by_url_refuses_private_addresses(client: TestClient, partner: dict[str, str]) -> None:
    for url, detail in (
        ("http://127.0.0.1:9/x.jpg", "refused: 127.0.0.1 is not a public address"),
        ("http://10.0.0.5/x.jpg", "refused: 10.0.0.5 is not a public address"),
        ("http://169.254.169.254/latest/", "refused: 169.254.169.254 is not a public address"),
        ("http://[64:ff9b::a9fe:a9fe]/latest/", "refused: 64:ff9b::a9fe:a9fe is not a public address"),
        # A name: refused without echoing what it resolved to.
        ("http://localhost/", "refused: localhost resolves to a non-public address"),
    ):
        response = client.post("/v1/match", json={"url": url}, headers=partner)
        assert (response.status_code, response.json()) == (422, {"detail": detail})


def test_concurrent_matches_and_list_writes_all_succeed(live_server: Any, db: Session) -> None:
    """Many clients at once: matches are recorded and entries added while others read; none fails."""
    import threading

    import httpx

    values = [hashlib.md5(f"benign concurrent {i}".encode()).hexdigest() for i in range(40)]
    _list(db, "known", records=[EntryRecord("md5", v) for v in values[:20]])
    partner = _key(db, "platform", ["match"])
    curator = _key(db, "curator", ["lists:write", "lists:read"])
    live_server.app.state.match_indexes.refresh()
    failures: list[str] = []

    def matcher(n: int) -> None:
        with httpx.Client(base_url=live_server.url, headers=partner, timeout=60) as http:
            for i in range(15):
                r = http.get("/v1/match", params={"signal_type": "md5", "value": values[(n + i) % 20]})
                if r.status_code != 200 or not r.json()["matches"]:
                    failures.append(f"match {r.status_code} {r.text[:200]}")

    def writer(n: int) -> None:
        with httpx.Client(base_url=live_server.url, headers=curator, timeout=60) as http:
            for i in range(5):
                body = {"entries": [{"signal_type": "md5", "value": values[20 + (n * 5 + i) % 20]}]}
                r = http.post("/v1/lists/known/entries", json=body)
                if r.status_code != 200:
                    failures.append(f"add {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=matcher, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(MatchEvent)) == 90
    assert lists_service.count_entries(db, lists_service.get_list(db, "known"))["active"] == 40
