"""Whole hotline cases end to end, every part real and on loopback.

Test "hosts" are web servers on 127.0.0.1 (tracing says: a GB host) and 127.0.0.2 (an NL host),
serving pages of benign generated pictures and a short video. Reports come through Chromium on the
public form and through the partner API of a real Seawall server; a real `seawall worker` process
captures, traces (from a CIDR file the test writes) and delivers; analysts and senior analysts work
through the API; what they confirm reaches `/v1/match`; a case hosted in the NL is referred to a
second Seawall, which receives it as a report. Both SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from conftest import save_screenshot
from hotlines import pair
from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.config import Settings
from seawall.db import make_engine, make_sessionmaker, transaction
from seawall.hotline import capture, notices, referrals, signing, tracing
from seawall.hotline import tasks as hotline_tasks
from seawall.hotline.models import Assessment, Capture, Case, CaseItem, Item, Notice, Referral, Report
from seawall.tasks import build_huey
from seawall.web.app import create_app
from servers import child_environment, free_port, serve
from webhost import Host, jpeg, mp4, png, served_host, sha

LOOPBACK = ["127.0.0.0/8"]
# The hotline's own table of ranges: the two loopback "machines" stand for a GB and an NL host.
RANGES = """\
cidr,asn,as_name,country
127.0.0.1/32,64500,Example Hosting Ltd,GB
127.0.0.2/32,64501,Example Hosting B.V.,NL
"""
SECRET = "end-to-end-secret-key-not-for-production"
SENDER = "notices@hotline.example"
CONTACTS = """\
asn,domain,name,abuse_email,api_endpoint,language
64500,,Example Hosting Ltd,abuse@hosting.example,,en
"""


@dataclass
class Hotline:
    """The hotline under test: its settings, database, a real server, and a real worker process."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    url: str
    worker_log: Path
    keys: dict[str, dict[str, str]] = field(default_factory=dict)

    def key(self, name: str, scopes: list[str]) -> dict[str, str]:
        with transaction(self.factory) as session:
            made = auth_service.create_api_key(session, SYSTEM, name=name, scopes=scopes)
        self.keys[name] = {"authorization": f"Bearer {made.secret}"}
        return self.keys[name]

    def read(self) -> Session:
        return make_sessionmaker(self.engine, writes=False)()

    def wait(self, what: str, condition: Callable[[], Any], seconds: float = 90.0) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}; worker log:\n{self.worker_log.read_text()[-4000:]}")
            time.sleep(0.2)


def _hotline_settings(home: Path, database_url: str, ranges: Path, smtp_port: int) -> dict[str, Any]:
    return {
        "notice_from": SENDER,
        "notice_smtp_host": "127.0.0.1",
        "notice_smtp_port": smtp_port,
        "notice_smtp_starttls": "off",
        "notice_recheck_schedule": "1",
        "home": home,
        "database_url": database_url,
        "secret_key": SECRET,
        "hotline_name": "Hotline GB",
        "hotline_country": "GB",
        "fetch_allow_networks": LOOPBACK,
        "trace_cidr_file": ranges,
        "thumbnail_size": 64,
        "referral_retry_base_seconds": 0.2,
    }


@dataclass
class Mailbox:
    """What the host's abuse desk received: an SMTP server (aiosmtpd) on loopback."""

    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK queued"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def hotline(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Hotline]:
    ranges = tmp_path / "ranges.csv"
    ranges.write_text(RANGES)
    home = tmp_path / "hotline-home"
    values = _hotline_settings(home, database_url, ranges, mailbox[1])
    settings = Settings(**values)
    app = create_app(settings, engine)
    # The server hands work to the queue in SEAWALL_HOME, which the worker process consumes.
    queue = build_huey(settings)
    capture_task = queue.task(name="hotline.capture")(hotline_tasks.capture_case.func)
    deliver_task = queue.task(name="hotline.referrals.deliver")(hotline_tasks.deliver_referral.func)
    monkeypatch.setattr(capture, "scheduler", capture_task)
    monkeypatch.setattr(
        referrals, "scheduler", lambda referral_id, delay: deliver_task.schedule(args=(referral_id,), delay=delay)
    )
    notice_tasks = {
        "send": queue.task(name="hotline.notices.send")(hotline_tasks.send_notice.func),
        "recheck": queue.task(name="hotline.notices.recheck")(hotline_tasks.recheck_notice.func),
    }
    monkeypatch.setattr(
        notices, "scheduler", lambda kind, notice_id, delay: notice_tasks[kind].schedule(args=(notice_id,), delay=delay)
    )
    env = child_environment(
        SEAWALL_HOME=str(home),
        SEAWALL_DATABASE_URL=database_url,
        SEAWALL_SECRET_KEY=SECRET,
        SEAWALL_HOTLINE_NAME="Hotline GB",
        SEAWALL_HOTLINE_COUNTRY="GB",
        SEAWALL_FETCH_ALLOW_NETWORKS=json.dumps(LOOPBACK),
        SEAWALL_TRACE_CIDR_FILE=str(ranges),
        SEAWALL_THUMBNAIL_SIZE="64",
        SEAWALL_REFERRAL_RETRY_BASE_SECONDS="0.2",
        SEAWALL_NOTICE_FROM=SENDER,
        SEAWALL_NOTICE_SMTP_HOST="127.0.0.1",
        SEAWALL_NOTICE_SMTP_PORT=str(mailbox[1]),
        SEAWALL_NOTICE_SMTP_STARTTLS="off",
        SEAWALL_NOTICE_RECHECK_SCHEDULE="1",
        SEAWALL_LOG_JSON="true",
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "seawall", "worker", "--workers", "2", "--no-periodic"],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        with serve(app) as url:
            yield Hotline(settings, engine, make_sessionmaker(engine), url, log_path)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        capture.close_indexes()


@pytest.fixture
def gb_host() -> Iterator[Host]:
    with served_host() as app:
        yield app


@pytest.fixture
def nl_host() -> Iterator[Host]:
    with served_host("127.0.0.2") as app:
        yield app


@dataclass
class Partner:
    """The NL hotline: a second Seawall in a process of its own, with its own database, home and keys."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    url: str


@pytest.fixture
def partner_nl(tmp_path: Path, sqlite_template: Path) -> Iterator[Partner]:
    import shutil

    folder = tmp_path / "partner-nl"
    folder.mkdir()
    shutil.copyfile(sqlite_template, folder / "seawall.db")
    database_url = f"sqlite+pysqlite:///{folder / 'seawall.db'}"
    settings = Settings(
        home=folder / "home",
        database_url=database_url,
        secret_key="partner-nl-secret-key-not-for-production",
        hotline_name="Hotline NL",
        hotline_country="NL",
        fetch_allow_networks=LOOPBACK,
    )
    signing.public_key_text(settings)  # its signing key, made before the server reads it
    port = free_port()
    env = child_environment(
        SEAWALL_HOME=str(settings.home),
        SEAWALL_DATABASE_URL=database_url,
        SEAWALL_SECRET_KEY="partner-nl-secret-key-not-for-production",
        SEAWALL_HOTLINE_NAME="Hotline NL",
        SEAWALL_HOTLINE_COUNTRY="NL",
        SEAWALL_FETCH_ALLOW_NETWORKS=json.dumps(LOOPBACK),
        SEAWALL_LOG_JSON="true",
    )
    log_path = tmp_path / "partner-nl.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "seawall", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    engine = make_engine(database_url)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError(f"the NL Seawall did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Partner(settings, engine, make_sessionmaker(engine), url)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        engine.dispose()


def _case_of(hotline: Hotline, report_reference: str) -> Case:
    with hotline.read() as session:
        case = session.scalar(
            select(Case).join(Report, Report.case_id == Case.id).where(Report.reference == report_reference)
        )
        assert case is not None
        session.expunge(case)
        return case


def _captured(hotline: Hotline, case_id: int) -> Capture | None:
    with hotline.read() as session:
        done = session.scalar(
            select(Capture).where(Capture.case_id == case_id, Capture.purpose == "initial", Capture.state != "running")
        )
        if done is not None:
            session.expunge(done)
        return done


def _items(hotline: Hotline, case_id: int) -> list[Item]:
    with hotline.read() as session:
        found = list(
            session.scalars(
                select(Item)
                .join(CaseItem, CaseItem.item_id == Item.id)
                .where(CaseItem.case_id == case_id)
                .order_by(Item.id)
            )
        )
        for item in found:
            session.expunge(item)
        return found


def _assess(http: httpx.Client, who: dict[str, str], item: Item, **findings: Any) -> dict[str, Any]:
    answer = http.post(f"/v1/items/{item.id}/assessment", json={"version": item.version, **findings}, headers=who)
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["assessment"])


def _confirm(http: httpx.Client, who: dict[str, str], assessment_id: int) -> dict[str, Any]:
    answer = http.post(f"/v1/assessments/{assessment_id}/qa", json={"decision": "confirm"}, headers=who)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


CSAM = {"outcome": "csam", "category": "B", "age_band": "11-13", "sex": "girl", "flags": ["self_generated"]}


def test_a_case_hosted_abroad_is_captured_traced_assessed_listed_and_referred_to_a_second_seawall(
    hotline: Hotline, nl_host: Host, gb_host: Host, partner_nl: Partner, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, clip = png(301, 160, 120), jpeg(302, 160, 120), mp4(31)
    nl_host.file("/album/1.png", first)
    nl_host.file("/album/2.jpg", second)
    nl_host.file("/album/clip.mp4", clip)
    nl_host.page("/album/", '<img src="1.png"><img srcset="2.jpg 2x"><a href="clip.mp4">clip</a>')
    pair(hotline, partner_nl)
    reporter = hotline.key("platform-reporter", ["reports:write"])
    analyst = hotline.key("analyst", ["review", "reports:read"])
    other_analyst = hotline.key("second-analyst", ["review", "reports:read"])
    senior = hotline.key("senior", ["qa", "reports:read"])
    platform = hotline.key("platform", ["match"])
    page_url = nl_host.url + "/album/"

    with httpx.Client(base_url=hotline.url, timeout=30) as http:
        filed = http.post("/v1/reports", json={"url": page_url, "external_id": "ticket-1"}, headers=reporter)
        assert filed.status_code == 201, filed.text
        # The same page reported again, written differently: one case, two reports.
        again = http.post(
            "/v1/reports", json={"url": page_url.replace("http://", "HTTP://") + "#top"}, headers=reporter
        )
        assert again.status_code == 201, again.text
        case = _case_of(hotline, filed.json()["reference"])
        assert _case_of(hotline, again.json()["reference"]).id == case.id

        shot = hotline.wait("the capture", lambda: _captured(hotline, case.id))
        assert (shot.state, shot.http_status, shot.address) == ("done", 200, "127.0.0.2")
        items = _items(hotline, case.id)
        assert sorted(i.sha256 for i in items) == sorted(sha(b) for b in (first, second, clip))
        assert {i.state for i in items} == {"to_grade"}
        with hotline.read() as session:
            traced = session.get(Case, case.id)
            assert traced is not None
            assert (traced.hosting_country, traced.hosting_asn, traced.hosting_as_name) == (
                "NL",
                64501,
                "Example Hosting B.V.",
            )
            assert session.scalar(select(func.count()).select_from(Capture).where(Capture.case_id == case.id)) == 1

        picture, other_picture, video = (next(i for i in items if i.sha256 == sha(b)) for b in (first, second, clip))
        # Two analysts open the same item; the second save, based on what is now stale, is refused.
        made = _assess(http, analyst, picture, **CSAM)
        clash = http.post(
            f"/v1/items/{picture.id}/assessment",
            json={"version": picture.version, "outcome": "not_csam"},
            headers=other_analyst,
        )
        assert clash.status_code == 409, clash.text
        assert clash.json()["detail"] == (
            f"item {picture.id} was changed by someone else since you read it (you read version 1, it is now "
            "version 2): reload it and save again; nothing was saved"
        )
        made_2 = _assess(http, analyst, other_picture, **{**CSAM, "category": "A", "age_band": "7-10"})
        made_3 = _assess(http, analyst, video, outcome="not_csam")
        for row in (made, made_2, made_3):
            _confirm(http, senior, row["id"])

        # What QA confirmed is on the hotline's lists, and a platform's matcher sees it within 5 s.
        started = time.monotonic()

        def listed() -> list[dict[str, Any]]:
            answer = http.post("/v1/match", files={"file": ("upload.jpg", second, "image/jpeg")}, headers=platform)
            assert answer.status_code == 200, answer.text
            return [m for m in answer.json()["matches"] if m["list"] == "hotline-hashes"]

        found = hotline.wait("the hash list addition", listed, seconds=5.0)
        assert time.monotonic() - started < 5.0
        assert {(m["category"], m["signal_type"]) for m in found} >= {("A", "sha256"), ("A", "pdq")}

        # The URL: the case's assessment is derived from its items (youngest child, most severe
        # category), and confirming it lists the URL and refers the case to the NL hotline.
        shown = http.get(f"/v1/cases/{case.reference}", headers=analyst).json()
        derived = shown["assessment"]
        assert (derived["derived"], derived["category"], derived["age_band"]) == (True, "A", "7-10")
        done = _confirm(http, senior, derived["id"])
        assert (done["final"], done["url_entries"], done["dispatched"]) == (True, 1, "referral")
        started = time.monotonic()

        def url_listed() -> list[dict[str, Any]]:
            return list(http.post("/v1/match/url", json={"url": page_url}, headers=platform).json()["matches"])

        url_match = hotline.wait("the URL list addition", url_listed, seconds=5.0)
        assert time.monotonic() - started < 5.0
        assert [(m["list"], m["category"]) for m in url_match] == [("hotline-urls", "A")]

    # The worker delivers the signed referral; the NL Seawall takes it as a report in its own queue.
    def received() -> Report | None:
        with make_sessionmaker(partner_nl.engine, writes=False)() as session:
            row = session.scalar(select(Report).where(Report.channel == "referral"))
            if row is not None:
                session.expunge(row)
            return row

    arrived = hotline.wait("the referral at the NL hotline", received)
    with make_sessionmaker(partner_nl.engine, writes=False)() as session:
        their_case = session.get(Case, arrived.case_id)
        assert their_case is not None and their_case.url == page_url

    def delivered() -> Referral | None:
        with hotline.read() as session:
            row = session.scalar(select(Referral).where(Referral.case_id == case.id, Referral.state == "received"))
            if row is not None:
                session.expunge(row)
            return row

    sent = hotline.wait("the partner's receipt", delivered, seconds=30)
    assert sent.remote_id and {i["sha256"] for i in sent.document["items"]} == {sha(first), sha(second)}  # no video

    # Already assessed content on another page: a near-identical copy (the same picture, other bytes)
    # inherits the confirmed assessment and is never queued for an analyst.
    gb_host.file("/copy.jpg", jpeg(301, 160, 120, quality=85))
    gb_host.page("/elsewhere.html", '<p>another page</p><img src="/copy.jpg">')
    with httpx.Client(base_url=hotline.url, timeout=30) as http:
        elsewhere = http.post("/v1/reports", json={"url": gb_host.url + "/elsewhere.html"}, headers=reporter).json()
    copy_case = _case_of(hotline, elsewhere["reference"])
    hotline.wait("the second capture", lambda: _captured(hotline, copy_case.id))
    (copy,) = _items(hotline, copy_case.id)
    assert copy.id != picture.id and copy.state == "inherited"
    with hotline.read() as session:
        heir = session.get(Assessment, copy.assessment_id)
        assert heir is not None and (heir.inherited_from, heir.state) == (made["id"], "confirmed")
        assert (heir.category, heir.age_band) == ("B", "11-13")


def test_a_public_report_in_the_hotline_country_is_noticed_to_the_host_and_rechecked_until_removed(
    hotline: Hotline, gb_host: Host, mailbox: tuple[Mailbox, int], page: Any
) -> None:
    box, _ = mailbox
    picture, other = png(401, 160, 120), jpeg(402, 160, 120)
    gb_host.file("/p/1.png", picture)
    gb_host.file("/p/2.jpg", other)
    gb_host.page("/p/", '<div style="background-image: url(2.jpg)"></div><img src="1.png">')
    with transaction(hotline.factory) as session:
        tracing.import_contacts(
            session,
            SYSTEM,
            tracing.read_contacts(io.BytesIO(CONTACTS.encode())),
            source_name="contacts.csv",
            digest="test",
        )
    analyst = hotline.key("analyst", ["review", "reports:read"])
    senior = hotline.key("senior", ["qa", "reports:read"])
    platform = hotline.key("platform", ["match"])
    page_url = gb_host.url + "/p/"

    # A member of the public reports the page with a real browser; the answer is a reference and a PIN.
    page.goto(hotline.url + "/report")
    page.fill("#url", page_url)
    page.check("input[name=content_type][value=images]")
    page.select_option("#site_type", "image_host")
    page.click("button[type=submit]")
    page.wait_for_selector("#reference")
    save_screenshot(page, "hotline-e2e-report-done")
    reference, pin = page.inner_text("#reference"), page.inner_text("#pin")
    assert re.fullmatch(r"R-[0-9A-Z]{5}-[0-9A-Z]{5}", reference) and re.fullmatch(r"\d{8}", pin)
    assert page_url not in page.content() and "csam" not in page.content().lower()  # says nothing of findings

    case = _case_of(hotline, reference)
    shot = hotline.wait("the capture", lambda: _captured(hotline, case.id))
    assert (shot.state, shot.address) == ("done", "127.0.0.1")
    items = _items(hotline, case.id)
    assert sorted(i.sha256 for i in items) == sorted(sha(b) for b in (picture, other))
    with hotline.read() as session:
        traced = session.get(Case, case.id)
        assert traced is not None and (traced.hosting_country, traced.hosting_asn) == ("GB", 64500)

    with httpx.Client(base_url=hotline.url, timeout=30) as http:
        for n, item in enumerate(items):
            made = _assess(http, analyst, item, **{**CSAM, "category": "C", "age_band": ("14-15", "11-13")[n]})
            assert _confirm(http, senior, made["id"])["final"] is True
        derived = http.get(f"/v1/cases/{case.reference}", headers=analyst).json()["assessment"]
        assert (derived["category"], derived["age_band"]) == ("C", "11-13")  # the youngest across the items
        done = _confirm(http, senior, derived["id"])
        assert done["dispatched"] == "notice"

        def listed() -> list[dict[str, Any]]:
            answer = http.get("/v1/match", params={"signal_type": "sha256", "value": sha(picture)}, headers=platform)
            return [m for m in answer.json()["matches"] if m["list"] == "hotline-hashes"]

        started = time.monotonic()
        hotline.wait("the hash list addition", listed, seconds=5.0)
        assert time.monotonic() - started < 5.0

    # The worker sends the XARF notice to the host's abuse desk: hashes and the URL, never media.
    hotline.wait("the notice e-mail", lambda: box.messages, seconds=60)
    message = email.message_from_bytes(box.messages[0], policy=email.policy.default)
    assert message["To"] == "abuse@hosting.example" and message.get_content_type() == "multipart/report"
    (attachment,) = [p for p in message.walk() if p.get_filename() == "xarf.json"]
    document = json.loads(attachment.get_payload(decode=True))
    assert (document["xarf_version"], document["category"], document["type"]) == ("4.0.0", "content", "csam")
    assert (document["url"], document["source_identifier"], document["asn"]) == (page_url, "127.0.0.1", 64500)
    assert document["classification"] == "B2"  # category C, 11-13: pubescent, lascivious exhibition
    assert {i["hash_values"]["sha256"] for i in document["content_items"]} == {sha(picture), sha(other)}
    raw = box.messages[0]
    assert picture not in raw and other not in raw and b"image/png" not in raw

    # The host takes the picture down; the next re-checks find it gone and record the takedown time.
    def state_of_notice() -> Notice:
        with hotline.read() as session:
            row = session.scalar(select(Notice).where(Notice.case_id == case.id))
            assert row is not None
            session.expunge(row)
            return row

    hotline.wait("a first re-check", lambda: state_of_notice().checks >= 1)
    assert state_of_notice().state == "sent"  # the content is still there
    del gb_host.routes["/p/1.png"]
    del gb_host.routes["/p/2.jpg"]
    removed = hotline.wait("the removal", lambda: (n := state_of_notice()).state == "removed" and n)
    assert removed.sent_at is not None and removed.removed_at is not None
    assert removed.takedown_seconds == round((removed.removed_at - removed.sent_at).total_seconds())
    with hotline.read() as session:
        assert session.get(Case, case.id).state == "removed"  # type: ignore[union-attr]

    # The reporter's status page says only that action was taken.
    page.goto(hotline.url + "/report/status")
    page.fill("#reference", reference)
    page.fill("#pin", pin)
    page.click("button[type=submit]")
    page.wait_for_selector("#status")
    assert page.inner_text("#status") == "action taken"
    save_screenshot(page, "hotline-e2e-report-status")


def test_report_urls_to_private_addresses_are_refused_by_the_worker(hotline: Hotline) -> None:
    """Only SEAWALL_FETCH_ALLOW_NETWORKS opens private ranges (here: loopback); everything else stays shut."""
    reporter = hotline.key("platform-reporter", ["reports:write"])
    refused = {}
    with httpx.Client(base_url=hotline.url, timeout=30) as http:
        for url, address in (
            ("http://10.1.2.3/x.html", "10.1.2.3"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
            ("http://[::ffff:10.0.0.1]/", "::ffff:a00:1"),
        ):
            answer = http.post("/v1/reports", json={"url": url}, headers=reporter)
            assert answer.status_code == 201, answer.text
            refused[url] = (_case_of(hotline, answer.json()["reference"]).id, address)
    for url, (case_id, address) in refused.items():
        shot = hotline.wait(f"the capture of {url}", lambda case_id=case_id: _captured(hotline, case_id))
        assert (shot.state, shot.error) == ("failed", f"refused: {address} is not a public address"), url
        assert shot.http_status is None and not _items(hotline, case_id)
