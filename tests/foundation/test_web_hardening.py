"""The web surface against a browser on another site and an anonymous caller: CSRF on every cookie
call to the JSON API, what health endpoints tell whom, security headers, offline API docs."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.matching.models import MatchEvent
from servers import serve

PASSWORD = "correct horse battery"
LISTED = hashlib.md5(b"benign stand-in").hexdigest()


def _login(client: TestClient, db: Session, name: str = "root", role: str = "admin") -> str:
    """Log a console user in; returns the CSRF token of its pages."""
    auth_service.create_user(db, SYSTEM, username=name, role=role, password=PASSWORD)
    db.commit()
    page = client.get("/login", headers={"accept": "text/html"})
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token
    response = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    meta = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', client.get("/").text)
    assert meta
    return meta.group(1)


@pytest.fixture
def picture_server() -> Iterator[tuple[str, list[str]]]:
    """A server on loopback that hands out a generated gradient and notes every path asked for."""
    asked: list[str] = []
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(buffer, "PNG")
    body = buffer.getvalue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        asked.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"image/png")]})
        await send({"type": "http.response.body", "body": body})

    with serve(app) as url:
        yield url, asked


def test_a_cookie_call_to_the_json_api_needs_the_csrf_token_whatever_the_method(
    client: TestClient, db: Session, picture_server: tuple[str, list[str]]
) -> None:
    """A link or an <img> on another site carries the SameSite=lax cookie on GET: without the page's
    token it must not match (and record, and fire webhooks) nor make the server fetch a URL."""
    base, asked = picture_server
    client.app.state.settings = client.app.state.settings.model_copy(update={"fetch_allow_networks": ["127.0.0.0/8"]})
    known = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    lists_service.add_entries(db, SYSTEM, known, [EntryRecord("md5", LISTED)])
    db.commit()
    token = _login(client, db)
    lookup = {"signal_type": "md5", "value": LISTED}
    refused = [
        client.get("/v1/match", params=lookup),
        client.get("/h/hash", params={"url": f"{base}/a.png"}),
        client.get("/m/lookup", params={"url": f"{base}/b.png"}),
        client.get("/v1/me"),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert refused[0].json() == {"detail": "missing or invalid CSRF token"}
    assert refused[1].json() == {"message": "missing or invalid CSRF token"}  # HMA's error shape
    db.rollback()  # a fresh snapshot for each count
    assert asked == [] and db.scalar(select(func.count()).select_from(MatchEvent)) == 0
    # A token from another browser is no better.
    assert client.get("/v1/match", params=lookup, headers={"x-csrf-token": "0" * 64}).status_code == 403
    # The console's own fetch() sends the page's token: then it works, as it always did.
    headers = {"x-csrf-token": token}
    matched = client.get("/v1/match", params=lookup, headers=headers)
    assert matched.status_code == 200 and len(matched.json()["matches"]) == 1
    db.rollback()
    assert db.scalar(select(func.count()).select_from(MatchEvent)) == 1
    assert client.get("/h/hash", params={"url": f"{base}/a.png"}, headers=headers).status_code == 200
    assert asked == ["/a.png"]
    assert client.get("/v1/me", headers=headers).json()["name"] == "root"
    # Machines with an API key never had a cookie to abuse: no token needed.
    secret = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match"]).secret
    db.commit()
    client.cookies.clear()
    by_key = client.get("/v1/match", params=lookup, headers={"authorization": f"Bearer {secret}"})
    assert by_key.status_code == 200 and len(by_key.json()["matches"]) == 1


def _ops_app(client: TestClient, token: str | None = "metrics-token-for-tests") -> None:
    secret = SecretStr(token) if token is not None else None
    client.app.state.settings = client.app.state.settings.model_copy(update={"metrics_token": secret})


def test_readyz_tells_anonymous_callers_only_whether_it_is_ready(client: TestClient, db: Session) -> None:
    listed = lists_service.create_list(db, SYSTEM, name="secret-partner-list", kind="hash")
    lists_service.add_entries(db, SYSTEM, listed, [EntryRecord("md5", LISTED)])
    db.commit()
    client.app.state.match_indexes.refresh()
    _ops_app(client)
    anonymous = client.get("/readyz")
    assert (anonymous.status_code, anonymous.json()) == (200, {"ready": True})
    partner = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match", "lists:read"]).secret
    ops = auth_service.create_api_key(db, SYSTEM, name="prometheus", scopes=["ops"]).secret
    db.commit()
    # A credential without the 'ops' scope learns no more than anyone.
    assert client.get("/readyz", headers={"authorization": f"Bearer {partner}"}).json() == {"ready": True}
    for credential in (ops, "metrics-token-for-tests"):
        detailed = client.get("/readyz", headers={"authorization": f"Bearer {credential}"})
        assert detailed.status_code == 200
        checks = detailed.json()["checks"]
        assert set(checks) == {"database", "indexes"} and "secret-partner-list" in checks["indexes"]["lists"]
    # A credential that is no credential is refused, not ignored.
    unknown = client.get("/readyz", headers={"authorization": "Bearer swk_not-a-key"})
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "invalid API key"})
    # A console admin sees the details from the console's fetch (with the page's token); the cookie
    # alone, as a link from elsewhere sends it, gets the anonymous answer (no error for a GET).
    token = _login(client, db)
    assert set(client.get("/readyz", headers={"x-csrf-token": token}).json()) == {"ready", "checks"}
    assert client.get("/readyz").json() == {"ready": True}
    assert client.get("/healthz").json() == {"status": "ok"}  # still anyone's


def test_metrics_need_the_token_or_an_ops_credential(client: TestClient, db: Session) -> None:
    _ops_app(client)
    anonymous = client.get("/metrics")
    assert (anonymous.status_code, anonymous.json()) == (401, {"detail": "authentication required"})
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics", headers={"authorization": "Bearer wrong-token"}).status_code == 401
    partner = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match"]).secret
    ops = auth_service.create_api_key(db, SYSTEM, name="prometheus", scopes=["ops"]).secret
    db.commit()
    lacking = client.get("/metrics", headers={"authorization": f"Bearer {partner}"})
    assert (lacking.status_code, lacking.json()) == (403, {"detail": "this credential lacks the 'ops' scope"})
    for credential in ("metrics-token-for-tests", ops):
        scraped = client.get("/metrics", headers={"authorization": f"Bearer {credential}"})
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert 'seawall_http_requests_total{method="GET",route="/metrics",status="401"} 2.0' in scraped.text
    # No token configured: only an ops credential, and the token that was is nothing.
    _ops_app(client, None)
    assert client.get("/metrics", headers={"authorization": "Bearer metrics-token-for-tests"}).status_code == 401
    assert client.get("/metrics", headers={"authorization": f"Bearer {ops}"}).status_code == 200


SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
}


def test_every_response_carries_the_security_headers(client: TestClient, db: Session) -> None:
    key = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match"]).secret
    db.commit()
    bearer = {"authorization": f"Bearer {key}"}
    lookup = {"signal_type": "md5", "value": LISTED}
    client.get("/v1/match", params=lookup, headers=bearer)  # the key is now cached: the next is the fast path

    def boom() -> None:
        raise RuntimeError("a bug")

    client.app.add_api_route("/boom", boom)
    html = {"accept": "text/html"}
    responses = {
        "login page": client.get("/login", headers=html),
        "redirect to login": client.get("/", headers=html, follow_redirects=False),
        "API 401": client.get("/v1/me"),
        "API answer": client.get("/v1/match", params=lookup, headers=bearer),
        "HMA error": client.get("/m/lookup", headers=bearer),
        "404 page": client.get("/nowhere", headers=html),
        "static file": client.get("/static/seawall.css"),
        "API docs": client.get("/docs"),
        "docs asset": client.get("/docs/assets/swagger-ui-bundle.js"),
        "OpenAPI": client.get("/openapi.json"),
        "health": client.get("/healthz"),
    }
    with TestClient(client.app, raise_server_exceptions=False, base_url="http://127.0.0.1") as unguarded:
        responses["500 page"] = unguarded.get("/boom", headers=html)
    assert {name: r.status_code for name, r in responses.items()} == {
        "login page": 200,
        "redirect to login": 303,
        "API 401": 401,
        "API answer": 200,
        "HMA error": 400,
        "404 page": 404,
        "static file": 200,
        "API docs": 200,
        "docs asset": 200,
        "OpenAPI": 200,
        "health": 200,
        "500 page": 500,
    }
    for name, response in responses.items():
        assert {h: response.headers.get(h) for h in SECURITY_HEADERS} == SECURITY_HEADERS, name


def test_api_docs_are_served_from_this_server_without_inline_script(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.text)
    assert sources == [
        "http://127.0.0.1/docs/assets/swagger-ui.css",  # this server: the client's base URL
        "http://127.0.0.1/docs/assets/swagger-ui-bundle.js",
        "http://127.0.0.1/static/api-docs.js",
    ]
    assert re.findall(r"<script[^>]*>([^<]+)</script>", page.text) == []  # no inline script
    assert 'data-openapi-url="/openapi.json"' in page.text
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 500, source
    assert (
        client.get("/static/api-docs.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
