"""The work a Dask worker does for one partition: expand it, hash each item, search the indexes.

A worker process loads the list indexes once (binary indexes as the memory-mapped segments every
Seawall process shares) and keeps them between partitions, refreshing them from the lists' change
log as any matcher does. Tasks carry no credentials: a worker reads its own ``SEAWALL_`` settings
(the database, SEAWALL_HOME) like every other Seawall process on its machine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from seawall.auth.permissions import Principal
from seawall.config import Settings, get_settings
from seawall.matching.indexes import MatchIndexes
from seawall.matching.service import Hit
from seawall.scan.sources import Expander, Item

# What hashing says of something that is simply not media: counted as skipped, not as an error.
NOT_MEDIA = ("not a supported image or video format", "empty file (0 bytes)")
SIGNAL_FIELDS = ("md5", "sha1", "sha256", "pdq", "pdq_quality")
REFRESH_SECONDS = 5.0


@dataclass
class _Context:
    key: tuple[str, str]
    settings: Settings
    factory: sessionmaker[Session]
    indexes: MatchIndexes


_context: _Context | None = None
_context_lock = threading.Lock()


def context() -> _Context:
    """This process's settings, read-only sessions and indexes, made on first use."""
    global _context
    settings = get_settings()
    key = (settings.effective_database_url, str(settings.home))
    with _context_lock:
        if _context is None or _context.key != key:
            from seawall.db import make_engine, make_sessionmaker
            from seawall.media.budget import keep_freed_memory

            keep_freed_memory()  # decoding picture after picture: reuse the buffers, not fresh pages
            if _context is not None:
                _context.indexes.stop()
            factory = make_sessionmaker(make_engine(settings.effective_database_url), writes=False)
            indexes = MatchIndexes(factory, folder=settings.home / "index")
            indexes.refresh()
            _context = _Context(key, settings, factory, indexes)
        else:
            _context.indexes.ensure_fresh(REFRESH_SECONDS)
        return _context


def scan_partition(
    spec: dict[str, Any], options: dict[str, Any], principal: Principal | None = None
) -> list[dict[str, Any]]:
    """Every item of a partition as a result row: path, size, media, signals, and its matches
    described and decided by policy for ``principal`` as ``seawall match`` does; or an error.

    Deciding here, in one batch per partition, leaves the client only the writes (reports, review
    items, results, checkpoint): it shares the machine with the workers. The principal names who
    scans (quarantines and hidden allowlists depend on it); it is no credential, and this reads only.
    Per-item failures become rows with an ``error``; only a failure of the worker itself fails the
    task (and Dask then runs it elsewhere)."""
    from seawall.matching.service import decide_hits

    ctx = context()
    rows: list[dict[str, Any]] = []
    found: list[tuple[int, list[Hit]]] = []
    with ctx.factory() as session:
        for item in Expander(ctx.settings).partition(spec):
            row, hits = scan_item(session, ctx, item, options)
            if hits:
                found.append((len(rows), hits))
            rows.append(row)
        if found:
            outcomes = decide_hits(
                session, ctx.indexes, [h for _, h in found], [rows[i].get("media") for i, _ in found], principal
            )
            for (i, _), outcome in zip(found, outcomes, strict=True):
                rows[i]["matches"] = outcome.matches
                if outcome.matches:
                    rows[i]["actions"] = outcome.decision.actions
                    rows[i]["allowlisted"] = outcome.decision.allowlisted
    return rows


def scan_item(session: Session, ctx: _Context, item: Item, options: dict[str, Any]) -> tuple[dict[str, Any], list[Hit]]:
    """One item's row (without its decision) and the raw hits of its signals."""
    from seawall.matching import service
    from seawall.media.errors import MediaError
    from seawall.media.memfile import memory_file
    from seawall.signals.hashing import hash_file

    row: dict[str, Any] = {"path": item.path, "size": item.size}
    if item.url is not None:
        row["url"] = item.url
    if item.error is not None:
        row["error"] = item.error
        return row, []
    fast = bool(options.get("fast"))
    regions = ctx.settings.match_regions
    try:
        if item.file is not None:
            hashed = hash_file(item.file, dihedral=True, fast=fast, regions=regions)
        else:
            with memory_file(item.data or b"") as path:
                hashed = hash_file(path, dihedral=True, fast=fast, regions=regions)
    except MediaError as exc:
        row["skipped" if exc.reason in NOT_MEDIA else "error"] = exc.reason
        return row, []
    except OSError as exc:
        row["error"] = f"cannot read file: {exc.strerror or exc}"
        return row, []
    except Exception as exc:  # a decoder's own failure on hostile input: an error of this item only
        row["error"] = f"cannot decode: {type(exc).__name__}"
        return row, []
    row["media"] = hashed.get("media")
    row["signals"] = {k: hashed[k] for k in SIGNAL_FIELDS if k in hashed}
    if hashed.get("vpdq") is not None:
        row["signals"]["vpdq_frames"] = len(hashed["vpdq"])
    row["matches"] = []
    query = service.Query.from_hash(hashed)
    return row, service.find_hits(session, ctx.indexes, query, ctx.settings, lists=options.get("lists"))
