"""Review console benchmark: every review page's time on the demo data (`seawall demo`), in-process.

Seeds a fresh home with `seawall demo` (a hotline day, the review queues, five years of statistics),
logs in as the demo analyst and senior analyst and times each page (median of ``--repeat`` requests
after a warm-up), printed beside the dashboard ("/") measured in the same run. Goal: every review
page under 200 ms.

    .venv/bin/python bench/review.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from typing import Any

PASSWORD = "bench review password"


def _login(app: Any, username: str) -> Any:
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="http://127.0.0.1")
    page = client.get("/login", headers={"accept": "text/html"})
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token
    answer = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def _time(client: Any, url: str, repeat: int) -> tuple[int, float]:
    status = client.get(url, headers={"accept": "text/html"}).status_code  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        client.get(url, headers={"accept": "text/html"})
        times.append((time.perf_counter() - start) * 1000)
    return status, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="seawall-bench-review-")
    os.environ["SEAWALL_HOME"] = home
    os.environ.setdefault("SEAWALL_SECRET_KEY", "bench-review-secret-key-not-for-production")
    from typer.testing import CliRunner

    from seawall.auth import service as auth_service
    from seawall.auth.permissions import SYSTEM
    from seawall.cli import app as cli
    from seawall.db import default_sessionmaker
    from seawall.web.app import create_app

    for command in (["db", "upgrade"], ["demo"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, result.output
    with default_sessionmaker()() as session:
        for username in ("analyst", "senior"):
            auth_service.set_password(session, SYSTEM, username, PASSWORD)
        session.commit()
    app = create_app()
    analyst, senior = _login(app, "analyst"), _login(app, "senior")
    queue = analyst.get("/review").text
    item = re.search(r'href="(/review/items/\d+)"', queue)
    case = re.search(r'href="(/review/cases/\d+)"', queue)
    qa = re.search(r'href="(/qa/\d+)"', senior.get("/qa").text)
    pages = [
        (analyst, "/"),
        (analyst, "/review"),
        (analyst, item.group(1) if item else "/review"),
        (analyst, (item.group(1) + "/thumbnail") if item else "/review"),
        (analyst, case.group(1) if case else "/review"),
        (analyst, "/review/preferences"),
        (analyst, "/review/break"),
        (senior, "/qa"),
        (senior, qa.group(1) if qa else "/qa"),
        (senior, "/review/team"),
    ]
    baseline = None
    print(f"{'page':38} {'status':>6} {'median ms':>10} {'x dashboard':>12}")
    for client, url in pages:
        status, ms = _time(client, url, args.repeat)
        baseline = baseline or ms
        print(f"{url:38} {status:>6} {ms:>10.1f} {ms / baseline:>12.2f}")


if __name__ == "__main__":
    main()
