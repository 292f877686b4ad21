"""Scan runs end to end: every kind of source through Dask, a real scheduler, a kill and a resume.

The pictures are generated benign colour fields. "Listed" ones are on a list by SHA-256 and PDQ,
"edited" ones are listed pictures re-encoded smaller (PDQ near, bytes different), "unrelated" ones
are other seeds: exact hits and no false positives, item by item.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from seawall.auth.permissions import SYSTEM, cli_principal
from seawall.config import Settings, get_settings, reset_settings
from seawall.db import make_sessionmaker
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.media.synthetic import benign_image
from seawall.scan import service
from seawall.scan.models import ScanPartition, ScanRun
from seawall.signals.hashing import hash_file
from servers import child_environment, free_port

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(120)


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    benign_image(seed, 320, 240).save(buffer, format="PNG")
    return buffer.getvalue()


def _edited(data: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).resize((256, 192)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


LISTED = {f"listed{n}": _png(n) for n in (1, 2)}
EDITED = {f"edited{n}": _edited(LISTED[f"listed{n}"]) for n in (1, 2)}
UNRELATED = {f"other{n}": _png(100 + n) for n in (1, 2)}


@dataclass
class World:
    settings: Settings
    factory: Any
    folder: Path
    sha256: dict[str, str]  # listed name -> its SHA-256
    entries: dict[str, tuple[int, int]]  # listed name -> (sha256 entry id, pdq entry id)
    env: dict[str, str]


@pytest.fixture
def world(database_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    env = {
        "SEAWALL_HOME": str(tmp_path / "home"),
        "SEAWALL_DATABASE_URL": database_url,
        "SEAWALL_SECRET_KEY": "test-secret-key-not-for-production",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # Dask's local worker processes inherit them
    reset_settings()
    settings = get_settings()
    factory = make_sessionmaker(engine)
    folder = tmp_path / "pictures"
    folder.mkdir()
    records: list[EntryRecord] = []
    sha256 = {}
    for name, data in LISTED.items():
        (folder / f"{name}.png").write_bytes(data)
        hashed = hash_file(folder / f"{name}.png")
        sha256[name] = hashed["sha256"]
        records += [
            EntryRecord("sha256", hashed["sha256"], external_id=name),
            EntryRecord("pdq", hashed["pdq"], external_id=name),
        ]
    for name, data in {**EDITED, **UNRELATED}.items():
        (folder / f"{name}.jpg" if name.startswith("edited") else folder / f"{name}.png").write_bytes(data)
    (folder / "readme.txt").write_text("not a picture")
    entries: dict[str, tuple[int, int]] = {}
    with factory() as session:
        known = lists_service.create_list(session, SYSTEM, name="known", kind="hash")
        lists_service.add_entries(session, SYSTEM, known, records)
        session.commit()
        from seawall.lists.models import Entry

        for name in LISTED:
            ids = dict(session.execute(select(Entry.signal_type, Entry.id).where(Entry.external_id == name)).all())
            entries[name] = (ids["sha256"], ids["pdq"])
    yield World(settings, factory, folder, sha256, entries, child_environment(**env))
    reset_settings()


def _expected(world: World, name: str) -> list[tuple[str, int, str]]:
    """(signal type, entry id, list) of what an item named after a picture must match."""
    key = name.rsplit("/", 1)[-1].split(".")[0]
    if key.startswith("listed"):
        sha, pdq = world.entries[key]
        return [("pdq", pdq, "known"), ("sha256", sha, "known")]
    if key.startswith("edited"):
        return [("pdq", world.entries["listed" + key.removeprefix("edited")][1], "known")]
    return []


def _hits(row: dict[str, Any]) -> list[tuple[str, int, str]]:
    return sorted((m["signal_type"], m["entry_id"], m["list"]) for m in row.get("matches", []))


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _warc(path: Path, responses: dict[str, bytes]) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with path.open("wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, data in responses.items():
            request = writer.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.0\r\n\r\n"))
            writer.write_record(request)
            headers = StatusAndHeaders("200 OK", [("Content-Type", "application/octet-stream")], protocol="HTTP/1.0")
            writer.write_record(
                writer.create_warc_record(url, "response", payload=io.BytesIO(data), http_headers=headers)
            )


def _sources(world: World, tmp_path: Path) -> list[str]:
    """Every kind of source, each with listed, edited and unrelated pictures (or a corrupt one)."""
    zip_path = tmp_path / "upload.zip"
    zip_path.write_bytes(_zip({"a/listed1.png": LISTED["listed1"], "b/other1.png": UNRELATED["other1"], "c.txt": b"x"}))
    inner = _zip({"edited2.jpg": EDITED["edited2"], "bad.png": LISTED["listed2"][:3000]})
    tgz = tmp_path / "nested.tar.gz"
    tgz.write_bytes(_tar_gz({"listed2.png": LISTED["listed2"], "inner.zip": inner}))
    warc = tmp_path / "crawl.warc.gz"
    _warc(
        warc,
        {"http://example.test/p/listed1.png": LISTED["listed1"], "http://example.test/p/other2": UNRELATED["other2"]},
    )
    remote = tmp_path / "bucket"
    remote.mkdir()
    (remote / "edited1.jpg").write_bytes(EDITED["edited1"])
    return [str(world.folder), str(zip_path), str(tgz), str(warc), f"file://{remote}"]


def _check(world: World, rows: list[dict[str, Any]], tmp_path: Path) -> None:
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows)  # every item once
    plain = sorted(p for p in by_path if p.startswith(str(world.folder)))
    assert [p.rsplit("/", 1)[-1] for p in plain] == [
        "edited1.jpg",
        "edited2.jpg",
        "listed1.png",
        "listed2.png",
        "other1.png",
        "other2.png",
        "readme.txt",
    ]
    for path in plain:
        if path.endswith(".txt"):
            assert by_path[path] == {"path": path, "size": 13, "skipped": "not a supported image or video format"}
            continue
        assert _hits(by_path[path]) == sorted(_expected(world, path)), path
    z, t = str(tmp_path / "upload.zip"), str(tmp_path / "nested.tar.gz")
    assert _hits(by_path[f"{z}!/a/listed1.png"]) == sorted(_expected(world, "listed1"))
    assert _hits(by_path[f"{z}!/b/other1.png"]) == []
    assert by_path[f"{z}!/c.txt"]["skipped"] == "not a supported image or video format"
    assert _hits(by_path[f"{t}!/listed2.png"]) == sorted(_expected(world, "listed2"))
    assert _hits(by_path[f"{t}!/inner.zip!/edited2.jpg"]) == sorted(_expected(world, "edited2"))
    assert "error" in by_path[f"{t}!/inner.zip!/bad.png"] and "media" not in by_path[f"{t}!/inner.zip!/bad.png"]
    crawled = {r["url"]: r for r in rows if "url" in r}
    assert sorted(crawled) == ["http://example.test/p/listed1.png", "http://example.test/p/other2"]
    assert _hits(crawled["http://example.test/p/listed1.png"]) == sorted(_expected(world, "listed1"))
    assert _hits(crawled["http://example.test/p/other2"]) == []
    assert all(r["path"].startswith(str(tmp_path / "crawl.warc.gz") + "#") for r in crawled.values())
    assert _hits(by_path[f"file://{tmp_path / 'bucket' / 'edited1.jpg'}"]) == sorted(_expected(world, "edited1"))
    listed = by_path[f"{z}!/a/listed1.png"]
    assert listed["signals"]["sha256"] == world.sha256["listed1"] and listed["media"] == "image"
    assert {m["distance"] for m in listed["matches"]} == {0}
    edited = by_path[f"{t}!/inner.zip!/edited2.jpg"]["matches"]
    assert 0 < edited[0]["distance"] <= 31


EXPECTED_COUNTS = {"items": 16, "media": 13, "skipped": 2, "errors": 1, "matches": 9}


def test_every_kind_of_source_through_a_local_cluster_matches_like_seawall_match(world: World, tmp_path: Path) -> None:
    sources = _sources(world, tmp_path)
    out = tmp_path / "results.jsonl"
    with world.factory() as session:
        run = service.create_run(session, world.settings, cli_principal(), sources, service.ScanOptions(), out)
        session.commit()
    ended = service.execute(world.factory, world.settings, cli_principal(), run.id, workers=2)
    rows = _rows(out)
    _check(world, rows, tmp_path)
    assert ended.state == "finished"
    assert {k: getattr(ended, k) for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert ended.partitions == ended.partitions_done == 5 and ended.out_offset == out.stat().st_size
    # The single-process matcher on the same folder: the same matches, item by item.
    from typer.testing import CliRunner

    from seawall.cli import app

    matched = CliRunner().invoke(app, ["match", "-r", str(world.folder)])
    single = {r["path"]: r for r in map(json.loads, matched.stdout.splitlines())}
    scanned = {r["path"]: r for r in rows if r["path"] in single}
    assert sorted(single) == sorted(scanned) and len(single) == 7
    for path, row in single.items():
        assert scanned[path].get("matches", []) == row.get("matches", []), path


def test_a_real_scheduler_and_workers_give_the_same_results_into_parquet(world: World, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    sources = _sources(world, tmp_path)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=world.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                env=world.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        out = tmp_path / "results.parquet"
        with world.factory() as session:
            run = service.create_run(session, world.settings, cli_principal(), sources, service.ScanOptions(), out)
            session.commit()
        ended = service.execute(world.factory, world.settings, cli_principal(), run.id, scheduler=address)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
    assert ended.state == "finished"
    assert {k: getattr(ended, k) for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
    table = pq.read_table(out).to_pylist()
    rows = []
    for record in table:
        row = {k: v for k, v in record.items() if v is not None and k not in ("match_count", "matches", "actions")}
        signals = {k: row.pop(k) for k in ("md5", "sha1", "sha256", "pdq", "pdq_quality") if k in row}
        if signals:
            row["signals"] = signals
        if record["media"] is not None:
            row["matches"] = json.loads(record["matches"]) if record["matches"] else []
        rows.append(row)
    _check(world, rows, tmp_path)
    assert not Path(str(out) + ".partial.jsonl").exists()


def test_a_killed_scan_resumes_with_every_item_counted_once(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(24):
        (world.folder / f"more{n:02}.png").write_bytes(_png(200 + n))
    out = tmp_path / "results.jsonl"
    env = {**world.env, "SEAWALL_SCAN_PARTITION_ITEMS": "1"}
    monkeypatch.setenv("SEAWALL_SCAN_PARTITION_ITEMS", "1")
    reset_settings()
    command = [str(BIN / "seawall"), "scan", str(world.folder), "--workers", "1", "--out", str(out)]
    first = subprocess.Popen([*command, "--rate", "8"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    done = 0
    while time.monotonic() < deadline and done < 3:
        time.sleep(0.05)
        with world.factory() as session:
            done = session.scalar(select(ScanRun.partitions_done).where(ScanRun.id == 1)) or 0
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    with world.factory() as session:
        run = session.get(ScanRun, 1)
        assert run is not None and run.state == "running" and 3 <= run.partitions_done < run.partitions == 31
        checkpointed = run.out_offset
    # A partial line past the checkpoint, as a kill mid-write leaves it: cut off on resume.
    with out.open("ab") as handle:
        handle.write(b'{"path": "half-writ')
    assert out.stat().st_size > checkpointed
    from typer.testing import CliRunner

    from seawall.cli import app

    # Resumed in this process (its Dask fork server is warm already: the suite stays quick).
    resumed = CliRunner().invoke(app, ["scan", "--resume", "1", "--workers", "1"])
    assert resumed.exit_code == 0, resumed.output
    rows = _rows(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == 31
    assert sorted(paths) == sorted(str(p) for p in world.folder.iterdir())
    with world.factory() as session:
        run = session.get(ScanRun, 1)
        assert run is not None
        assert (run.state, run.items, run.media, run.skipped, run.errors, run.partitions_done) == (
            "finished",
            31,
            30,
            1,
            0,
            31,
        )
        assert run.matches == 4
        states = session.scalars(select(ScanPartition.state).where(ScanPartition.run_id == 1)).all()
        assert states == ["done"] * 31
    for row in rows:
        assert _hits(row) == sorted(_expected(world, row["path"])), row["path"]
    again = CliRunner().invoke(app, ["scan", "--resume", "1"])
    assert again.exit_code == 0 and "finished already" in again.output


def test_matches_open_one_proactive_report_each_even_when_a_partition_is_scanned_twice(
    world: World, tmp_path: Path
) -> None:
    from seawall.hotline.models import Report, ReportSignal

    with world.factory() as session:
        run = service.create_run(
            session,
            world.settings,
            cli_principal(),
            [str(world.folder)],
            service.ScanOptions(report=True),
            tmp_path / "r.jsonl",
        )
        session.commit()
    ended = service.execute(world.factory, world.settings, cli_principal(), run.id, workers=1)
    rows = _rows(tmp_path / "r.jsonl")
    reported = sorted(r["path"].rsplit("/", 1)[-1] for r in rows if r.get("report"))
    assert reported == ["edited1.jpg", "edited2.jpg", "listed1.png", "listed2.png"]
    # The same partition's rows again (as after a kill between report and checkpoint): no new report.
    again = [dict(r) for r in rows]
    service.open_reports(world.factory, world.settings, cli_principal(), run.id, 0, again)
    assert [r.get("report") for r in again] == [r.get("report") for r in rows]
    with world.factory() as session:
        reports = session.scalars(select(Report).order_by(Report.id)).all()
        assert [(r.channel, r.partner) for r in reports] == [("proactive", "seawall-scan")] * 4
        listed = next(r for r in reports if r.reference == next(x["report"] for x in rows if "listed1" in x["path"]))
        signals = dict(
            session.execute(
                select(ReportSignal.signal_type, ReportSignal.value).where(ReportSignal.report_id == listed.id)
            ).all()
        )
        assert signals["sha256"] == world.sha256["listed1"]
    assert ended.matches == 4


def test_a_policy_that_sends_matches_to_review_queues_one_review_item_per_content(world: World, tmp_path: Path) -> None:
    from seawall.hotline.models import Report
    from seawall.matching import policies

    with world.factory() as session:
        policies.upsert_policy(
            session, SYSTEM, name="scan-review", conditions={"lists": ["known"]}, actions=[{"type": "review"}]
        )
        run = service.create_run(
            session, world.settings, cli_principal(), [str(world.folder)], service.ScanOptions(), tmp_path / "v.jsonl"
        )
        session.commit()
    service.execute(world.factory, world.settings, cli_principal(), run.id, workers=1)
    rows = _rows(tmp_path / "v.jsonl")
    queued = sorted(r["path"].rsplit("/", 1)[-1] for r in rows if r.get("review"))
    assert queued == ["edited1.jpg", "edited2.jpg", "listed1.png", "listed2.png"]
    assert not any(r.get("report") for r in rows)
    # The same contents found again (another run, or a partition scanned twice): the same review items.
    again = [dict(r) for r in rows]
    service.open_review_items(world.factory, world.settings, cli_principal(), again)
    assert [r.get("review") for r in again] == [r.get("review") for r in rows]
    with world.factory() as session:
        reports = session.scalars(select(Report).order_by(Report.id)).all()
        assert sorted(r.reference for r in reports) == sorted(r["review"] for r in rows if r.get("review"))
        assert {(r.channel, r.partner) for r in reports} == {("match", "seawall-scan")}
        assert all(r.case_id is not None for r in reports)


def test_scan_runs_are_visible_to_an_ops_key_over_http(world: World, tmp_path: Path, client: Any, db: Session) -> None:
    from seawall.auth import service as auth_service

    with world.factory() as session:
        everything = service.create_run(
            session, world.settings, cli_principal(), [str(world.folder)], service.ScanOptions(), None
        )
        only_known = service.create_run(
            session, world.settings, cli_principal(), [str(world.folder)], service.ScanOptions(lists=["known"]), None
        )
        session.commit()
    ops = auth_service.create_api_key(db, SYSTEM, name="ops", scopes=["ops"]).secret
    limited = auth_service.create_api_key(db, SYSTEM, name="ops-known", scopes=["ops"], lists=["known"]).secret
    other = auth_service.create_api_key(db, SYSTEM, name="ops-other", scopes=["ops"], lists=["elsewhere"]).secret
    nope = auth_service.create_api_key(db, SYSTEM, name="matcher", scopes=["match"]).secret
    db.commit()

    def get(url: str, key: str) -> Any:
        return client.get(url, headers={"Authorization": f"Bearer {key}"})

    listing = get("/v1/scans", ops)
    assert [r["id"] for r in listing.json()] == [only_known.id, everything.id]
    first = listing.json()[1]
    assert (first["state"], first["partitions"], first["partitions_done"], first["items"]) == ("running", 1, 0, 0)
    assert [r["id"] for r in get("/v1/scans", limited).json()] == [only_known.id]
    assert get("/v1/scans", other).json() == []
    assert get(f"/v1/scans/{everything.id}", limited).status_code == 404
    assert get(f"/v1/scans/{only_known.id}", limited).json()["options"]["lists"] == ["known"]
    assert get("/v1/scans", nope).status_code == 403
    assert client.get("/v1/scans").status_code == 401
    # The same figures on /metrics while runs are running (the server reads the run table).
    with world.factory() as session:
        run = session.get(ScanRun, everything.id)
        assert run is not None
        run.items, run.matches, run.partitions_done = 40, 3, 1
        finished = session.get(ScanRun, only_known.id)
        assert finished is not None
        finished.state = "finished"
        session.commit()
    text = get("/metrics", ops).text
    scan_lines = sorted(
        line for line in text.splitlines() if line.startswith("seawall_scan_") and "timestamp" not in line
    )
    r = everything.id
    assert scan_lines == sorted(
        [
            f'seawall_scan_items{{kind="{k}",run="{r}"}} {v}'
            for k, v in (
                ("items", 40.0),
                ("media", 0.0),
                ("skipped", 0.0),
                ("errors", 0.0),
                ("matches", 3.0),
                ("bytes", 0.0),
            )
        ]
        + [
            f'seawall_scan_partitions{{run="{r}",state="done"}} 1.0',
            f'seawall_scan_partitions{{run="{r}",state="total"}} 1.0',
        ]
    )
