"""Scan runs: plan the partitions, farm them out to Dask, decide by policy, checkpoint as they finish.

Exactly-once without a distributed transaction: a partition's results are appended to the results
file (flushed to disk) and only then is the partition marked done, together with the run's counts
and the length of the results file that checkpoints cover. A scan killed in between leaves bytes
past that length; a resumed run cuts them off and scans the partition again. Reports a match opens
are keyed by run, partition and item, so a partition scanned twice opens each report once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import utcnow
from seawall.scan.models import COUNTERS, ScanPartition, ScanRun
from seawall.scan.sources import ScanError, plan

log = logging.getLogger(__name__)
WORKER_MODULES = ("seawall.scan.worker", "seawall.matching.service", "seawall.scan.warmup")  # warm-up last
# Dask settings for a local cluster (its scheduler and nannies run in this process, its workers
# apart). The statistical profiler samples the task thread's stack every few milliseconds, which cost
# decoding and hashing about half their speed: off. Every Dask server also wakes every 20 ms to time
# its event loop, samples the system every 0.5 s and a nanny its worker's memory every 0.1 s: on an
# idle 2-worker cluster that was 6.5% of a core in this process and 3% in each worker, taken from
# hashing on a machine whose cores the workers fill; each 1-5 s instead (about 1.3% and 0.5%).
WORKER_CONFIG = {
    "distributed.worker.multiprocessing-method": "forkserver",
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}
REPORT_PARTNER = "seawall-scan"  # reports a scan opens are this partner's, keyed by run/partition/item


@dataclass
class ScanOptions:
    lists: list[str] | None = None
    fast: bool = False
    report: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"lists": self.lists, "fast": self.fast, "report": self.report}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanOptions:
        return cls(lists=data.get("lists"), fast=bool(data.get("fast")), report=bool(data.get("report")))


# ------------------------------------------------------------------------------------------ runs


def create_run(
    session: Session,
    settings: Settings,
    principal: Principal,
    sources: list[str],
    options: ScanOptions,
    out: Path | None,
) -> ScanRun:
    """A new run with its partitions planned (the caller commits)."""
    from seawall.matching.service import caller_key

    if not sources:
        raise ScanError("name at least one source")
    specs = plan(sources, settings)
    run = ScanRun(
        state="running",
        principal=caller_key(principal),
        sources=list(sources),
        options=options.as_dict(),
        out=str(out.resolve()) if out is not None else None,
        out_offset=0,
        partitions=len(specs),
        partitions_done=0,
        **dict.fromkeys(COUNTERS, 0),
    )
    session.add(run)
    session.flush()
    for number, spec in enumerate(specs):
        session.add(ScanPartition(run_id=run.id, number=number, spec=spec, state="pending"))
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> ScanRun:
    run = session.get(ScanRun, run_id)
    if run is None:
        raise LookupError(f"no scan run {run_id}")
    return run


def list_runs(session: Session, limit: int = 50) -> list[ScanRun]:
    return list(session.scalars(select(ScanRun).order_by(ScanRun.id.desc()).limit(limit)))


def run_dict(run: ScanRun) -> dict[str, Any]:
    """A run as the API and the console show it: never the results themselves."""
    elapsed = ((run.finished_at or run.updated_at) - run.created_at).total_seconds()
    return {
        "id": run.id,
        "state": run.state,
        "sources": list(run.sources),
        "options": dict(run.options),
        "partitions": run.partitions,
        "partitions_done": run.partitions_done,
        **{name: int(getattr(run, name)) for name in COUNTERS},
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "items_per_second": round(run.items / elapsed, 2) if elapsed > 0 else None,
    }


@contextlib.contextmanager
def run_lock(settings: Settings, run_id: int) -> Iterator[None]:
    """Only one process drives a run at a time on this machine; the lock dies with its holder
    (a kill -9 leaves nothing to clean up before ``--resume``)."""
    folder = settings.ensure_home() / "scan"
    folder.mkdir(mode=0o700, exist_ok=True)
    with (folder / f"run-{run_id}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScanError(f"scan run {run_id} is being run by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ output


class ResultSink:
    """Where result rows go: JSON lines appended to a file (cut back to the checkpoint on resume),
    or standard output. A ``.parquet`` file is spooled as JSON lines and written when the run ends."""

    def __init__(self, out: str | None, offset: int) -> None:
        self.out = out
        self.parquet = bool(out and out.endswith(".parquet"))
        self.spool = Path(out + ".partial.jsonl") if self.parquet and out else (Path(out) if out else None)
        self.offset = offset
        self._handle: IO[bytes] | None = None
        if self.spool is not None:
            size = self.spool.stat().st_size if self.spool.exists() else 0
            if size < offset:
                raise ScanError(
                    f"{self.spool} holds {size} bytes but the run's checkpoints cover {offset}: "
                    "it was changed since; results cannot be resumed into it"
                )
            fd = os.open(self.spool, os.O_RDWR | os.O_CREAT, 0o600)  # results name listed content: private
            self._handle = os.fdopen(fd, "r+b")
            self._handle.truncate(offset)  # what a killed run wrote past its last checkpoint
            self._handle.seek(offset)

    def write(self, rows: list[dict[str, Any]]) -> int:
        """Append rows durably; the new offset for the checkpoint."""
        data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
        if self._handle is None:
            sys.stdout.write(data.decode())
            sys.stdout.flush()
            return 0
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.offset = self._handle.tell()
        return self.offset

    def finish(self) -> None:
        """The run is complete: a Parquet file is written from the spool."""
        self.close()
        if self.parquet and self.spool is not None and self.out is not None:
            write_parquet(self.spool, Path(self.out))
            self.spool.unlink()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_parquet(jsonl: Path, out: Path) -> None:
    """The results as a Parquet table: a column per scalar field, matches and actions as JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "path",
            "url",
            "size",
            "media",
            "md5",
            "sha1",
            "sha256",
            "pdq",
            "pdq_quality",
            "match_count",
            "matches",
            "actions",
            "skipped",
            "error",
        )
    }
    with jsonl.open() as handle:
        for line in handle:
            row = json.loads(line)
            signals = row.get("signals") or {}
            for key in ("path", "url", "size", "media", "skipped", "error"):
                columns[key].append(row.get(key))
            for key in ("md5", "sha1", "sha256", "pdq", "pdq_quality"):
                columns[key].append(signals.get(key))
            matches = row.get("matches") or []
            columns["match_count"].append(len(matches))
            columns["matches"].append(json.dumps(matches) if matches else None)
            columns["actions"].append(json.dumps(row["actions"]) if row.get("actions") else None)
    types = {"size": pa.int64(), "pdq_quality": pa.int32(), "match_count": pa.int32()}
    table = pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()})
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out)


# ------------------------------------------------------------------------------------------ driving


@dataclass
class Progress:
    """What a running scan shows: the run's counts and the rate of this session."""

    run: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    items_this_session: int = 0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.items_this_session / elapsed if elapsed > 0 else 0.0


def connect(scheduler: str | None, workers: int | None) -> tuple[Any, Any]:
    """A Dask client: to the scheduler named, or to a local cluster of worker processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="30s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ScanError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    import dask
    from distributed.utils import get_mp_context

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        # The fork server imports the scanning code once, and each worker forked from it starts with
        # it loaded (Dask sets its own preload list on first use: ours replaces it, a superset).
        get_mp_context().set_forkserver_preload(["distributed", "dask", "numpy", *WORKER_MODULES])
    # Workers forked from a fork server start in a second, not the many of a fresh interpreter; they
    # get this process's Seawall settings (same machine, same user) through the nanny's environment.
    env = {k: v for k, v in os.environ.items() if k.startswith("SEAWALL_")}
    with dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,  # decoding and hashing hold the GIL: processes, not threads, scale
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.WARNING,
            env=env,
        )
    return Client(cluster), cluster


def execute(
    factory: sessionmaker[Session],
    settings: Settings,
    principal: Principal,
    run_id: int,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    rate: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> ScanRun:
    """Scan the partitions of a run that are not done yet; returns the run as it ends."""
    with run_lock(settings, run_id):
        with factory() as session:
            run = get_run(session, run_id)
            options = ScanOptions.from_dict(run.options)
            todo = list(
                session.execute(
                    select(ScanPartition.number, ScanPartition.spec)
                    .where(ScanPartition.run_id == run_id, ScanPartition.state != "done")
                    .order_by(ScanPartition.number)
                ).all()
            )
            sink = ResultSink(run.out, run.out_offset)
            run.state = "running"
            run.finished_at = None
            session.commit()
            progress = Progress(run_dict(run))
        try:
            if todo:
                _drive(
                    factory,
                    settings,
                    principal,
                    run_id,
                    options,
                    todo,
                    sink,
                    scheduler,
                    workers,
                    rate,
                    progress,
                    on_progress,
                )
        except BaseException:
            # Stopped (Ctrl-C, the scheduler gone): say so; a kill -9 leaves "running", equally resumable.
            with factory() as session:
                session.execute(
                    update(ScanRun).where(ScanRun.id == run_id).values(state="interrupted", updated_at=utcnow())
                )
                session.commit()
            raise
        finally:
            sink.close()
        with factory() as session:
            run = get_run(session, run_id)
            if run.partitions_done == run.partitions:
                sink.finish()
                run.state, run.finished_at = "finished", utcnow()
            else:
                run.state = "incomplete"  # some partitions failed: --resume tries them again
            run.updated_at = utcnow()
            session.commit()
            if on_progress is not None:
                progress.run = run_dict(run)
                on_progress(progress)
            return run


def _drive(
    factory: sessionmaker[Session],
    settings: Settings,
    principal: Principal,
    run_id: int,
    options: ScanOptions,
    todo: list[Any],
    sink: ResultSink,
    scheduler: str | None,
    workers: int | None,
    rate: float | None,
    progress: Progress,
    on_progress: Callable[[Progress], None] | None,
) -> None:
    from distributed import as_completed

    from seawall.scan.worker import scan_partition

    client, cluster = connect(scheduler, workers)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        limit = 2 * n_workers + 1  # enough queued to keep every worker busy, few enough to hold in memory
        queue = list(todo)
        running: dict[Any, int] = {}
        submitted_items = 0
        started = time.monotonic()
        token = uuid.uuid4().hex[:8]

        def submit_next() -> Any | None:
            nonlocal submitted_items
            if not queue:
                return None
            number, spec = queue.pop(0)
            if rate:  # a throttle for storage that must not be read flat out
                wait = started + submitted_items / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                submitted_items += len(spec.get("paths") or spec.get("urls") or [1])
            future = client.submit(
                scan_partition,
                spec,
                options.as_dict(),
                principal,
                key=f"seawall-scan-{run_id}-{number}-{token}",
                pure=False,
            )
            running[future] = number
            return future

        pending = as_completed([f for f in (submit_next() for _ in range(limit)) if f is not None])
        for future in pending:
            number = running.pop(future)
            try:
                rows = future.result()
            except Exception as exc:  # the worker itself failed (Dask already retried a lost worker)
                _fail_partition(factory, run_id, number, f"{type(exc).__name__}: {exc}")
            else:
                counted, progress.run = complete_partition(
                    factory, settings, principal, run_id, number, rows, options, sink
                )
                progress.items_this_session += counted
            if on_progress is not None:
                on_progress(progress)
            following = submit_next()
            if following is not None:
                pending.add(following)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _fail_partition(factory: sessionmaker[Session], run_id: int, number: int, error: str) -> None:
    log.warning("scan run %s partition %s failed: %s", run_id, number, error)
    with factory() as session:
        session.execute(
            update(ScanPartition)
            .where(ScanPartition.run_id == run_id, ScanPartition.number == number, ScanPartition.state != "done")
            .values(state="failed", error=error[:2000])
        )
        session.commit()


def complete_partition(
    factory: sessionmaker[Session],
    settings: Settings,
    principal: Principal,
    run_id: int,
    number: int,
    results: list[dict[str, Any]],
    options: ScanOptions,
    sink: ResultSink,
) -> tuple[int, dict[str, Any]]:
    """Report, write and checkpoint one partition's result rows (the worker decided them): the
    number of items it counted, and the run as it stands after the checkpoint."""
    if options.report:
        open_reports(factory, settings, principal, run_id, number, results)
    open_review_items(factory, settings, principal, results)
    counts = dict.fromkeys(COUNTERS, 0)
    for row in results:
        counts["items"] += 1
        counts["bytes"] += int(row.get("size") or 0)
        if "error" in row:
            counts["errors"] += 1
        elif "skipped" in row:
            counts["skipped"] += 1
        else:
            counts["media"] += 1
            counts["matches"] += 1 if row.get("matches") else 0
    offset = sink.write(results)
    with factory() as session:
        done: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(ScanPartition)
            .where(ScanPartition.run_id == run_id, ScanPartition.number == number, ScanPartition.state != "done")
            .values(
                state="done",
                items=counts["items"],
                errors=counts["errors"],
                matches=counts["matches"],
                error="",
                done_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # never while the run lock is held; refuse rather than count twice
            raise ScanError(f"partition {number} of scan run {run_id} was completed by someone else")
        values: dict[str, Any] = {name: getattr(ScanRun, name) + counts[name] for name in COUNTERS}
        values.update(partitions_done=ScanRun.partitions_done + 1, out_offset=offset, updated_at=utcnow())
        run = session.scalars(  # the run as updated, for the progress figures: no second read
            update(ScanRun)
            .where(ScanRun.id == run_id)
            .values(**values)
            .returning(ScanRun)
            .execution_options(synchronize_session=False)
        ).one()
        figures = run_dict(run)
        session.commit()
    return counts["items"], figures


def open_reports(
    factory: sessionmaker[Session],
    settings: Settings,
    principal: Principal,
    run_id: int,
    number: int,
    results: list[dict[str, Any]],
) -> None:
    """A hotline report (channel "proactive") for each matched, not allowlisted item; its reference
    goes on the result row. Idempotent: the same item of the same run is the same report."""
    from seawall.hotline import intake

    wanted = [(i, r) for i, r in enumerate(results) if r.get("matches") and not r.get("allowlisted")]
    if not wanted:
        return
    with factory() as session:
        for i, row in wanted:
            signals = row.get("signals") or {}
            url = row.get("url")
            report = intake.ReportIn(
                channel="proactive",
                url=url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
                description=f"Found by seawall scan run {run_id}: {row['path']}"[: intake.MAX_DESCRIPTION],
                external_id=f"scan-{run_id}-{number}-{i}",
                signals=[(k, signals[k]) for k in ("sha256", "md5", "pdq") if isinstance(signals.get(k), str)],
            )
            try:
                submitted = intake.submit(session, settings, principal, report, partner=REPORT_PARTNER)
            except intake.IntakeError as exc:
                row["report_error"] = str(exc)
                continue
            row["report"] = submitted.report.reference
        session.commit()


def open_review_items(
    factory: sessionmaker[Session], settings: Settings, principal: Principal, results: list[dict[str, Any]]
) -> None:
    """A review item in the hotline's queue for each item a policy sent to ``review``, as a match
    through the API makes one (``intake.escalate_match``); its reference goes on the result row.
    Items that ``--report`` already reported are left alone (one queue entry per content), and the
    same content found again, by this run or another, is the same review item."""
    from seawall.hotline import intake

    wanted = [
        row
        for row in results
        if not row.get("report") and any(a.get("type") == "review" for a in row.get("actions") or ())
    ]
    if not wanted:
        return
    with factory() as session:
        for row in wanted:
            signals = {k: [v] for k, v in (row.get("signals") or {}).items() if isinstance(v, str)}
            url = row.get("url")
            report = intake.escalate_match(
                session,
                settings,
                principal,
                caller=REPORT_PARTNER,
                signals=signals,
                url=url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
                content_key=f"sha256:{signals['sha256'][0]}" if "sha256" in signals else f"path:{row['path']}",
                matches=row.get("matches") or [],
                reasons=[f"seawall scan: {row['path']}"],
            )
            if report is not None:
                row["review"] = report.reference
        session.commit()
