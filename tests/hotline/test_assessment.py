"""Assessment and QA: validation, the IWF rules for a URL, QA by another person, confirmations,
the audit sample, optimistic versions, inheritance, list additions seen by /v1/match, the notice or
referral dispatch, audit events, and the classification tables row by row."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall.auth import audit
from seawall.auth import service as auth_service
from seawall.auth.models import AuditEvent
from seawall.auth.permissions import ROLE_SCOPES, SYSTEM, Principal, Role
from seawall.config import Settings
from seawall.db import make_sessionmaker
from seawall.hotline import assessment, capture, classification, intake, notices, referrals
from seawall.hotline.models import Assessment, Capture, Case, CaseItem, Item, QaDecision, Report
from seawall.lists.models import Entry, HashList
from seawall.matching.indexes import MatchIndexes
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
from seawall.web.csrf import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[2]
ALICE = Principal(kind="user", name="alice", scopes=ROLE_SCOPES[Role.analyst])
BOB = Principal(kind="user", name="bob", scopes=ROLE_SCOPES[Role.analyst])
SENIOR = Principal(kind="user", name="sam", scopes=ROLE_SCOPES[Role.senior_analyst])
SENIOR2 = Principal(kind="user", name="sue", scopes=ROLE_SCOPES[Role.senior_analyst])
CSAM_A = assessment.AssessmentIn(outcome="csam", category="A", age_band="7-10", sex="girl", children=1)


@pytest.fixture(autouse=True)
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Cases handed to capture stay here (nothing is fetched)."""
    cases: list[int] = []
    monkeypatch.setattr(capture, "scheduler", cases.append)
    return cases


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Notices and referrals opened (built by other work; recorded here), with the case state then."""
    calls: list[tuple[str, ...]] = []

    def notice(session: Session, settings: Settings, actor: Principal, case: Case) -> None:
        calls.append(("notice", case.reference, case.state))

    def refer(session: Session, settings: Settings, actor: Principal, case: Case, country: str) -> None:
        calls.append(("referral", case.reference, case.state, country))

    monkeypatch.setattr(notices, "open_notice", notice)
    monkeypatch.setattr(referrals, "refer", refer)
    return calls


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _picture(folder: Path, seed: int, *, brighter: float = 1.0, jpeg: bool = False) -> Path:
    """A benign generated picture; ``brighter`` makes a near-identical copy (a few PDQ bits away)."""
    image: Image.Image = benign_image(seed, 320, 240)
    if brighter != 1.0:
        image = ImageEnhance.Brightness(image).enhance(brighter)
    path = folder / f"picture-{seed}-{brighter}-{int(jpeg)}.{'jpg' if jpeg else 'png'}"
    if jpeg:
        image.save(path, quality=80)
    else:
        image.save(path)
    return path


def _item(db: Session, path: Path) -> Item:
    found = hash_file(path, ["md5", "sha1", "sha256", "pdq"])
    item = Item(
        sha256=found["sha256"],
        md5=found["md5"],
        sha1=found["sha1"],
        pdq=found["pdq"],
        pdq_quality=found["pdq_quality"],
        media="image",
        mime="image/png",
        size=path.stat().st_size,
    )
    db.add(item)
    db.commit()
    return item


def _case(db: Session, settings: Settings, url: str, items: list[Item], country: str | None = None) -> Case:
    done = intake.submit(db, settings, SYSTEM, intake.ReportIn(channel="public", url=url))
    for item in items:
        db.add(CaseItem(case_id=done.case.id, item_id=item.id, media_url=f"{url}/{item.id}.png", found_as="img"))
    db.add(Capture(case_id=done.case.id, state="done", media_found=len(items)))
    done.case.state = "captured"
    done.case.hosting_country = country
    db.commit()
    return done.case


def _assess(db: Session, settings: Settings, who: Principal, item: Item, data: assessment.AssessmentIn) -> Assessment:
    db.refresh(item)
    saved = assessment.assess_item(db, settings, who, item.id, item.version, data)
    db.commit()
    return saved.assessment


def _confirm(db: Session, settings: Settings, who: Principal, row: Assessment) -> assessment.QaResult:
    done = assessment.qa(db, settings, who, row.id, "confirm", "checked")
    db.commit()
    return done


# ---- validation ---------------------------------------------------------------------------------


def test_assessments_are_validated_with_clear_messages_and_nothing_is_saved(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/a", [item])
    analyst = _key(db, "analyst", ["review", "reports:read"])

    def item_answer(body: dict[str, Any]) -> tuple[int, Any]:
        answer = client.post(f"/v1/items/{item.id}/assessment", json={"version": 1, **body}, headers=analyst)
        return answer.status_code, answer.json()["detail"]

    assert item_answer({"outcome": "csam"}) == (
        422,
        "a csam assessment needs a category (A, B or C); a csam assessment needs the youngest visible child's "
        "age band (0-2, 3-6, 7-10, 11-13, 14-15, 16-17); a csam assessment needs the sex of the children shown "
        "(girl, boy, both, unidentified)",
    )
    assert item_answer({"outcome": "not_csam", "category": "B", "flags": ["commercial"]}) == (
        422,
        "a not_csam assessment has no category (got 'B'); a not_csam assessment has no flags (got commercial)",
    )
    assert item_answer({"outcome": "other_illegal", "category": "C"}) == (
        422,
        "an other_illegal assessment has no category: A, B and C grade indecent images of children",
    )
    assert item_answer({"outcome": "csam", "category": "D", "age_band": "7-10", "sex": "girl"}) == (
        422,
        "category is one of A, B, C (got 'D')",
    )
    assert item_answer({"outcome": "maybe"}) == (
        422,
        "outcome is one of csam, not_csam, other_illegal, inaccessible, duplicate (got 'maybe')",
    )
    assert item_answer({"outcome": "csam", **_csam_fields(), "flags": ["spicy"], "url_level": "exact"}) == (
        422,
        "unknown flag(s) spicy; flags: self_generated, commercial, disguised, ai_generated, sextortion, "
        "multi_child; an item has no URL level: the case's assessment chooses it",
    )
    assert item_answer({"outcome": "csam", **_csam_fields(), "children": 1, "flags": ["multi_child"]}) == (
        422,
        "the multi_child flag says there is more than one child, but children is 1",
    )
    assert (
        client.post(f"/v1/items/{item.id}/assessment", json={"outcome": "not_csam"}, headers=analyst).status_code == 422
    )

    def case_answer(body: dict[str, Any]) -> tuple[int, Any]:
        answer = client.post(f"/v1/cases/{case.reference}/assessment", json={"version": 1, **body}, headers=analyst)
        return answer.status_code, answer.json()["detail"]

    assert case_answer({"outcome": "csam", **_csam_fields(), "url_level": "domain"}) == (
        422,
        "a domain-level URL lists every page of the site: say why in the comment",
    )
    assert case_answer({"outcome": "csam", **_csam_fields(), "url_level": "host"}) == (
        422,
        "url_level is one of exact, prefix, domain (got 'host')",
    )
    assert case_answer({"derive": True, "outcome": "csam", "category": "A"}) == (
        422,
        "a derived assessment takes outcome, category from the items: send only url_level, site_type and "
        "comment, or leave derive off to override the items",
    )
    assert case_answer({"derive": True}) == (
        409,
        f"case {case.reference} has no assessed items to derive from: assess its items, or give the case's own "
        "assessment",
    )
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Assessment)) == 0
    assert (db.get(Item, item.id).version, db.get(Case, case.id).version) == (1, 1)  # type: ignore[union-attr]


def _csam_fields() -> dict[str, Any]:
    return {"category": "A", "age_band": "7-10", "sex": "girl"}


def test_children_above_one_add_the_multi_child_flag(db: Session, settings: Settings, tmp_path: Path) -> None:
    item = _item(db, _picture(tmp_path, 1))
    row = _assess(
        db,
        settings,
        ALICE,
        item,
        assessment.AssessmentIn(
            outcome="csam", category="B", age_band="3-6", sex="both", children=3, flags=["self_generated"]
        ),
    )
    assert (row.flags, row.children, row.assessor, row.state) == (
        ["multi_child", "self_generated"],
        3,
        "user:alice",
        "submitted",
    )


# ---- the IWF rules for a URL ----------------------------------------------------------------------


def _fake(
    outcome: str,
    category: str | None = None,
    age: str | None = None,
    sex: str | None = None,
    children: int | None = None,
    flags: tuple[str, ...] = (),
) -> Assessment:
    return Assessment(outcome=outcome, category=category, age_band=age, sex=sex, children=children, flags=list(flags))


def test_derive_takes_the_youngest_child_and_the_most_severe_category_across_items() -> None:
    derived = assessment.derive(
        [
            _fake("csam", "C", "3-6", "girl", 1, ("self_generated",)),
            _fake("csam", "A", "14-15", "boy", 2, ("commercial", "multi_child")),
            _fake("not_csam"),
            _fake("other_illegal", None, "0-2", "girl", 4, ("ai_generated",)),
        ]
    )
    # The youngest child (3-6) and the most severe category (A) come from different images; the
    # other_illegal item's younger child does not count towards a csam URL, its flags do.
    assert derived == {
        "outcome": "csam",
        "category": "A",
        "age_band": "3-6",
        "sex": "both",
        "children": 2,
        "flags": ["ai_generated", "commercial", "multi_child", "self_generated"],
    }
    assert assessment.derive([_fake("other_illegal", None, "11-13", "boy"), _fake("not_csam")]) == {
        "outcome": "other_illegal",
        "category": None,
        "age_band": "11-13",
        "sex": "boy",
        "children": None,
        "flags": [],
    }
    assert assessment.derive([_fake("inaccessible"), _fake("not_csam")])["outcome"] == "not_csam"  # type: ignore[index]
    assert assessment.derive([_fake("inaccessible"), _fake("duplicate")])["outcome"] == "duplicate"  # type: ignore[index]
    assert assessment.derive([]) is None
    assert [assessment.combine_sex(s) for s in (["girl", "girl"], ["girl", "unidentified"], ["unidentified"], [])] == [
        "girl",
        "girl",
        "unidentified",
        None,
    ]


def test_case_assessment_is_derived_from_its_items_recomputed_and_can_be_overridden(
    db: Session, settings: Settings, tmp_path: Path
) -> None:
    one, two, three = (_item(db, _picture(tmp_path, seed)) for seed in (1, 2, 3))
    case = _case(db, settings, "https://pics.example/gallery", [one, two, three])

    def current() -> Assessment:
        db.expire_all()
        row = assessment.current_case_assessment(db, db.get(Case, case.id))  # type: ignore[arg-type]
        assert row is not None
        return row

    _assess(
        db, settings, ALICE, one, assessment.AssessmentIn(outcome="csam", category="C", age_band="14-15", sex="girl")
    )
    first = current()
    assert (first.derived, first.outcome, first.category, first.age_band, first.url_level, first.assessor) == (
        True,
        "csam",
        "C",
        "14-15",
        "exact",
        "user:alice",
    )
    assert db.get(Case, case.id).state == "assessed"  # type: ignore[union-attr]
    _assess(db, settings, BOB, two, assessment.AssessmentIn(outcome="csam", category="A", age_band="11-13", sex="boy"))
    _assess(db, settings, BOB, three, assessment.AssessmentIn(outcome="not_csam"))
    second = current()
    assert (second.category, second.age_band, second.sex, second.derived) == ("A", "11-13", "both", True)
    assert second.assessor == "user:alice"  # whoever chose its URL level answers for it
    assert db.get(Assessment, first.id).state == "superseded"  # type: ignore[union-attr]
    # An item's assessment changes: the URL's is recomputed.
    _assess(db, settings, BOB, two, assessment.AssessmentIn(outcome="csam", category="B", age_band="3-6", sex="boy"))
    third = current()
    assert (third.category, third.age_band, third.sex) == ("B", "3-6", "both")
    # The not_csam item changing to not_csam again changes nothing: no new derived assessment.
    _assess(db, settings, BOB, three, assessment.AssessmentIn(outcome="not_csam", comment="again"))
    assert current().id == third.id

    # An analyst overrides the derived assessment with the case's own.
    db.refresh(case)
    saved = assessment.assess_case(
        db,
        settings,
        BOB,
        case.reference,
        case.version,
        assessment.AssessmentIn(outcome="csam", category="A", age_band="0-2", sex="girl", comment="video at 1:02"),
    )
    db.commit()
    override = current()
    assert (override.id, override.derived, override.age_band, override.url_level) == (
        saved.assessment.id,
        False,
        "0-2",
        "exact",
    )
    _assess(db, settings, ALICE, one, assessment.AssessmentIn(outcome="not_csam"))
    assert current().id == override.id  # items change, the override stands
    # Back to the rules, with the analyst's URL level.
    db.refresh(case)
    assessment.assess_case(
        db, settings, ALICE, case.reference, case.version, assessment.AssessmentIn(derive=True, url_level="prefix")
    )
    db.commit()
    again = current()
    assert (again.derived, again.category, again.age_band, again.url_level, again.assessor) == (
        True,
        "B",
        "3-6",
        "prefix",
        "user:alice",
    )
    assert db.get(Assessment, override.id).state == "superseded"  # type: ignore[union-attr]


# ---- QA ---------------------------------------------------------------------------------------------


def test_qa_by_the_assessor_is_refused_and_analysts_have_no_qa(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    senior = _key(db, "senior-1", ["review", "qa", "reports:read"])
    analyst = _key(db, "analyst-1", ["review", "reports:read"])
    made = client.post(
        f"/v1/items/{item.id}/assessment", json={"version": 1, "outcome": "csam", **_csam_fields()}, headers=senior
    )
    assert made.status_code == 201 and made.json()["version"] == 2
    row_id = made.json()["assessment"]["id"]
    own = client.post(f"/v1/assessments/{row_id}/qa", json={"decision": "confirm"}, headers=senior)
    assert (own.status_code, own.json()["detail"]) == (
        403,
        f"you made assessment {row_id}: QA is another person's check",
    )
    assert client.post(f"/v1/assessments/{row_id}/qa", json={"decision": "confirm"}, headers=analyst).json() == {
        "detail": "this credential lacks the 'qa' scope"
    }
    db.expire_all()
    row = db.get(Assessment, row_id)
    assert row is not None and (row.state, row.confirmations) == ("submitted", 0)
    assert db.scalar(select(func.count()).select_from(QaDecision)) == 0


def test_a_rejected_assessment_goes_back_to_its_assessor_and_the_item_to_its_queue(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/r", [item])
    analyst = _key(db, "analyst-1", ["review", "reports:read"])
    senior = _key(db, "senior-1", ["review", "qa", "reports:read"])
    made = client.post(
        f"/v1/items/{item.id}/assessment", json={"version": 1, "outcome": "csam", **_csam_fields()}, headers=analyst
    ).json()["assessment"]
    queue = client.get("/v1/assessments", params={"state": "submitted"}, headers=senior).json()
    assert [(a["subject"], a["id"] == made["id"], a["derived"]) for a in queue] == [
        ("item", True, False),
        ("case", False, True),
    ]
    no_reason = client.post(f"/v1/assessments/{made['id']}/qa", json={"decision": "reject"}, headers=senior)
    assert (no_reason.status_code, no_reason.json()["detail"]) == (
        422,
        "a rejection says why in its comment: the assessor reads it",
    )
    rejected = client.post(
        f"/v1/assessments/{made['id']}/qa",
        json={"decision": "reject", "comment": "the child is older: look at the second frame"},
        headers=senior,
    )
    assert rejected.status_code == 200
    body = rejected.json()
    assert (body["final"], body["assessment"]["state"], body["dispatched"]) == (False, "rejected", None)
    assert body["assessment"]["qa"][0]["comment"] == "the child is older: look at the second frame"
    db.expire_all()
    back = db.get(Item, item.id)
    assert back is not None and (back.state, back.assessment_id, back.version) == ("to_grade", None, 3)
    shown = client.get(f"/v1/cases/{case.reference}", headers=analyst).json()
    assert (shown["state"], shown["assessment"]) == ("captured", None)  # back in the queue, no derived left
    mine = client.get("/v1/assessments", params={"state": "rejected", "mine": True}, headers=analyst).json()
    assert [(a["id"], a["qa"][0]["decision"], a["qa"][0]["reviewer"]) for a in mine] == [
        (made["id"], "reject", "key:senior-1")
    ]
    assert client.get("/v1/assessments", params={"state": "rejected", "mine": True}, headers=senior).json() == []
    # Deciding it again is refused: it is no longer waiting for QA.
    again = client.post(f"/v1/assessments/{made['id']}/qa", json={"decision": "confirm"}, headers=senior)
    assert (again.status_code, again.json()["detail"]) == (
        409,
        f"assessment {made['id']} is rejected: only a submitted assessment is checked",
    )


def test_two_confirmations_by_two_people_when_the_setting_asks_for_two(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    settings.hotline_qa_confirmations = 2
    item = _item(db, _picture(tmp_path, 1))
    analyst = _key(db, "analyst-1", ["review", "reports:read"])
    seniors = [_key(db, f"senior-{i}", ["qa", "reports:read"]) for i in (1, 2)]
    row_id = client.post(
        f"/v1/items/{item.id}/assessment", json={"version": 1, "outcome": "csam", **_csam_fields()}, headers=analyst
    ).json()["assessment"]["id"]
    first = client.post(f"/v1/assessments/{row_id}/qa", json={"decision": "confirm"}, headers=seniors[0]).json()
    assert (first["final"], first["confirmations_needed"], first["assessment"]["state"]) == (False, 2, "submitted")
    assert (first["assessment"]["confirmations"], first["hash_entries"]) == (1, 0)
    twice = client.post(f"/v1/assessments/{row_id}/qa", json={"decision": "confirm"}, headers=seniors[0])
    assert (twice.status_code, twice.json()["detail"]) == (
        403,
        f"you confirmed assessment {row_id} already: the next confirmation is another senior analyst's",
    )
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(HashList)) == 0  # nothing listed on one person's word
    second = client.post(f"/v1/assessments/{row_id}/qa", json={"decision": "confirm"}, headers=seniors[1]).json()
    assert (second["final"], second["assessment"]["state"], second["assessment"]["confirmations"]) == (
        True,
        "confirmed",
        2,
    )
    assert second["hash_entries"] == 4
    assert [q["reviewer"] for q in second["assessment"]["qa"]] == ["key:senior-1", "key:senior-2"]


def test_a_share_of_confirmed_assessments_is_sampled_for_audit(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    settings.hotline_audit_share = 0.5
    rows = []
    for seed in range(10):
        item = _item(db, _picture(tmp_path, seed))
        rows.append(_assess(db, settings, ALICE, item, assessment.AssessmentIn(outcome="not_csam")))
    for row in rows:
        _confirm(db, settings, SENIOR, row)
    db.expire_all()
    sampled = [r.id for r in rows if db.get(Assessment, r.id).audit_sample]  # type: ignore[union-attr]
    # The choice is a keyed hash of the id (the instance key decides it, the analyst cannot).
    assert sampled == [r.id for r in rows if assessment.audit_sampled(settings, r.id)]
    assert 0 < len(sampled) < len(rows)
    auditor = _key(db, "auditor", ["reports:read", "qa"])
    listed = client.get("/v1/assessments", params={"sample": True}, headers=auditor).json()
    assert [a["id"] for a in listed] == sampled
    settings.hotline_audit_share = 0.0
    assert not any(assessment.audit_sampled(settings, r.id) for r in rows)
    settings.hotline_audit_share = 1.0
    assert all(assessment.audit_sampled(settings, r.id) for r in rows)
    other = settings.model_copy(update={"secret_key": SecretStr("another-instance-key"), "hotline_audit_share": 0.5})
    assert [r.id for r in rows if assessment.audit_sampled(other, r.id)] != sampled


# ---- optimistic versions --------------------------------------------------------------------------


def test_a_save_based_on_a_stale_version_is_refused_with_409(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/v", [item])
    alice = _key(db, "alice", ["review", "reports:read"])
    bob = _key(db, "bob", ["review", "reports:read"])
    read_by_alice = client.get(f"/v1/cases/{case.reference}", headers=alice).json()
    read_by_bob = client.get(f"/v1/cases/{case.reference}", headers=bob).json()
    assert read_by_alice["items"][0]["version"] == read_by_bob["items"][0]["version"] == 1
    first = client.post(
        f"/v1/items/{item.id}/assessment", json={"version": 1, "outcome": "csam", **_csam_fields()}, headers=alice
    )
    assert first.status_code == 201
    stale = client.post(f"/v1/items/{item.id}/assessment", json={"version": 1, "outcome": "not_csam"}, headers=bob)
    assert (stale.status_code, stale.json()["detail"]) == (
        409,
        f"item {item.id} was changed by someone else since you read it (you read version 1, it is now version 2): "
        "reload it and save again; nothing was saved",
    )
    # The case moved on too (its derived assessment changed): a case save on the old version is refused.
    case_version = read_by_bob["version"]
    stale_case = client.post(
        f"/v1/cases/{case.reference}/assessment", json={"version": case_version, "outcome": "not_csam"}, headers=bob
    )
    assert stale_case.status_code == 409
    assert stale_case.json()["detail"].startswith(f"case {case.reference} was changed by someone else")
    fresh = client.get(f"/v1/cases/{case.reference}", headers=bob).json()
    assert [(a["subject"], a["assessor"], a["state"]) for a in fresh["assessments"]] == [
        ("item", "key:alice", "submitted"),
        ("case", "key:alice", "submitted"),
    ]
    # With what was read now, the save goes through (a report reference names the case as well).
    report = fresh["reports"][0]["reference"]
    saved = client.post(
        f"/v1/reports/{report}/assessment",
        json={"version": fresh["version"], "outcome": "not_csam", "comment": "a holiday photo"},
        headers=bob,
    )
    assert saved.status_code == 201 and saved.json()["version"] == fresh["version"] + 1
    assert saved.json()["assessment"]["case"] == case.reference


def test_concurrent_saves_of_one_item_the_second_is_refused(
    engine: Engine, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    factory = make_sessionmaker(engine)
    first = factory()
    assessment.assess_item(first, settings, ALICE, item.id, 1, CSAM_A)  # holds the item's lock, not committed
    outcome: list[str] = []

    def second() -> None:
        with factory() as session:
            try:
                assessment.assess_item(session, settings, BOB, item.id, 1, assessment.AssessmentIn(outcome="not_csam"))
                session.commit()
                outcome.append("saved")
            except assessment.Conflict as exc:
                session.rollback()
                outcome.append(str(exc))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.3)  # it waits for the first save's lock (or starts after it: the answer is the same)
    first.commit()
    first.close()
    thread.join(30)
    assert outcome == [
        f"item {item.id} was changed by someone else since you read it (you read version 1, it is now version 2): "
        "reload it and save again; nothing was saved"
    ]
    db.expire_all()
    assert [(a.assessor, a.outcome, a.state) for a in db.scalars(select(Assessment))] == [
        ("user:alice", "csam", "submitted")
    ]


def test_two_items_of_one_case_saved_at_once_both_count_in_the_url_assessment(
    engine: Engine, db: Session, settings: Settings, tmp_path: Path
) -> None:
    one, two = _item(db, _picture(tmp_path, 1)), _item(db, _picture(tmp_path, 2))
    case = _case(db, settings, "https://pics.example/both", [one, two])
    factory = make_sessionmaker(engine)
    first = factory()
    assessment.assess_item(
        first,
        settings,
        ALICE,
        one.id,
        1,
        assessment.AssessmentIn(outcome="csam", category="A", age_band="3-6", sex="girl"),
    )
    failed: list[BaseException] = []

    def second() -> None:
        with factory() as session:
            try:
                data = assessment.AssessmentIn(outcome="csam", category="C", age_band="16-17", sex="boy")
                assessment.assess_item(session, settings, BOB, two.id, 1, data)
                session.commit()
            except BaseException as exc:  # reported below, in the test's thread
                failed.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.3)  # it reads the case's items while the first save is not committed (if it started)
    first.commit()
    first.close()
    thread.join(30)
    assert failed == []
    db.expire_all()
    derived = assessment.current_case_assessment(db, db.get(Case, case.id))  # type: ignore[arg-type]
    assert derived is not None
    assert (derived.category, derived.age_band, derived.sex) == ("A", "3-6", "both")  # both items counted


# ---- inheritance ----------------------------------------------------------------------------------


def test_confirmation_passes_the_assessment_to_near_identical_waiting_items(
    client: TestClient, engine: Engine, db: Session, settings: Settings, tmp_path: Path
) -> None:
    original = _item(db, _picture(tmp_path, 1))
    near = _item(db, _picture(tmp_path, 1, brighter=1.05))
    unrelated = _item(db, _picture(tmp_path, 2))
    # Made to collide: the original's MD5 (and PDQ) on different bytes. Never inherits.
    collision = Item(
        sha256=hashlib.sha256(b"crafted").hexdigest(),
        md5=original.md5,
        sha1=hashlib.sha1(b"crafted").hexdigest(),
        pdq=original.pdq,
        pdq_quality=100,
        media="image",
        size=1,
    )
    db.add(collision)
    db.commit()
    distance = assessment._distance(original.pdq or "", near.pdq or "")
    assert 0 < distance <= 31 and near.md5 != original.md5  # the premise: near-identical, other bytes
    case = _case(db, settings, "https://pics.example/copy", [near, unrelated])

    row = _assess(db, settings, ALICE, original, CSAM_A)
    done = _confirm(db, settings, SENIOR, row)
    assert done.inherited == [near.id]
    db.expire_all()
    heir = db.get(Item, near.id)
    assert heir is not None and heir.state == "inherited"
    inherited = db.get(Assessment, heir.assessment_id)
    assert inherited is not None
    assert (inherited.inherited_from, inherited.state, inherited.outcome, inherited.category, inherited.age_band) == (
        row.id,
        "confirmed",
        "csam",
        "A",
        "7-10",
    )
    assert inherited.comment == f"inherited from assessment {row.id} of item {original.id} (PDQ distance {distance})"
    assert [db.get(Item, i).state for i in (unrelated.id, collision.id)] == ["to_grade", "to_grade"]  # type: ignore[union-attr]
    # The case's URL assessment follows its inherited item; the item itself is never queued.
    derived = assessment.current_case_assessment(db, db.get(Case, case.id))  # type: ignore[arg-type]
    assert derived is not None and (derived.derived, derived.outcome, derived.category) == (True, "csam", "A")
    senior = _key(db, "senior", ["qa", "reports:read"])
    queue = client.get("/v1/assessments", params={"state": "submitted", "subject": "item"}, headers=senior).json()
    assert queue == []

    # A picture captured later: inherits on arrival (what capture calls for each new item).
    later = _item(db, _picture(tmp_path, 1, brighter=0.96))
    assert assessment.find_inheritable(db, later, settings=settings) == db.get(Assessment, row.id)
    # A worker that matches what it captures searches the hotline list's index instead of scanning.
    indexes = MatchIndexes(make_sessionmaker(engine, writes=False))
    try:
        indexes.refresh()
        assert assessment.find_inheritable(db, later, settings=settings, indexes=indexes) == db.get(Assessment, row.id)
        assert assessment.find_inheritable(db, unrelated, settings=settings, indexes=indexes) is None
    finally:
        indexes.stop()
    got = assessment.inherit_if_known(db, settings, SYSTEM, later)
    db.commit()
    assert got is not None and got.inherited_from == row.id and db.get(Item, later.id).state == "inherited"  # type: ignore[union-attr]
    # A copy of the collision (other bytes, same MD5 as the original) is not inherited either.
    assert assessment.find_inheritable(db, db.get(Item, collision.id), settings=settings) is None  # type: ignore[arg-type]


def _flipped(pdq: str, bits: range) -> str:
    """``pdq`` with the given bits flipped: a stand-in hash at an exact distance."""
    value = int(pdq, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:064x}"


def _stand_in(db: Session, name: str, pdq: str) -> Item:
    """An item with made-up hashes (no picture): for distances no real edit lands on exactly."""
    item = Item(
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        md5=hashlib.md5(name.encode()).hexdigest(),
        sha1=hashlib.sha1(name.encode()).hexdigest(),
        pdq=pdq,
        pdq_quality=100,
        media="image",
        size=1,
    )
    db.add(item)
    db.commit()
    return item


def test_only_confirmed_csam_is_inherited_and_never_from_an_heir(
    db: Session, settings: Settings, tmp_path: Path
) -> None:
    benign = _item(db, _picture(tmp_path, 3))
    _confirm(db, settings, SENIOR, _assess(db, settings, ALICE, benign, assessment.AssessmentIn(outcome="not_csam")))
    # A picture near a benign one is still shown to an analyst (it may be crafted to sit there).
    assert assessment.find_inheritable(db, _item(db, _picture(tmp_path, 3, brighter=1.04)), settings=settings) is None
    base = hashlib.sha256(b"benign base").hexdigest()
    original = _stand_in(db, "original", base)
    pending = _assess(db, settings, ALICE, original, CSAM_A)
    first_heir = _stand_in(db, "first heir", _flipped(base, range(0, 20)))  # 20 bits from the original
    assert assessment.find_inheritable(db, first_heir, settings=settings) is None  # not confirmed yet
    low = _stand_in(db, "low quality", _flipped(base, range(0, 2)))
    low.pdq_quality = 30
    db.commit()
    assert _confirm(db, settings, SENIOR, pending).inherited == [first_heir.id]  # low quality: not matched
    # 20 bits from the heir but 40 from the analyst-assessed original: inheriting from the heir
    # would let chains of near matches drift anywhere.
    drifting = _stand_in(db, "drifting", _flipped(_flipped(base, range(0, 20)), range(100, 120)))
    assert assessment._distance(drifting.pdq or "", first_heir.pdq or "") == 20
    assert assessment._distance(drifting.pdq or "", base) == 40
    assert assessment.inherit_if_known(db, settings, SYSTEM, drifting) is None
    near = _stand_in(db, "near", _flipped(base, range(200, 231)))  # 31 bits: the threshold, inclusive
    got = assessment.inherit_if_known(db, settings, SYSTEM, near)
    db.commit()
    assert got is not None and got.inherited_from == pending.id
    assert db.get(Item, low.id).state == "to_grade"  # type: ignore[union-attr]


# ---- actions after confirmation ------------------------------------------------------------------


def _poll(fetch: Callable[[], list[dict[str, Any]]], deadline: float) -> list[dict[str, Any]]:
    while True:
        found = fetch()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_confirmed_items_and_urls_are_list_changes_every_matcher_sees(
    live_server: Any, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/album/7?page=2", [item])
    analyst = _key(db, "analyst-key", ["review", "reports:read"])
    senior = _key(db, "senior-key", ["qa", "reports:read"])
    partner = _key(db, "platform", ["match"])
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        made = http.post(
            f"/v1/items/{item.id}/assessment",
            json={
                "version": 1,
                "outcome": "csam",
                "category": "A",
                "age_band": "7-10",
                "sex": "girl",
                "flags": ["self_generated"],
            },
            headers=analyst,
        ).json()["assessment"]
        assert made["classification"] == {
            "uk_category": "A",
            "age_band": "7-10",
            "industry": "A1",
            "interpol": "baseline",
            "project_vic": 1,
        }
        confirmed = http.post(f"/v1/assessments/{made['id']}/qa", json={"decision": "confirm"}, headers=senior).json()
        assert (confirmed["final"], confirmed["hash_entries"], confirmed["dispatched"]) == (True, 4, None)
        started = time.monotonic()

        def md5_matches() -> list[dict[str, Any]]:
            answer = http.get("/v1/match", params={"signal_type": "md5", "value": item.md5}, headers=partner)
            return list(answer.json()["matches"])

        found = _poll(md5_matches, started + 5)
        assert [(m["list"], m["category"], m["labels"], m["source"]) for m in found] == [
            ("hotline-hashes", "A", ["age:7-10", "industry:A1", "self_generated"], "hotline")
        ]
        pdq = http.get("/v1/match", params={"signal_type": "pdq", "value": item.pdq}, headers=partner).json()
        assert [(m["list"], m["distance"]) for m in pdq["matches"]] == [("hotline-hashes", 0)]

        shown = http.get(f"/v1/cases/{case.reference}", headers=analyst).json()
        derived = shown["assessment"]
        assert (derived["derived"], derived["state"], derived["url_level"]) == (True, "submitted", "exact")
        done = http.post(f"/v1/assessments/{derived['id']}/qa", json={"decision": "confirm"}, headers=senior).json()
        assert (done["final"], done["url_entries"], done["dispatched"]) == (True, 1, "none")
        started = time.monotonic()

        def url_matches() -> list[dict[str, Any]]:
            answer = http.post("/v1/match/url", json={"url": "https://pics.example/album/7?page=2"}, headers=partner)
            return list(answer.json()["matches"])

        found = _poll(url_matches, started + 5)
        assert [(m["list"], m["level"], m["category"]) for m in found] == [("hotline-urls", "exact", "A")]
        assert http.get(f"/v1/cases/{case.reference}", headers=analyst).json()["state"] == "confirmed"
    db.expire_all()
    lists = {h.name: (h.kind, h.created_by) for h in db.scalars(select(HashList))}
    assert lists == {"hotline-hashes": ("hash", "system"), "hotline-urls": ("url", "system")}
    entry = db.scalar(select(Entry).where(Entry.signal_type == "md5"))
    assert entry is not None and entry.external_id == f"hotline-item:{item.id}"
    key_ids = {k.name: k.id for k in auth_service.list_api_keys(db)}
    report = db.scalar(select(Report.reference).where(Report.case_id == case.id))
    assert entry.note == (
        f"hotline assessment {made['id']}; case {case.reference} (report {report}); "
        f"assessed by key#{key_ids['analyst-key']}; QA by key#{key_ids['senior-key']}"
    )  # people as numbers: partners read entries, not the analysts' names


def test_a_corrected_assessment_retracts_what_the_earlier_one_listed(
    db: Session, settings: Settings, tmp_path: Path, dispatched: list[tuple[str, ...]]
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/fix?x=1", [item])
    assert _confirm(db, settings, SENIOR, _assess(db, settings, ALICE, item, CSAM_A)).hash_entries == 4
    derived = assessment.current_case_assessment(db, case)
    assert derived is not None
    assert _confirm(db, settings, SENIOR, derived).url_entries == 1
    # A second look: the case is listed at domain level instead, then the item was not CSAM after all.
    db.refresh(case)
    domain = assessment.assess_case(
        db,
        settings,
        BOB,
        case.reference,
        case.version,
        assessment.AssessmentIn(derive=True, url_level="domain", comment="the whole site is a gallery of it"),
    ).assessment
    db.commit()
    moved = _confirm(db, settings, SENIOR2, domain)
    assert (moved.url_entries, moved.retracted, moved.dispatched) == (1, 1, None)  # dispatched once only
    urls = {(e.value, e.level, e.status) for e in db.scalars(select(Entry).where(Entry.signal_type == "url"))}
    assert urls == {("https://pics.example/fix?x=1", "exact", "retracted"), ("pics.example", "domain", "active")}
    corrected = _confirm(
        db, settings, SENIOR2, _assess(db, settings, BOB, item, assessment.AssessmentIn(outcome="not_csam"))
    )
    assert (corrected.hash_entries, corrected.retracted) == (0, 4)
    db.expire_all()
    assert {e.status for e in db.scalars(select(Entry).where(Entry.signal_type != "url"))} == {"retracted"}
    assert [
        a.state for a in db.scalars(select(Assessment).where(Assessment.item_id == item.id).order_by(Assessment.id))
    ] == [
        "superseded",
        "confirmed",
    ]
    assert dispatched == []  # hosting country unknown: an analyst decides


@pytest.mark.parametrize(
    ("country", "expected"),
    [("GB", "notice"), ("fr", "referral"), (None, "none")],
)
def test_a_confirmed_csam_case_opens_its_notice_or_referral_in_the_same_transaction(
    db: Session,
    settings: Settings,
    country: str | None,
    expected: str,
    dispatched: list[tuple[str, ...]],
) -> None:
    case = _case(db, settings, f"https://host.example/{country}", [], country=country)
    saved = assessment.assess_case(db, settings, ALICE, case.reference, case.version, CSAM_A)
    db.commit()
    done = _confirm(db, settings, SENIOR, saved.assessment)
    assert done.dispatched == expected
    db.refresh(case)
    assert case.state == "confirmed"
    assert (
        dispatched
        == {
            "notice": [("notice", case.reference, "confirmed")],
            "referral": [("referral", case.reference, "confirmed", "FR")],
            "none": [],
        }[expected]
    )


def test_a_case_confirmed_as_not_csam_is_closed_without_a_notice(
    db: Session, settings: Settings, dispatched: list[tuple[str, ...]]
) -> None:
    case = _case(db, settings, "https://host.example/fine", [], country="GB")
    saved = assessment.assess_case(
        db, settings, ALICE, case.reference, case.version, assessment.AssessmentIn(outcome="not_csam")
    )
    db.commit()
    done = _confirm(db, settings, SENIOR, saved.assessment)
    db.refresh(case)
    assert (done.dispatched, done.url_entries, case.state, dispatched) == (None, 0, "closed", [])
    assert case.closed_at is not None
    assert db.scalar(select(func.count()).select_from(HashList)) == 0  # nothing listed, no list made


def test_a_derived_case_waits_for_its_items_qa_and_a_list_limited_key_cannot_confirm(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/wait", [item])
    row = _assess(db, settings, ALICE, item, CSAM_A)
    derived = assessment.current_case_assessment(db, case)
    assert derived is not None
    senior = _key(db, "senior", ["qa", "reports:read"])
    early = client.post(f"/v1/assessments/{derived.id}/qa", json={"decision": "confirm"}, headers=senior)
    assert (early.status_code, early.json()["detail"]) == (
        409,
        f"confirm the items' assessments first: 1 of case {case.reference}'s items await QA "
        "(this assessment is derived from them)",
    )
    limited = _key(db, "limited", ["qa", "reports:read"], lists=["mine"])
    refused = client.post(f"/v1/assessments/{row.id}/qa", json={"decision": "confirm"}, headers=limited)
    assert (refused.status_code, refused.json()["detail"]) == (
        403,
        "this key may not change list 'hotline-hashes', which a confirmation adds to",
    )
    assert client.post(f"/v1/assessments/{row.id}/qa", json={"decision": "confirm"}, headers=senior).status_code == 200
    assert client.post(f"/v1/assessments/{derived.id}/qa", json={"decision": "confirm"}, headers=senior).json()["final"]


# ---- reading, audit, CLI ---------------------------------------------------------------------------


def test_cases_are_read_by_the_hotline_not_by_partners(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/read", [item])
    partner = _key(db, "partner", ["reports:read", "reports:write"])
    refused = {"detail": "cases and assessments are for the hotline's people; a partner's key reads its own reports"}
    assert client.get(f"/v1/cases/{case.reference}", headers=partner).json() == refused
    assert client.get("/v1/assessments", headers=partner).json() == refused
    auth_service.create_user(db, SYSTEM, username="audrey", role="auditor", password="an auditor password")
    db.commit()
    cookie = auth_service.start_console_session(db, settings, auth_service.get_user(db, "audrey"))
    db.commit()
    client.cookies.set(SESSION_COOKIE, cookie)
    page = client.get("/", headers={"accept": "text/html"})
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert token, page.text  # a browser's call to the JSON API carries its page's token
    shown = client.get(f"/v1/cases/{case.reference.lower()}", headers={"x-csrf-token": token.group(1)})
    client.cookies.clear()
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["reference"], body["url"], body["state"], body["version"]) == (
        case.reference,
        "https://pics.example/read",
        "captured",
        1,
    )
    assert [(i["id"], i["state"], i["found_as"]) for i in body["items"]] == [(item.id, "to_grade", "img")]
    assert body["reports"][0]["channel"] == "public" and "pin" not in body["reports"][0]


def test_every_assessment_and_qa_decision_is_an_audit_event(db: Session, settings: Settings, tmp_path: Path) -> None:
    original = _item(db, _picture(tmp_path, 1))
    near = _item(db, _picture(tmp_path, 1, brighter=1.05))
    case = _case(db, settings, "https://pics.example/audit", [original])
    row = _assess(db, settings, ALICE, original, CSAM_A)
    rejected = assessment.qa(db, settings, SENIOR, row.id, "reject", "wrong age band")
    db.commit()
    row = _assess(
        db, settings, ALICE, original, assessment.AssessmentIn(outcome="csam", category="A", age_band="3-6", sex="girl")
    )
    _confirm(db, settings, SENIOR, row)
    events = [
        (e.action, e.actor, e.object_id, e.details.get("decision"))
        for e in db.scalars(select(AuditEvent).where(AuditEvent.action.like("assessment.%")).order_by(AuditEvent.seq))
    ]
    derived = [e for e in events if e[0] == "assessment.derive"]
    assert events == [
        ("assessment.submit", "alice", str(rejected.assessment.id), None),
        derived[0],
        ("assessment.qa", "sam", str(rejected.assessment.id), "reject"),
        derived[1],
        ("assessment.submit", "alice", str(row.id), None),
        derived[2],
        ("assessment.qa", "sam", str(row.id), "confirm"),
        ("assessment.inherit", "sam", events[7][2], None),
        ("assessment.confirm", "sam", str(row.id), None),
    ]
    assert derived[1][2] == str(case.id)  # the derived one withdrawn when its only item went back to the queue
    inherited = db.get(Assessment, int(events[7][2]))
    assert inherited is not None and inherited.item_id == near.id
    assert audit.verify(db).ok


def test_cases_show_cli(
    tmp_path: Path, database_url: str, db: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall.cli import app as cli_app
    from seawall.config import reset_settings

    item = _item(db, _picture(tmp_path, 1))
    case = _case(db, settings, "https://pics.example/cli", [item])
    _assess(db, settings, ALICE, item, CSAM_A)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("COLUMNS", "200")
    reset_settings()
    try:
        shown = CliRunner().invoke(cli_app, ["cases", "show", case.reference])
        missing = CliRunner().invoke(cli_app, ["cases", "show", "C-00000-00000"])
    finally:
        reset_settings()
    assert shown.exit_code == 0, shown.output
    assert f"{case.reference}  assessed (version 2)  https://pics.example/cli" in shown.output
    assert "csam, cat A, age 7-10, girl, 1 child, industry A1, interpol baseline" in shown.output
    assert "case (derived)" in shown.output and "user:alice" in shown.output
    assert (missing.exit_code, "no case or report 'C-00000-00000'" in missing.output) == (2, True)


# ---- classification tables, row by row ------------------------------------------------------------

PREPUBESCENT = {"0-2", "3-6", "7-10"}
UNDER_14 = {"0-2", "3-6", "7-10", "11-13"}


@pytest.mark.parametrize(("key", "code"), sorted(classification.INDUSTRY.items()))
def test_industry_row(key: tuple[str, str], code: str) -> None:
    category, band = key
    stage = "A" if band in PREPUBESCENT else "B"  # the documented reading of the age bands
    act = "1" if category in ("A", "B") else "2"  # A and B are sexual activity; C is exhibition
    assert code == stage + act
    assert classification.industry("csam", category, band) == code
    assert classification.industry("other_illegal", category, band) is None


@pytest.mark.parametrize(("key", "answer"), sorted(classification.INTERPOL.items(), key=str))
def test_interpol_row(key: tuple[str, str | None, str | None], answer: str) -> None:
    outcome, category, band = key
    if outcome == "csam":
        baseline = category in ("A", "B") and band in UNDER_14
        assert answer == ("baseline" if baseline else "national")
        assert classification.interpol(outcome, category, band, ["ai_generated"]) == "national"  # no real child
    else:
        assert answer == {"other_illegal": "national", "not_csam": "not_illegal"}[outcome]
    assert classification.interpol(outcome, category, band) == answer


@pytest.mark.parametrize(("key", "category"), sorted(classification.PROJECT_VIC.items()))
def test_project_vic_row(key: tuple[str, bool], category: int) -> None:
    outcome, ai = key
    expected = {"csam": 3 if ai else 1, "other_illegal": 3, "not_csam": 0}[outcome]
    assert category == expected
    assert classification.project_vic(outcome, ["ai_generated"] if ai else []) == category


def test_the_tables_cover_every_combination_and_the_document_lists_every_row() -> None:
    from seawall.hotline.models import AGE_BANDS, CATEGORIES

    assert set(classification.INDUSTRY) == {(c, b) for c in CATEGORIES for b in AGE_BANDS}
    assert {k for k in classification.INTERPOL if k[0] == "csam"} == {
        ("csam", c, b) for c in CATEGORIES for b in AGE_BANDS
    }
    for outcome in ("inaccessible", "duplicate"):
        assert classification.classify(outcome, None, None).as_dict() == {
            "uk_category": None,
            "age_band": None,
            "industry": None,
            "interpol": None,
            "project_vic": None,
        }
    text = (ROOT / "docs" / "classification.md").read_text()
    rows = {
        tuple(cell.strip().strip("`*") for cell in line.strip().strip("|").split("|"))
        for line in text.splitlines()
        if line.startswith("| ")
    }
    prefixes = {row[:n] for row in rows for n in (3, 4)}
    for (category, band), code in classification.INDUSTRY.items():
        assert (category, band, code) in prefixes, (category, band, code)
    for (outcome, category, band), answer in classification.INTERPOL.items():
        assert (outcome, category or "any", band or "any", answer) in prefixes, (outcome, category, band)
    for (outcome, ai), number in classification.PROJECT_VIC.items():
        assert (outcome, "yes" if ai else "no", str(number)) in prefixes, (outcome, ai)
