"""A fake CyberTipline Reporting API on loopback: Basic auth, the report's and fileDetails' element
order and required elements (lawEnforcement, intendedRecipient and victim included), the upload
sequence (submit → upload → fileinfo once per file → finish), retraction and cancellation, NCMEC's
response shapes and codes, a Request-ID on every answer; and a fake NCA API taking JSON packs."""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from fastapi import FastAPI, Request, Response

PERSON = ("firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth")
# The schema's order of children (the elements the fake knows; a child not listed is refused).
ORDER: dict[str, tuple[str, ...]] = {
    "report": (
        "batchedReport",
        "incidentSummary",
        "internetDetails",
        "lawEnforcement",
        "reporter",
        "personOrUserReported",
        "intendedRecipient",
        "victim",
        "additionalInfo",
    ),
    "incidentSummary": (
        "incidentType",
        "platform",
        "escalateToHighPriority",
        "reportAnnotations",
        "incidentDateTime",
        "incidentDateTimeDescription",
    ),
    "reportAnnotations": (
        "sextortion",
        "csamSolicitation",
        "minorToMinorInteraction",
        "spam",
        "sadisticOnlineExploitation",
    ),
    "reporter": ("reportingPerson", "contactPerson", "companyTemplate", "termsOfService", "legalURL"),
    "reportingPerson": PERSON,
    "personOrUserReportedPerson": PERSON,
    "intendedRecipientPerson": PERSON,
    "victimPerson": PERSON,
    "lawEnforcement": (
        "agencyName",
        "caseNumber",
        "officerContact",
        "reportedToLe",
        "servedLegalProcessDomestic",
        "servedLegalProcessInternational",
    ),
    "officerContact": ("firstName", "lastName", "phone", "email", "address"),
    "intendedRecipient": (
        "intendedRecipientPerson",
        "espIdentifier",
        "espService",
        "compromisedAccount",
        "screenName",
        "displayName",
        "profileUrl",
        "profileBio",
        "ipCaptureEvent",
        "deviceId",
        "priorCTReports",
        "groupIdentifier",
        "accountTemporarilyDisabled",
        "accountPermanentlyDisabled",
        "estimatedLocation",
        "allEmailsReported",
        "additionalInfo",
    ),
    "victim": (
        "victimPerson",
        "espIdentifier",
        "espService",
        "compromisedAccount",
        "screenName",
        "displayName",
        "profileUrl",
        "profileBio",
        "ipCaptureEvent",
        "deviceId",
        "schoolName",
        "priorCTReports",
        "accountTemporarilyDisabled",
        "accountPermanentlyDisabled",
        "estimatedLocation",
        "allEmailsReported",
        "associatedAccount",
        "additionalInfo",
    ),
    "personOrUserReported": (
        "personOrUserReportedPerson",
        "vehicleDescription",
        "espIdentifier",
        "espService",
        "compromisedAccount",
        "screenName",
        "displayName",
        "profileUrl",
        "profileBio",
        "ipCaptureEvent",
        "deviceId",
        "thirdPartyUserReported",
        "priorCTReports",
        "groupIdentifier",
        "accountTemporarilyDisabled",
        "accountPermanentlyDisabled",
        "estimatedLocation",
        "allEmailsReported",
        "associatedAccount",
        "additionalInfo",
    ),
    "ipCaptureEvent": ("ipAddress", "eventName", "dateTime", "possibleProxy", "port"),
    "internetDetails": ("webPageIncident",),
    "webPageIncident": ("url", "additionalInfo"),
    "fileDetails": (
        "reportId",
        "fileId",
        "fileName",
        "originalFileName",
        "uploadedToEspTimestamp",
        "locationOfFile",
        "fileViewedByEsp",
        "exifViewedByEsp",
        "publiclyAvailable",
        "fileRelevance",
        "potentialMeme",
        "fileAnnotations",
        "industryClassification",
        "originalFileHash",
        "ipCaptureEvent",
        "deviceId",
        "details",
        "additionalInfo",
    ),
    "fileAnnotations": (
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
    ),
    "details": ("nameValuePair",),
    "nameValuePair": ("name", "value"),
}
# Elements that may appear once where they appear (the schema's maxOccurs 1).
SINGLE = {
    "incidentSummary",
    "reporter",
    "incidentType",
    "incidentDateTime",
    "reportId",
    "fileId",
    "lawEnforcement",
    "agencyName",
    "caseNumber",
    "officerContact",
    "reportedToLe",
    "servedLegalProcessDomestic",
    "servedLegalProcessInternational",
    "victimPerson",
    "intendedRecipientPerson",
    "personOrUserReportedPerson",
    "schoolName",
    "firstName",
    "lastName",
    "age",
    "dateOfBirth",
}
BOOLEANS = {"reportedToLe", "servedLegalProcessDomestic", "servedLegalProcessInternational", "fileViewedByEsp"}
REQUIRED = {
    "report": ("incidentSummary", "reporter"),
    "lawEnforcement": ("agencyName",),
    "victim": ("victimPerson",),
    "incidentSummary": ("incidentType", "incidentDateTime"),
    "reporter": ("reportingPerson",),
    "reportingPerson": ("email",),
    "ipCaptureEvent": ("ipAddress",),
    "fileDetails": ("reportId", "fileId"),
}
PRESENCE_ONLY = {"reportAnnotations", "fileAnnotations"}


class Invalid(Exception):
    pass


def check_order(element: Any, path: str = "") -> None:
    """Children in the schema's order, required ones present, presence-only annotations empty."""
    name = element.tag
    where = f"{path}/{name}"
    allowed = ORDER.get(name)
    children = list(element)
    if allowed is not None:
        last = -1
        for child in children:
            if child.tag not in allowed:
                raise Invalid(f"{where}: unexpected element {child.tag}")
            index = allowed.index(child.tag)
            if index < last:
                raise Invalid(f"{where}: {child.tag} is out of order")
            if index == last and child.tag in SINGLE:
                raise Invalid(f"{where}: {child.tag} appears twice")
            last = index
        for needed in REQUIRED.get(name, ()):
            if element.find(needed) is None:
                raise Invalid(f"{where}: {needed} is required")
    if name in PRESENCE_ONLY:
        for child in children:
            if len(child) or (child.text or "").strip():
                raise Invalid(f"{where}/{child.tag}: an annotation is an empty element")
    if name in BOOLEANS and (element.text or "").strip() not in ("true", "false"):
        raise Invalid(f"{where}: a boolean is true or false")
    if name == "agencyName" and not (element.text or "").strip():
        raise Invalid(f"{where}: the agency's name is empty")
    if name in ("priorCTReports", "age") and not (element.text or "").strip().isdigit():
        raise Invalid(f"{where}: not a number")
    if element.get("fleaCountry") is not None and name != "servedLegalProcessInternational":
        raise Invalid(f"{where}: fleaCountry belongs to servedLegalProcessInternational")
    if name in ("incidentDateTime", "dateTime", "uploadedToEspTimestamp"):
        moment = datetime.fromisoformat((element.text or "").strip())
        if moment.tzinfo is None:
            raise Invalid(f"{where}: a time must carry a zone")
    for child in children:
        check_order(child, where)


@dataclass
class Report:
    id: str
    document: Any
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: str = "open"  # open, finished, retracted, cancelled


@dataclass
class FakeCyberTipline:
    username: str = "esp-user"
    password: str = "esp-secret-password"
    reports: dict[str, Report] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # endpoint -> answers to give before behaving normally: (http status, response code or None)
    fail: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    xsd: bytes = b""
    submits: int = 0
    request_ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    def finished(self) -> list[Report]:
        return [r for r in self.reports.values() if r.state == "finished"]


def _response(code: int, description: str, request_id: str, status: int = 200, **fields: str) -> Response:
    extra = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><reportResponse>'
        f"<responseCode>{code}</responseCode><responseDescription>{description}</responseDescription>{extra}"
        "</reportResponse>"
    )
    return Response(body, status_code=status, media_type="text/xml", headers={"Request-ID": request_id})


def make_app(fake: FakeCyberTipline) -> FastAPI:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
        return secrets.compare_digest(header, f"Basic {expected}")

    async def handle(request: Request, endpoint: str) -> Response:
        fake.calls.append(endpoint)
        request_id = f"req-{next(fake.request_ids):04d}"
        if not authorised(request):
            return Response(b"", status_code=401, headers={"Request-ID": request_id})
        queued = fake.fail.get(endpoint)
        if queued:
            status, code = queued.pop(0)
            if code is None:
                return Response(b"Service Unavailable", status_code=status, headers={"Request-ID": request_id})
            return _response(code, "Server Error" if code < 2000 else "Refused", request_id, status)
        if endpoint == "status":
            return _response(0, "Remote User : esp-user, Remote Ip : 127.0.0.1", request_id)
        if endpoint == "xsd":
            return Response(fake.xsd, media_type="text/xml", headers={"Request-ID": request_id})
        if endpoint in ("submit", "fileinfo"):
            if not request.headers.get("content-type", "").startswith("text/xml"):
                return _response(4000, "Invalid request: content type", request_id, 400)
            try:
                document = SafeET.fromstring(await request.body())
                check_order(document)
            except (Invalid, SafeET.ParseError, ValueError) as exc:
                return _response(4100, f"Validation failed: {exc}", request_id, 400)
            if endpoint == "submit":
                if document.tag != "report":
                    return _response(4110, "Malformed XML", request_id, 400)
                fake.submits += 1
                report_id = str(100000 + fake.submits)
                fake.reports[report_id] = Report(report_id, document)
                return _response(0, "Success", request_id, reportId=report_id)
            report = fake.reports.get(document.findtext("reportId") or "")
            if report is None:
                return _response(5001, "Report does not exist", request_id, 400)
            file = report.files.get(document.findtext("fileId") or "")
            if file is None:
                return _response(5002, "File does not exist", request_id, 400)
            if file["details"] is not None:
                return _response(4000, "File details already given", request_id, 400)
            file["details"] = document
            return _response(0, "Success", request_id, reportId=report.id)
        form = await request.form()
        report = fake.reports.get(str(form.get("id", "")))
        if report is None:
            return _response(5001, "Report does not exist", request_id, 400)
        if report.state in ("retracted", "cancelled"):
            return _response(5101, "Report already retracted", request_id, 400)
        if report.state == "finished":
            return _response(5102, "Report already finished", request_id, 400)
        if endpoint == "upload":
            upload = form.get("file")
            data = await upload.read()  # type: ignore[union-attr]
            file_id = secrets.token_hex(16)
            report.files[file_id] = {"name": upload.filename, "data": data, "details": None}  # type: ignore[union-attr]
            md5 = hashlib.md5(data).hexdigest()
            return _response(0, "Success", request_id, reportId=report.id, fileId=file_id, hash=md5)
        if endpoint == "finish":
            missing = [f for f, v in report.files.items() if v["details"] is None]
            if missing:
                return _response(4100, f"Validation failed: no fileDetails for {missing[0]}", request_id, 400)
            report.state = "finished"
            files = "".join(f"<fileId>{f}</fileId>" for f in report.files)
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><reportDoneResponse><responseCode>0</responseCode>'
                f"<reportId>{report.id}</reportId><files>{files}</files></reportDoneResponse>"
            )
            return Response(body, media_type="text/xml", headers={"Request-ID": request_id})
        if endpoint in ("retract", "cancel"):
            report.state = "retracted" if endpoint == "retract" else "cancelled"
            return _response(0, "Success", request_id, reportId=report.id)
        return Response(status_code=404)

    for name, method in (
        ("status", "GET"),
        ("xsd", "GET"),
        ("submit", "POST"),
        ("upload", "POST"),
        ("fileinfo", "POST"),
        ("finish", "POST"),
        ("cancel", "POST"),
        ("retract", "POST"),
    ):

        async def route(request: Request, _name: str = name) -> Response:
            return await handle(request, _name)

        app.add_api_route(f"/ispws/{name}", route, methods=[method])
    return app


@dataclass
class FakeNca:
    token: str = "nca-token-secret"
    packs: list[dict[str, Any]] = field(default_factory=list)


def make_nca_app(fake: FakeNca) -> FastAPI:
    app = FastAPI()

    @app.post("/api/reports")
    async def receive(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {fake.token}":
            return Response(status_code=401)
        fake.packs.append(await request.json())
        return Response(f'{{"caseReference": "NCA-{len(fake.packs):05d}"}}', media_type="application/json")

    return app
