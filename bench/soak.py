"""Soak test: a real `seawall serve` under a mixed load for an hour; resident memory must stay flat.

Starts the server (uvicorn subprocess, SQLite in a temporary home, a list of benign pictures' hashes),
a loopback file server for URL matching, and several client threads that mix: file uploads to
/v1/hash and /v1/match (a few bomb-ish ones among them: a canvas-bomb GIF, refused from its headers,
and a large flat PNG, decoded), single and batch lookups by signal, URL matches, list reads, a few
list writes and console logins. The server's resident memory (its whole process tree) is sampled
every few seconds; the run fails (exit 1) when the RSS at the end is more than 10% above the RSS
after warm-up. Request counts, errors and p50/p99 latencies are printed per kind.

    .venv/bin/python bench/soak.py [--minutes 60] [--clients 4] [--workers 1] [--sample-seconds 5]

``--minutes 5`` is the quick run. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil

SEAWALL = str(Path(sys.executable).with_name("seawall"))
PICTURES = 40  # benign pictures; the first half are "listed"
GROWTH_LIMIT = 1.10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SEED = """
import json, pathlib, sys
from seawall.db import default_sessionmaker, transaction
from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.media.synthetic import benign_image, canvas_bomb_gif
from seawall.signals.hashing import hash_file
from PIL import Image

folder = pathlib.Path(sys.argv[1])
count = int(sys.argv[2])
pictures = []
for i in range(count):
    path = folder / (f"p{i}.jpg" if i % 2 else f"p{i}.png")
    benign_image(5000 + i, 480 + 16 * (i % 8), 360 + 8 * (i % 5)).save(path)
    pictures.append(path)
(folder / "bomb.gif").write_bytes(canvas_bomb_gif(4000, 50))
Image.new("RGB", (6000, 5000), (90, 120, 150)).save(folder / "flat.png")  # 30 MP in ~100 KB
factory = default_sessionmaker()
with transaction(factory) as s:
    listed = lists_service.create_list(s, SYSTEM, name="soak", kind="hash")
    records = []
    for path in pictures[: count // 2]:
        hashed = hash_file(path)
        records += [EntryRecord("pdq", hashed["pdq"]), EntryRecord("md5", hashed["md5"])]
    lists_service.add_entries(s, SYSTEM, listed, records)
    lists_service.create_list(s, SYSTEM, name="soak-writes", kind="hash")
    partner = auth_service.create_api_key(s, SYSTEM, name="soak-partner", scopes=["match", "hash"]).secret
    curator = auth_service.create_api_key(
        s, SYSTEM, name="soak-curator", scopes=["lists:read", "lists:write"]
    ).secret
    auth_service.create_user(s, SYSTEM, username="soak-analyst", role="analyst", password="soak-password-1")
print(json.dumps({"partner": partner, "curator": curator, "pdq": [r.value for r in records if r.signal_type == "pdq"]}))
"""


class Stats:
    """Latencies and outcomes per request kind, from every client thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.busy: collections.Counter[str] = collections.Counter()
        self.samples: list[str] = []

    def record(self, kind: str, ms: float, ok: bool, busy: bool, detail: str) -> None:
        with self.lock:
            self.latency[kind].append(ms)
            if busy:
                self.busy[kind] += 1
            elif not ok:
                self.errors[kind] += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{kind}: {detail[:200]}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] if ordered else float("nan")


class Client:
    """One client thread's mix of requests."""

    def __init__(self, base: str, files: str, keys: dict[str, Any], folder: Path, stats: Stats, seed: int) -> None:
        self.base, self.files, self.keys, self.stats = base, files, keys, stats
        self.rng = random.Random(seed)
        self.pictures = sorted(p for p in folder.iterdir() if p.name.startswith("p"))
        self.bomb = (folder / "bomb.gif").read_bytes()
        self.flat = (folder / "flat.png").read_bytes()
        self.partner = {"authorization": f"Bearer {keys['partner']}"}
        self.curator = {"authorization": f"Bearer {keys['curator']}"}
        self.http = httpx.Client(base_url=base, timeout=120)
        self.writes = 0
        self.mix: list[tuple[float, str, Callable[[], tuple[bool, bool, str]]]] = [
            (30, "lookup", self.lookup),
            (10, "batch", self.batch),
            (14, "hash upload", self.hash_upload),
            (8, "match upload", self.match_upload),
            (2, "bomb upload", self.bomb_upload),
            (8, "url match", self.url_match),
            (20, "list read", self.list_read),
            (5, "list write", self.list_write),
            (3, "login", self.login),
        ]

    def step(self) -> None:
        _, kind, call = self.rng.choices(self.mix, weights=[w for w, _, _ in self.mix])[0]
        started = time.perf_counter()
        try:
            ok, busy, detail = call()
        except httpx.HTTPError as exc:
            ok, busy, detail = False, False, f"{type(exc).__name__}: {exc}"
        self.stats.record(kind, (time.perf_counter() - started) * 1000, ok, busy, detail)

    @staticmethod
    def _judge(response: httpx.Response, *expected: int) -> tuple[bool, bool, str]:
        busy = response.status_code in (429, 503)
        return response.status_code in expected, busy, f"{response.status_code} {response.text[:200]}"

    def lookup(self) -> tuple[bool, bool, str]:
        listed = self.rng.random() < 0.3
        value = self.rng.choice(self.keys["pdq"]) if listed else hashlib.sha256(os.urandom(8)).hexdigest()
        r = self.http.get("/v1/match", params={"signal_type": "pdq", "value": value}, headers=self.partner)
        ok, busy, detail = self._judge(r, 200)
        return ok and (not listed or bool(r.json()["matches"])), busy, detail

    def batch(self) -> tuple[bool, bool, str]:
        values = [hashlib.sha256(os.urandom(8)).hexdigest() for _ in range(45)] + self.keys["pdq"][:5]
        body = {"signals": [{"signal_type": "pdq", "value": v} for v in values]}
        return self._judge(self.http.post("/v1/match/batch", json=body, headers=self.partner), 200)

    def hash_upload(self) -> tuple[bool, bool, str]:
        picture = self.rng.choice(self.pictures)
        files = {"file": (picture.name, picture.read_bytes(), "application/octet-stream")}
        return self._judge(self.http.post("/v1/hash", files=files, headers=self.partner), 200)

    def match_upload(self) -> tuple[bool, bool, str]:
        picture = self.rng.choice(self.pictures)
        files = {"file": (picture.name, picture.read_bytes(), "application/octet-stream")}
        return self._judge(self.http.post("/v1/match", files=files, headers=self.partner), 200)

    def bomb_upload(self) -> tuple[bool, bool, str]:
        if self.rng.random() < 0.5:  # refused from its headers
            files = {"file": ("bomb.gif", self.bomb, "image/gif")}
            return self._judge(self.http.post("/v1/hash", files=files, headers=self.partner), 422)
        files = {"file": ("flat.png", self.flat, "image/png")}  # 30 MP: decoded in full for PDQ
        return self._judge(self.http.post("/v1/hash", files=files, headers=self.partner), 200)

    def url_match(self) -> tuple[bool, bool, str]:
        picture = self.rng.choice(self.pictures)
        r = self.http.post("/v1/match", json={"url": f"{self.files}/{picture.name}"}, headers=self.partner)
        return self._judge(r, 200)

    def list_read(self) -> tuple[bool, bool, str]:
        if self.rng.random() < 0.5:
            return self._judge(self.http.get("/v1/lists", headers=self.curator), 200)
        return self._judge(self.http.get("/v1/lists/soak/entries", params={"limit": 50}, headers=self.curator), 200)

    def list_write(self) -> tuple[bool, bool, str]:
        self.writes += 1
        value = hashlib.md5(f"soak {id(self)} {self.writes}".encode()).hexdigest()
        body = {"entries": [{"signal_type": "md5", "value": value}]}
        return self._judge(self.http.post("/v1/lists/soak-writes/entries", json=body, headers=self.curator), 200)

    def login(self) -> tuple[bool, bool, str]:
        with httpx.Client(base_url=self.base, timeout=60) as browser:
            page = browser.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            if token is None:
                return False, False, f"no CSRF token on /login ({page.status_code})"
            form = {"username": "soak-analyst", "password": "soak-password-1", "csrf_token": token.group(1)}
            r = browser.post("/login", data=form)
            return self._judge(r, 303)


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of the server and its children (uvicorn workers)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            total += p.memory_info().rss
    return total


def serve_files(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--warmup-minutes", type=float, help="default: a fifth of the run, 1 to 10 minutes")
    args = parser.parse_args()
    duration = args.minutes * 60
    warmup = (args.warmup_minutes * 60) if args.warmup_minutes is not None else min(600, max(60, duration / 5))

    home = Path(tempfile.mkdtemp(prefix="seawall-soak-"))
    folder = home / "pictures"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    env |= {
        "SEAWALL_HOME": str(home),
        "SEAWALL_LOG_LEVEL": "WARNING",
        "SEAWALL_LOG_JSON": "true",
        "SEAWALL_FETCH_ALLOW_NETWORKS": '["127.0.0.1/32"]',
        "SEAWALL_QUEUE_IMMEDIATE": "true",
    }
    files_server, files = serve_files(folder)
    server: subprocess.Popen[bytes] | None = None
    log = home / "server.log"
    try:
        subprocess.run([SEAWALL, "db", "upgrade"], env=env, check=True, capture_output=True)
        seeded = subprocess.run(
            [sys.executable, "-c", SEED, str(folder), str(PICTURES)], env=env, capture_output=True, text=True
        )
        if seeded.returncode:
            print(seeded.stderr, file=sys.stderr)
            return 2
        keys = json.loads(seeded.stdout.strip().splitlines()[-1])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [SEAWALL, "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        started = time.monotonic()
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 120 or server.poll() is not None:
                print(f"the server did not start; see {log}", file=sys.stderr)
                return 2
            time.sleep(0.3)
        process = psutil.Process(server.pid)
        print(
            f"server pid {server.pid} on {base}; {args.clients} clients for {args.minutes:g} min "
            f"(warm-up {warmup / 60:.1f} min), RSS sampled every {args.sample_seconds:g} s"
        )

        stats = Stats()
        stop = threading.Event()

        def run(n: int) -> None:
            client = Client(base, files, keys, folder, stats, seed=n)
            while not stop.is_set():
                client.step()

        threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(args.clients)]
        begin = time.monotonic()
        for t in threads:
            t.start()
        samples: list[tuple[float, int]] = []
        while (elapsed := time.monotonic() - begin) < duration:
            samples.append((elapsed, tree_rss(process)))
            if server.poll() is not None:
                print("the server died", file=sys.stderr)
                return 1
            minute = int(elapsed // 60)
            if len(samples) > 1 and int(samples[-2][0] // 60) != minute:
                print(f"  {minute:3d} min  RSS {samples[-1][1] / 2**20:7.1f} MiB", flush=True)
            time.sleep(args.sample_seconds)
        stop.set()
        for t in threads:
            t.join(timeout=180)
        samples.append((time.monotonic() - begin, tree_rss(process)))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        files_server.shutdown()

    # RSS after warm-up: the median of the samples in the minute that ends the warm-up; at the end:
    # the median of the last minute's samples (one sample is noisy: a decode may be in flight).
    after_warmup = statistics.median(r for t, r in samples if warmup - 60 <= t <= warmup) if samples else 0
    end = statistics.median(r for t, r in samples if t >= samples[-1][0] - 60)
    peak = max(r for _, r in samples)
    ratio = end / after_warmup if after_warmup else float("inf")

    print()
    print(f"{'kind':14}{'requests':>10}{'errors':>8}{'busy':>6}{'p50 ms':>10}{'p99 ms':>10}")
    total = errors = busy = 0
    for kind in sorted(stats.latency):
        values = stats.latency[kind]
        total, errors, busy = total + len(values), errors + stats.errors[kind], busy + stats.busy[kind]
        print(
            f"{kind:14}{len(values):>10}{stats.errors[kind]:>8}{stats.busy[kind]:>6}"
            f"{_pct(values, 0.5):>10.1f}{_pct(values, 0.99):>10.1f}"
        )
    every = [v for values in stats.latency.values() for v in values]
    print(f"{'all':14}{total:>10}{errors:>8}{busy:>6}{_pct(every, 0.5):>10.1f}{_pct(every, 0.99):>10.1f}")
    print(f"throughput {total / duration:.1f} requests/s; busy = 503/429 answers (decode slots, fetch limits)")
    for line in stats.samples:
        print(f"  error sample: {line}")
    print()
    print(
        f"RSS after warm-up {after_warmup / 2**20:.1f} MiB, at the end {end / 2**20:.1f} MiB, "
        f"peak {peak / 2**20:.1f} MiB"
    )
    print(f"ratio end / after warm-up: {ratio:.3f} (limit {GROWTH_LIMIT:.2f})")
    failed = ratio > GROWTH_LIMIT
    if not failed:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"kept {home} (server log: {log})")
    print("FAILED" if failed else "passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
