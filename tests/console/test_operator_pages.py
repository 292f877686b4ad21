"""Every console page by every console role: 200 for the roles that may see it, 403 for the others, a
redirect to the login page without a session — from a table that must name every console page the
app has. Then the operator actions through their forms: CSRF refused, role refused, audit recorded."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from operator_world import (
    CONSOLE_ROLES,
    ITEM_SHA256,
    KNOWN_PDQ,
    NEAR_ITEM_PDQ,
    NEAR_PDQ,
    OperatorWorld,
    build_world,
    login,
)
from seawall.auth.models import ApiKey, AuditEvent, User
from seawall.auth.permissions import ROLE_SCOPES, Role
from seawall.config import Settings
from seawall.matching.models import EntryQuarantine

HTML = {"accept": "text/html"}

# Every console page: its route, a URL to call it with, and the scope its role must hold.
PAGES: dict[str, tuple[str, str]] = {
    "/": ("/", "console"),
    "/lists": ("/lists", "lists:read"),
    "/lists/{name}": ("/lists/known", "lists:read"),
    "/lists/{name}/export": ("/lists/known/export?format=csv", "lists:read"),
    "/quarantine": ("/quarantine", "lists:read"),
    "/exchanges": ("/exchanges", "lists:write"),
    "/policies": ("/policies", "admin"),
    "/webhooks": ("/webhooks", "admin"),
    "/search": (f"/search?q={NEAR_PDQ}", "lists:read"),
    "/cases": ("/cases", "reports:read"),
    "/cases/{reference}": ("/cases/{case}", "reports:read"),
    "/admin/users": ("/admin/users", "admin"),
    "/admin/keys": ("/admin/keys", "admin"),
    "/admin/settings": ("/admin/settings", "admin"),
    "/audit": ("/audit", "audit:read"),
    "/stats": ("/stats", "stats:read"),
    "/stats/report": ("/stats/report?year=2022", "stats:read"),
    "/review": ("/review", "review"),
    "/review/break": ("/review/break", "review"),
    "/review/preferences": ("/review/preferences", "review"),
    "/review/items/{item_id}": ("/review/items/{item}", "review"),
    "/review/items/{item_id}/thumbnail": ("/review/items/{item}/thumbnail", "review"),
    "/review/cases/{case_id}": ("/review/cases/{case_id}", "review"),
    "/review/team": ("/review/team", "qa"),
    "/qa": ("/qa", "qa"),
    "/qa/{assessment_id}": ("/qa/{assessment}", "qa"),
    "/authority-reports": ("/authority-reports", "reports:read"),
    "/authority-reports/{reference}": ("/authority-reports/{authority_report}", "reports:read"),
}
# Console GET routes that are not pages a role opens from a link: each is covered where named.
NOT_PAGES = {
    "/review/reveals/{token}": "a one-item URL a reveal POST makes (tests/review/test_review_browser.py)",
}


def _is_console(route: APIRoute) -> bool:
    def walk(dependant: Any) -> bool:
        return any(getattr(d.call, "__name__", "") == "console_user" or walk(d) for d in dependant.dependencies)

    return walk(route.dependant)


def console_pages(app: Any) -> set[str]:
    """The app's GET routes that need a console login."""
    return {
        c.path
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute) and "GET" in (c.methods or ()) and _is_console(c.original_route)
    }


@pytest.fixture
def world(db: Session, settings: Settings, tmp_path: Path) -> OperatorWorld:
    return build_world(db, settings, tmp_path)


class Sessions(dict[Role, tuple[TestClient, str]]):
    """A logged-in client per console role, made when first asked for."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def __missing__(self, role: Role) -> tuple[TestClient, str]:
        self[role] = login(self.app, f"op-{role.value}")
        return self[role]


@pytest.fixture
def sessions(app: Any, world: OperatorWorld) -> Iterator[Sessions]:
    out = Sessions(app)
    yield out
    for client, _ in out.values():
        client.close()


def test_the_table_names_every_console_page(app: Any) -> None:
    assert console_pages(app) == set(PAGES) | set(NOT_PAGES), "a console page without a row in PAGES (or one for none)"


def test_every_page_answers_each_role_as_its_scope_says(
    client: TestClient, world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]]
) -> None:
    problems = []
    for route, (url, scope) in PAGES.items():
        url = url.format(
            case=world.case_reference,
            case_id=world.case_id,
            item=world.item_id,
            assessment=world.assessment_id,
            authority_report=world.authority_report,
        )
        anonymous = client.get(url, headers=HTML, follow_redirects=False)
        if anonymous.status_code != 303 or not anonymous.headers["location"].startswith("/login?next="):
            problems.append(f"nobody {route}: {anonymous.status_code}")
        for role in CONSOLE_ROLES:
            browser, _ = sessions[role]
            answer = browser.get(url, headers=HTML)
            expected = 200 if scope in ROLE_SCOPES[role] else 403
            if answer.status_code != expected:
                problems.append(f"{role.value} {route}: {answer.status_code}, expected {expected}")
            if expected == 200 and "text/html" in answer.headers["content-type"]:
                # The navigation shows only what the role may open.
                for href, needed in (
                    ("/admin/users", "admin"),
                    ("/audit", "audit:read"),
                    ("/exchanges", "lists:write"),
                ):
                    shown = f'href="{href}"' in answer.text
                    if shown != (needed in ROLE_SCOPES[role]):
                        problems.append(f"{role.value} {route}: link {href} shown={shown}")
    assert problems == [], "\n".join(problems)


def test_an_auditor_reads_the_audit_log_and_reaches_no_admin_page(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]]
) -> None:
    auditor, token = sessions[Role.auditor]
    assert auditor.get("/audit", headers=HTML).status_code == 200
    for path in ("/admin/users", "/admin/keys", "/admin/settings", "/policies", "/webhooks"):
        denied = auditor.get(path, headers=HTML)
        assert denied.status_code == 403 and "your role does not allow this (admin)" in denied.text
    # Nor any admin form, even with a valid CSRF token.
    made = auditor.post("/admin/users", data={"csrf_token": token, "username": "sneaky", "role": "admin"})
    assert made.status_code == 403
    revoked = auditor.post(f"/quarantine/{world.quarantined_entry}/release", data={"csrf_token": token})
    assert revoked.status_code == 403


def test_forms_without_their_csrf_token_are_refused(
    client: TestClient, world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], db: Session
) -> None:
    admin, _ = sessions[Role.admin]
    for path in ("/admin/users", "/admin/keys", f"/quarantine/{world.quarantined_entry}/release", "/audit/verify"):
        for caller in (client, admin):
            refused = caller.post(path, data={"username": "x", "name": "x"}, headers=HTML)
            assert refused.status_code == 403 and "The form expired" in refused.text, (path, refused.status_code)
    db.rollback()
    assert db.scalar(select(User).where(User.username == "x")) is None


def test_an_api_key_is_shown_once_and_revoked(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], db: Session
) -> None:
    admin, token = sessions[Role.admin]
    made = admin.post(
        "/admin/keys", data={"csrf_token": token, "name": "platform-x", "scope": ["match", "hash"], "lists": ["known"]}
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    secret = re.search(r"<code class=\"secret\" data-secret>([^<]+)</code>", made.text)
    assert secret is not None
    # The key works on the API, limited as made…
    me = admin.get("/v1/me", headers={"authorization": f"Bearer {secret.group(1)}"}).json()
    assert (me["name"], me["scopes"], me["lists"]) == ("platform-x", ["hash", "match"], ["known"])
    # …and is never shown again: the page lists its prefix only.
    again = admin.get("/admin/keys", headers=HTML)
    assert secret.group(1) not in again.text and f"<code>{secret.group(1)[:10]}…</code>" in again.text
    revoked = admin.post("/admin/keys/platform-x/revoke", data={"csrf_token": token})
    assert revoked.status_code == 200 and "Key platform-x is revoked." in revoked.text
    assert admin.get("/v1/me", headers={"authorization": f"Bearer {secret.group(1)}"}).status_code == 401
    db.rollback()
    key = db.scalar(select(ApiKey).where(ApiKey.name == "platform-x"))
    assert key is not None and key.revoked_at is not None
    actions = list(
        db.scalars(
            select(AuditEvent.action).where(AuditEvent.object_type == "api_key", AuditEvent.object_id == str(key.id))
        )
    )
    assert actions == ["key.create", "key.revoke"]


def test_users_are_created_disabled_reset_and_given_roles(
    app: Any, world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], db: Session
) -> None:
    admin, token = sessions[Role.admin]
    made = admin.post("/admin/users", data={"csrf_token": token, "username": "newcomer", "role": "analyst"})
    password = re.search(r"data-secret>([^<]+)</code>", made.text)
    assert made.status_code == 200 and password is not None
    newcomer = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    page = newcomer.get("/login", headers=HTML)
    form = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert form is not None
    logged = newcomer.post(
        "/login", data={"username": "newcomer", "password": password.group(1), "csrf_token": form.group(1)}
    )
    assert logged.status_code == 303
    assert newcomer.get("/lists", headers=HTML).status_code == 200
    assert newcomer.get("/exchanges", headers=HTML).status_code == 403  # analysts do not curate

    promoted = admin.post("/admin/users/newcomer/role", data={"csrf_token": token, "role": "senior_analyst"})
    assert "newcomer is now senior analyst." in promoted.text
    # A new role ends the open sessions: the new powers come with the next login.
    assert newcomer.get("/lists", headers=HTML).status_code == 303

    reset = admin.post("/admin/users/newcomer/password", data={"csrf_token": token})
    new_password = re.search(r"data-secret>([^<]+)</code>", reset.text)
    assert new_password is not None and new_password.group(1) != password.group(1)
    disabled = admin.post("/admin/users/newcomer/disable", data={"csrf_token": token})
    assert "newcomer is disabled" in disabled.text
    own = admin.post("/admin/users/op-admin/disable", data={"csrf_token": token})
    assert own.status_code == 422 and "you cannot disable your own account" in own.text
    bad = admin.post("/admin/users", data={"csrf_token": token, "username": "newcomer", "role": "analyst"})
    assert bad.status_code == 422 and "exists already" in bad.text
    newcomer.close()
    db.rollback()
    user = db.scalar(select(User).where(User.username == "newcomer"))
    assert user is not None and (user.role, user.disabled) == ("senior_analyst", True)
    actions = list(
        db.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == "user", AuditEvent.object_id == str(user.id))
            .order_by(AuditEvent.seq)
        )
    )
    assert [a for a in actions if not a.startswith("auth.")] == [
        "user.create",
        "user.role",
        "user.password",
        "user.disable",
    ]


def test_releasing_a_quarantined_entry(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], db: Session
) -> None:
    analyst, _ = sessions[Role.analyst]
    page = analyst.get("/quarantine", headers=HTML).text
    assert "a spike" in page and "Release" not in page and "key:platform" not in page  # who caused it: admins only
    admin, token = sessions[Role.admin]
    shown = admin.get("/quarantine", headers=HTML).text
    assert "key:platform" in shown
    released = admin.post(f"/quarantine/{world.quarantined_entry}/release", data={"csrf_token": token})
    assert released.status_code == 303 and released.headers["location"] == "/quarantine"
    assert "Nothing is quarantined." in admin.get("/quarantine", headers=HTML).text
    assert admin.post(f"/quarantine/{world.quarantined_entry}/release", data={"csrf_token": token}).status_code == 404
    db.rollback()
    row = db.get(EntryQuarantine, world.quarantined_entry)
    assert row is not None and row.released_by == "op-admin"


def test_search_by_hash_finds_a_pdq_near_match_in_lists_and_items(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]]
) -> None:
    auditor, _ = sessions[Role.auditor]
    found = auditor.get("/search", params={"q": NEAR_PDQ}, headers=HTML).text
    assert KNOWN_PDQ in found and re.search(r'<td class="num">3</td><td>B</td>', found)
    near_item = auditor.get("/search", params={"q": NEAR_ITEM_PDQ, "type": "pdq"}, headers=HTML).text
    assert re.search(rf'<td class="num">{world.item_id}</td><td>pdq</td><td class="num">3</td>', near_item)
    exact = auditor.get("/search", params={"q": ITEM_SHA256}, headers=HTML).text
    assert re.search(rf'<td class="num">{world.item_id}</td><td>sha256</td><td class="num">0</td>', exact)
    assert "not_csam" in exact
    bad = auditor.get("/search", params={"q": "abc"}, headers=HTML)
    assert bad.status_code == 422 and "none of MD5 (32), SHA-1 (40), SHA-256 or PDQ (64)" in bad.text
    wrong_type = auditor.get("/search", params={"q": KNOWN_PDQ, "type": "md5"}, headers=HTML)
    assert wrong_type.status_code == 422 and "a md5 hash is not 64 hex digits long" in wrong_type.text


def test_cases_are_found_by_reference_url_and_hash_and_show_their_timeline(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]]
) -> None:
    analyst, _ = sessions[Role.analyst]
    link = f'href="/cases/{world.case_reference}"'
    for q in (world.report_reference, world.case_reference.lower(), "https://gallery.example/a/1", ITEM_SHA256):
        page = analyst.get("/cases", params={"q": q}, headers=HTML).text
        assert link in page, q
    assert (
        "No case matches https://gallery.example/other"
        in analyst.get("/cases", params={"q": "https://gallery.example/other"}, headers=HTML).text
    )
    timeline = analyst.get(f"/cases/{world.case_reference}", headers=HTML).text
    steps = re.findall(r'<span class="tag">(\w+)</span> <strong>([^<]+)</strong>', timeline)
    assert steps == [
        ("report", f"Report {world.report_reference} received"),
        ("assessment", f"Assessment of item {world.item_id}: not csam"),
        ("qa", f"QA confirmed assessment {world.assessment_id}"),
        ("notice", f"Notice {world.notice_id} to the host (smtp)"),
        ("notice", f"Notice {world.notice_id} sent"),
        ("recheck", "Re-check gone"),
        ("removed", "Content removed"),
    ]
    assert "found gone after 1.9 h" in timeline and "HTTP 404; the content is gone" in timeline
    assert analyst.get("/cases/C-00000-00000", headers=HTML).status_code == 404


def test_the_audit_log_filters_and_verifies_its_chain(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], db: Session
) -> None:
    auditor, token = sessions[Role.auditor]
    filtered = auditor.get("/audit", params={"action": "user."}, headers=HTML).text
    actions = set(re.findall(r"<td><code>([a-z_.]+)</code></td>", filtered))
    assert actions == {"user.create"}
    verified = auditor.post("/audit/verify", data={"csrf_token": token})
    assert verified.status_code == 200
    assert re.search(r"audit chain intact: \d+ events verified with the audit key", verified.text)
    db.rollback()
    last = db.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert last is not None and (last.action, last.actor, last.details["ok"]) == ("audit.verify", "op-auditor", True)


def test_policies_show_what_a_shadow_rule_would_have_done(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]]
) -> None:
    admin, _ = sessions[Role.admin]
    page = admin.get("/policies", headers=HTML).text
    row = re.search(r"would-report.*?</tr>", page, re.S)
    assert row is not None and '<span class="tag">shadow</span>' in row.group(0)
    assert re.findall(r'<td class="num">(\d+)</td>', row.group(0))[-2:] == ["0", "1"]  # fired 0, would have 1
    assert f"known entry {world.entry_id} (distance 2)" in page


def test_settings_show_secrets_masked(sessions: dict[Role, tuple[TestClient, str]], settings: Settings) -> None:
    admin, _ = sessions[Role.admin]
    page = admin.get("/admin/settings", headers=HTML).text
    assert "test-secret-key-not-for-production" not in page
    assert re.search(r"<code>secret_key</code></th><td><code class=\"value\">\*{8}</code>", page)


def test_exchange_run_now_queues_a_sync(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall.lists.exchanges import tasks

    queued: list[str] = []
    monkeypatch.setattr(tasks, "sync_exchange", queued.append)
    senior, token = sessions[Role.senior_analyst]
    page = senior.get("/exchanges", headers=HTML).text
    assert "partner-feed" in page and "never" in page
    answer = senior.post("/exchanges/partner-feed/sync", data={"csrf_token": token})
    assert answer.status_code == 303 and queued == ["partner-feed"]
    assert "A sync of partner-feed is queued." in senior.get(answer.headers["location"], headers=HTML).text
    assert senior.post("/exchanges/nope/sync", data={"csrf_token": token}).status_code == 404


def test_a_curator_adds_retires_and_gives_opinions_from_the_list_page(
    world: OperatorWorld, sessions: dict[Role, tuple[TestClient, str]], db: Session
) -> None:
    from seawall.lists import service as lists_service

    analyst, analyst_token = sessions[Role.analyst]
    page = analyst.get("/lists/known", headers=HTML).text
    assert "Add entries" not in page and "Import a file" not in page  # analysts read, curators write
    assert analyst.post("/lists/known/entries", data={"csrf_token": analyst_token, "values": "x"}).status_code == 403

    senior, token = sessions[Role.senior_analyst]
    tiles = [hashlib.md5(f"benign tile {i}".encode()).hexdigest() for i in range(2)]
    added = senior.post(
        "/lists/known/entries",
        data={"csrf_token": token, "values": f"{tiles[0]}\nmd5,{tiles[1]}\n", "signal_type": "md5", "category": "C"},
    )
    assert added.status_code == 200 and "Added 2, updated 0, unchanged 0." in added.text
    bad = senior.post("/lists/known/entries", data={"csrf_token": token, "values": "md5,not-a-hash"})
    alert = re.search(r"role=\"alert\">([^<]+)<", bad.text)
    assert (
        bad.status_code == 422
        and alert is not None
        and alert.group(1).startswith("Nothing was added: entry line 1: md5")
    )
    db.rollback()
    known = lists_service.get_list(db, "known")
    first = lists_service.find_entries(db, known, tiles[0], "md5")[0]
    retired = senior.post(
        "/lists/known/status",
        data={"csrf_token": token, "status": "retracted", "reason": "a benign stand-in", "entry_id": [str(first.id)]},
    )
    assert retired.status_code == 200 and "1 entries set to retracted." in retired.text
    none = senior.post("/lists/known/status", data={"csrf_token": token, "status": "retracted"})
    assert none.status_code == 422 and "select at least one entry" in none.text
    opinion = senior.post(
        f"/lists/known/entries/{world.entry_id}/opinions", data={"csrf_token": token, "verdict": "false_positive"}
    )
    assert opinion.status_code == 200 and f"Opinion recorded on entry {world.entry_id}: false positive." in opinion.text
    db.rollback()
    db.refresh(first)
    assert first.status == "retracted"
    actions = list(
        db.scalars(select(AuditEvent.action).where(AuditEvent.actor == "op-senior_analyst").order_by(AuditEvent.seq))
    )
    assert actions == ["list.entries", "entry.retracted", "entry.opinion"]
