"""Bulk scanning speed: `seawall scan` on Dask against the single-process `seawall match`.

Generates a folder of benign JPEGs (smooth colour fields and shapes), puts a tenth of them on a
list (SHA-256 and PDQ) in a throwaway SQLite database, and measures items per second for, in the
same run:

  (a) `seawall match -r FOLDER` in this process (one file at a time: hash, search, decide)
  (b) `seawall scan` on a local Dask cluster of 1 and of N worker processes, exact and --fast
      decoding, with the scaling efficiency N workers reach against linear
  (c) the same through a real `dask scheduler` and `dask worker` processes this script starts on
      127.0.0.1, against (b) at N workers

Each scan's time is from the run's start to its end with the cluster already up and every worker
warm: (b) starts the local cluster as `seawall scan` does, has each worker load the scanning code,
the kernels and the list indexes once (`client.run`), and then scans through that cluster's
scheduler address, as (c) does with its real cluster. So the figures are the steady state a long
scan sees; the one-off start and warm-up (about a second a worker, paid once per scan) is printed
apart and is in none of the rates. Every scan's matches are checked against (a): a faster scan that
finds something else is a failure, not a result.

Next to each rate is the CPU time an item cost: of `seawall match`'s process, and of a scan's
workers and of its driving process (where a local cluster's scheduler and nannies run too). Those
do not depend on what else the machine runs; items/s does, so the load average is printed as well.

Run: .venv/bin/python bench/scan.py [--images 160] [--workers 2] [--partition 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _images(folder: Path, count: int) -> None:
    from seawall.media.synthetic import benign_image

    for n in range(count):
        benign_image(1000 + n, 800, 600).save(folder / f"img{n:04}.jpg", format="JPEG", quality=88)


def _cpu_seconds() -> float:
    """CPU time of this process so far, every thread (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_scan(
    sources: list[str], *, workers: int | None, fast: bool, scheduler: str | None = None, cluster: Any = None
) -> dict[str, Any]:
    """A scan, timed; with ``cluster`` (a client of it) also the CPU its workers and this process spent."""
    from seawall.auth.permissions import cli_principal
    from seawall.config import get_settings
    from seawall.db import default_sessionmaker
    from seawall.scan import service

    settings = get_settings()
    factory = default_sessionmaker()
    with factory() as session:
        run = service.create_run(
            session, settings, cli_principal(), sources, service.ScanOptions(fast=fast), Path(tempfile.mktemp(".jsonl"))
        )
        session.commit()
    marks: list[float] = []
    workers_before = sum(cluster.run(_cpu_seconds).values()) if cluster is not None else 0.0
    client_before = _cpu_seconds()
    started = time.perf_counter()
    ended = service.execute(
        factory,
        settings,
        cli_principal(),
        run.id,
        workers=workers,
        scheduler=scheduler,
        on_progress=lambda p: marks.append(time.perf_counter()),
    )
    total = time.perf_counter() - started
    client_cpu = _cpu_seconds() - client_before
    workers_cpu = sum(cluster.run(_cpu_seconds).values()) - workers_before if cluster is not None else 0.0
    rows = [json.loads(line) for line in Path(ended.out or "").read_text().splitlines()]
    Path(ended.out or "").unlink()
    return {"items": ended.items, "seconds": total, "rows": rows, "client_cpu": client_cpu, "workers_cpu": workers_cpu}


def _warm_worker() -> None:
    import seawall.scan.warmup  # noqa: F401  (hashes and searches once on import)
    from seawall.scan.worker import context

    context()


def _matches(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    return {r["path"]: sorted((m["signal_type"], m["entry_id"]) for m in r.get("matches", [])) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--partition", type=int, default=16, help="Files per partition.")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="seawall-bench-scan-"))
    os.environ.update(
        SEAWALL_HOME=str(tmp / "home"),
        SEAWALL_SECRET_KEY="bench-secret-not-for-production",
        SEAWALL_SCAN_PARTITION_ITEMS=str(args.partition),
    )
    os.environ.pop("SEAWALL_DATABASE_URL", None)
    from typer.testing import CliRunner

    from seawall import migrate
    from seawall.auth.permissions import SYSTEM
    from seawall.cli import app
    from seawall.db import default_engine, default_sessionmaker
    from seawall.lists import service as lists_service
    from seawall.lists.records import EntryRecord
    from seawall.scan.service import connect
    from seawall.signals.hashing import hash_file

    folder = tmp / "pictures"
    folder.mkdir(parents=True)
    print(f"generating {args.images} benign 800x600 JPEGs in {folder} …", file=sys.stderr)
    _images(folder, args.images)
    migrate.upgrade(default_engine())
    records = []
    for n in range(0, args.images, 10):
        hashed = hash_file(folder / f"img{n:04}.jpg")
        records += [EntryRecord("sha256", hashed["sha256"]), EntryRecord("pdq", hashed["pdq"])]
    with default_sessionmaker()() as session:
        known = lists_service.create_list(session, SYSTEM, name="known", kind="hash")
        lists_service.add_entries(session, SYSTEM, known, records)
        session.commit()

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures assume an idle machine)")
    # (a) the single-process matcher, as the command runs it
    runner = CliRunner()
    runner.invoke(app, ["match", str(folder / "img0000.jpg")])  # load indexes and kernels once
    started, cpu = time.perf_counter(), _cpu_seconds()
    matched = runner.invoke(app, ["match", "-r", str(folder)])
    single_seconds = time.perf_counter() - started
    single_cpu = (_cpu_seconds() - cpu) / args.images * 1000
    single = {
        r["path"]: sorted((m["signal_type"], m["entry_id"]) for m in r["matches"])
        for r in map(json.loads, matched.stdout.splitlines())
    }
    single_rate = args.images / single_seconds
    print(f"(a) seawall match, one process: {single_rate:7.1f} items/s  (CPU {single_cpu:.1f} ms an item)")

    sources = [str(folder)]
    results: dict[tuple[int, bool], float] = {}
    cpu_ms: dict[tuple[int, bool], tuple[float, float]] = {}  # CPU ms an item: the workers, this process
    for workers in (1, args.workers):
        # the local cluster as `seawall scan` starts it, each worker warmed once (apart, not timed below)
        started = time.perf_counter()
        client, cluster = connect(None, workers)
        client.run(_warm_worker)
        startup = time.perf_counter() - started
        print(f"    local cluster of {workers} worker(s) started and warmed in {startup:.2f} s (excluded below)")
        try:
            for fast in (False, True):
                scan = _timed_scan(
                    sources, workers=None, fast=fast, scheduler=cluster.scheduler_address, cluster=client
                )
                results[(workers, fast)] = scan["items"] / scan["seconds"]
                cpu_ms[(workers, fast)] = (
                    scan["workers_cpu"] / scan["items"] * 1000,
                    scan["client_cpu"] / scan["items"] * 1000,
                )
                if not fast:
                    assert _matches(scan["rows"]) == single, "scan results differ from seawall match"
        finally:
            client.close()
            cluster.close()
    for fast in (False, True):
        for workers in (1, args.workers):
            rate = results[(workers, fast)]
            label = "fast" if fast else "exact"
            print(
                f"(b) seawall scan, {workers} worker(s), {label:5}: {rate:7.1f} items/s"
                f"  ({rate / single_rate:4.2f}x match; CPU ms an item: workers {cpu_ms[(workers, fast)][0]:.1f},"
                f" driving process {cpu_ms[(workers, fast)][1]:.1f})"
            )
        one, many = results[(1, fast)], results[(args.workers, fast)]
        efficiency = many / (one * args.workers)
        print(f"    scaling 1 → {args.workers} workers ({'fast' if fast else 'exact'}): {efficiency:6.1%} of linear")

    # (c) a real scheduler and worker processes on loopback
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = {  # as docs/scan.md advises for scanning workers
        **os.environ,
        "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
        "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
        "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
        "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "1s",
    }
    procs = [
        subprocess.Popen(
            [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    address = f"tcp://127.0.0.1:{port}"
    try:
        procs.append(
            subprocess.Popen(
                [
                    str(bin_dir / "dask"),
                    "worker",
                    address,
                    "--nworkers",
                    str(args.workers),
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(args.workers, timeout=120)
            client.run(_warm_worker)  # each worker loads code and indexes once, as a long scan amortises
        scan = _timed_scan(sources, workers=None, fast=False, scheduler=address)
        assert _matches(scan["rows"]) == single, "cluster scan results differ from seawall match"
        rate = scan["items"] / scan["seconds"]
        local = results[(args.workers, False)]
        print(
            f"(c) seawall scan, dask scheduler + {args.workers} worker processes: {rate:7.1f} items/s"
            f"  ({rate / local:4.2f}x the local cluster)"
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
