"""The fast paths of hash lookups give the answers of the plain ones: the single-lookup fast path
against the route, the batch against single lookups, and recording that waits its turn."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.db import make_sessionmaker
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.matching import api as matching_api
from seawall.matching import policies
from seawall.matching.indexes import MatchIndexes
from seawall.matching.models import MatchEvent


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _list(db: Session, name: str, records: list[EntryRecord], **kw: Any) -> None:
    hl = lists_service.create_list(db, SYSTEM, name=name, kind="hash", **kw)
    lists_service.add_entries(db, SYSTEM, hl, records)
    db.commit()


def _flip_bits(hex_value: str, count: int) -> str:
    return f"{int(hex_value, 16) ^ ((1 << count) - 1):064x}"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


P1, P2 = hashlib.sha256(b"benign stripes").hexdigest(), hashlib.sha256(b"benign dots").hexdigest()
M1, M2 = _md5("benign known"), _md5("benign meme")


@pytest.fixture
def lists(client: TestClient, db: Session) -> None:
    _list(db, "known", [EntryRecord("pdq", P1, category="A"), EntryRecord("pdq", P2), EntryRecord("md5", M1)])
    _list(db, "strict", [EntryRecord("pdq", P1, category="A")], thresholds={"pdq": 10})
    _list(db, "memes", [EntryRecord("md5", M2)], allowlist=True)
    policies.upsert_policy(db, SYSTEM, name="block-a", conditions={"categories": ["A"]}, actions=[{"type": "block"}])
    db.commit()
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]


# Hits, misses and invalid values, in an order that mixes them; a repeated value; upper case.
ITEMS = [
    ("pdq", _flip_bits(P1, 5)),  # both pdq lists
    ("md5", _md5("benign unknown")),  # miss
    ("pdq", "zz"),  # invalid
    ("md5", M1.upper()),  # hit once normalised
    ("nope", "x"),  # unknown signal type
    ("pdq", _flip_bits(P2, 31)),  # at the threshold
    ("pdq", _flip_bits(P2, 32)),  # just past it
    ("md5", M2),  # allowlisted
    ("pdq", _flip_bits(P1, 5)),  # the first again
    ("sha1", hashlib.sha1(b"benign").hexdigest()),  # no list holds sha1
    ("md5", "abc"),  # too short
    ("PDQ", P1),  # the type by another spelling: matched as "pdq"
]


def _single(client: TestClient, headers: dict[str, str], signal_type: str, value: str, **params: Any) -> Any:
    return client.get("/v1/match", params={"signal_type": signal_type, "value": value, **params}, headers=headers)


@pytest.mark.parametrize("restricted", [None, ["strict", "memes"]])
def test_batch_answers_as_single_lookups_do_in_order(
    client: TestClient, db: Session, lists: None, restricted: list[str] | None
) -> None:
    partner = _key(db, "platform", ["match"])
    body: dict[str, Any] = {"signals": [{"signal_type": t, "value": v} for t, v in ITEMS]}
    if restricted:
        body["lists"] = restricted
    batch = client.post("/v1/match/batch", json=body, headers=partner)
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [(r["signal_type"], r["value"].lower()) for r in results] == [(t, v.lower()) for t, v in ITEMS]
    recorded = db.scalar(select(func.count()).select_from(MatchEvent))
    assert recorded == sum(1 for r in results if r["matches"])
    params = {"lists": restricted} if restricted else {}
    for (signal_type, value), result in zip(ITEMS, results, strict=True):
        single = _single(client, partner, signal_type, value, **params)
        if single.status_code == 422:
            assert result["error"] == single.json()["detail"] and result["matches"] == [], value
            assert result["value"] == value
            continue
        assert single.status_code == 200 and result["error"] is None
        assert result["value"] == value.lower()
        assert (result["matches"], result["actions"]) == (single.json()["matches"], single.json()["actions"]), value
    hits = [r for r in results if r["matches"]]
    assert len(hits) == (6 if restricted is None else 4)
    assert {m["list"] for r in hits for m in r["matches"]} == set(restricted or ["known", "strict", "memes"])
    assert {m["list"] for m in results[-1]["matches"]} == ({"strict"} if restricted else {"known", "strict"})


def test_batch_honours_a_key_limited_to_some_lists(client: TestClient, db: Session, lists: None) -> None:
    limited = _key(db, "limited", ["match"], lists=["strict"])
    signals = [{"signal_type": t, "value": v} for t, v in ITEMS]
    results = client.post("/v1/match/batch", json={"signals": signals}, headers=limited).json()["results"]
    for (signal_type, value), result in zip(ITEMS, results, strict=True):
        single = _single(client, limited, signal_type, value)
        if single.status_code == 200:
            assert result["matches"] == single.json()["matches"]
    assert {m["list"] for r in results for m in r["matches"]} == {"strict"}


def test_batch_records_each_matched_item(client: TestClient, db: Session, lists: None) -> None:
    partner = _key(db, "platform", ["match"])
    near = _flip_bits(P1, 5)
    signals = [{"signal_type": "pdq", "value": near}, {"signal_type": "md5", "value": M1}] * 2
    client.post("/v1/match/batch", json={"signals": signals}, headers=partner)
    events = db.scalars(select(MatchEvent).order_by(MatchEvent.id)).all()
    assert [e.signals for e in events] == [{"pdq": [near]}, {"md5": [M1]}] * 2
    assert [e.actions for e in events] == [[{"type": "block", "rule": "block-a"}], []] * 2
    assert len({e.match_id for e in events}) == 4


def _without_match_id(response: Any) -> tuple[int, Any]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("match_id", None)
    return response.status_code, body


CASES: list[tuple[dict[str, Any], bool]] = [  # (query parameters, answered by the fast path)
    ({"signal_type": "pdq", "value": _flip_bits(P1, 5)}, True),
    ({"signal_type": "pdq", "value": hashlib.sha256(b"benign unrelated").hexdigest()}, True),
    ({"signal_type": "pdq", "value": " " + _flip_bits(P1, 5).upper()}, True),
    ({"signal_type": "md5", "value": M2}, True),
    ({"signal_type": "pdq", "value": _flip_bits(P1, 5), "lists": "strict"}, True),
    ({"signal_type": "pdq", "value": _flip_bits(P1, 5), "lists": ["strict", "known"]}, True),
    ({"signal_type": "pdq", "value": _flip_bits(P1, 5), "lists": ""}, True),
    ({"signal_type": "PDQ", "value": P1}, True),
    ({"signal_type": "pdq", "value": "zz"}, False),
    ({"signal_type": "nope", "value": "x"}, False),
    ({"signal_type": "pdq"}, False),
    ({"value": P1}, False),
    ({"signal_type": "pdq", "value": P1, "other": "1"}, False),
]


@pytest.mark.parametrize("limit", [None, ["strict"]], ids=["every-list", "limited-key"])
@pytest.mark.parametrize(("params", "fast"), CASES)
def test_single_lookup_fast_path_answers_as_the_route_does(
    client: TestClient,
    db: Session,
    lists: None,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
    fast: bool,
    limit: list[str] | None,
) -> None:
    partner = _key(db, "platform", ["match"], lists=limit)
    taken: list[bool] = []
    real = matching_api._single_lookup_args

    def spy(scope: Any) -> Any:
        found = real(scope)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(matching_api, "_single_lookup_args", spy)
    auth_service.clear_key_cache()  # an unchecked key: the route answers (and caches the key)
    by_route = client.get("/v1/match", params=params, headers=partner)
    by_fast_path = client.get("/v1/match", params=params, headers=partner)
    assert taken == [False, fast]
    assert _without_match_id(by_fast_path) == _without_match_id(by_route)
    assert by_fast_path.headers["content-type"] == by_route.headers["content-type"]
    if by_route.status_code == 200:
        assert by_fast_path.json()["match_id"] != by_route.json()["match_id"]
        if limit is not None:  # a limited key sees its own lists' matches only, on either path
            assert {m["list"] for m in by_fast_path.json()["matches"]} <= set(limit)


def test_fast_path_refuses_nothing_itself(client: TestClient, db: Session, lists: None) -> None:
    """Keys without the scope, revoked keys and other schemes are answered by the route, every time."""
    value = {"signal_type": "md5", "value": M1}
    reader = _key(db, "reader", ["lists:read"])
    for _ in range(2):  # the second time the key is cached
        assert client.get("/v1/match", params=value, headers=reader).status_code == 403
    partner = _key(db, "platform", ["match"])
    assert client.get("/v1/match", params=value, headers=partner).status_code == 200
    assert client.get("/v1/match", params=value, headers=partner).status_code == 200
    auth_service.revoke_api_key(db, SYSTEM, "platform")
    db.commit()
    revoked = client.get("/v1/match", params=value, headers=partner)
    assert revoked.status_code == 401 and revoked.json() == {"detail": "this API key has been revoked"}
    secret = partner["authorization"].split(" ", 1)[1]
    assert client.get("/v1/match", params=value, headers={"authorization": f"Token {secret}"}).status_code == 401
    assert client.get("/v1/match", params=value).status_code == 401


def test_fast_path_keeps_request_ids_metrics_and_access_lines(client: TestClient, db: Session, lists: None) -> None:
    partner = _key(db, "platform", ["match"])
    value = {"signal_type": "md5", "value": _md5("benign other")}
    for _ in range(3):
        client.get("/v1/match", params=value, headers=partner)
    answer = client.get("/v1/match", params=value, headers={**partner, "x-request-id": "lookup-7"})
    assert answer.headers["x-request-id"] == "lookup-7"
    metrics = client.get("/metrics", headers=_key(db, "monitoring", ["ops"])).text
    assert 'seawall_http_requests_total{method="GET",route="/v1/match",status="200"} 4.0' in metrics


def test_many_requests_finding_the_index_stale_refresh_it_once(engine: Engine) -> None:
    indexes = MatchIndexes(make_sessionmaker(engine, writes=False))
    refreshes: list[float] = []
    real = indexes._refresh

    def slow() -> None:
        refreshes.append(time.monotonic())
        time.sleep(0.2)
        real()

    indexes._refresh = slow  # type: ignore[method-assign]
    assert indexes.is_stale()
    callers = [threading.Thread(target=indexes.ensure_fresh) for _ in range(8)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert len(refreshes) == 1 and not indexes.is_stale()
    indexes.refresh()  # an explicit refresh always runs
    assert len(refreshes) == 2


# Only SQLite writers take turns on a file lock; PostgreSQL queues them on row locks itself.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_recording_waits_for_its_turn_without_holding_up_lookups(
    live_server: Any, db: Session, database_url: str
) -> None:
    value = _md5("benign turn")
    _list(db, "known", [EntryRecord("md5", value)])
    partner = _key(db, "platform", ["match"])
    live_server.app.state.match_indexes.refresh()
    lock = Path(database_url.split("///", 1)[1] + "-writelock")
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=live_server.url, headers=partner, timeout=30) as http:
        assert http.get("/v1/match", params={"signal_type": "md5", "value": value}).json()["matches"]
        assert lock.exists()
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as another process recording a match would
            waiting = threading.Thread(
                target=lambda: answers.append(http.get("/v1/match", params={"signal_type": "md5", "value": value}))
            )
            waiting.start()
            time.sleep(0.3)
            assert waiting.is_alive() and not answers
            started = time.monotonic()
            miss = http.get("/v1/match", params={"signal_type": "md5", "value": _md5("benign miss")})
            assert miss.status_code == 200 and time.monotonic() - started < 2
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        waiting.join(timeout=10)
    assert answers and answers[0].status_code == 200 and answers[0].json()["matches"]
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(MatchEvent)) == 2
