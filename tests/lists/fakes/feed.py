"""A fake Seawall list feed, slow on purpose, for the kill-and-resume test; and a file server with ETags.

Run as a script it serves the feed until killed: ``python -m tests.lists.fakes.feed PORT N DELAY``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse


def md5(n: int) -> str:
    return hashlib.md5(f"benign-{n}".encode()).hexdigest()


def source_entries(n: int) -> list[dict[str, Any]]:
    """N entries; every 7th is later retracted (a status change further down the feed)."""
    return [{"id": i + 1, "signal_type": "md5", "value": md5(i), "external_id": f"src-{i}"} for i in range(n)]


def changes(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in source_entries(n):
        out.append({"op": "add", "entry": {**e, "status": "active"}})
    for e in source_entries(n)[::7]:
        out.append({"op": "status", "entry": {**e, "status": "retracted"}})
    return out


def make_feed_app(n: int, delay: float, token: str = "feed-key") -> FastAPI:
    app = FastAPI()
    log = changes(n)
    final = {c["entry"]["value"]: c["entry"]["status"] for c in log}

    def shown(i: int) -> dict[str, Any]:
        entry = log[i]["entry"]
        now = {**entry, "status": final[entry["value"]]}  # the feed shows each entry as it stands now
        return {
            "revision": i + 1,
            "op": log[i]["op"],
            "changed_at": "2024-01-01T00:00:00Z",
            "status": now["status"],
            "details": {},
            "entry": {
                "category": None,
                "labels": [],
                "source": "",
                "level": None,
                "note": "",
                "disabled_until": None,
                "added_at": "2024-01-01T00:00:00Z",
                "added_by": "x",
                "match_count": 0,
                "revision": i + 1,
                **now,
            },
        }

    @app.get("/v1/lists/{name}/feed")
    def feed(request: Request, name: str, since: int = Query(0), limit: int = Query(1000)) -> Response:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"detail": "bad key"}, status_code=401)
        time.sleep(delay)
        page = [shown(i) for i in range(since, min(since + limit, len(log)))]
        return JSONResponse(
            {
                "list": name,
                "kind": "hash",
                "since": since,
                "next_since": page[-1]["revision"] if page else since,
                "revision": len(log),
                "more": since + limit < len(log),
                "changes": page,
            }
        )

    return app


def make_file_app(files: dict[str, bytes]) -> FastAPI:
    """Serves ``files`` (mutable) with strong ETags and answers If-None-Match with 304."""
    app = FastAPI()
    app.state.hits = []

    @app.get("/files/{name}")
    def get(name: str, request: Request) -> Response:
        body = files.get(name)
        if body is None:
            return Response(status_code=404)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        app.state.hits.append(request.headers.get("if-none-match"))
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        return Response(body, media_type="text/csv", headers={"etag": etag})

    return app


if __name__ == "__main__":
    import sys

    import uvicorn

    port, count, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    uvicorn.run(make_feed_app(count, pause), host="127.0.0.1", port=port, log_config=None, access_log=False)
