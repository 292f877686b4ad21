"""Request bodies, bounded before the app reads them: a size cap per route, and no body at all from
an API caller without a valid credential.

Pure ASGI, in front of routing: a route's own parsing (FastAPI's, Starlette's multipart parser that
spools to /tmp) only ever sees a body this layer admitted. The caps, in one table (``BODY_RULES``):

============================  =========================================  ==============================
routes                        cap                                        credential needed for a body
============================  =========================================  ==============================
/login /logout /report        ``FORM_BODY_BYTES`` (128 KiB)              no (public forms; CSRF checked
/report/status                                                           by the route)
/review/… /qa/… (console)     ``FORM_BODY_BYTES``                        no (the route checks login)
/self-report/submit (JSON)    ``selfreport.schemas.BODY_BYTES`` (24 KiB) no (CSRF header checked by the
                                                                         route; hashes only)
uploads (multipart): /v1/hash ``max_file_bytes`` + ``MULTIPART_ENVELOPE``   yes
/v1/match /h/hash /m/lookup
/c/bank/{name}/content
list imports                  ``max_import_bytes`` (256 MiB)             yes (a key, or a live
/v1/lists/{name}/import                                                  console session)
/lists/{name}/import
bulk JSON: entries, status,   ``max_bulk_body_bytes`` (16 MiB)           yes
report batches, referrals,
/v1/match/text
any other /v1 /h /m /c call   ``max_body_bytes`` (2 MiB)                 yes
any other path (console)      ``FORM_BODY_BYTES``                        no (the route checks login)
============================  =========================================  ==============================

An upload route sent anything but multipart gets the JSON cap. A declared ``Content-Length`` over
the cap is answered 413 before a byte is read; a chunked body is counted as it arrives and the
request ends with 413 at the cap: the route never sees a byte past it (the server may have buffered
one socket read beyond, a few hundred KiB at most, which is dropped). On the API, a request that carries a
body and no valid credential (no bearer key, an unknown or revoked key, no live console session) is
answered 401 before a byte is read. Both answers close the connection, so the client's remaining
bytes are never read either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seawall.auth import service as auth_service
from seawall.config import Settings
from seawall.web.csrf import SESSION_COOKIE

FORM_BODY_BYTES = 128 * 1024  # a report form's longest description, percent-encoded, fits with room
MULTIPART_ENVELOPE = 1024 * 1024  # part headers and the small form fields beside the file

FORM, JSON, BULK, IMPORT, UPLOAD, SELF_REPORT = "form", "json", "bulk", "import", "upload", "self_report"
API_PREFIXES = ("/v1/", "/h/", "/m/", "/c/")
HMA_PREFIXES = ("/h/", "/m/", "/c/")  # HMA's error shape: {"message": ...}


@dataclass(frozen=True)
class BodyRule:
    path: re.Pattern[str]
    kind: str
    public: bool = False  # a body is accepted without a credential (public forms)


def _rule(path: str, kind: str, public: bool = False) -> BodyRule:
    return BodyRule(re.compile(path), kind, public)


_SEGMENT = r"[^/]+"
BODY_RULES: list[BodyRule] = [
    _rule(r"/(login|logout|report|report/status)", FORM, public=True),
    _rule(r"/self-report/submit", SELF_REPORT, public=True),
    _rule(r"/v1/hash|/v1/match|/h/hash|/m/lookup", UPLOAD),
    _rule(rf"/c/bank/{_SEGMENT}/content", UPLOAD),
    _rule(rf"/v1/lists/{_SEGMENT}/import", IMPORT),
    _rule(rf"/lists/{_SEGMENT}/import", IMPORT),  # the console's import form: a live session needed
    _rule(rf"/v1/lists/{_SEGMENT}/entries(/status)?", BULK),
    _rule(rf"/v1/reports/batch|/v1/referrals(/{_SEGMENT}/status)?|/v1/match/text", BULK),
    # the review console's forms and reveal beacons (the route checks the login, then the CSRF token)
    _rule(r"/(review|qa)(/.*)?", FORM, public=True),
]


def body_rule(path: str) -> BodyRule:
    """The rule of a request path: the table's first match, else the API's or the console's default."""
    for rule in BODY_RULES:
        if rule.path.fullmatch(path):
            return rule
    if path.startswith(API_PREFIXES):
        return BodyRule(re.compile(re.escape(path)), JSON)
    return BodyRule(re.compile(re.escape(path)), FORM, public=True)


def body_cap(rule: BodyRule, settings: Settings, content_type: str) -> int:
    """The most bytes a request's body may have under ``rule``."""
    multipart = content_type.lower().startswith("multipart/form-data")
    if rule.kind == FORM:
        return FORM_BODY_BYTES
    if rule.kind == SELF_REPORT:
        from seawall.selfreport.schemas import BODY_BYTES

        return BODY_BYTES
    if rule.kind == UPLOAD and multipart:
        return settings.max_file_bytes + MULTIPART_ENVELOPE
    if rule.kind == IMPORT:
        return settings.max_import_bytes
    if rule.kind == BULK:
        return settings.max_bulk_body_bytes
    return settings.max_body_bytes


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes its cap: an HTTPException, so the route's own error
    handling answers (FastAPI turns any other error while parsing a body into a 400)."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, f"the request body is over this route's {cap}-byte limit", {"connection": "close"})


class BodyLimits:
    """Caps request bodies per route and refuses anonymous API bodies before reading them (see the
    module's table)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # (the server refuses conflicting Content-Length headers itself)
        declared = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if not chunked and (declared is None or declared == b"0"):  # no body: most requests, at no cost
            await self.app(scope, receive, send)
            return
        if declared is not None and (not declared.isdigit() or len(declared) > 18):
            await _answer(scope, receive, send, 400, "invalid Content-Length header")
            return
        length = int(declared) if declared is not None else None
        rule = body_rule(scope["path"])
        if not rule.public and (chunked or (length or 0) > 0):
            refusal = await _credential_refusal(scope)
            if refusal is not None:
                await _answer(scope, receive, send, 401, refusal, {"www-authenticate": "Bearer"})
                return
        settings: Settings = scope["app"].state.settings
        cap = body_cap(rule, settings, headers.get(b"content-type", b"").decode("latin-1"))
        if length is not None and length > cap:
            await _answer(scope, receive, send, 413, BodyTooLarge(cap).detail)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if received > cap:  # refused already: never read further
                raise BodyTooLarge(cap)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message

        response_started = False

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as exc:  # read outside a route's error handling (another middleware)
            if response_started:
                raise
            await _answer(scope, receive, send, 413, exc.detail)


async def _credential_refusal(scope: Scope) -> str | None:
    """Why the request has no valid credential, or None when it has one. A bearer key is checked as
    the route will check it (the key cache first, then one read in the thread pool, which the route
    then finds cached); a session cookie must name a live session (the route checks its CSRF token)."""
    from seawall.web.deps import bearer_secret

    request = Request(scope)
    header = request.headers.get("authorization")
    if header:
        secret = bearer_secret(header)
        if secret is None:
            return "use 'Authorization: Bearer <API key>'"
        if auth_service.cached_api_key_principal(secret) is not None:
            return None
        try:
            await run_in_threadpool(auth_service.api_key_principal, scope["app"].state.read_sessionmaker, secret)
        except auth_service.AuthError as exc:
            return exc.reason
        return None
    token = request.cookies.get(SESSION_COOKIE)
    if token is not None:
        live: bool = await run_in_threadpool(_live_session, scope, token)
        if live:
            return None
    return "authentication required"


def _live_session(scope: Scope, token: str) -> bool:
    with scope["app"].state.read_sessionmaker() as db:
        return auth_service.console_session_user(db, token) is not None


async def _answer(
    scope: Scope, receive: Receive, send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    """An answer given instead of the app's, in the shape of the path's API; the connection is closed
    so whatever body the client still sends is never read."""
    all_headers = {**(headers or {}), "connection": "close"}
    response: Response
    path: str = scope["path"]
    if path.startswith(HMA_PREFIXES):
        response = JSONResponse({"message": message}, status_code=status, headers=all_headers)
    elif path.startswith(API_PREFIXES):
        response = JSONResponse({"detail": message}, status_code=status, headers=all_headers)
    else:
        response = _page_answer(scope, status, message, all_headers)
    await response(scope, receive, send)


def _page_answer(scope: Scope, status: int, message: str, headers: dict[str, Any]) -> Response:
    from seawall.web.app import error_response

    response = error_response(Request(scope), status, message)
    response.headers.update(headers)
    return response
