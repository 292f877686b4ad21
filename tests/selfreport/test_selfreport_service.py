"""Self-reports through the service and the public endpoint: intake, the self-report list, status,
withdrawal reaching the feed, statistics, bounds and refusals (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.hotline import intake
from seawall.hotline.models import Case, Report, ReportSignal
from seawall.lists import service as lists_service
from seawall.lists.models import Entry
from seawall.lists.records import EntryRecord
from seawall.selfreport import service
from seawall.selfreport.schemas import (
    BODY_BYTES,
    MAX_FILES,
    MAX_FRAMES,
    MAX_VIDEO_FRAMES,
    FileHashes,
    SelfReportIn,
)
from seawall.stats import service as stats
from seawall.stats.service import Query


def _file(seed: int, pdq: bool = True) -> dict[str, Any]:
    data = f"benign picture {seed}".encode()
    out: dict[str, Any] = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    if pdq:
        out["pdq"] = hashlib.sha256(b"pdq" + data).hexdigest()
        out["pdq_quality"] = 90
    return out


def _report(*seeds: int, age_band: str | None = "14-15") -> SelfReportIn:
    return SelfReportIn(files=[FileHashes(**_file(s)) for s in seeds], age_band=age_band, consent=True)


def test_a_self_report_is_a_hash_case_and_pending_entries(db: Session, settings: Settings) -> None:
    got = service.submit(db, settings, _report(1, 2))
    db.commit()
    assert re.fullmatch(r"R-[0-9A-Z]{5}-[0-9A-Z]{5}", got.case) and re.fullmatch(r"[0-9]{8}", got.pin)
    report = db.scalars(select(Report).where(Report.reference == got.case)).one()
    case = db.get(Case, report.case_id)
    assert (report.channel, report.age_band, report.url, report.contact_sealed) == ("self_report", "14-15", None, None)
    assert case is not None and (case.kind, case.state, case.priority) == ("hashes", "open", 80)
    signals = sorted(db.execute(select(ReportSignal.signal_type, ReportSignal.value)).all())
    expected = sorted((t, f[t]) for s in (1, 2) for f in [_file(s)] for t in ("md5", "sha256", "pdq"))
    assert signals == expected
    entries = db.scalars(select(Entry).order_by(Entry.id)).all()
    assert sorted((e.signal_type, e.value) for e in entries) == expected
    assert {e.hash_list.name for e in entries} == {"self-report"}
    assert all(
        (e.status, e.labels, e.source, e.external_id)
        == ("active", ["pending", "self-report"], "self-report", f"self-report:{got.case}")
        for e in entries
    )
    assert service.status_by_pin(db, got.case, got.pin) == "received"
    assert service.status_by_pin(db, got.case, "00000000") is None
    assert service.status_by_pin(db, "R-00000-00000", got.pin) is None
    # Statistics count it by age band.
    rows = stats.table(db, settings, Query(measure="self_reports", by=["age_band"])).rows
    assert [(r["age_band"], r["count"]) for r in rows] == [("14-15", 1)]
    # Checked once the hotline looked; shared with platforms once no longer pending (a setting).
    got = service.submit(db, settings, _report(3))
    report = db.scalars(select(Report).where(Report.reference == got.case)).one()
    case = db.get(Case, report.case_id)
    assert case is not None
    case.state = "assessed"
    db.flush()
    assert service.status_by_pin(db, got.case, got.pin) == "checked"
    unpending = settings.model_copy(update={"self_report_pending": False})
    other = service.submit(db, unpending, _report(4))
    assert service.status_by_pin(db, other.case, other.pin) == "shared with platforms"
    labels = {e.value: e.labels for e in db.scalars(select(Entry))}
    assert labels[_file(4)["md5"]] == ["self-report"]


def test_withdrawal_retracts_only_this_reports_entries_and_reaches_the_feed(db: Session, settings: Settings) -> None:
    first = service.submit(db, settings, _report(5, 6))
    second = service.submit(db, settings, _report(5))  # the same picture, another report: no oracle
    db.commit()
    hash_list = lists_service.get_list(db, "self-report")
    revision = hash_list.revision
    assert not service.withdraw(db, first.case, "12345678")  # wrong PIN: nothing changes
    assert service.withdraw(db, first.case, first.pin)
    db.commit()
    by_report: dict[str, set[str]] = {}
    for e in db.scalars(select(Entry)):
        by_report.setdefault(e.external_id, set()).add(e.status)
    assert by_report == {f"self-report:{first.case}": {"retracted"}, f"self-report:{second.case}": {"active"}}
    changes = lists_service.changes_since(db, hash_list, revision)
    assert [(c.op, c.status) for c in changes] == [("status", "retracted")] * 6
    assert service.status_by_pin(db, first.case, first.pin) == "withdrawn"
    assert service.status_by_pin(db, second.case, second.pin) == "received"
    assert service.withdraw(db, first.case, first.pin)  # again: still withdrawn, nothing more
    db.commit()
    assert len(lists_service.changes_since(db, hash_list, revision)) == 6
    actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions.count("selfreport.withdraw") == 2 and "entry.retracted" in actions
    # No oracle: a hash already on another list gets the same answer as one nobody knew.
    known = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    lists_service.add_entries(db, SYSTEM, known, [EntryRecord("md5", _file(7)["md5"], category="B")])
    a = service.submit(db, settings, _report(7))
    b = service.submit(db, settings, _report(8))
    db.commit()
    assert service.status_by_pin(db, a.case, a.pin) == service.status_by_pin(db, b.case, b.pin) == "received"
    counts = {
        r.reference: len(db.scalars(select(ReportSignal).where(ReportSignal.report_id == r.id)).all())
        for r in db.scalars(select(Report).where(Report.reference.in_([a.case, b.case])))
    }
    assert counts == {a.case: 3, b.case: 3}
    # The hotline's people (GET /v1/cases/{reference}) see which lists already know each hash.
    report = db.scalars(select(Report).where(Report.reference == a.case)).one()
    known_as = sorted(intake.signals_with_lists(db, report))
    f = _file(7)
    assert known_as == [("md5", f["md5"], ["known"]), ("pdq", f["pdq"], []), ("sha256", f["sha256"], [])]


# ---- the public endpoint -------------------------------------------------------------------------


def _token(client: TestClient) -> str:
    page = client.get("/self-report")
    assert page.status_code == 200
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


def _send(client: TestClient, token: str | None, body: Any) -> Any:
    return client.post("/self-report/submit", json={**body, "csrf_token": token} if token else body)


def test_endpoint_answers_a_case_and_pin_and_refuses_bad_shapes(client: TestClient, app: Any, db: Session) -> None:
    app.state.settings.self_report_limit = 100  # every attempt counts, refused ones too
    token = _token(client)
    body = {"files": [_file(9), _file(10, pdq=False)], "age_band": "11-13", "consent": True}
    assert _send(client, None, body).json() == {"detail": "This page has expired. Reload it and try again."}
    assert _send(client, "0" * 64, body).status_code == 403
    answer = _send(client, token, body)
    assert answer.status_code == 201, answer.text
    assert set(answer.json()) == {"case", "pin"}
    refusals = [
        ({**body, "files": [_file(i) for i in range(MAX_FILES + 1)]}, f"A report carries at most {MAX_FILES} files."),
        ({**body, "files": []}, "A report carries the hashes of at least one file."),
        ({**body, "consent": False}, "Please tick the box to say you agree before sending."),
        (
            {**body, "files": [{**_file(1), "md5": "xyz"}]},
            "files.0.md5: String should match pattern '^[0-9a-fA-F]{32}$'",
        ),
        ({**body, "files": [{**_file(1), "name": "holiday.jpg"}]}, "files.0.name: Extra inputs are not permitted"),
        ({**body, "pixels": "AAAA"}, "pixels: Extra inputs are not permitted"),
        ({**body, "age_band": "30-40"}, "age_band: Input should be '0-2', '3-6', '7-10', '11-13', '14-15' or '16-17'"),
        (
            {**body, "files": [{**_file(1), "pdq_quality": 101}]},
            "files.0.pdq_quality: Input should be less than or equal to 100",
        ),
    ]
    for bad, message in refusals:
        got = _send(client, token, bad)
        assert (got.status_code, got.json()) == (422, {"detail": message}), bad
    raw = client.post("/self-report/submit", content=b"{not json", headers={"content-type": "application/json"})
    assert (raw.status_code, raw.json()) == (400, {"detail": "The report is not valid JSON."})
    huge = client.post(
        "/self-report/submit",
        content=b'{"files": [' + b" " * 30_000 + b"]}",  # refused before a byte is parsed
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and "24576-byte limit" in huge.text
    assert len(db.scalars(select(Report.id).where(Report.channel == "self_report")).all()) == 1  # one taken
    # Every attempt counted (refused ones too): over the limit, the next is refused before parsing.
    app.state.settings.self_report_limit = 10  # 9 counted so far: one more is allowed, then none
    assert _send(client, token, body).status_code == 201
    limited = _send(client, token, body)
    assert (limited.status_code, limited.json()) == (
        429,
        {"detail": "You have sent several reports in a short time. Please wait an hour and try again."},
    )


def test_status_and_withdraw_pages(client: TestClient, db: Session, settings: Settings) -> None:
    settings.self_report_exit_url = "https://weather.example/today"  # the operator's choice, read per page
    for path in ("/self-report", "/self-report/status", "/self-report/withdraw"):
        page = client.get(path)
        assert page.status_code == 200
        assert '<a class="quick-exit" id="quick-exit" href="https://weather.example/today"' in page.text
        assert '<a href="tel:08001111">0800 1111</a>' in page.text and '<a href="tel:119">119</a>' in page.text
        assert page.text.index("Childline") < page.text.index("Allô enfance en danger")  # GB, the hotline's own, first
    token = _token(client)
    got = _send(client, token, {"files": [_file(12)], "consent": True}).json()
    form = {"reference": got["case"].lower(), "pin": got["pin"], "csrf_token": token}
    status = client.post("/self-report/status", data=form)
    assert status.status_code == 200 and '<strong id="status">received</strong>' in status.text
    wrong = client.post("/self-report/status", data={**form, "pin": "1"})
    assert wrong.status_code == 404 and "could not find a report" in wrong.text
    assert client.post("/self-report/withdraw", data={**form, "csrf_token": ""}).status_code == 403
    assert client.post("/self-report/withdraw", data={**form, "pin": "1"}).status_code == 404
    done = client.post("/self-report/withdraw", data=form)
    assert done.status_code == 200 and "is withdrawn" in done.text
    assert db.scalars(select(Entry.status)).all() == ["retracted"] * 3
    status = client.post("/self-report/status", data=form)
    assert '<strong id="status">withdrawn</strong>' in status.text
    # A case number and PIN from another channel is unknown here (and cannot be withdrawn here).
    db.rollback()  # end this session's read (SQLite: a stale snapshot cannot write)
    key = auth_service.create_api_key(db, SYSTEM, name="partner", scopes=["reports:write"])
    db.commit()
    filed = client.post(
        "/v1/reports", json={"url": "https://forum.example/t/9"}, headers={"authorization": f"Bearer {key.secret}"}
    ).json()
    form = {"reference": filed["reference"], "pin": filed["pin"], "csrf_token": token}
    assert client.post("/self-report/status", data=form).status_code == 404
    assert client.post("/self-report/withdraw", data=form).status_code == 404


def _frames(seed: int, count: int, quality: int = 90) -> list[dict[str, Any]]:
    return [
        {
            "frame": 3 * n,
            "quality": quality,
            "pdq": hashlib.sha256(f"frame {seed} {n}".encode()).hexdigest(),
            "timestamp": round(0.1 * n, 3),
        }
        for n in range(count)
    ]


def test_video_frames_are_listed_per_video_bounded_and_withdrawn(
    client: TestClient, app: Any, db: Session, settings: Settings
) -> None:
    # Two videos: each its own external id (matching counts a listed video's frames per id); a
    # frame repeated or under the quality floor is not listed.
    one = {**_file(40, pdq=False), "vpdq": [*_frames(40, 3), _frames(40, 1)[0], *_frames(41, 2, quality=20)]}
    two = {**_file(42, pdq=False), "vpdq": _frames(42, 2)}
    got = service.submit(db, settings, SelfReportIn.model_validate({"files": [one, two, _file(43)], "consent": True}))
    db.commit()
    vpdq = sorted((e.external_id, e.value) for e in db.scalars(select(Entry).where(Entry.signal_type == "vpdq")))
    ref = f"self-report:{got.case}"
    assert vpdq == sorted(
        [(f"{ref}#video1", f["pdq"]) for f in _frames(40, 3)] + [(f"{ref}#video2", f["pdq"]) for f in _frames(42, 2)]
    )
    report = db.scalars(select(Report).where(Report.reference == got.case)).one()
    assert report.description == (
        "Self-report: 3 file(s) hashed on the young person's device, 2 video(s) as 8 hashed frames."
    )
    assert service.withdraw(db, got.case, got.pin)
    db.commit()
    assert {e.status for e in db.scalars(select(Entry))} == {"retracted"}

    # Bounds: frames per video, frames per report, each frame's shape; the largest report fits the cap.
    app.state.settings.self_report_limit = 100  # every attempt counts against the per-client limit
    token = _token(client)
    video = {**_file(50, pdq=False), "vpdq": _frames(50, MAX_VIDEO_FRAMES)}
    refusals = [
        (
            [{**video, "vpdq": _frames(50, MAX_VIDEO_FRAMES + 1)}],
            f"A video carries at most {MAX_VIDEO_FRAMES} frames.",
        ),
        (
            [video] * (MAX_FRAMES // MAX_VIDEO_FRAMES + 1),
            f"A report carries at most {MAX_FRAMES} video frames in all.",
        ),
        ([{**video, "vpdq": []}], "files.0.vpdq: List should have at least 1 item after validation, not 0"),
        (
            [{**video, "vpdq": [{**_frames(50, 1)[0], "frame": -1}]}],
            "files.0.vpdq.0.frame: Input should be greater than or equal to 0",
        ),
        (
            [{**video, "vpdq": [{**_frames(50, 1)[0], "quality": 101}]}],
            "files.0.vpdq.0.quality: Input should be less than or equal to 100",
        ),
        (
            [{**video, "vpdq": [{**_frames(50, 1)[0], "pdq": "ab"}]}],
            "files.0.vpdq.0.pdq: String should match pattern '^[0-9a-fA-F]{64}$'",
        ),
        (
            [{**video, "vpdq": [{**_frames(50, 1)[0], "timestamp": 1e9}]}],
            "files.0.vpdq.0.timestamp: Input should be less than or equal to 86400",
        ),
        (
            [{**video, "vpdq": [{**_frames(50, 1)[0], "thumbnail": "AAAA"}]}],
            "files.0.vpdq.0.thumbnail: Extra inputs are not permitted",
        ),
    ]
    for files, message in refusals:
        answer = _send(client, token, {"files": files, "consent": True})
        assert (answer.status_code, answer.json()) == (422, {"detail": message})
    # The largest report the page can send: 20 files, 128 frames with the longest numbers.
    frame = {"frame": 9_999_999, "quality": 100, "pdq": "f" * 64, "timestamp": 86399.999}
    files = [
        {**_file(60 + i), "vpdq": [frame] * (MAX_FRAMES // 2)} if i < 2 else _file(60 + i) for i in range(MAX_FILES)
    ]
    body = {"files": files, "age_band": "14-15", "consent": True, "csrf_token": token}
    assert len(json.dumps(body).encode()) < BODY_BYTES
    assert _send(client, token, body).status_code == 201
