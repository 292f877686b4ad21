"""Structured logs: JSON lines, each line of a request carrying its request id."""

from __future__ import annotations

import io
import json
import logging

from fastapi.testclient import TestClient

from seawall.logs import JsonFormatter


def test_access_lines_are_json_with_the_request_id(client: TestClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("seawall.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        client.get("/healthz", headers={"x-request-id": "req-42"})
        client.get("/nowhere")
    finally:
        access.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["request_id"], e["path"], e["status"]) for e in lines][:1] == [("req-42", "/healthz", 200)]
    assert lines[1]["path"] == "/nowhere" and lines[1]["status"] == 404 and len(lines[1]["request_id"]) == 16
    assert lines[0]["message"].startswith("GET /healthz 200 ") and lines[0]["level"] == "info"


def test_request_id_header_is_sanitised(client: TestClient) -> None:
    response = client.get("/healthz", headers={"x-request-id": "bad id\nwith newline"})
    assert response.headers["x-request-id"] != "bad id\nwith newline"
    assert len(response.headers["x-request-id"]) == 16
