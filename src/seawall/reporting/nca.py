"""The UK NCA report (Online Safety Act s.66; SI 2026/268): the Schedule 1 pack, the priority and
its deadline, the JSON export for the NCA's portal and a client for its API.

The NCA has published no API schema. The pack's field names are Seawall's own (``PACK_FIELDS``,
listed in docs/reporting.md), one per Schedule 1 item; the API endpoint, its token and the field
of its answer that names the NCA's reference are settings, so an operator follows what the NCA
tells them at registration instead of a guess built into the code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from seawall.fetch import AddressRules, FetchRefused, safe_client
from seawall.redact import redact_text

PACK_VERSION = "seawall-nca-pack/1"
# Every top-level field of the pack, in Schedule 1's order (docs/reporting.md says what each holds).
PACK_FIELDS = (
    "pack_version",
    "reference",
    "priority",
    "priority_meaning",
    "due_at",
    "reporter",  # 1: name, email, telephone
    "content",  # 2: the content and how it was detected
    "service",  # 3: the platform
    "earlier_reports",  # 4: earlier reports and their references
    "upload",  # 5: upload time, IP and port, EXIF
    "files",  # 6: URL and the original file's hashes
    "account",  # 7: the account and its connections, login IPs
    "identity_documents",  # 8
    "other_information",  # 9
    "declaration",  # 10
)
PRIORITY_MEANINGS = {
    1: "immediate threat to a child's life or immediate risk of serious harm: report immediately",
    2: "report as soon as reasonably practicable",
    3: "report without undue delay",
}


class NcaError(Exception):
    def __init__(self, message: str, *, retryable: bool = False, http_status: int | None = None) -> None:
        self.retryable, self.http_status = retryable, http_status
        super().__init__(message)


def deadline(created_at: datetime, priority: int, hours: list[float]) -> datetime:
    """When a report of ``priority`` is due: the operator's hours for it after ``created_at``."""
    if priority not in PRIORITY_MEANINGS:
        raise ValueError(f"priority is 1, 2 or 3 (got {priority})")
    if len(hours) != 3:
        raise ValueError("SEAWALL_NCA_PRIORITY_HOURS holds three numbers: priorities 1, 2 and 3")
    return created_at + timedelta(hours=hours[priority - 1])


def pack(
    *,
    reference: str,
    priority: int,
    due_at: datetime | None,
    facts: dict[str, Any],
    files: list[dict[str, Any]],
    events: list[dict[str, Any]],
    earlier: list[dict[str, str]],
) -> dict[str, Any]:
    """The report pack: every ``PACK_FIELDS`` key present (empty where the information is not
    available, which the regulations allow)."""
    person = facts.get("person") or {}
    reporter = facts.get("reporter") or {}
    upload_events = [e for e in events if e.get("event_name") == "Upload"]
    out: dict[str, Any] = {
        "pack_version": PACK_VERSION,
        "reference": reference,
        "priority": priority,
        "priority_meaning": PRIORITY_MEANINGS[priority],
        "due_at": due_at.isoformat() if due_at else None,
        "reporter": {
            "name": " ".join(p for p in (reporter.get("first_name"), reporter.get("last_name")) if p) or None,
            "email": reporter.get("email"),
            "telephone": reporter.get("phone"),
        },
        "content": {
            "incident_type": facts.get("incident_type"),
            "incident_at": facts.get("incident_at"),
            "detection": facts.get("detection") or "hash match reviewed by a person",
            "annotations": facts.get("annotations") or [],
        },
        "service": {"name": facts.get("platform"), "urls": facts.get("urls") or []},
        "earlier_reports": earlier,
        "upload": {
            "events": upload_events,
            "exif": [{"sha256": f.get("sha256"), "exif": f.get("exif") or {}} for f in files if f.get("exif")],
        },
        "files": [
            {
                "file_name": f.get("file_name"),
                "hashes": {k: f[k] for k in ("md5", "sha1", "sha256") if f.get(k)},
                "classification": f.get("classification"),
                "uploaded_at": f.get("uploaded_at"),
            }
            for f in files
        ],
        "account": {
            "identifier": person.get("esp_identifier"),
            "username": person.get("screen_name"),
            "display_names": person.get("display_names") or [],
            "profile_urls": person.get("profile_urls") or [],
            "emails": person.get("emails") or [],
            "telephones": person.get("phones") or [],
            "connections": person.get("connections") or [],
            "ip_events": events,
        },
        "identity_documents": person.get("identity_documents") or [],
        "other_information": facts.get("additional_info") or "",
        "declaration": facts.get("declaration")
        or "The information in this report is accurate and complete to the best of the reporter's knowledge.",
    }
    assert tuple(out) == PACK_FIELDS  # the documented list and the pack never drift apart
    return out


def submit(
    url: str, token: str, document: dict[str, Any], *, reference_field: str, timeout: float, rules: AddressRules
) -> str:
    """POST the pack as JSON (bearer token); the NCA's reference from its answer."""
    try:
        with safe_client(rules, timeout=timeout) as client:
            response = client.post(url, json=document, headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise NcaError(redact_text(f"NCA API: {type(exc).__name__}: {exc}"), retryable=True) from None
    except FetchRefused as exc:  # an address the operator's rules do not allow: retrying will not help
        raise NcaError(f"NCA API: {exc} (SEAWALL_FETCH_ALLOW_NETWORKS)") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise NcaError(
            f"NCA API answered HTTP {response.status_code}", retryable=True, http_status=response.status_code
        )
    if response.status_code >= 400:
        raise NcaError(
            f"NCA API refused the report: HTTP {response.status_code} {response.text[:300]}",
            http_status=response.status_code,
        )
    try:
        reference = response.json()[reference_field]
    except (ValueError, KeyError, TypeError):
        raise NcaError(f"NCA API's answer has no {reference_field!r} field (set SEAWALL_NCA_REFERENCE_FIELD)") from None
    return str(reference)
