"""The review domain's rules on SQLite and PostgreSQL: queue order and filters, claims and skips,
reveals and their durations, wellbeing limits (suggested, enforced, ended by a break, the daily cap,
per role), the team's aggregates, and a video item shown as a strip, muted and never autoplayed."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from reviewing import PASSWORD, captured_case
from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import utcnow
from seawall.hotline import assessment, intake
from seawall.hotline.models import Case, Item
from seawall.review import service
from seawall.review.models import Exposure


def _person(db: Session, name: str, role: str = "analyst") -> Principal:
    user, _ = auth_service.create_user(db, SYSTEM, username=name, role=role, password=PASSWORD)
    db.flush()
    return auth_service.user_principal(user)


def test_queue_order_filters_claims_and_skips(db: Session, settings: Settings) -> None:
    ann, bob = _person(db, "ann"), _person(db, "bob")
    _, (old,) = captured_case(db, settings, "https://old.example/p", (1,), hours_ago=5)
    _, (urgent,) = captured_case(db, settings, "https://urgent.example/p", (2,), urgent=True, hours_ago=1)
    _, (child,) = captured_case(db, settings, "https://child.example/p", (3,), channel="self_report", hours_ago=2)
    db.commit()
    rows = service.item_queue(db, settings, ann)
    assert [(r.id, r.priority_label) for r in rows] == [
        (urgent.id, "urgent"),
        (child.id, "self-report"),
        (old.id, "normal"),
    ]
    assert [r.id for r in service.item_queue(db, settings, ann, service.QueueFilter(urgent=True))] == [urgent.id]
    assert [r.id for r in service.item_queue(db, settings, ann, service.QueueFilter(channel="self_report"))] == [
        child.id
    ]
    assert service.item_queue(db, settings, ann, service.QueueFilter(media="video")) == []

    # Ann takes the first; Bob is handed the next one, and cannot take Ann's.
    assert service.next_item(db, settings, ann) is urgent
    assert service.next_item(db, settings, bob) is child
    db.commit()
    with pytest.raises(service.Held, match="ann is working on this item"):
        service.claim(db, settings, bob, "item", urgent.id)
    db.rollback()
    rows = {r.id: r for r in service.item_queue(db, settings, bob)}
    assert (rows[urgent.id].holder, rows[urgent.id].held_by_me, rows[child.id].held_by_me) == ("ann", False, True)

    # A skip needs a reason, returns the item, and Ann is not handed it again today; Bob is.
    with pytest.raises(service.ReviewError, match="say why"):
        service.release(db, ann, "item", urgent.id, reason="  ")
    service.release(db, ann, "item", urgent.id, reason="I know the family name on the page")
    db.commit()
    assert service.next_item(db, settings, ann) is old
    service.release(db, bob, "item", child.id)
    assert service.next_item(db, settings, bob) is urgent
    db.commit()
    actions = list(db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("review.%"))))
    assert actions.count("review.claim") == 4 and "review.skip" in actions and "review.release" in actions

    # An expired claim is anyone's.
    later = utcnow() + timedelta(minutes=settings.review_claim_minutes + 1)
    assert service.claim(db, settings, bob, "item", old.id, now=later).holder == "bob"


def test_graded_and_inherited_items_leave_the_queue(db: Session, settings: Settings) -> None:
    ann, sue = _person(db, "ann"), _person(db, "sue", "senior_analyst")
    _, (item,) = captured_case(db, settings, "https://a.example/p", (7,))
    db.commit()
    findings = assessment.AssessmentIn(outcome="csam", category="B", age_band="11-13", sex="girl")
    saved = assessment.assess_item(db, settings, ann, item.id, item.version, findings)
    db.commit()
    assert service.item_queue(db, settings, ann) == []
    waiting = service.qa_queue(db, sue)  # the item's assessment, and the case's derived from it
    assert [(a.subject, a.derived) for a in waiting] == [("item", False), ("case", True)]
    assert waiting[0].id == saved.assessment.id
    assert service.qa_queue(db, ann) == []  # one's own assessment is never one's to check
    assessment.qa(db, settings, sue, saved.assessment.id, "confirm", "")
    db.commit()
    # The same picture, re-encoded, found at another URL: inherited, never queued, counted as spared.
    _, (copy,) = captured_case(db, settings, "https://b.example/p", (7,), copy=True)
    assessment.inherit_if_known(db, settings, SYSTEM, copy)
    db.commit()
    assert copy.state == "inherited"
    assert service.item_queue(db, settings, ann) == []
    assert service.spared_today(db, settings) == 1


def test_wellbeing_suggests_enforces_and_ends_with_a_break(db: Session, settings: Settings) -> None:
    settings.review_break_suggest_minutes, settings.review_break_enforce_minutes = 50, 60
    settings.review_break_minutes, settings.review_daily_cap_hours = 10, 4
    ann = _person(db, "ann")
    t0 = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    for minute in range(0, 55, 5):
        state = service.start_work(db, settings, ann, viewed=True, now=t0 + timedelta(minutes=minute))
    assert (state.state, state.items_viewed, round(state.review_seconds)) == ("suggest", 11, 50 * 60)
    service.start_work(db, settings, ann, now=t0 + timedelta(minutes=59))
    with pytest.raises(service.OnBreak) as refused:
        service.start_work(db, settings, ann, now=t0 + timedelta(minutes=60, seconds=30))
    assert refused.value.state.state == "break"
    assert refused.value.state.resume_at == t0 + timedelta(minutes=69)
    with pytest.raises(service.OnBreak):  # refused work does not count as work: the break still ends on time
        service.start_work(db, settings, ann, now=t0 + timedelta(minutes=68))
    back = service.start_work(db, settings, ann, now=t0 + timedelta(minutes=69))
    assert (back.state, back.breaks, back.continuous_seconds) == ("ok", 1, 0.0)
    db.commit()

    # The daily cap, and a role's own limits.
    settings.review_role_limits = {"analyst": {"daily_cap_hours": 1}}
    row = db.scalar(select(Exposure).where(Exposure.user_id == ann.id))
    assert row is not None
    row.review_seconds = 3600
    db.commit()
    with pytest.raises(service.OnBreak, match="1 hours today"):
        service.start_work(db, settings, ann, now=t0 + timedelta(minutes=70))
    assert service.limits_for(settings, "senior_analyst").daily_cap_hours == 4


def test_reveal_durations_are_clamped_logged_and_counted(db: Session, settings: Settings) -> None:
    ann, bob = _person(db, "ann"), _person(db, "bob")
    _, (item,) = captured_case(db, settings, "https://a.example/p", (9,))
    db.commit()
    t0 = utcnow()
    row, token = service.start_reveal(db, settings, ann, item, now=t0)
    db.commit()
    assert service.reveal_for(db, settings, ann, token).id == row.id
    with pytest.raises(service.ReviewError, match="not yours"):
        service.reveal_for(db, settings, bob, token)
    with pytest.raises(service.ReviewError, match="no reveal"):
        service.end_reveal(db, settings, bob, row.id, 1.0)
    # The page says 99 s; only 12 s passed since the reveal: 12 s are recorded.
    ended = service.end_reveal(db, settings, ann, row.id, 99.0, now=t0 + timedelta(seconds=12))
    again = service.end_reveal(db, settings, ann, row.id, 5.0, now=t0 + timedelta(seconds=20))
    db.commit()
    assert (ended.seconds, again.seconds) == (12.0, 12.0)
    with pytest.raises(service.ReviewError, match="has ended"):
        service.reveal_for(db, settings, ann, token)
    events = db.execute(
        select(AuditEvent.action, AuditEvent.actor, AuditEvent.details).where(AuditEvent.action.like("media.reveal%"))
    ).all()
    assert [(a, who) for a, who, _ in events] == [("media.reveal", "ann"), ("media.reveal.end", "ann")]
    assert events[1][2] == {"reveal": row.id, "duration_seconds": 12.0}
    exposure = db.scalar(select(Exposure).where(Exposure.user_id == ann.id))
    assert exposure is not None and (exposure.reveals, exposure.revealed_seconds) == (1, 12.0)
    # The team page sees totals only.
    days = service.team(db, settings)
    assert len(days) == 1 and (days[0].analysts, days[0].reveals, days[0].revealed_hours) == (1, 1, 0.0)
    assert "ann" not in repr(days)


def _login(client: TestClient, username: str) -> str:
    page = client.get("/login", headers={"accept": "text/html"})
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token
    answer = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    meta = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/review").text)
    assert meta
    return meta.group(1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_video_item_is_a_blurred_strip_muted_and_never_autoplayed(
    client: TestClient, db: Session, settings: Settings
) -> None:
    _person(db, "ann")
    _, (video,) = captured_case(db, settings, "https://v.example/p", (4,), video=True)
    db.commit()
    token = _login(client, "ann")
    page = client.get(f"/review/items/{video.id}", headers={"accept": "text/html"})
    assert page.status_code == 200 and "strip of blurred key frames" in page.text
    assert "/review/reveals/" not in page.text  # the original's URL exists only after a reveal
    thumb = client.get(f"/review/items/{video.id}/thumbnail")
    strip = Image.open(io.BytesIO(thumb.content))
    assert strip.mode == "L" and strip.width > 3 * strip.height  # four key frames side by side
    refused = client.post(f"/review/items/{video.id}/reveal", data={"csrf_token": token}, follow_redirects=False)
    assert refused.status_code == 409  # only whoever holds the claim reveals
    claimed = client.post(f"/review/items/{video.id}/claim", data={"csrf_token": token}, follow_redirects=False)
    assert claimed.status_code == 303
    shown = client.post(f"/review/items/{video.id}/reveal", data={"csrf_token": token}, follow_redirects=True)
    assert shown.status_code == 200
    tag = re.search(r"<video [^>]*>", shown.text)
    assert tag and " muted" in tag.group(0) and "autoplay" not in tag.group(0)
    media = client.get(re.search(r'src="(/review/reveals/[^"]+)"', tag.group(0)).group(1))  # type: ignore[union-attr]
    assert media.status_code == 200 and media.headers["content-type"] == "video/mp4"
    assert media.headers["cache-control"] == "no-store"


def test_reporter_contact_only_for_those_allowed_and_logged(db: Session, settings: Settings) -> None:
    ann, sue = _person(db, "ann"), _person(db, "sue", "senior_analyst")
    submitted = intake.submit(
        db,
        settings,
        SYSTEM,
        intake.ReportIn(channel="public", url="https://c.example/p", contact="reporter@mail.example"),
        capture=False,
    )
    db.commit()
    assert service.case_context(db, settings, ann, submitted.case).contacts == {}
    shown = service.case_context(db, settings, sue, submitted.case).contacts
    db.commit()
    assert shown == {submitted.report.id: "reporter@mail.example"}
    reads = db.execute(select(AuditEvent.actor, AuditEvent.object_id).where(AuditEvent.action == "report.contact.read"))
    assert reads.all() == [("sue", str(submitted.report.id))]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_forms_work_without_script_and_hash_only_cases_are_assessed(
    client: TestClient, db: Session, settings: Settings
) -> None:
    _person(db, "ann")
    _, (item,) = captured_case(db, settings, "https://f.example/p", (5,))
    child = intake.submit(
        db,
        settings,
        SYSTEM,
        intake.ReportIn(channel="self_report", age_band="14-15", signals=[("md5", "0" * 31 + "1")]),
        capture=False,
    ).case
    db.commit()
    token = _login(client, "ann")
    queue = client.get("/review", headers={"accept": "text/html"}).text
    assert f'href="/review/cases/{child.id}"' in queue and "self-report" in queue
    assert client.post(f"/review/items/{item.id}/claim", data={"csrf_token": token}).status_code == 200
    sent = {"csrf_token": token, "version": str(item.version + 1), "outcome": "csam", "category": "B"}
    refused = client.post(f"/review/items/{item.id}/grade", data=sent, headers={"accept": "text/html"})
    assert refused.status_code == 422 and "needs the youngest visible child" in refused.text
    assert 'value="B" data-key="2" checked' in refused.text  # what was chosen is kept
    db.rollback()
    version = db.get(Item, item.id).version  # type: ignore[union-attr]
    done = client.post(
        f"/review/items/{item.id}/grade",
        data={**sent, "version": str(version), "outcome": "not_csam", "category": ""},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, f"/review?graded={item.id}")

    # A hash-only case: its hashes on the page, claimed, assessed as a case.
    page = client.get(f"/review/cases/{child.id}", headers={"accept": "text/html"})
    assert "0" * 31 + "1" in page.text and "No list holds these hashes" in page.text
    assert client.post(f"/review/cases/{child.id}/claim", data={"csrf_token": token}).status_code == 200
    db.rollback()
    case = db.get(Case, child.id)
    assert case is not None
    graded = client.post(
        f"/review/cases/{child.id}/grade",
        data={"csrf_token": token, "version": str(case.version), "outcome": "not_csam", "comment": "a drawing"},
        follow_redirects=False,
    )
    assert graded.status_code == 303, graded.text
    db.rollback()
    assert assessment.current_case_assessment(db, case).outcome == "not_csam"  # type: ignore[union-attr]
    assert f'href="/review/cases/{child.id}"' not in client.get("/review").text
