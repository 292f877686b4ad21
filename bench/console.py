"""Console page load times on the demo data: every operator page, served in-process by the app
(no network), timed over many requests, and printed against the login page (the floor: routing,
middleware, a template, no data) measured in the same run. Goal: every page under 200 ms.

    .venv/bin/python bench/console.py [--rounds 30] [--home PATH]

Seeds a fresh home with ``seawall db upgrade`` and ``seawall demo`` (a temporary folder unless
``--home`` is given; a home that has users already is used as it is).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "/",
    "/lists",
    "/lists/demo-known",
    "/lists/demo-known/export?format=csv",
    "/quarantine",
    "/exchanges",
    "/policies",
    "/webhooks",
    "/search?q={pdq}",
    "/cases",
    "/cases/{case}",
    "/cases?q={case}",
    "/admin/users",
    "/admin/keys",
    "/admin/settings",
    "/audit",
    "/stats",
]


def _timed(client: object, url: str, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        answer = client.get(url, headers={"accept": "text/html"})  # type: ignore[attr-defined]
        times.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{url}: HTTP {answer.status_code}")
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="seawall-bench-console-"))
    os.environ["SEAWALL_HOME"] = str(home)
    seawall = str(Path(sys.executable).with_name("seawall"))
    subprocess.run([seawall, "db", "upgrade"], check=True, capture_output=True)
    subprocess.run([seawall, "demo", "--if-empty"], check=True, capture_output=True)

    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from seawall.auth import service as auth_service
    from seawall.config import reset_settings
    from seawall.hotline.models import Case
    from seawall.lists.models import Entry
    from seawall.web.app import create_app
    from seawall.web.csrf import SESSION_COOKIE

    reset_settings()
    app = create_app()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        with app.state.sessionmaker() as db:
            token = auth_service.start_console_session(db, app.state.settings, auth_service.get_user(db, "admin"))
            case = db.scalars(select(Case.reference).order_by(Case.id.desc()).limit(1)).one()
            pdq = db.scalars(select(Entry.value).where(Entry.signal_type == "pdq").limit(1)).one()
            db.commit()
        client.cookies.set(SESSION_COOKIE, token)
        near = f"{int(pdq, 16) ^ 0b10101:064x}"
        floor, floor_p95 = _timed(client, "/login", args.rounds)
        print(f"{'page':44} {'median ms':>10} {'p95 ms':>8} {'x login':>8}")
        print(f"{'/login (floor)':44} {floor:10.1f} {floor_p95:8.1f} {1.0:8.1f}")
        worst = 0.0
        for page in PAGES:
            url = page.format(case=case, pdq=near)
            median, p95 = _timed(client, url, args.rounds)
            worst = max(worst, p95)
            print(f"{page:44} {median:10.1f} {p95:8.1f} {median / floor:8.1f}")
        print(f"slowest p95: {worst:.1f} ms (goal < 200 ms)")


if __name__ == "__main__":
    main()
