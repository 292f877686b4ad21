"""Every route of the app, declared here, asked by every kind of caller.

The table below names each route's rule. The route list comes from the app itself, so a route
added without a rule here fails ``test_every_route_has_a_declared_rule``; each rule is also checked
against the permission the route declares in code. Then every route is called by: nobody, a
revoked key, a key without the scope, a key limited to some lists, a key with every scope, and a
console user of each role — and answers what its rule says. A list-limited key is refused the
other tenant's lists as if they did not exist, and no answer it gets mentions them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.permissions import ROLE_SCOPES, SCOPES, SYSTEM, Role
from seawall.config import Settings
from seawall.lists import service as lists_service
from seawall.lists.exchanges import service as exchanges_service
from seawall.lists.models import Entry, HashList
from seawall.lists.records import EntryRecord
from seawall.matching import policies
from seawall.matching.models import EntryQuarantine
from seawall.scan.models import ScanRun

PASSWORD = "route matrix password"
MINE_PDQ = hashlib.sha256(b"benign meadow").hexdigest()
THEIR_PDQ = hashlib.sha256(b"benign lighthouse").hexdigest()
THEIR_MD5 = hashlib.md5(b"benign lighthouse file").hexdigest()
MINE_MD5 = hashlib.md5(b"benign meadow file").hexdigest()
NEAR_THEIRS = f"{int(THEIR_PDQ, 16) ^ 0b111:064x}"  # 3 bits away: theirs would match it
UNSAFE_URL = "http://127.0.0.1:9/x.jpg"  # refused by the fetcher: never leaves the machine

PUBLIC = "public"  # anyone, no credential needed
FORM = "form"  # a console form: refused (403) without its CSRF token, whoever asks


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


@dataclass
class World:
    """What the routes act on: two tenants' lists, an exchange each, a quarantined entry of theirs."""

    tmp: Path
    mine_entry: int = 0
    their_entry: int = 0
    their_uid: str = ""
    mine_scan: int = 0  # a scan run confined to "mine", and one to "theirs"
    their_scan: int = 0
    scratch: Callable[[], int] = lambda: 0  # (re)creates the scratch list; its entry id
    drop: Callable[[str], None] = lambda name: None  # deletes a list if it exists

    def sentinels(self) -> list[str]:
        """Strings only the other tenant's data contains."""
        return ["theirs", THEIR_PDQ, THEIR_MD5, self.their_uid]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the route's template, as the app declares it
    need: str  # a scope, "console:<scope>", PUBLIC or FORM
    call: Callable[[World], dict[str, Any]]  # request arguments (url, json, files, params, data)
    theirs: Callable[[World], dict[str, Any]] | None = None  # the same naming the other tenant's list
    limited_answer: tuple[int, ...] = (404,)  # what a list-limited key gets for ``theirs``
    destructive: bool = False  # acts on the scratch list, recreated before each call
    setup: Callable[[World], None] | None = None  # run before each call


def _url(path: str, **kw: Any) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"url": path.format(w=w), **kw}


def _url_fn(fn: Callable[[World], str], **kw: Any) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"url": fn(w), **kw}


CSV = f"signal_type,value\nmd5,{MINE_MD5}\n".encode()
_BANKS = itertools.count(1)  # a new bank name for each exchange an allowed caller creates

ROUTES: list[Route] = [
    # health, documentation, static files, login
    Route("GET", "/healthz", PUBLIC, _url("/healthz")),
    Route("GET", "/readyz", "readiness", _url("/readyz")),
    Route("GET", "/metrics", "ops", _url("/metrics")),
    Route("GET", "/openapi.json", PUBLIC, _url("/openapi.json")),
    Route("GET", "/docs", PUBLIC, _url("/docs")),
    Route("MOUNT", "/docs/assets", PUBLIC, _url("/docs/assets/swagger-ui.css")),
    Route("MOUNT", "/static", PUBLIC, _url("/static/seawall.css")),
    Route("GET", "/status", PUBLIC, _url("/status")),
    Route("GET", "/login", PUBLIC, _url("/login")),
    Route("POST", "/login", FORM, _url("/login", data={"username": "x", "password": "y"})),
    Route("POST", "/logout", FORM, _url("/logout", data={})),
    # console pages
    Route("GET", "/", "console:console", _url("/")),
    Route("GET", "/lists", "console:lists:read", _url("/lists")),
    Route("GET", "/lists/{name}", "console:lists:read", _url("/lists/mine")),
    # operator pages (tests/console/test_operator_pages.py checks every role on each)
    Route("GET", "/lists/{name}/export", "console:lists:read", _url("/lists/mine/export")),
    Route("GET", "/quarantine", "console:lists:read", _url("/quarantine")),
    Route("GET", "/exchanges", "console:lists:write", _url("/exchanges")),
    Route("GET", "/policies", "console:admin", _url("/policies")),
    Route("GET", "/webhooks", "console:admin", _url("/webhooks")),
    Route("GET", "/search", "console:lists:read", _url("/search", params={"q": NEAR_THEIRS})),
    Route("GET", "/cases", "console:reports:read", _url("/cases", params={"q": "https://forum.example/t/1"})),
    Route("GET", "/cases/{reference}", "console:reports:read", _url("/cases/C-00000-00000")),
    Route("GET", "/admin/users", "console:admin", _url("/admin/users")),
    Route("GET", "/admin/keys", "console:admin", _url("/admin/keys")),
    Route("GET", "/admin/settings", "console:admin", _url("/admin/settings")),
    Route("GET", "/audit", "console:audit:read", _url("/audit")),
    # operator forms: refused without their CSRF token, whoever sends them (no body: a body from
    # nobody on the import route is refused before it is read, see test_bounded_requests)
    Route("POST", "/lists/{name}/entries", FORM, _url("/lists/mine/entries", data={"values": MINE_MD5})),
    Route("POST", "/lists/{name}/status", FORM, _url("/lists/mine/status", data={"status": "retracted"})),
    Route(
        "POST",
        "/lists/{name}/entries/{entry_id}/opinions",
        FORM,
        _url("/lists/mine/entries/{w.mine_entry}/opinions", data={"verdict": "false_positive"}),
    ),
    Route("POST", "/lists/{name}/import", FORM, _url("/lists/mine/import")),
    Route("POST", "/quarantine/{entry_id}/release", FORM, _url("/quarantine/{w.their_entry}/release", data={})),
    Route("POST", "/exchanges/{name}/sync", FORM, _url("/exchanges/mine-feed/sync", data={})),
    Route(
        "POST", "/webhooks/deliveries/{delivery_id}/redeliver", FORM, _url("/webhooks/deliveries/1/redeliver", data={})
    ),
    Route("POST", "/admin/users", FORM, _url("/admin/users", data={"username": "sneaky", "role": "admin"})),
    Route("POST", "/admin/users/{username}/{action}", FORM, _url("/admin/users/scratch-user/disable", data={})),
    Route("POST", "/admin/keys", FORM, _url("/admin/keys", data={"name": "sneaky", "scope": "admin"})),
    Route("POST", "/admin/keys/{name}/revoke", FORM, _url("/admin/keys/scratch-key/revoke", data={})),
    Route("POST", "/audit/verify", FORM, _url("/audit/verify", data={})),
    # who am I, admin, audit
    Route("GET", "/v1/me", "any", _url("/v1/me")),
    Route("GET", "/v1/admin/users", "admin", _url("/v1/admin/users")),
    Route("POST", "/v1/admin/users", "admin", _url("/v1/admin/users", json={"username": "newbie", "role": "analyst"})),
    Route("POST", "/v1/admin/users/{username}/disable", "admin", _url("/v1/admin/users/scratch-user/disable")),
    Route("GET", "/v1/admin/keys", "admin", _url("/v1/admin/keys")),
    Route("POST", "/v1/admin/keys", "admin", _url("/v1/admin/keys", json={"name": "new-key", "scopes": ["match"]})),
    Route("DELETE", "/v1/admin/keys/{name}", "admin", _url("/v1/admin/keys/scratch-key")),
    Route("GET", "/v1/audit/verify", "audit:read", _url("/v1/audit/verify")),
    # scan runs
    Route("GET", "/v1/scans", "ops", _url("/v1/scans")),
    Route(
        "GET",
        "/v1/scans/{run_id}",
        "ops",
        _url_fn(lambda w: f"/v1/scans/{w.mine_scan}"),
        theirs=_url_fn(lambda w: f"/v1/scans/{w.their_scan}"),
    ),
    # lists
    Route("GET", "/v1/lists", "lists:read", _url("/v1/lists")),
    Route(
        "POST",
        "/v1/lists",
        "lists:write",
        _url("/v1/lists", json={"name": "scratch", "kind": "hash"}),
        theirs=_url("/v1/lists", json={"name": "theirs", "kind": "hash"}),
        limited_answer=(403,),
    ),
    Route("GET", "/v1/lists/{name}", "lists:read", _url("/v1/lists/mine"), theirs=_url("/v1/lists/theirs")),
    Route(
        "PATCH",
        "/v1/lists/{name}",
        "lists:write",
        _url("/v1/lists/mine", json={"description": "ours"}),
        theirs=_url("/v1/lists/theirs", json={"description": "taken over"}),
    ),
    Route(
        "DELETE",
        "/v1/lists/{name}",
        "lists:write",
        _url("/v1/lists/scratch"),
        theirs=_url("/v1/lists/theirs"),
        destructive=True,
    ),
    Route(
        "GET",
        "/v1/lists/{name}/entries",
        "lists:read",
        _url("/v1/lists/mine/entries"),
        theirs=_url("/v1/lists/theirs/entries"),
    ),
    Route(
        "POST",
        "/v1/lists/{name}/entries",
        "lists:write",
        _url("/v1/lists/mine/entries", json={"entries": [{"signal_type": "md5", "value": MINE_MD5}]}),
        theirs=_url("/v1/lists/theirs/entries", json={"entries": [{"signal_type": "md5", "value": MINE_MD5}]}),
    ),
    Route(
        "GET",
        "/v1/lists/{name}/entries/{entry_id}",
        "lists:read",
        _url("/v1/lists/mine/entries/{w.mine_entry}"),
        theirs=_url("/v1/lists/theirs/entries/{w.their_entry}"),
    ),
    Route(
        "POST",
        "/v1/lists/{name}/entries/status",
        "lists:write",
        _url("/v1/lists/mine/entries/status", json={"values": [MINE_PDQ], "signal_type": "pdq", "status": "active"}),
        theirs=_url("/v1/lists/theirs/entries/status", json={"values": [THEIR_MD5], "status": "retracted"}),
    ),
    Route(
        "POST",
        "/v1/lists/{name}/entries/{entry_id}/opinions",
        "lists:write",
        _url("/v1/lists/mine/entries/{w.mine_entry}/opinions", json={"verdict": "true_positive"}),
        theirs=_url("/v1/lists/theirs/entries/{w.their_entry}/opinions", json={"verdict": "false_positive"}),
    ),
    Route(
        "GET", "/v1/lists/{name}/feed", "lists:read", _url("/v1/lists/mine/feed"), theirs=_url("/v1/lists/theirs/feed")
    ),
    Route(
        "POST",
        "/v1/lists/{name}/import",
        "lists:write",
        _url("/v1/lists/mine/import", files={"file": ("a.csv", CSV)}),
        theirs=_url("/v1/lists/theirs/import", files={"file": ("a.csv", CSV)}),
    ),
    Route(
        "GET",
        "/v1/lists/{name}/export",
        "lists:read",
        _url("/v1/lists/mine/export"),
        theirs=_url("/v1/lists/theirs/export"),
    ),
    # exchanges
    Route("GET", "/v1/exchanges", "lists:write", _url("/v1/exchanges")),
    Route(
        "POST",
        "/v1/exchanges",
        "admin",
        _url_fn(
            lambda w: "/v1/exchanges",
            json={"name": "new-feed", "type": "file", "list": "mine", "config": {"location": "/nonexistent.csv"}},
        ),
    ),
    Route(
        "GET",
        "/v1/exchanges/{name}",
        "lists:write",
        _url("/v1/exchanges/mine-feed"),
        theirs=_url("/v1/exchanges/theirs-feed"),
    ),
    Route("PATCH", "/v1/exchanges/{name}", "admin", _url("/v1/exchanges/mine-feed", json={"interval_minutes": 30})),
    Route(
        "POST",
        "/v1/exchanges/{name}/sync",
        "lists:write",
        _url("/v1/exchanges/mine-feed/sync"),
        theirs=_url("/v1/exchanges/theirs-feed/sync"),
    ),
    # hashing and matching
    Route("POST", "/v1/hash", "hash", _url("/v1/hash", files={"file": ("p.png", PNG, "image/png")})),
    Route(
        "POST",
        "/v1/match",
        "match",
        _url("/v1/match", json={"signals": [{"signal_type": "pdq", "value": NEAR_THEIRS}]}),
    ),
    Route("GET", "/v1/match", "match", _url("/v1/match", params={"signal_type": "pdq", "value": NEAR_THEIRS})),
    Route(
        "POST",
        "/v1/match/batch",
        "match",
        _url("/v1/match/batch", json={"signals": [{"signal_type": "pdq", "value": NEAR_THEIRS}]}),
    ),
    Route("POST", "/v1/match/url", "match", _url("/v1/match/url", json={"url": "https://gallery.example/a/b.jpg"})),
    Route("POST", "/v1/match/text", "match", _url("/v1/match/text", json={"text": "a lighthouse keeper"})),
    # policies, webhooks, quarantine
    Route("GET", "/v1/policies", "admin", _url("/v1/policies")),
    Route(
        "PUT",
        "/v1/policies/{name}",
        "admin",
        _url("/v1/policies/scratch", json={"conditions": {}, "actions": [{"type": "review"}], "shadow": True}),
    ),
    Route("DELETE", "/v1/policies/{name}", "admin", _url("/v1/policies/no-such-policy")),
    Route("GET", "/v1/webhooks", "admin", _url("/v1/webhooks")),
    Route(
        "POST", "/v1/webhooks", "admin", _url("/v1/webhooks", json={"name": "hook", "url": "https://hooks.example/x"})
    ),
    Route("GET", "/v1/webhooks/deliveries", "admin", _url("/v1/webhooks/deliveries")),
    Route(
        "POST",
        "/v1/webhooks/deliveries/{delivery_id}/redeliver",
        "admin",
        _url("/v1/webhooks/deliveries/999999/redeliver"),
    ),
    Route("GET", "/v1/quarantine", "lists:read", _url("/v1/quarantine")),
    Route("POST", "/v1/quarantine/{entry_id}/release", "admin", _url("/v1/quarantine/999999/release")),
    Route("POST", "/v1/quarantine/{entry_id}/everyone", "admin", _url("/v1/quarantine/{w.their_entry}/everyone")),
    # HMA-compatible
    Route("GET", "/h/hash", "hash", _url("/h/hash", params={"url": UNSAFE_URL})),
    Route("POST", "/h/hash", "hash", _url("/h/hash", files={"photo": ("p.png", PNG, "image/png")})),
    Route("GET", "/m/raw_lookup", "match", _url("/m/raw_lookup", params={"signal_type": "pdq", "signal": NEAR_THEIRS})),
    Route("GET", "/m/lookup", "match", _url("/m/lookup", params={"signal_type": "pdq", "signal": NEAR_THEIRS})),
    Route("POST", "/m/lookup", "match", _url("/m/lookup", files={"photo": ("p.png", PNG, "image/png")})),
    Route("POST", "/m/compare", "match", _url("/m/compare", json={"pdq": [MINE_PDQ, THEIR_PDQ]})),
    Route("GET", "/m/index/status", "match", _url("/m/index/status")),
    Route("GET", "/c/banks", "lists:read", _url("/c/banks")),
    Route(
        "POST",
        "/c/banks",
        "lists:write",
        _url("/c/banks", json={"name": "SCRATCH_BANK"}),
        setup=lambda w: w.drop("SCRATCH_BANK"),
    ),
    Route("GET", "/c/bank/{bank_name}", "lists:read", _url("/c/bank/mine"), theirs=_url("/c/bank/theirs")),
    Route(
        "PUT",
        "/c/bank/{bank_name}",
        "lists:write",
        _url("/c/bank/mine", json={}),
        theirs=_url("/c/bank/theirs", json={}),
    ),
    # HMA answers "Done" for a bank it does not have; theirs must still be there afterwards.
    Route(
        "DELETE",
        "/c/bank/{bank_name}",
        "lists:write",
        _url("/c/bank/scratch"),
        theirs=_url("/c/bank/theirs"),
        limited_answer=(200,),
        destructive=True,
    ),
    Route(
        "GET",
        "/c/bank/{bank_name}/content/{content_id}",
        "lists:read",
        _url("/c/bank/mine/content/{w.mine_entry}"),
        theirs=_url("/c/bank/theirs/content/{w.their_entry}"),
    ),
    Route(
        "POST",
        "/c/bank/{bank_name}/content",
        "lists:write",
        _url("/c/bank/mine/content", files={"photo": ("p.png", PNG, "image/png")}),
        theirs=_url("/c/bank/theirs/content", files={"photo": ("p.png", PNG, "image/png")}),
    ),
    Route(
        "POST",
        "/c/bank/{bank_name}/signal",
        "lists:write",
        _url("/c/bank/mine/signal", json={"pdq": MINE_PDQ}),
        theirs=_url("/c/bank/theirs/signal", json={"pdq": MINE_PDQ}),
    ),
    Route(
        "PUT",
        "/c/bank/{bank_name}/content/{content_id}",
        "lists:write",
        _url("/c/bank/mine/content/{w.mine_entry}", json={}),
        theirs=_url("/c/bank/theirs/content/{w.their_entry}", json={"disable_until_ts": 0}),
    ),
    Route(
        "DELETE",
        "/c/bank/{bank_name}/content/{content_id}",
        "lists:write",
        _url_fn(lambda w: f"/c/bank/scratch/content/{w.scratch()}"),
        theirs=_url("/c/bank/theirs/content/{w.their_entry}"),
        limited_answer=(404,),
        destructive=True,
    ),
    Route("GET", "/c/signal_type", "lists:read", _url("/c/signal_type")),
    # the hotline: intake
    Route("GET", "/report", PUBLIC, _url("/report")),
    Route("POST", "/report", FORM, _url("/report", data={"url": "https://forum.example/t/1"})),
    Route("GET", "/report/status", PUBLIC, _url("/report/status")),
    Route("POST", "/report/status", FORM, _url("/report/status", data={"reference": "R-1", "pin": "1"})),
    Route("GET", "/self-report", PUBLIC, _url("/self-report")),
    Route(
        "POST",
        "/self-report/submit",
        FORM,
        _url("/self-report/submit", json={"files": [{"md5": MINE_MD5, "sha256": MINE_PDQ}], "consent": True}),
    ),
    Route("GET", "/self-report/status", PUBLIC, _url("/self-report/status")),
    Route("POST", "/self-report/status", FORM, _url("/self-report/status", data={"reference": "R-1", "pin": "1"})),
    Route("GET", "/self-report/withdraw", PUBLIC, _url("/self-report/withdraw")),
    Route("POST", "/self-report/withdraw", FORM, _url("/self-report/withdraw", data={"reference": "R-1", "pin": "1"})),
    Route("POST", "/v1/reports", "reports:write", _url("/v1/reports", json={"url": "https://forum.example/t/2"})),
    Route(
        "POST",
        "/v1/reports/batch",
        "reports:write",
        _url("/v1/reports/batch", json={"reports": [{"url": "https://forum.example/t/3"}]}),
    ),
    Route("GET", "/v1/reports/{reference}", "reports:write", _url("/v1/reports/R-00000-00000")),
    # the hotline: referrals (a document from a key that is no partner's is refused with 422)
    Route("POST", "/v1/referrals", "referrals:write", _url("/v1/referrals", json={"document": {}, "signature": ""})),
    Route(
        "POST",
        "/v1/referrals/{uid}/status",
        "referrals:write",
        _url("/v1/referrals/00000000-0000-0000-0000-000000000000/status", json={"document": {}, "signature": ""}),
    ),
    Route("GET", "/v1/referrals", "reports:read", _url("/v1/referrals")),
    Route("GET", "/v1/referrals/key", "admin", _url("/v1/referrals/key")),
    Route("GET", "/v1/partners", "admin", _url("/v1/partners")),
    Route("POST", "/v1/partners", "admin", _url("/v1/partners", json={"name": "matrix-partner", "country": "NL"})),
    Route("GET", "/v1/partners/{name}", "admin", _url("/v1/partners/no-such-partner")),
    Route("PATCH", "/v1/partners/{name}", "admin", _url("/v1/partners/no-such-partner", json={"enabled": False})),
    Route("DELETE", "/v1/partners/{name}", "admin", _url("/v1/partners/no-such-partner")),
    # the hotline: assessment and QA
    Route(
        "POST",
        "/v1/items/{item_id}/assessment",
        "review",
        _url("/v1/items/999999/assessment", json={"version": 1, "outcome": "not_csam"}),
    ),
    Route(
        "POST",
        "/v1/cases/{reference}/assessment",
        "review",
        _url("/v1/cases/C-00000-00000/assessment", json={"version": 1, "outcome": "not_csam"}),
    ),
    Route(
        "POST",
        "/v1/reports/{reference}/assessment",
        "review",
        _url("/v1/reports/R-00000-00000/assessment", json={"version": 1, "outcome": "not_csam"}),
    ),
    Route(
        "POST",
        "/v1/assessments/{assessment_id}/qa",
        "qa",
        _url("/v1/assessments/999999/qa", json={"decision": "confirm"}),
    ),
    Route("GET", "/v1/cases/{reference}", "reports:read", _url("/v1/cases/C-00000-00000")),
    Route("GET", "/v1/assessments", "reports:read", _url("/v1/assessments", params={"state": "submitted"})),
    Route("GET", "/c/content_type", "lists:read", _url("/c/content_type")),
    # HMA: liveness, its OpenAPI document, and its exchanges API over Seawall's exchanges
    Route("GET", "/status/live", PUBLIC, _url("/status/live")),
    Route("GET", "/openapi/openapi.json", PUBLIC, _url("/openapi/openapi.json")),
    Route("GET", "/c/signal_type/index", "lists:read", _url("/c/signal_type/index")),
    Route("GET", "/c/exchanges/apis", "lists:read", _url("/c/exchanges/apis")),
    Route("GET", "/c/exchanges/api/{api_name}", "lists:read", _url("/c/exchanges/api/file")),
    Route("POST", "/c/exchanges/api/{api_name}", "admin", _url("/c/exchanges/api/file", json={})),
    Route("GET", "/c/exchanges/api/{api_name}/schema", "lists:read", _url("/c/exchanges/api/ncmec/schema")),
    Route("GET", "/c/exchanges", "lists:write", _url("/c/exchanges")),
    Route(
        "POST",
        "/c/exchanges",
        "admin",
        lambda w: {"url": "/c/exchanges", "json": {"bank": f"HMA_SAMPLE_{next(_BANKS)}", "api": "sample"}},
    ),
    Route(
        "GET",
        "/c/exchange/{exchange_name}",
        "lists:write",
        _url("/c/exchange/mine-feed"),
        theirs=_url("/c/exchange/theirs-feed"),
    ),
    Route(
        "GET",
        "/c/exchange/{exchange_name}/status",
        "lists:write",
        _url("/c/exchange/mine-feed/status"),
        theirs=_url("/c/exchange/theirs-feed/status"),
    ),
    Route("PUT", "/c/exchange/{exchange_name}", "admin", _url("/c/exchange/mine-feed", json={"enabled": True})),
    Route("DELETE", "/c/exchange/{exchange_name}", "admin", _url("/c/exchange/NO_SUCH_EXCHANGE")),
    Route(
        "GET",
        "/c/exchange/{exchange_name}/credentials",
        "lists:write",
        _url("/c/exchange/mine-feed/credentials"),
        theirs=_url("/c/exchange/theirs-feed/credentials"),
    ),
    Route(
        "POST",
        "/c/exchange/{exchange_name}/credentials",
        "admin",
        _url("/c/exchange/mine-feed/credentials", json={"credential_json": None}),
    ),
    # the hotline: notices to hosts (analysts read, senior analysts act)
    Route("GET", "/v1/notices", "reports:read", _url("/v1/notices", params={"state": "sent"})),
    Route("GET", "/v1/notices/{notice_id}", "reports:read", _url("/v1/notices/999999")),
    Route("POST", "/v1/notices/{notice_id}/recheck", "qa", _url("/v1/notices/999999/recheck")),
    Route("POST", "/v1/notices/{notice_id}/close", "qa", _url("/v1/notices/999999/close", json={})),
    # the hotline: tracing (the abuse-contact directory)
    Route("GET", "/v1/hosts", "admin", _url("/v1/hosts")),
    Route("GET", "/v1/hosts/{host_id}", "admin", _url("/v1/hosts/1")),
    # authority reports (drafts, submission, the NCA pack), stored credentials, legal holds
    Route("GET", "/v1/authority-reports", "reports:read", _url("/v1/authority-reports")),
    Route(
        "POST",
        "/v1/authority-reports",
        "reports:write",
        _url("/v1/authority-reports", json={"external_id": "matrix-1", "files": [{"md5": MINE_MD5}]}),
    ),
    Route("GET", "/v1/authority-reports/{reference}", "reports:read", _url("/v1/authority-reports/AR-0000000000")),
    Route(
        "POST",
        "/v1/authority-reports/{reference}/facts",
        "reports:write",
        _url("/v1/authority-reports/AR-0000000000/facts", json={"priority": 2}),
    ),
    Route("POST", "/v1/authority-reports/{reference}/submit", "qa", _url("/v1/authority-reports/AR-0000000000/submit")),
    Route(
        "POST", "/v1/authority-reports/{reference}/retract", "qa", _url("/v1/authority-reports/AR-0000000000/retract")
    ),
    Route("POST", "/v1/authority-reports/{reference}/cancel", "qa", _url("/v1/authority-reports/AR-0000000000/cancel")),
    Route(
        "GET", "/v1/authority-reports/{reference}/nca-pack", "qa", _url("/v1/authority-reports/AR-0000000000/nca-pack")
    ),
    Route(
        "PUT",
        "/v1/authority-credentials/{authority}",
        "admin",
        _url("/v1/authority-credentials/ncmec", json={"username": "matrix", "password": "matrix-password"}),
    ),
    Route("GET", "/authority-reports", "console:reports:read", _url("/authority-reports")),
    Route("GET", "/authority-reports/{reference}", "console:reports:read", _url("/authority-reports/AR-0000000000")),
    Route(
        "POST", "/authority-reports/{reference}/submit", FORM, _url("/authority-reports/AR-0000000000/submit", data={})
    ),
    Route(
        "POST",
        "/authority-reports/{reference}/retract",
        FORM,
        _url("/authority-reports/AR-0000000000/retract", data={}),
    ),
    Route(
        "POST", "/authority-reports/{reference}/cancel", FORM, _url("/authority-reports/AR-0000000000/cancel", data={})
    ),
    Route("GET", "/v1/legal-holds", "admin", _url("/v1/legal-holds")),
    Route("POST", "/v1/legal-holds", "admin", _url("/v1/legal-holds", json={"case": "C-00000-00000", "reason": "x"})),
    Route("POST", "/v1/legal-holds/{hold_id}/release", "admin", _url("/v1/legal-holds/999999/release")),
    # statistics (aggregates only; a list-limited key counts matches to its own lists)
    Route("GET", "/v1/stats", "stats:read", _url("/v1/stats", params={"measure": "matches", "by": "year,list"})),
    Route("GET", "/stats", "console:stats:read", _url("/stats")),
    Route("GET", "/stats/report", "console:stats:read", _url("/stats/report", params={"year": 2022})),
    Route("GET", "/public/stats/report", PUBLIC, _url("/public/stats/report")),  # 404 unless published
    # the review console (issue #13): queues, items, reveals, QA, wellbeing
    Route("GET", "/review", "console:review", _url("/review")),
    Route("POST", "/review/next", "console:review", _url("/review/next", data={})),
    Route("GET", "/review/break", "console:review", _url("/review/break")),
    Route("GET", "/review/preferences", "console:review", _url("/review/preferences")),
    Route("POST", "/review/preferences", "console:review", _url("/review/preferences", data={"blur": "4"})),
    Route("GET", "/review/team", "console:qa", _url("/review/team")),
    Route("POST", "/review/{kind}/{subject_id}/claim", "console:review", _url("/review/items/999999/claim", data={})),
    Route(
        "POST", "/review/{kind}/{subject_id}/release", "console:review", _url("/review/items/999999/release", data={})
    ),
    Route(
        "POST",
        "/review/{kind}/{subject_id}/skip",
        "console:review",
        _url("/review/items/999999/skip", data={"reason": "not mine"}),
    ),
    Route("GET", "/review/items/{item_id}", "console:review", _url("/review/items/999999")),
    Route("GET", "/review/items/{item_id}/thumbnail", "console:review", _url("/review/items/999999/thumbnail")),
    Route(
        "POST",
        "/review/items/{item_id}/grade",
        "console:review",
        _url("/review/items/999999/grade", data={"version": "1", "outcome": "not_csam"}),
    ),
    Route("POST", "/review/items/{item_id}/reveal", "console:reveal", _url("/review/items/999999/reveal", data={})),
    Route("GET", "/review/reveals/{token}", "console:reveal", _url("/review/reveals/not-a-reveal")),
    Route("POST", "/review/reveals/{reveal_id}/end", "console:reveal", _url("/review/reveals/999999/end", data={})),
    Route("GET", "/review/cases/{case_id}", "console:review", _url("/review/cases/999999")),
    Route(
        "POST",
        "/review/cases/{case_id}/grade",
        "console:review",
        _url("/review/cases/999999/grade", data={"version": "1", "outcome": "not_csam"}),
    ),
    Route("GET", "/qa", "console:qa", _url("/qa")),
    Route("GET", "/qa/{assessment_id}", "console:qa", _url("/qa/999999")),
    Route("POST", "/qa/{assessment_id}", "console:qa", _url("/qa/999999", data={"decision": "confirm"})),
]


def _key_of(route: Route) -> tuple[str, str]:
    return route.method, route.path


def _app_routes(app: Any) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for context in iter_route_contexts(app.routes):
        methods = sorted((context.methods or {"MOUNT"}) - {"HEAD"})
        for method in methods:
            found[method, context.path] = context.original_route
    return found


def _declared_scopes(route: Any) -> set[str]:
    """What a route requires in code: the scope of each ``require(...)`` / ``console_require(...)``."""
    out: set[str] = set()
    if not isinstance(route, APIRoute):
        return out

    def walk(dependant: Any) -> None:
        for sub in dependant.dependencies:
            name = getattr(sub.call, "__name__", "")
            if name.startswith("require_"):
                out.add(name.removeprefix("require_").replace("_", ":", 1))
            if name == "ops_principal":  # /readyz: anyone, details for 'ops'
                out.add("public+ops")
            closure = getattr(sub.call, "__closure__", None) or ()
            if name == "dependency" and closure:  # console_require(scope)'s inner function
                out.update(f"console:{c.cell_contents}" for c in closure if isinstance(c.cell_contents, str))
            if name == "console_user":
                out.add("console:console")
            walk(sub)

    walk(route.dependant)
    return out


def test_every_route_has_a_declared_rule(app: Any) -> None:
    declared = {_key_of(r): r for r in ROUTES}
    assert len(declared) == len(ROUTES), "a route is declared twice"
    actual = _app_routes(app)
    assert sorted(set(actual) - set(declared)) == [], "routes without a rule in this table"
    assert sorted(set(declared) - set(actual)) == [], "rules for routes that no longer exist"
    for key, route in declared.items():
        in_code = _declared_scopes(actual[key])
        if route.need.startswith("console:"):
            assert route.need in in_code or (route.need == "console:console" and "console:console" in in_code), key
        elif route.need == "readiness":
            assert in_code == {"public+ops"}, (key, in_code)
        elif route.need in (PUBLIC, FORM, "any"):
            assert not {s for s in in_code if not s.startswith("console:") and s != "public+ops"}, (key, in_code)
        else:
            assert route.need in in_code, (key, in_code)


# ---- the callers ----------------------------------------------------------------------------


@dataclass
class Caller:
    name: str
    client: TestClient
    headers: dict[str, str] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset()
    authenticated: bool = False
    limited: bool = False
    user: bool = False  # a console session


def _key(db: Session, name: str, scopes: list[str], lists: list[str] | None = None) -> str:
    return auth_service.create_api_key(db, SYSTEM, name=name, scopes=scopes, lists=lists).secret


def _session_client(app: Any, username: str) -> tuple[TestClient, str]:
    browser = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    page = browser.get("/login", headers={"accept": "text/html"})
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token
    answer = browser.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    page = browser.get("/login", headers={"accept": "text/html"})  # the token bound to the session now
    meta = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert meta
    return browser, meta.group(1)


@pytest.fixture
def world(client: TestClient, db: Session, settings: Settings, tmp_path: Path) -> World:
    mine = lists_service.create_list(db, SYSTEM, name="mine", kind="hash")
    theirs = lists_service.create_list(db, SYSTEM, name="theirs", kind="hash")
    lists_service.add_entries(db, SYSTEM, mine, [EntryRecord("pdq", MINE_PDQ)])
    lists_service.add_entries(db, SYSTEM, theirs, [EntryRecord("pdq", THEIR_PDQ), EntryRecord("md5", THEIR_MD5)])
    policies.upsert_policy(db, SYSTEM, name="block", conditions={}, actions=[{"type": "block"}])
    source = tmp_path / "feed.csv"
    source.write_bytes(CSV)
    for name, target in (("mine-feed", "mine"), ("theirs-feed", "theirs")):
        exchanges_service.create_exchange(
            db, settings, SYSTEM, name=name, type="file", list_name=target, config={"location": str(source)}
        )
    db.commit()
    w = World(tmp=tmp_path, their_uid=theirs.uid)
    w.mine_entry = lists_service.find_entries(db, mine, MINE_PDQ, "pdq")[0].id
    w.their_entry = lists_service.find_entries(db, theirs, THEIR_PDQ, "pdq")[0].id
    for name in ("mine", "theirs"):
        run = ScanRun(principal="cli:operator", sources=[f"/srv/{name}"], options={"lists": [name]}, state="finished")
        db.add(run)
        db.flush()
        setattr(w, "mine_scan" if name == "mine" else "their_scan", run.id)
    db.add(EntryQuarantine(entry_id=w.their_entry, reason="a spike", callers=["key:someone"], everyone=False))
    for role in Role:
        auth_service.create_user(db, SYSTEM, username=f"user-{role.value}", role=role.value, password=PASSWORD)
    auth_service.create_user(db, SYSTEM, username="scratch-user", role="analyst", password=PASSWORD)
    _key(db, "scratch-key", ["match"])
    db.commit()

    def scratch() -> int:
        """The scratch list and one entry in it, made again if a destructive call removed them."""
        with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            try:
                hl = lists_service.get_list(session, "scratch")
            except lists_service.ListNotFound:
                hl = lists_service.create_list(session, SYSTEM, name="scratch", kind="hash")
            lists_service.add_entries(session, SYSTEM, hl, [EntryRecord("md5", MINE_MD5, status="active")])
            session.commit()
            return lists_service.find_entries(session, hl, MINE_MD5, "md5")[0].id

    def drop(name: str) -> None:
        with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
            try:
                lists_service.delete_list(session, SYSTEM, lists_service.get_list(session, name))
            except lists_service.ListNotFound:
                return
            session.commit()

    w.scratch, w.drop = scratch, drop
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
    return w


@pytest.fixture
def callers(client: TestClient, db: Session, world: World) -> Iterator[list[Caller]]:
    every = sorted(SCOPES)
    revoked = _key(db, "revoked", every)
    auth_service.revoke_api_key(db, SYSTEM, "revoked")
    keys = {
        "hash-only": _key(db, "hash-only", ["hash"]),
        "audit-only": _key(db, "audit-only", ["audit:read"]),
        "limited": _key(db, "limited", [s for s in every if s != "admin"], lists=["mine", "scratch", "SCRATCH_BANK"]),
        "everything": _key(db, "everything", every),
    }
    db.commit()
    app = client.app
    out = [
        Caller("nobody", client),
        Caller("revoked-key", client, {"authorization": f"Bearer {revoked}"}),
        Caller("hash-only-key", client, {"authorization": f"Bearer {keys['hash-only']}"}, frozenset({"hash"}), True),
        Caller(
            "audit-only-key", client, {"authorization": f"Bearer {keys['audit-only']}"}, frozenset({"audit:read"}), True
        ),
        Caller(
            "limited-key",
            client,
            {"authorization": f"Bearer {keys['limited']}"},
            frozenset(every) - {"admin"},
            True,
            limited=True,
        ),
        Caller("full-key", client, {"authorization": f"Bearer {keys['everything']}"}, frozenset(every), True),
    ]
    for role in Role:
        browser, token = _session_client(app, f"user-{role.value}")
        out.append(Caller(f"user-{role.value}", browser, {"x-csrf-token": token}, ROLE_SCOPES[role], True, user=True))
    yield out
    for caller in out:
        if caller.client is not client:
            caller.client.close()


def _expected(route: Route, caller: Caller) -> set[int] | None:
    """The status codes this caller may get (None: any allowed answer, i.e. not 401/403/5xx)."""
    if route.need == PUBLIC:
        return None
    if route.need == "readiness":  # anyone may ask; a credential sent must be good (details for 'ops')
        return {401} if caller.name == "revoked-key" else None
    if route.need == FORM:
        return {403}  # no form token sent
    if route.need.startswith("console:"):
        if not caller.user:
            return {303}  # to the login page
        scope = route.need.removeprefix("console:")
        return None if "console" in caller.scopes and scope in caller.scopes else {403}
    if not caller.authenticated:
        return {401}
    if route.need == "any":
        return None
    return None if route.need in caller.scopes else {403}


def _request(caller: Caller, route: Route, arguments: dict[str, Any]) -> Any:
    arguments = dict(arguments)
    url = arguments.pop("url")
    headers = {"accept": "application/json", **caller.headers}
    return caller.client.request(
        route.method if route.method != "MOUNT" else "GET", url, headers=headers, follow_redirects=False, **arguments
    )


def test_every_route_answers_every_caller_as_its_rule_says(
    client: TestClient, db: Session, world: World, callers: list[Caller]
) -> None:
    problems: list[str] = []
    for route in ROUTES:
        for caller in callers:
            if route.destructive:
                world.scratch()
            if route.setup is not None:
                route.setup(world)
            answer = _request(caller, route, route.call(world))
            expected = _expected(route, caller)
            status = answer.status_code
            if expected is None:
                if status in (401, 403) or status >= 500:
                    problems.append(f"{caller.name} {route.method} {route.path}: {status} {answer.text[:160]}")
            elif status not in expected:
                problems.append(
                    f"{caller.name} {route.method} {route.path}: {status}, expected {sorted(expected)}"
                    f" {answer.text[:160]}"
                )
            if caller.limited and expected is None:
                leaked = [s for s in world.sentinels() if s and s in answer.text]
                if leaked:
                    problems.append(f"{caller.name} {route.method} {route.path}: mentions {leaked}")
            if caller.limited and route.theirs is not None and expected is None:
                other = _request(caller, route, route.theirs(world))
                if other.status_code not in route.limited_answer:
                    problems.append(
                        f"{caller.name} {route.method} {route.path} on theirs: {other.status_code},"
                        f" expected {route.limited_answer} {other.text[:160]}"
                    )
    assert problems == [], "\n".join(problems)
    # Nothing a limited key did reached the other tenant's list.
    db.rollback()
    theirs = db.scalar(select(HashList).where(HashList.uid == world.their_uid))
    assert theirs is not None and (theirs.name, theirs.deleted_at, theirs.enabled) == ("theirs", None, True)
    assert theirs.description == ""
    statuses = db.execute(
        select(Entry.status, func.count()).where(Entry.list_id == theirs.id).group_by(Entry.status)
    ).all()
    assert dict(statuses) == {"active": 2}
