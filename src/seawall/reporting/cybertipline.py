"""NCMEC's CyberTipline Reporting API: the report and file-details XML, in the schema's element
order, and a client for its endpoints (status, xsd, submit, upload, fileinfo, finish, cancel,
retract).

The XML is built with the standard library (building parses nothing); every answer is parsed with
``defusedxml``. A non-zero ``responseCode`` (or an HTTP error) raises :class:`CyberTiplineError`
carrying NCMEC's code, its description and the ``Request-ID`` header NCMEC asks to be quoted.
When the operator has fetched the schema (``GET /xsd``, saved as ``SEAWALL_HOME/cybertipline.xsd``)
documents are validated against it before they are sent; no copy of the schema ships with Seawall.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import httpx

from seawall.fetch import AddressRules, FetchRefused, safe_client
from seawall.redact import redact_text

TEST_BASE_URL = "https://exttest.cybertip.org/ispws"
PRODUCTION_BASE_URL = "https://report.cybertip.org/ispws"

INCIDENT_TYPES = (
    "Child Pornography (possession, manufacture, and distribution)",
    "Child Sex Trafficking",
    "Child Sex Tourism",
    "Child Sexual Molestation",
    "Misleading Domain Name",
    "Misleading Words or Digital Images on the Internet",
    "Online Enticement of Children for Sexual Acts",
    "Unsolicited Obscene Material Sent to a Child",
)
REPORT_ANNOTATIONS = ("sextortion", "csamSolicitation", "minorToMinorInteraction", "spam", "sadisticOnlineExploitation")
FILE_ANNOTATIONS = (
    "animeDrawingVirtualHentai",
    "potentialMeme",
    "viral",
    "possibleSelfProduction",
    "physicalHarm",
    "violenceGore",
    "bestiality",
    "liveStreaming",
    "infant",
    "generativeAi",
)
INDUSTRY_CLASSIFICATIONS = ("A1", "A2", "B1", "B2")

# NCMEC's codes (the published list is not complete: an unknown code is kept as a number).
CODES: dict[int, str] = {
    0: "OK",
    1000: "server error",
    1100: "save failed",
    1110: "file upload failed",
    1111: "file upload failed",
    1210: "not found",
    1300: "update failed",
    2000: "authentication required",
    3000: "not authorised for this action",
    3100: "not authorised to submit",
    3300: "not authorised to update",
    4000: "invalid request",
    4100: "validation failed",
    4110: "malformed XML",
    4200: "malformed file",
    5001: "report does not exist",
    5002: "file does not exist",
    5101: "report already retracted",
    5102: "report already finished",
}
# Failures on NCMEC's side that a later attempt may get past; the others need a person.
RETRYABLE_CODES = frozenset({1000, 1100, 1110, 1111, 1300})
ALREADY_RETRACTED, ALREADY_FINISHED = 5101, 5102


class CyberTiplineError(Exception):
    """An answer other than success: NCMEC's code and words, and the Request-ID to quote to NCMEC."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.code, self.http_status, self.request_id, self.retryable = code, http_status, request_id, retryable
        parts = [message]
        if code is not None:
            parts.append(f"(code {code}: {CODES.get(code, 'unknown code')})")
        if request_id:
            parts.append(f"[Request-ID {request_id}]")
        super().__init__(" ".join(parts))


class DocumentInvalid(ValueError):
    """A document that fails the operator's copy of the schema, or a rule NCMEC's server checks."""


# ---------------------------------------------------------------- documents


def _zoned(moment: datetime) -> str:
    if moment.tzinfo is None:  # NCMEC refuses a time without a zone (its schema alone accepts one)
        raise DocumentInvalid(f"the time {moment.isoformat()} has no time zone")
    return moment.isoformat(timespec="seconds")


def _text(parent: ET.Element, tag: str, value: Any, *, limit: int | None = None) -> ET.Element | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if limit is not None and len(text) > limit:
        raise DocumentInvalid(f"{tag} is longer than {limit} characters")
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _flags(parent: ET.Element, tag: str, present: Iterable[str], order: Sequence[str]) -> None:
    """Presence-only annotations as empty elements, in the schema's order; none: no element."""
    chosen = set(present)
    unknown = chosen - set(order)
    if unknown:
        raise DocumentInvalid(f"unknown {tag}: {', '.join(sorted(unknown))}")
    if chosen:
        holder = ET.SubElement(parent, tag)
        for name in order:
            if name in chosen:
                ET.SubElement(holder, name)


@dataclass(frozen=True)
class IpEvent:
    ip_address: str
    event_name: str
    at: datetime
    possible_proxy: bool = False
    port: int | None = None


def _ip_event(parent: ET.Element, event: IpEvent) -> None:
    holder = ET.SubElement(parent, "ipCaptureEvent")
    _text(holder, "ipAddress", event.ip_address)
    _text(holder, "eventName", event.event_name)
    _text(holder, "dateTime", _zoned(event.at))
    if event.possible_proxy:
        _text(holder, "possibleProxy", True)
    if event.port is not None:
        if not 1 <= event.port <= 65535:
            raise DocumentInvalid(f"port {event.port} is not 1 to 65535")
        _text(holder, "port", event.port)


def _person(parent: ET.Element, tag: str, person: dict[str, Any], *, contact_only: bool = False) -> None:
    """A ``person`` (or, ``contact_only``, a ``contactPerson``: no age or date of birth), in the
    schema's order: firstName, lastName, phone*, email*, (address*), age, dateOfBirth."""
    holder = ET.SubElement(parent, tag)
    _text(holder, "firstName", person.get("first_name"))
    _text(holder, "lastName", person.get("last_name"))
    for phone in ([person["phone"]] if person.get("phone") else []) + list(person.get("phones") or []):
        _text(holder, "phone", phone)
    for email in ([person["email"]] if person.get("email") else []) + list(person.get("emails") or []):
        _text(holder, "email", email)
    if not contact_only:
        _text(holder, "age", person.get("age"))
        _text(holder, "dateOfBirth", person.get("date_of_birth"))


def _law_enforcement(root: ET.Element, facts: dict[str, Any] | None) -> None:
    """``lawEnforcement``: agencyName (required), caseNumber, officerContact, reportedToLe,
    servedLegalProcessDomestic, servedLegalProcessInternational@fleaCountry."""
    if not facts:
        return
    agency = (facts.get("agency_name") or "").strip()
    if not agency:
        raise DocumentInvalid("lawEnforcement needs the agency's name (agency_name)")
    holder = ET.SubElement(root, "lawEnforcement")
    _text(holder, "agencyName", agency)
    _text(holder, "caseNumber", facts.get("case_number"))
    if facts.get("officer"):
        _person(holder, "officerContact", facts["officer"], contact_only=True)
    _text(holder, "reportedToLe", facts.get("reported_to_le"))
    _text(holder, "servedLegalProcessDomestic", facts.get("served_legal_process_domestic"))
    international = facts.get("served_legal_process_international")
    if international is not None:
        served = _text(holder, "servedLegalProcessInternational", international)
        if facts.get("flea_country") and served is not None:
            served.set("fleaCountry", facts["flea_country"])


def _account(holder: ET.Element, facts: dict[str, Any]) -> None:
    """The account children ``intendedRecipient`` and ``victim`` share, up to profileUrl."""
    _text(holder, "espIdentifier", facts.get("esp_identifier"), limit=255)
    _text(holder, "espService", facts.get("esp_service"), limit=100)
    _text(holder, "screenName", facts.get("screen_name"), limit=256)
    for name in facts.get("display_names") or []:
        _text(holder, "displayName", name)
    for url in facts.get("profile_urls") or []:
        _text(holder, "profileUrl", url)


def _intended_recipient(root: ET.Element, facts: dict[str, Any]) -> None:
    holder = ET.SubElement(root, "intendedRecipient")
    if facts.get("person"):
        _person(holder, "intendedRecipientPerson", facts["person"])
    _account(holder, facts)
    for prior in facts.get("prior_reports") or []:
        _text(holder, "priorCTReports", prior)
    _text(holder, "additionalInfo", facts.get("additional_info"))


def _victim(root: ET.Element, facts: dict[str, Any]) -> None:
    holder = ET.SubElement(root, "victim")
    _person(holder, "victimPerson", facts.get("person") or {})  # required, even when empty
    _account(holder, facts)
    _text(holder, "schoolName", facts.get("school_name"))
    for prior in facts.get("prior_reports") or []:
        _text(holder, "priorCTReports", prior)
    _text(holder, "additionalInfo", facts.get("additional_info"))


def report_xml(facts: dict[str, Any], events: Sequence[IpEvent]) -> bytes:
    """The ``<report>`` document of a draft's facts (``schemas.ReportFacts`` as a dict)."""
    incident_type = facts.get("incident_type")
    if incident_type not in INCIDENT_TYPES:
        raise DocumentInvalid(f"incident type {incident_type!r} is not one of NCMEC's")
    if not facts.get("incident_at"):
        raise DocumentInvalid("the incident's date and time are required")
    reporter = facts.get("reporter") or {}
    if not reporter.get("email"):
        raise DocumentInvalid("the reporting person's email is required (set SEAWALL_REPORTING_REPORTER_EMAIL)")
    root = ET.Element("report")
    summary = ET.SubElement(root, "incidentSummary")
    _text(summary, "incidentType", incident_type)
    _text(summary, "platform", facts.get("platform"), limit=256)
    _text(summary, "escalateToHighPriority", (facts.get("escalate") or "").strip() or None, limit=3000)
    _flags(summary, "reportAnnotations", facts.get("annotations") or [], REPORT_ANNOTATIONS)
    _text(summary, "incidentDateTime", _zoned(datetime.fromisoformat(facts["incident_at"])))
    urls = facts.get("urls") or []
    if urls:
        web = ET.SubElement(ET.SubElement(root, "internetDetails"), "webPageIncident")
        for url in urls:
            _text(web, "url", url, limit=2083)
    _law_enforcement(root, facts.get("law_enforcement"))
    reporter_element = ET.SubElement(root, "reporter")
    _person(reporter_element, "reportingPerson", reporter)
    person = facts.get("person") or {}
    if person or events:
        reported = ET.SubElement(root, "personOrUserReported")
        _text(reported, "espIdentifier", person.get("esp_identifier"), limit=255)
        _text(reported, "espService", person.get("esp_service"), limit=100)
        _text(reported, "screenName", person.get("screen_name"), limit=256)
        for name in person.get("display_names") or []:
            _text(reported, "displayName", name)
        for url in person.get("profile_urls") or []:
            _text(reported, "profileUrl", url)
        for event in events:
            _ip_event(reported, event)
    for recipient in facts.get("intended_recipients") or []:
        _intended_recipient(root, recipient)
    for victim in facts.get("victims") or []:
        _victim(root, victim)
    _text(root, "additionalInfo", facts.get("additional_info"))
    return _serialise(root)


@dataclass(frozen=True)
class FileFacts:
    file_name: str
    md5: str | None
    sha1: str | None
    sha256: str | None
    classification: str | None
    annotations: Sequence[str]
    uploaded_at: datetime | None
    exif: dict[str, str]
    upload_event: IpEvent | None = None


def file_details_xml(report_id: str, file_id: str, file: FileFacts, *, classify: bool = True) -> bytes:
    """The ``<fileDetails>`` of one uploaded file. ``classify``: send ``industryClassification``
    (only ESPs that signed NCMEC's hash-sharing MOU may)."""
    root = ET.Element("fileDetails")
    _text(root, "reportId", report_id)
    _text(root, "fileId", file_id)
    _text(root, "fileName", file.file_name)
    if file.uploaded_at is not None:
        _text(root, "uploadedToEspTimestamp", _zoned(file.uploaded_at))
    _text(root, "fileViewedByEsp", True)  # a person confirmed it: that is how the report began
    _text(root, "fileRelevance", "Reported")
    _flags(root, "fileAnnotations", file.annotations, FILE_ANNOTATIONS)
    if classify and file.classification:
        if file.classification not in INDUSTRY_CLASSIFICATIONS:
            raise DocumentInvalid(f"industry classification {file.classification!r} is not A1, A2, B1 or B2")
        _text(root, "industryClassification", file.classification)
    for kind, value in (("MD5", file.md5), ("SHA1", file.sha1), ("SHA256", file.sha256)):
        if value:
            ET.SubElement(root, "originalFileHash", hashType=kind).text = value
    if file.upload_event is not None:
        _ip_event(root, file.upload_event)
    if file.exif:
        details = ET.SubElement(root, "details", type="EXIF")
        for name, value in sorted(file.exif.items()):
            pair = ET.SubElement(details, "nameValuePair")
            _text(pair, "name", name)
            _text(pair, "value", value)
    return _serialise(root)


def _serialise(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def schema_path(home: Path) -> Path:
    return home / "cybertipline.xsd"


# The namespace of XML Schema documents (a name, never fetched).
XSD_NAMESPACE = "http://www.w3.org/2001/XMLSchema"


def validate(document: bytes, xsd: Path | None) -> None:
    """Check ``document`` against the operator's copy of NCMEC's schema when there is one (lxml)."""
    if xsd is None or not xsd.is_file():
        return
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        tree = etree.parse(str(xsd), parser)
        if tree.getroot().tag != f"{{{XSD_NAMESPACE}}}schema":  # e.g. an error page saved by mistake
            raise DocumentInvalid(f"the saved schema {xsd} is not an XML Schema; fetch it again (fetch-xsd)")
        schema = etree.XMLSchema(tree)
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise DocumentInvalid(f"the saved schema {xsd} cannot be read: {exc}") from None
    parsed = etree.fromstring(document, parser)
    if not schema.validate(parsed):
        first = schema.error_log.last_error
        where = f"line {first.line}: " if first is not None else ""
        message = first.message if first is not None else "invalid"
        raise DocumentInvalid(f"the document fails NCMEC's schema ({xsd.name}): {where}{message}")


# ---------------------------------------------------------------- the client


@dataclass(frozen=True)
class Answer:
    code: int
    description: str
    report_id: str | None
    file_id: str | None
    hash: str | None
    file_ids: tuple[str, ...]
    request_id: str | None


def parse_answer(body: bytes, request_id: str | None = None) -> Answer:
    """A ``reportResponse`` or ``reportDoneResponse``, parsed safely."""
    try:
        root = SafeET.fromstring(body)
    except Exception as exc:  # defusedxml raises its own errors for entities, ParseError otherwise
        raise CyberTiplineError(
            f"NCMEC's answer is not XML we accept ({type(exc).__name__})", request_id=request_id
        ) from None

    def text(tag: str) -> str | None:
        found = root.find(tag)
        return found.text.strip() if found is not None and found.text else None

    raw = text("responseCode")
    try:
        code = int(raw) if raw is not None else -1
    except ValueError:
        raise CyberTiplineError(
            f"NCMEC's answer has a non-numeric responseCode {raw!r}", request_id=request_id
        ) from None
    files = tuple(e.text.strip() for e in root.findall("files/fileId") if e.text)
    return Answer(
        code, text("responseDescription") or "", text("reportId"), text("fileId"), text("hash"), files, request_id
    )


class CyberTiplineClient:
    """One session with the Reporting API (HTTP Basic); every call bounded by ``timeout``."""

    def __init__(
        self, base_url: str, username: str, password: str, *, rules: AddressRules, timeout: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Built by seawall.fetch like every outgoing client: the configured host is checked (and pinned)
        # by the operator's address rules, and no proxy or .netrc from the environment is read.
        self._client = safe_client(rules, timeout=timeout)
        self._client.auth = (username, password)

    def __enter__(self) -> CyberTiplineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, str | None]:
        try:
            response = self._client.request(method, f"{self.base_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise CyberTiplineError(redact_text(f"{path}: {type(exc).__name__}: {exc}"), retryable=True) from None
        except FetchRefused as exc:  # an address the operator's rules do not allow: retrying will not help
            raise CyberTiplineError(f"{path}: {exc} (SEAWALL_FETCH_ALLOW_NETWORKS)") from None
        request_id = response.headers.get("request-id")
        if response.status_code == 401:
            raise CyberTiplineError(
                f"{path}: NCMEC refused the username and password (HTTP 401)", http_status=401, request_id=request_id
            )
        return response, request_id

    def _answer(self, method: str, path: str, **kwargs: Any) -> Answer:
        response, request_id = self._call(method, path, **kwargs)
        if response.status_code >= 500 or response.status_code == 429:
            raise CyberTiplineError(
                f"{path}: NCMEC answered HTTP {response.status_code}",
                http_status=response.status_code,
                request_id=request_id,
                retryable=True,
            )
        answer = parse_answer(response.content, request_id)
        if answer.code != 0:
            raise CyberTiplineError(
                f"{path}: {answer.description or 'refused'}",
                code=answer.code,
                http_status=response.status_code,
                request_id=request_id,
                retryable=answer.code in RETRYABLE_CODES,
            )
        if response.status_code >= 400:
            raise CyberTiplineError(
                f"{path}: NCMEC answered HTTP {response.status_code}",
                http_status=response.status_code,
                request_id=request_id,
            )
        return answer

    def status(self) -> Answer:
        return self._answer("GET", "/status")

    def xsd(self) -> bytes:
        response, request_id = self._call("GET", "/xsd")
        if response.status_code != 200:
            raise CyberTiplineError(
                f"/xsd: NCMEC answered HTTP {response.status_code}",
                http_status=response.status_code,
                request_id=request_id,
            )
        return response.content

    def submit(self, document: bytes) -> Answer:
        answer = self._answer("POST", "/submit", content=document, headers={"content-type": "text/xml; charset=utf-8"})
        if not answer.report_id:
            raise CyberTiplineError("/submit: NCMEC's answer names no reportId", request_id=answer.request_id)
        return answer

    def upload(self, report_id: str, name: str, data: bytes, media_type: str) -> Answer:
        answer = self._answer("POST", "/upload", data={"id": report_id}, files={"file": (name, data, media_type)})
        if not answer.file_id:
            raise CyberTiplineError("/upload: NCMEC's answer names no fileId", request_id=answer.request_id)
        return answer

    def fileinfo(self, document: bytes) -> Answer:
        return self._answer("POST", "/fileinfo", content=document, headers={"content-type": "text/xml; charset=utf-8"})

    def finish(self, report_id: str) -> Answer:
        return self._answer("POST", "/finish", data={"id": report_id})

    def cancel(self, report_id: str) -> Answer:
        return self._answer("POST", "/cancel", data={"id": report_id})

    def retract(self, report_id: str) -> Answer:
        return self._answer("POST", "/retract", data={"id": report_id})
