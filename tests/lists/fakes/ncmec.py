"""A fake NCMEC Hash Sharing API v2: the XML shapes of its documentation, basic auth, paging, feedback."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, Response

from seawall.lists.exchanges.ncmec import NAMESPACE as NS

REASON = "01234567-abcd-0123-4567-012345678900"


@dataclass
class FakeNCMEC:
    username: str = "esp-user"
    password: str = "esp-pass"
    pages: list[str] = field(default_factory=list)  # the <images>/<videos> bodies of each page
    fail_page: int | None = None  # answer 500 for this page index
    requests: list[str] = field(default_factory=list)
    feedback: list[tuple[str, str, str]] = field(default_factory=list)  # (entry id, fingerprint, body)


def entry(kind: str, entry_id: str, member: int, classification: str | None, **fingerprints: str) -> str:
    prints = "".join(f"<{k}>{v}</{k}>" for k, v in fingerprints.items())
    cls = f"<classification>{classification}</classification>" if classification else ""
    return (
        f'<{kind}><member id="{member}">Member {member}</member><timestamp>2024-01-01T00:00:00Z</timestamp>'
        f"<id>{entry_id}</id>{cls}<fingerprints>{prints}</fingerprints></{kind}>"
    )


def deleted(kind: str, entry_id: str) -> str:
    tag = "deletedImage" if kind == "image" else "deletedVideo"
    return f'<{tag}><member id="1">M</member><id>{entry_id}</id><timestamp>2024-01-02T00:00:00Z</timestamp></{tag}>'


def page(images: list[str], videos: list[str] = ()) -> str:  # type: ignore[assignment]
    out = ""
    if images:
        out += f'<images count="{len(images)}" maxTimestamp="2024-01-02T00:00:00Z">{"".join(images)}</images>'
    if videos:
        out += f'<videos count="{len(videos)}" maxTimestamp="2024-01-02T00:00:00Z">{"".join(videos)}</videos>'
    return out


def make_app(state: FakeNCMEC) -> FastAPI:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        expected = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    @app.get("/v2/entries")
    def entries(request: Request) -> Response:
        state.requests.append(str(request.url.query))
        if not authorised(request):
            return Response(status_code=401)
        index = int(request.query_params.get("start", "1")) - 1
        if index == state.fail_page:
            return Response("<error/>", status_code=500)
        nxt = ""
        if index + 1 < len(state.pages):
            f, t = request.query_params["from"], request.query_params["to"]
            nxt = (
                f"<paging><next>/v2/entries?from={f}&amp;to={t}&amp;start={index + 2}"
                f"&amp;size=1&amp;max={len(state.pages)}</next></paging>"
            )
        body = (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<queryResult xmlns="{NS}">{state.pages[index]}{nxt}</queryResult>'
        )
        return Response(body, media_type="application/xml")

    @app.get("/v2/feedback/reasons")
    def reasons(request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        body = (
            f'<availableFeedbackReasons xmlns="{NS}">'
            f'<reason guid="{REASON}" name="Not CSAM" type="Md5"/></availableFeedbackReasons>'
        )
        return Response(body, media_type="application/xml")

    @app.put("/v2/entries/{entry_id}/fingerprints/{fingerprint}/feedback")
    async def feedback(entry_id: str, fingerprint: str, request: Request) -> Response:
        if not authorised(request):
            return Response(status_code=401)
        state.feedback.append((entry_id, fingerprint, (await request.body()).decode()))
        return Response(f'<submissionResult xmlns="{NS}"/>', media_type="application/xml")

    return app
