"""API benchmark: a real `seawall serve` on loopback with a large hash list, loaded by wrk.

Measures single-hash lookups (GET /v1/match), batch lookups (POST /v1/match/batch) and file-upload
matching (POST /v1/match, multipart), and prints each against the same server's /healthz
throughput measured in the same run (the floor of the stack: routing, middleware, uvicorn).
Goal on 2 cores: >= 2,000 single lookups/s with p99 < 25 ms at 1M entries.

    .venv/bin/python bench/api.py [--entries 1000000] [--seconds 10] [--connections 16] [--workers 2]
                                  [--home PATH]

``--home PATH`` keeps the seeded home folder at PATH and reuses it on the next run (seeding 1M
entries takes a minute or two), to iterate faster; a reused home carries the earlier runs' match log
(and so, soon, quarantined entries), so figures for the record come from a fresh one. Without it a
temporary folder is used and removed (``BENCH_KEEP=1`` keeps it).

Needs wrk (Debian package `wrk`); everything runs on 127.0.0.1.

``--regions`` measures instead what matching regions (docs/regions.md) costs an upload: two servers
on the same home, one with ``SEAWALL_MATCH_REGIONS=false`` (the baseline), one with it on, are
loaded in turn with phone-photo-sized JPEG uploads (1080x1920 and 3000x4000; no border, letterboxed,
padded, a phone screenshot), alternating several rounds so the machine's load falls on both alike,
and the ratio of upload throughput (on / off) is printed per kind of upload. No wrk needed.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEAWALL = str(Path(sys.executable).with_name("seawall"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(entries: int, env: dict[str, str], home: Path) -> tuple[str, list[str], list[bytes]]:
    """Create the list (random PDQ codes plus a few benign pictures) and a partner key.

    What was seeded is noted in ``home/bench-seed.json``, so a kept home is reused as it is."""
    import json

    noted = home / "bench-seed.json"
    if noted.exists():
        data = json.loads(noted.read_text())
        if data.get("entries") != entries:
            sys.exit(f"{home} was seeded with {data.get('entries'):,} entries, not {entries:,}")
        return _queries(data)
    code = f"""
import json, io, numpy as np, sys
from seawall.db import default_sessionmaker, transaction
from seawall.auth import service as auth_service
from seawall.auth.permissions import SYSTEM
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
import tempfile, pathlib
rng = np.random.default_rng(7)
factory = default_sessionmaker()
pictures = []
with transaction(factory) as s:
    hl = lists_service.create_list(s, SYSTEM, name="bench", kind="hash")
    key = auth_service.create_api_key(s, SYSTEM, name="bench", scopes=["match"]).secret
    folder = pathlib.Path({str(home)!r}) / "bench-pictures"
    folder.mkdir(exist_ok=True)
    records = []
    for i in range(8):
        p = folder / f"p{{i}}.jpg"; benign_image(900 + i, 1024, 768).save(p, quality=88)
        records.append(EntryRecord("pdq", hash_file(p)["pdq"])); pictures.append(str(p))
    lists_service.add_entries(s, SYSTEM, hl, records)
remaining = {entries}
while remaining > 0:
    n = min(200_000, remaining)
    codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    with transaction(factory) as s:
        hl = lists_service.get_list(s, "bench")
        records = (EntryRecord("pdq", c.tobytes().hex()) for c in codes)
        lists_service.add_entries(s, SYSTEM, hl, records, batch_size=20_000)
    if remaining == {entries}:
        planted = [c.tobytes().hex() for c in codes[:250]]
    remaining -= n
    print(f"seeded {{ {entries} - remaining }}", file=sys.stderr, flush=True)
print(json.dumps({{"key": key, "pictures": pictures, "planted": planted}}))
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(done.stderr)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data["entries"] = entries
    noted.write_text(json.dumps(data))
    return _queries(data)


def _queries(data: dict[str, Any]) -> tuple[str, list[str], list[bytes]]:
    pictures = [Path(p).read_bytes() for p in data["pictures"]]
    # Queries as a platform sees them: mostly unrelated uploads, 2% near copies of listed codes
    # (distance 0-31, each must match, and each match is recorded).
    rng = np.random.default_rng(11)
    queries = [secrets.token_hex(32) for _ in range(980)]
    for i, planted in enumerate(data["planted"][:20]):
        code = np.frombuffer(bytes.fromhex(planted), dtype=np.uint8).copy()
        bits = np.unpackbits(code)
        flip = rng.choice(256, size=(i * 3) % 32, replace=False)
        bits[flip] ^= 1
        queries.insert(i * 49, np.packbits(bits).tobytes().hex())
    return data["key"], queries, pictures


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "errors": float(errors.group(1)) if errors else 0.0}


def lua_get(path: str, key: str, queries: list[str]) -> str:
    values = ",".join(f'"{q}"' for q in queries)
    return f"""
local values = {{{values}}}
local i = 0
wrk.headers["Authorization"] = "Bearer {key}"
request = function()
  i = i + 1
  return wrk.format("GET", "{path}" .. values[(i % #values) + 1])
end
"""


def lua_batch(key: str, queries: list[str], size: int) -> str:
    import json

    body = json.dumps({"signals": [{"signal_type": "pdq", "value": q} for q in queries[:size]]})
    return f"""
wrk.method = "POST"
wrk.body = {json.dumps(body)}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def uploads(base: str, key: str, pictures: list[bytes], seconds: float, threads: int) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
            i = n
            while time.monotonic() < deadline:
                started = time.perf_counter()
                r = client.post(
                    "/v1/match", files={"file": ("p.jpg", io.BytesIO(pictures[i % len(pictures)]), "image/jpeg")}
                )
                r.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
                i += 1

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(0.99 * (len(latencies) - 1))],
        "errors": 0.0,
    }


def region_uploads() -> dict[str, list[bytes]]:
    """Phone-photo-sized JPEGs, 4 of each kind: benign generated pictures (the listed ones among
    the bordered kinds, so region hits and their match log rows are part of the cost)."""
    from PIL import Image, ImageDraw, ImageOps

    from seawall.media.synthetic import benign_image

    listed = [benign_image(900 + i, 1024, 768) for i in range(4)]

    def encoded(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()

    def letterbox(picture: Image.Image, w: int, h: int) -> Image.Image:
        inner = picture.resize((w, w * picture.height // picture.width))
        canvas = Image.new("RGB", (w, h), (0, 0, 0))
        canvas.paste(inner, (0, (h - inner.height) // 2))
        return canvas

    def screenshot(picture: Image.Image, w: int, h: int) -> Image.Image:
        canvas = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, w, h // 24), fill=(25, 25, 25))
        draw.rectangle((0, h // 24, w, h // 10), fill=(245, 245, 248))
        inner = picture.resize((w - 60, (w - 60) * picture.height // picture.width))
        canvas.paste(inner, (30, h // 8))
        for y in range(h // 8 + inner.height + 40, h - 40, 44):
            for x in range(30, w - 60, 36):
                draw.rectangle((x, y, x + 22, y + 18), fill=(70, 70, 70))
        return canvas

    kinds: dict[str, list[bytes]] = {}
    for w, h in ((1080, 1920), (3000, 4000)):
        kinds[f"{w}x{h} photo, no border"] = [encoded(benign_image(700 + i, w, h)) for i in range(4)]
        kinds[f"{w}x{h} letterboxed (listed)"] = [encoded(letterbox(p, w, h)) for p in listed]
        kinds[f"{w}x{h} padded 10% white"] = [
            encoded(ImageOps.expand(benign_image(720 + i, w * 8 // 10, h * 8 // 10), w // 10, (255, 255, 255)))
            for i in range(4)
        ]
        kinds[f"{w}x{h} phone screenshot (listed)"] = [encoded(screenshot(p, w, h)) for p in listed]
    return kinds


def start_server(env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp()) / "server.log"
    server = subprocess.Popen(
        [SEAWALL, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    t0 = time.monotonic()
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=2).json().get("ready"):
                return server, base, log
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 600 or server.poll() is not None:
            sys.exit(f"server did not become ready (log: {log})")
        time.sleep(0.5)


def regions_main(args: argparse.Namespace, env: dict[str, str], home: Path, key: str) -> None:
    """Upload throughput with regions on vs off, measured in turns in one run (see ``--regions``)."""
    kinds = region_uploads()
    servers = {flag: start_server({**env, "SEAWALL_MATCH_REGIONS": flag}, args.workers) for flag in ("false", "true")}
    try:
        print(f"servers ready: regions off at {servers['false'][1]}, on at {servers['true'][1]}")
        for flag in servers:  # warm-up: numba kernels, pools, every kind once
            for files in kinds.values():
                uploads(servers[flag][1], key, files, 1, 2)
        rounds = args.rounds
        print(f"{rounds} rounds of {args.seconds} s per server and kind, 2 client threads, {args.workers} workers")
        print(f"{'upload':40}{'off req/s':>11}{'on req/s':>10}{'on p50 ms':>11}{'ratio':>8}")
        totals = {"false": 0.0, "true": 0.0}
        for label, files in kinds.items():
            done = {"false": 0.0, "true": 0.0}
            p50: list[float] = []
            for r in range(rounds):
                order = ("false", "true") if r % 2 == 0 else ("true", "false")
                for flag in order:
                    got = uploads(servers[flag][1], key, files, args.seconds, 2)
                    done[flag] += got["rps"]
                    if flag == "true":
                        p50.append(got["p50"])
            off, on = done["false"] / rounds, done["true"] / rounds
            totals["false"] += 1 / off
            totals["true"] += 1 / on
            print(f"{label:40}{off:>11.1f}{on:>10.1f}{statistics.median(p50):>11.1f}{on / off:>7.2f}x")
        # The same number of each kind: throughput is the inverse of the summed per-upload times.
        print(f"{'mix (one of each kind)':40}{'':>11}{'':>10}{'':>11}{totals['false'] / totals['true']:>7.2f}x")
    finally:
        for server, _, _ in servers.values():
            server.terminate()
            server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--home", type=Path, help="seed into PATH and keep it; reuse it if seeded already")
    parser.add_argument("--regions", action="store_true", help="upload throughput with regions on vs off")
    parser.add_argument("--rounds", type=int, default=3, help="--regions: alternating rounds per kind")
    args = parser.parse_args()
    if not args.regions and not shutil.which("wrk"):
        sys.exit("bench/api.py needs wrk: apt-get install wrk")
    keep = bool(args.home or os.environ.get("BENCH_KEEP"))
    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="seawall-bench-api-"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SEAWALL_HOME": str(home), "SEAWALL_LOG_LEVEL": "WARNING", "SEAWALL_LOG_JSON": "true"}
    env.pop("SEAWALL_DATABASE_URL", None)
    subprocess.run([SEAWALL, "db", "upgrade"], env=env, check=True, capture_output=True)
    t0 = time.monotonic()
    reused = (home / "bench-seed.json").exists()
    key, queries, pictures = seed(args.entries, env, home)
    if reused:
        print(f"reusing {home} ({args.entries:,} PDQ entries)")
    else:
        print(f"seeded {args.entries:,} PDQ entries in {time.monotonic() - t0:.0f} s")
    if args.regions:
        try:
            regions_main(args, env, home, key)
        finally:
            if not keep:
                shutil.rmtree(home, ignore_errors=True)
        return
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = Path(tempfile.mkdtemp()) / "server.log"
    server = subprocess.Popen(
        [SEAWALL, "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=server_log.open("w"),
    )
    print(f"server log: {server_log}")
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).json().get("ready"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 600 or server.poll() is not None:
                sys.exit("server did not become ready")
            time.sleep(0.5)
        print(f"server ready (indexes loaded) in {time.monotonic() - t0:.1f} s, {args.workers} worker processes")
        scripts = Path(tempfile.mkdtemp())
        (scripts / "get.lua").write_text(lua_get("/v1/match?signal_type=pdq&value=", key, queries))
        (scripts / "batch.lua").write_text(lua_batch(key, queries, 100))
        # Warm-up: every worker process compiles its numba kernels and fills its pools first.
        wrk(base + "/healthz", 3, args.connections)
        wrk(base + "/", 5, args.connections, str(scripts / "get.lua"))
        wrk(base + "/v1/match/batch", 3, 2, str(scripts / "batch.lua"))
        uploads(base, key, pictures, 3, 2)
        healthz = wrk(base + "/healthz", args.seconds, args.connections)
        single = wrk(base + "/", args.seconds, args.connections, str(scripts / "get.lua"))
        batch = wrk(base + "/v1/match/batch", args.seconds, args.connections // 4 or 1, str(scripts / "batch.lua"))
        upload = uploads(base, key, pictures, args.seconds, 4)
    except Exception:
        errors = [line for line in server_log.read_text().splitlines() if '"level": "error"' in line]
        print("\n".join(errors[-3:]), file=sys.stderr)
        raise
    finally:
        server.terminate()
        server.wait(timeout=20)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home}")
    print()
    print(f"{'':28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}{'vs /healthz':>13}")
    rows = [
        ("/healthz (baseline)", healthz),
        ("single lookup GET /v1/match", single),
        ("batch of 100 /v1/match/batch", batch),
        ("upload POST /v1/match", upload),
    ]
    for label, r in rows:
        ratio = r["rps"] / healthz["rps"]
        print(f"{label:28}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['errors']:>9.0f}{ratio:>12.2f}x")
    print(f"\nbatch: {batch['rps'] * 100:,.0f} hashes/s")
    goal = single["rps"] >= 2000 and single["p99"] < 25
    print(f"goal (>= 2,000 single lookups/s, p99 < 25 ms at {args.entries:,} entries): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
