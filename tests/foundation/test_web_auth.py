"""Console login, CSRF, lock-out, sessions; API keys and scopes; health endpoints."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seawall import migrate
from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey, AuditEvent, ConsoleSession, User
from seawall.auth.permissions import SYSTEM
from seawall.db import utcnow

PASSWORD = "correct horse battery"


def _make_user(db: Session, name: str = "alice", role: str = "analyst") -> User:
    user, _ = auth_service.create_user(db, SYSTEM, username=name, role=role, password=PASSWORD)
    db.commit()
    return user


def _csrf(client: TestClient, path: str = "/login") -> str:
    page = client.get(path, headers={"accept": "text/html"})
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, page.text
    return match.group(1)


def _login(client: TestClient, username: str, password: str, token: str | None = None) -> object:
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token or _csrf(client), "next": "/"},
        headers={"accept": "text/html"},
        follow_redirects=False,
    )


def test_login_reaches_dashboard_and_logout_ends_session(client: TestClient, db: Session) -> None:
    _make_user(db)
    response = _login(client, "alice", PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "seawall_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "Signed in as <strong>alice</strong>" in page.text
    token = _csrf(client, "/")
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.clear()
    again = client.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/login?next=/"
    actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions == ["user.create", "auth.login", "auth.logout"]


def test_wrong_password_is_refused_and_counted(client: TestClient, db: Session) -> None:
    _make_user(db)
    response = _login(client, "alice", "wrong password!")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    db.expire_all()
    assert db.scalar(select(User.failed_logins).where(User.username == "alice")) == 1
    unknown = _login(client, "nobody", "whatever-password")
    assert unknown.status_code == 401 and "Wrong username or password." in unknown.text


def test_lockout_after_repeated_failures_even_with_right_password(client: TestClient, db: Session) -> None:
    _make_user(db)  # settings fixture: 3 failures lock the account
    for _ in range(2):
        assert "Wrong username or password." in _login(client, "alice", "bad-password-x").text
    third = _login(client, "alice", "bad-password-x")
    assert "locked after repeated failed logins" in third.text
    right = _login(client, "alice", PASSWORD)
    assert right.status_code == 401 and "locked" in right.text
    db.expire_all()
    user = db.scalar(select(User).where(User.username == "alice"))
    assert user is not None and user.locked_until is not None and user.locked_until > utcnow()
    # Once the lock has run out, the right password works again.
    db.execute(update(User).where(User.id == user.id).values(locked_until=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert _login(client, "alice", PASSWORD).status_code == 303


def test_missing_or_wrong_csrf_token_is_403(client: TestClient, db: Session) -> None:
    _make_user(db)
    client.get("/login", headers={"accept": "text/html"})
    missing = client.post("/login", data={"username": "alice", "password": PASSWORD}, headers={"accept": "text/html"})
    assert missing.status_code == 403
    assert "did not come from this site" in missing.text
    wrong = _login(client, "alice", PASSWORD, token="0" * 64)
    assert wrong.status_code == 403
    # A token issued to another browser is no good here either.
    other = TestClient(client.app, base_url="http://127.0.0.1")
    foreign = _csrf(other)
    assert _login(client, "alice", PASSWORD, token=foreign).status_code == 403
    # Logout too needs the token.
    assert _login(client, "alice", PASSWORD).status_code == 303
    assert client.post("/logout", data={}, headers={"accept": "text/html"}).status_code == 403


def test_expired_session_sends_back_to_login(client: TestClient, db: Session) -> None:
    _make_user(db)
    assert _login(client, "alice", PASSWORD).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 200
    db.execute(update(ConsoleSession).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    expired = client.get("/", follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"].startswith("/login")


def test_disabled_user_cannot_log_in_and_loses_open_sessions(client: TestClient, db: Session) -> None:
    _make_user(db)
    assert _login(client, "alice", PASSWORD).status_code == 303
    auth_service.set_user_disabled(db, SYSTEM, "alice", True)
    db.commit()
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.clear()
    refused = _login(client, "alice", PASSWORD)
    assert refused.status_code == 401 and "This account is disabled." in refused.text


def test_login_next_never_leaves_the_site(client: TestClient, db: Session) -> None:
    _make_user(db)
    for target, expected in [("/docs", "/docs"), ("//evil.example", "/"), ("https://evil.example/x", "/")]:
        client.cookies.clear()
        token = _csrf(client)
        response = client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> str:
    new = auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists)
    db.commit()
    return new.secret


def test_api_key_scopes_missing_scope_revoked_and_absent(client: TestClient, db: Session) -> None:
    admin_key = _key(db, "ops", ["admin"])
    match_key = _key(db, "platform", ["match"], lists=["demo"])
    me = client.get("/v1/me", headers={"authorization": f"Bearer {match_key}"})
    assert me.status_code == 200
    assert me.json() == {"kind": "key", "name": "platform", "role": None, "scopes": ["match"], "lists": ["demo"]}
    # No credential: 401. Wrong scheme: 401. Missing scope: 403.
    assert client.get("/v1/admin/keys").status_code == 401
    assert client.get("/v1/admin/keys", headers={"authorization": "Basic abc"}).status_code == 401
    forbidden = client.get("/v1/admin/keys", headers={"authorization": f"Bearer {match_key}"})
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "this credential lacks the 'admin' scope"}
    listed = client.get("/v1/admin/keys", headers={"authorization": f"Bearer {admin_key}"})
    assert [k["name"] for k in listed.json()] == ["ops", "platform"]
    assert all("key" not in k and "key_hash" not in k for k in listed.json())
    revoked = client.delete("/v1/admin/keys/platform", headers={"authorization": f"Bearer {admin_key}"})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    after = client.get("/v1/me", headers={"authorization": f"Bearer {match_key}"})
    assert after.status_code == 401 and after.json() == {"detail": "this API key has been revoked"}
    unknown = client.get("/v1/me", headers={"authorization": "Bearer swk_not-a-real-key"})
    assert unknown.status_code == 401 and unknown.json() == {"detail": "invalid API key"}


def test_api_keys_are_stored_hashed_and_created_through_the_admin_api(client: TestClient, db: Session) -> None:
    admin_key = _key(db, "ops", ["admin"])
    created = client.post(
        "/v1/admin/keys",
        json={"name": "hotline-feed", "scopes": ["lists:read"], "lists": ["urls"]},
        headers={"authorization": f"Bearer {admin_key}"},
    )
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("swk_")
    stored = db.scalar(select(ApiKey).where(ApiKey.name == "hotline-feed"))
    assert stored is not None and secret not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    bad_scope = client.post(
        "/v1/admin/keys", json={"name": "x", "scopes": ["everything"]}, headers={"authorization": f"Bearer {admin_key}"}
    )
    assert bad_scope.status_code == 422 and "unknown scope(s): everything" in bad_scope.json()["detail"]
    duplicate = client.post(
        "/v1/admin/keys", json={"name": "ops", "scopes": ["match"]}, headers={"authorization": f"Bearer {admin_key}"}
    )
    assert duplicate.status_code == 409


def test_console_session_calling_api_needs_csrf_header(client: TestClient, db: Session) -> None:
    _make_user(db, "root", "admin")
    assert _login(client, "root", PASSWORD).status_code == 303
    token = _csrf(client, "/")
    assert client.get("/v1/admin/users").status_code == 403  # reads too (tests/foundation/test_web_hardening.py)
    assert client.get("/v1/admin/users", headers={"x-csrf-token": token}).status_code == 200
    body = {"username": "bob", "role": "auditor"}
    assert client.post("/v1/admin/users", json=body).status_code == 403
    created = client.post("/v1/admin/users", json=body, headers={"x-csrf-token": token})
    assert created.status_code == 201 and created.json()["role"] == "auditor" and len(created.json()["password"]) >= 15


def test_role_without_permission_gets_403_page(client: TestClient, db: Session) -> None:
    _make_user(db, "carol", "partner")
    assert _login(client, "carol", PASSWORD).status_code == 303
    denied = client.get("/v1/audit/verify", headers={"x-csrf-token": _csrf(client, "/login")})
    assert denied.status_code == 403 and denied.json() == {"detail": "this credential lacks the 'audit:read' scope"}


def test_health_ready_metrics_openapi_and_error_pages(client: TestClient, db: Session) -> None:
    ops = {"authorization": f"Bearer {_key(db, 'monitoring', ['ops'])}"}
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz", headers=ops)
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["checks"]["database"]["revision"] == migrate.head_revision()
    assert client.get("/openapi.json").json()["info"]["title"] == "Seawall"
    assert client.get("/docs").status_code == 200
    metrics = client.get("/metrics", headers=ops).text
    assert 'seawall_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in metrics
    page = client.get("/nowhere", headers={"accept": "text/html"})
    assert page.status_code == 404 and '<h1 id="error-title">Not found</h1>' in page.text
    assert client.get("/nowhere").json() == {"detail": "Not Found"}
    rid = client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert rid.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{16}", client.get("/healthz").headers["x-request-id"])


def test_failed_login_never_keeps_what_was_typed_as_a_user_name(client: TestClient, db: Session) -> None:
    _make_user(db)
    typed = "my secret pass phrase"  # a password typed into the name field
    response = _login(client, typed, "whatever-password")
    assert response.status_code == 401 and "Wrong username or password." in response.text
    assert _login(client, "alice", "wrong password!").status_code == 401
    db.expire_all()
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed").order_by(AuditEvent.seq))
    rows = [(e.actor_type, e.actor, e.object_id, e.details) for e in events]
    user_id = db.scalar(select(User.id).where(User.username == "alice"))
    assert rows == [
        ("anonymous", "", "", {"reason": "unknown user"}),
        ("user", "alice", str(user_id), {"reason": "wrong password", "failures": 1}),
    ]
    exported = db.scalars(select(AuditEvent)).all()
    assert not any(typed in repr((e.actor, e.object_id, e.details)) for e in exported)


def test_password_reset_ends_every_console_session_of_the_user(client: TestClient, db: Session) -> None:
    _make_user(db)
    _make_user(db, "bob")
    assert _login(client, "alice", PASSWORD).status_code == 303
    other = TestClient(client.app, base_url="http://127.0.0.1")
    assert _login(other, "bob", PASSWORD).status_code == 303
    auth_service.set_password(db, SYSTEM, "alice", "a new long password")
    db.commit()
    ended = client.get("/", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"] == "/login?next=/"
    assert other.get("/", follow_redirects=False).status_code == 200  # bob's session is not alice's
    db.expire_all()
    alice = db.scalar(select(User.id).where(User.username == "alice"))
    assert db.scalars(select(ConsoleSession.revoked).where(ConsoleSession.user_id == alice)).all() == [True]
    client.cookies.clear()
    assert _login(client, "alice", "a new long password").status_code == 303


def _recently_used_key(db: Session) -> str:
    # Used a moment ago, so a check records no last use (a write that would wait for the revoking transaction).
    secret = _key(db, "platform", ["match"])
    db.execute(update(ApiKey).where(ApiKey.name == "platform").values(last_used_at=utcnow()))
    db.commit()
    return secret


def test_revoked_key_is_not_cached_again_by_a_read_of_the_old_row(engine, db: Session) -> None:  # type: ignore[no-untyped-def]
    from seawall.db import make_sessionmaker

    secret = _recently_used_key(db)
    reads = make_sessionmaker(engine, writes=False)
    auth_service.clear_key_cache()
    with make_sessionmaker(engine)() as admin:
        auth_service.revoke_api_key(admin, SYSTEM, "platform")
        # A request checks the key while the revocation is not yet committed: it reads the old row.
        assert auth_service.api_key_principal(reads, secret).name == "platform"
        admin.commit()
    assert auth_service.cached_api_key_principal(secret) is None
    with pytest.raises(auth_service.AuthError, match="this API key has been revoked"):
        auth_service.api_key_principal(reads, secret)


def test_a_check_in_flight_across_a_revocation_does_not_cache_the_key(  # type: ignore[no-untyped-def]
    engine, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seawall.db import make_sessionmaker

    secret = _recently_used_key(db)
    auth_service.clear_key_cache()
    read_row = auth_service.authenticate_api_key

    def read_then_revoked(session: Session, given: str) -> ApiKey:
        key = read_row(session, given)  # the old row, read just before...
        with make_sessionmaker(engine)() as admin:  # ...the revocation commits
            auth_service.revoke_api_key(admin, SYSTEM, "platform")
            admin.commit()
        return key

    monkeypatch.setattr(auth_service, "authenticate_api_key", read_then_revoked)
    assert auth_service.api_key_principal(make_sessionmaker(engine, writes=False), secret).name == "platform"
    assert auth_service.cached_api_key_principal(secret) is None
