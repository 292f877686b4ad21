"""A fake StopNCII hash exchange: FetchHashes paging by token, key headers, SubmitFeedback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


@dataclass
class FakeStopNCII:
    subscription_key: str = "sub-key"
    fetch_key: str = "fetch-key"
    feedback_key: str = "feedback-key"
    pages: list[list[dict[str, Any]]] = field(default_factory=list)
    next_set_timestamp: int = 1_700_000_000
    requests: list[dict[str, str]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)


def record(signal_type: str, value: str, status: str = "Active", ts: int = 1_690_000_000) -> dict[str, Any]:
    return {
        "lastModtimestamp": ts,
        "signalType": signal_type,
        "hashValue": value,
        "hashStatus": status,
        "caseNumbers": {"case-1": status},
        "CSPFeedbacks": [],
    }


def make_app(state: FakeStopNCII) -> FastAPI:
    app = FastAPI()

    def keys_ok(request: Request, function_key: str) -> bool:
        return (
            request.headers.get("ocp-apim-subscription-key") == state.subscription_key
            and request.headers.get("x-functions-key") == function_key
        )

    @app.get("/v1/FetchHashes")
    def fetch(request: Request) -> Response:
        state.requests.append(dict(request.query_params))
        if not keys_ok(request, state.fetch_key):
            return JSONResponse({"message": "Access denied"}, status_code=401)
        token = request.query_params.get("nextPageToken", "")
        index = int(token.removeprefix("tok")) if token else 0
        more = index + 1 < len(state.pages)
        return JSONResponse(
            {
                "count": len(state.pages[index]),
                "nextPageToken": f"tok{index + 1}" if more else "",
                "nextSetTimestamp": state.next_set_timestamp,
                "hasMoreRecords": more,
                "hashRecords": state.pages[index],
            }
        )

    @app.post("/v1/SubmitFeedback")
    async def feedback(request: Request) -> Response:
        if not keys_ok(request, state.feedback_key):
            return JSONResponse({"message": "Access denied"}, status_code=401)
        state.feedback.append(await request.json())
        return JSONResponse({})

    return app
