"""XARF v4 reports of the ``content`` class, type ``csam``: what a notice to a host carries.

The document names the URL, the hotline (reporter and sender), the classification in the industry
scale XARF uses (A1/A2/B1/B2, or ``baseline``), how the content was found, and the hash values of
the items the analysts confirmed. Never media and never a thumbnail: the XARF spec itself says that
for CSAM no visual content is attached, only hash values and references.

``problems`` checks a document against the XARF v4 core, content-base and content-csam required
fields and formats before it is sent, so a notice that could not be read by the other side fails
here with a reason instead of there in silence.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

XARF_VERSION = "4.0.0"
CLASSIFICATIONS = ("baseline", "A1", "A2", "B1", "B2")
DETECTION_METHODS = ("hash_match", "ai_detection", "manual_review", "user_report", "automated_scan")
MEDIA_TYPES = ("image", "video", "audio", "text", "mixed")
# How the content came to the hotline, by the channel of the case's first report.
DETECTION_BY_CHANNEL = {
    "public": "user_report",
    "partner": "user_report",
    "self_report": "user_report",
    "referral": "user_report",
    "import": "user_report",
    "match": "hash_match",
    "proactive": "automated_scan",
}
HASH_PATTERNS = {"md5": r"[0-9a-fA-F]{32}", "sha1": r"[0-9a-fA-F]{40}", "sha256": r"[0-9a-fA-F]{64}"}
_TAG = re.compile(r"^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+.-]*$")
_EMAIL = re.compile(r"^[^@\s]+@([A-Za-z0-9-]+\.)+[A-Za-z0-9-]+$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
MAX_ITEMS = 500
# Where a media file's bytes could ride along in XARF: never used, and refused if present.
_MEDIA_FIELDS = ("evidence", "screenshot_url", "payload", "thumbnail", "media")


def when(moment: datetime) -> str:
    """An XARF date-time: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def party(name: str, contact: str | None) -> dict[str, str]:
    """``reporter`` / ``sender``: the organisation, its contact address and that address's domain."""
    contact = (contact or "").strip()
    domain = contact.rpartition("@")[2].lower() if "@" in contact else ""
    return {"org": name[:200], "contact": contact, "domain": domain}


def ascii_host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def hash_values(md5: str, sha1: str, sha256: str, pdq: str | None) -> dict[str, str]:
    values = {"md5": md5.lower(), "sha1": sha1.lower(), "sha256": sha256.lower()}
    if pdq:
        values["pdq"] = pdq.lower()  # XARF's hash_values is open: PDQ next to the three it names
    return values


def media_type(kinds: set[str]) -> str | None:
    if not kinds:
        return None
    if len(kinds) == 1 and next(iter(kinds)) in MEDIA_TYPES:
        return next(iter(kinds))
    return "mixed"


def build(
    *,
    reporter: dict[str, str],
    url: str,
    source: str,
    occurred_at: datetime,
    classification: str | None,
    detection_method: str,
    items: list[dict[str, Any]],
    verified_at: datetime | None = None,
    hosting_provider: str | None = None,
    asn: int | None = None,
    country: str | None = None,
    case_reference: str | None = None,
    description: str = "",
    tags: list[str] | None = None,
    report_id: str | None = None,
) -> dict[str, Any]:
    """A content/csam XARF v4 report. ``items``: each ``{"md5", "sha1", "sha256", "pdq", "media"}``
    (hashes only); the first is the report's ``hash_values``, all of them ``content_items``."""
    items = items[:MAX_ITEMS]
    document: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": report_id or str(uuid.uuid4()),
        "timestamp": when(occurred_at),
        "reporter": dict(reporter),
        "sender": dict(reporter),
        "source_identifier": source,
        "category": "content",
        "type": "csam",
        "evidence_source": "researcher_analysis",
        "url": url,
        "domain": ascii_host(url),
        "classification": classification,
        "detection_method": detection_method,
        "verification_method": "manual",
        "content_removed": False,
    }
    kind = media_type({str(i["media"]) for i in items if i.get("media")})
    if kind:
        document["media_type"] = kind
    if items:
        first = items[0]
        document["hash_values"] = hash_values(first["md5"], first["sha1"], first["sha256"], first.get("pdq"))
        document["content_items"] = [
            {"media_type": i.get("media"), "hash_values": hash_values(i["md5"], i["sha1"], i["sha256"], i.get("pdq"))}
            for i in items
        ]
    if verified_at is not None:
        document["verified_at"] = when(verified_at)
    if hosting_provider:
        document["hosting_provider"] = hosting_provider
    if asn:
        document["asn"] = int(asn)
    if country and re.fullmatch(r"[A-Za-z]{2}", country):
        document["country_code"] = country.upper()
    if description:
        document["description"] = description[:1000]
    all_tags = list(tags or [])
    if case_reference:
        all_tags.insert(0, f"case:{case_reference.lower()}")
    document["tags"] = [t for t in all_tags if _TAG.match(t)][:20]
    return document


def problems(document: dict[str, Any]) -> list[str]:
    """Why ``document`` is not a valid XARF v4 content/csam report (empty: it is)."""
    found: list[str] = []
    required = (
        "xarf_version",
        "report_id",
        "timestamp",
        "reporter",
        "sender",
        "source_identifier",
        "category",
        "type",
        "url",
        "classification",
        "detection_method",
    )
    for name in required:
        if document.get(name) in (None, ""):
            found.append(f"{name} is required")
    if found:
        return found
    if not re.fullmatch(r"4\.\d+\.\d+", str(document["xarf_version"])):
        found.append("xarf_version is 4.x.y")
    if not _UUID.match(str(document["report_id"])):
        found.append("report_id is a UUID")
    if not _DATE_TIME.match(str(document["timestamp"])):
        found.append("timestamp is an ISO 8601 date-time")
    for who in ("reporter", "sender"):
        value = document[who]
        if not isinstance(value, dict) or set(value) != {"org", "contact", "domain"}:
            found.append(f"{who} has org, contact and domain, and nothing else")
            continue
        if not value["org"] or len(value["org"]) > 200:
            found.append(f"{who}.org is 1 to 200 characters")
        if not _EMAIL.match(value["contact"] or ""):
            found.append(f"{who}.contact is an email address (set SEAWALL_NOTICE_FROM)")
        if not _HOSTNAME.match(value["domain"] or ""):
            found.append(f"{who}.domain is a host name")
    if (document["category"], document["type"]) != ("content", "csam"):
        found.append("category/type is content/csam")
    if urlsplit(str(document["url"])).scheme not in ("http", "https"):
        found.append("url is an http(s) URL")
    if document["classification"] not in CLASSIFICATIONS:
        found.append(f"classification is one of {', '.join(CLASSIFICATIONS)}")
    if document["detection_method"] not in DETECTION_METHODS:
        found.append(f"detection_method is one of {', '.join(DETECTION_METHODS)}")
    if "media_type" in document and document["media_type"] not in MEDIA_TYPES:
        found.append(f"media_type is one of {', '.join(MEDIA_TYPES)}")
    values = document.get("hash_values")
    if values is not None:
        if not isinstance(values, dict):
            found.append("hash_values is an object")
        else:
            for name, pattern in HASH_PATTERNS.items():
                if name in values and not re.fullmatch(pattern, str(values[name])):
                    found.append(f"hash_values.{name} is {pattern}")
    if "description" in document and len(str(document["description"])) > 1000:
        found.append("description is at most 1000 characters")
    tags = document.get("tags", [])
    if not isinstance(tags, list) or len(tags) > 20 or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
        found.append("tags are at most 20 namespace:value strings")
    for name in _MEDIA_FIELDS:
        if name in document:
            found.append(f"{name}: a CSAM notice carries hash values only, never media")
    return found
