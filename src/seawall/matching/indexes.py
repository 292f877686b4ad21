"""The matcher's in-memory indexes, one set per enabled list, kept current from the lists' change log.

A process loads each list once (its active entries, after noting the list's revision) and from then
on applies only the changes after its checkpoint: never a full rebuild, never a full reload.
Applying a change is idempotent (an entry is replaced or removed by id), so a change that was
already visible in the initial load does no harm when replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from seawall.index.exact import ExactIndex
from seawall.index.hamming import HammingIndex
from seawall.index.storage import IndexCorruptError
from seawall.lists import service as lists_service
from seawall.lists.keywords import KeywordMatcher
from seawall.lists.models import Entry, HashList
from seawall.lists.urls import UrlIndex

log = logging.getLogger(__name__)
_LOAD_BATCH = 50_000
# Binary signal types whose indexes are kept on disk between runs. vPDQ is not: its per-video frame
# counts come from the database and would double-count frames replayed on top of a saved index.
PERSISTED = frozenset({"pdq"})
SAVE_AFTER_CHANGES = 50_000
SAVE_AFTER_SECONDS = 600.0


def _scope(row: HashList) -> frozenset[str] | None:
    return frozenset(row.allowlist_scope) if row.allowlist and row.allowlist_scope is not None else None


def _binary_bits(signal_type: str) -> int | None:
    from seawall.signals.base import get_signal_type

    try:
        return get_signal_type(signal_type).bits
    except KeyError:
        return None


@dataclass
class ListIndex:
    """Everything needed to match against one list."""

    id: int
    name: str
    kind: str
    enabled: bool
    allowlist: bool
    thresholds: dict[str, int]
    dihedral: bool
    uid: str = ""
    regions: bool = True  # region matching on for this list (docs/regions.md)
    allowlist_scope: frozenset[str] | None = None  # an allowlist's lists (None: every list)
    enabled_ratio: float = 1.0  # the share of contents it is matched for (HMA's matching_enabled_ratio)
    checkpoint: int = 0
    binary: dict[str, HammingIndex] = field(default_factory=dict)  # pdq, vpdq, binary plugin types
    exact: dict[str, ExactIndex] = field(default_factory=dict)  # md5, sha1, sha256, exact-match plugins
    urls: UrlIndex | None = None
    keyword_terms: dict[int, str] = field(default_factory=dict)
    keywords: KeywordMatcher | None = None
    vpdq_frames: dict[str, int] = field(default_factory=dict)  # external id -> its frame count
    # PDQ of entries' trimmed pictures, by entry id (entries added from bordered media)
    trimmed: HammingIndex | None = None
    saved_checkpoint: int = 0  # the revision the on-disk segments hold
    saved_at: float = 0.0

    def sampled(self, content_key: str) -> bool:
        """Whether this list is matched for the content ``content_key`` names, under its enabled
        ratio: a stable hash of the list and the content, so a content is always in or always out
        (HMA flips a coin per lookup instead)."""
        if self.enabled_ratio >= 1.0:
            return True
        digest = hashlib.sha256(f"{self.uid}:{content_key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.enabled_ratio

    def threshold(self, signal_type: str) -> int:
        from seawall.signals.base import get_signal_type

        if signal_type in self.thresholds:
            return self.thresholds[signal_type]
        return get_signal_type(signal_type).default_threshold

    def close(self) -> None:
        for index in self.binary.values():
            index.close()
        if self.trimmed is not None:
            self.trimmed.close()

    # -- applying entries ------------------------------------------------------------------

    def put(
        self,
        entry_id: int,
        signal_type: str,
        value: str,
        level: str | None,
        external_id: str,
        trimmed_value: str | None = None,
    ) -> None:
        self.drop(entry_id, signal_type, value, external_id)
        if trimmed_value and signal_type == "pdq":
            self.put_trimmed(np.array([entry_id], dtype=np.int64), [trimmed_value])
        if self.kind == "url":
            if self.urls is None:
                self.urls = UrlIndex()
            self.urls.add(entry_id, value, level or "exact")
        elif self.kind == "keyword":
            self.keyword_terms[entry_id] = value
            self.keywords = None  # rebuilt on next use
        else:
            bits = _binary_bits(signal_type)
            if bits is not None:
                index = self.binary.get(signal_type)
                if index is None:
                    index = self.binary[signal_type] = HammingIndex(bits)
                code = np.frombuffer(bytes.fromhex(value), dtype=np.uint8).reshape(1, -1)
                index.add(np.array([entry_id], dtype=np.int64), code)
                if signal_type == "vpdq":
                    self.vpdq_frames[external_id] = self.vpdq_frames.get(external_id, 0) + 1
            else:
                key = bytes.fromhex(value)  # exact types validate to hex digests
                index_for_type = self.exact.get(signal_type)
                if index_for_type is None:
                    index_for_type = self.exact[signal_type] = ExactIndex(len(key))
                index_for_type.add([entry_id], [key])

    def put_trimmed(self, ids: np.ndarray, values: list[str]) -> None:
        """Index entries' trimmed-picture hashes (searched as those entries)."""
        if self.trimmed is None:
            self.trimmed = HammingIndex(256)
        self.trimmed.add(ids, np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, 32))

    def drop(self, entry_id: int, signal_type: str, value: str, external_id: str) -> None:
        if self.trimmed is not None and signal_type == "pdq":
            self.trimmed.remove(np.array([entry_id], dtype=np.int64))
        if self.kind == "url":
            if self.urls is not None:
                self.urls.remove(entry_id)
        elif self.kind == "keyword":
            if self.keyword_terms.pop(entry_id, None) is not None:
                self.keywords = None
        elif signal_type in self.binary:
            index = self.binary[signal_type]
            before = len(index)
            index.remove(np.array([entry_id], dtype=np.int64))
            if signal_type == "vpdq" and len(index) < before:
                self.vpdq_frames[external_id] = max(0, self.vpdq_frames.get(external_id, 1) - 1)
        elif signal_type in self.exact:
            self.exact[signal_type].remove([entry_id])

    def bulk_load_binary(self, signal_type: str, ids: np.ndarray, codes: np.ndarray, external_ids: list[str]) -> None:
        """Index a whole list's codes in one add: one segment, the fastest to search."""
        bits = _binary_bits(signal_type)
        assert bits is not None
        index = self.binary.get(signal_type)
        if index is None:
            index = self.binary[signal_type] = HammingIndex(bits)
        index.add(ids, codes)
        if signal_type == "vpdq":
            for external_id in external_ids:
                self.vpdq_frames[external_id] = self.vpdq_frames.get(external_id, 0) + 1

    def keyword_matcher(self) -> KeywordMatcher:
        matcher = self.keywords
        if matcher is None:
            matcher = self.keywords = KeywordMatcher(list(self.keyword_terms.items()), strict=False)
        return matcher


class MatchIndexes:
    """All lists' indexes for this process, refreshed incrementally from the database."""

    def __init__(
        self, factory: sessionmaker[Session], *, refresh_seconds: float = 0.5, folder: Path | None = None
    ) -> None:
        self.factory = factory
        self.refresh_seconds = refresh_seconds
        self.folder = folder  # where binary indexes persist between runs; None keeps them in memory only
        self.lists: dict[int, ListIndex] = {}
        self.last_refresh = 0.0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: list[Callable[[ListIndex], None]] = []
        self._saving: set[int] = set()
        self._savers: list[threading.Thread] = []
        self._swept = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load now, then keep refreshing in a background thread."""
        self.refresh()
        self.start_background()

    def start_background(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="seawall-index-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.wait_for_saves(timeout=30)
        for index in self.lists.values():
            index.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last good state; readiness shows the error
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("index refresh failed")

    def warm_up(self) -> None:
        """Search each binary index once, so that its compiled search code is loaded now rather than
        by the first request (a server then sets what it loaded aside from garbage collection)."""
        for index in list(self.lists.values()):
            for signal_type, hamming in list(index.binary.items()):
                if len(hamming):
                    hamming.search(np.zeros((1, hamming.bits // 8), dtype=np.uint8), index.threshold(signal_type))

    def is_stale(self, max_age: float = 1.0) -> bool:
        return time.monotonic() - self.last_refresh > max_age

    def ensure_fresh(self, max_age: float = 1.0) -> None:
        """Refresh now if the background thread has fallen behind (or is not running)."""
        if self.is_stale(max_age):
            self.refresh(max_age)

    # -- refreshing ------------------------------------------------------------------------

    def refresh(self, max_age: float | None = None) -> None:
        """Apply the lists' changes now; with ``max_age``, only if still stale once it is this
        thread's turn (requests that found the index stale together then cause one refresh, not one each)."""
        with self._lock:
            if max_age is not None and not self.is_stale(max_age):
                return
            self._refresh()

    def _refresh(self) -> None:
        with self.factory() as session:
            rows = session.execute(select(HashList).where(HashList.deleted_at.is_(None))).scalars().all()
            seen = set()
            for row in rows:
                seen.add(row.id)
                current = self.lists.get(row.id)
                if current is None:
                    self.lists[row.id] = self._load(session, row)
                    continue
                current.name, current.enabled, current.allowlist = row.name, row.enabled, row.allowlist
                current.thresholds, current.dihedral = dict(row.thresholds or {}), row.dihedral
                current.regions = row.regions
                current.allowlist_scope = _scope(row)
                current.enabled_ratio = row.enabled_ratio
                if row.revision > current.checkpoint:
                    self._catch_up(session, current, row.revision)
                    self._maybe_save(current)
            gone = set(self.lists) - seen
            for list_id in gone:
                self.lists.pop(list_id).close()
            if gone or not self._swept:
                self._sweep_folders({row.uid for row in rows})
            self.last_refresh = time.monotonic()
            self.last_error = None

    def _load(self, session: Session, row: HashList) -> ListIndex:
        index = ListIndex(
            id=row.id,
            name=row.name,
            kind=row.kind,
            enabled=row.enabled,
            allowlist=row.allowlist,
            thresholds=dict(row.thresholds or {}),
            dihedral=row.dihedral,
            uid=row.uid,
            regions=row.regions,
            allowlist_scope=_scope(row),
            enabled_ratio=row.enabled_ratio,
        )
        # Note the revision first: whatever commits after it is replayed by _catch_up.
        revision = int(session.scalar(select(HashList.revision).where(HashList.id == row.id)) or 0)
        from_disk = self._open_saved(index, revision) if row.kind == "hash" else set()
        if from_disk:
            revision = index.checkpoint = index.saved_checkpoint
        last = 0
        binary: dict[str, tuple[list[int], list[np.ndarray], list[str]]] = {}
        while True:
            query = (
                select(Entry.id, Entry.signal_type, Entry.value, Entry.level, Entry.external_id, Entry.trimmed_value)
                .where(Entry.list_id == row.id, Entry.status == "active", Entry.id > last)
                .order_by(Entry.id)
                .limit(_LOAD_BATCH)
            )
            if from_disk:  # trimmed hashes are not saved: read them whatever the type
                query = query.where(or_(Entry.signal_type.not_in(from_disk), Entry.trimmed_value.is_not(None)))
            batch = session.execute(query).all()
            if not batch:
                break
            last = batch[-1].id
            texts: dict[str, list[str]] = {}
            trimmed_ids: list[int] = []
            trimmed_values: list[str] = []
            for entry_id, signal_type, value, level, external_id, trimmed_value in batch:
                if trimmed_value and signal_type == "pdq" and row.kind == "hash":
                    trimmed_ids.append(entry_id)
                    trimmed_values.append(trimmed_value)
                    if signal_type in from_disk:
                        continue
                if row.kind == "hash" and _binary_bits(signal_type) is not None:
                    ids, _, externals = binary.setdefault(signal_type, ([], [], []))
                    ids.append(entry_id)
                    externals.append(external_id)
                    texts.setdefault(signal_type, []).append(value)
                else:
                    index.put(entry_id, signal_type, value, level, external_id)
            if trimmed_ids:
                index.put_trimmed(np.asarray(trimmed_ids, dtype=np.int64), trimmed_values)
            # Codes are kept packed (32 bytes each, not as text) until the single add below.
            for signal_type, values in texts.items():
                width = (_binary_bits(signal_type) or 0) // 8
                packed = np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(-1, width)
                binary[signal_type][1].append(packed)
        for signal_type, (ids, blocks, externals) in binary.items():
            index.bulk_load_binary(signal_type, np.asarray(ids, dtype=np.int64), np.concatenate(blocks), externals)
        index.checkpoint = revision
        self._catch_up(session, index, revision)
        source = f"segments at revision {index.saved_checkpoint} and the database" if from_disk else "the database"
        log.info("loaded list %s from %s: revision %s", row.name, source, index.checkpoint)
        if not from_disk:
            self._save_soon(index)
        return index

    # -- persistence -----------------------------------------------------------------------

    def _list_folder(self, index: ListIndex) -> Path | None:
        # Keyed by the list's uid: a list id may be reused by an older database, a uid never is.
        return self.folder / f"list-{index.uid}" if self.folder is not None else None

    def _sweep_folders(self, live: set[str]) -> None:
        """Remove saved indexes of lists that no longer exist (deleted, or from before uids)."""
        self._swept = True
        if self.folder is None or not self.folder.is_dir():
            return
        for path in self.folder.glob("list-*"):
            if path.is_dir() and path.name.removeprefix("list-") not in live:
                with self._locked(path) as mine:
                    if mine:  # another process may be saving it this moment: next time
                        shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[bool]:
        """An exclusive lock on a list's folder; yields False when another process holds it."""
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open_saved(self, index: ListIndex, revision: int) -> set[str]:
        """Map the saved binary indexes of a list; the signal types loaded (all at one checkpoint)."""
        folder = self._list_folder(index)
        if folder is None or not folder.is_dir():
            return set()
        loaded: dict[str, HammingIndex] = {}
        for signal_type in sorted(PERSISTED):
            path = folder / signal_type
            if not (path / "manifest.json").exists():
                continue
            try:
                loaded[signal_type] = HammingIndex.load(path, mmap=True)
            except (IndexCorruptError, OSError, ValueError) as exc:
                log.warning("saved index of list %s unusable, rebuilding from the database: %s", index.name, exc)
                return set()
        checkpoints = {h.checkpoint for h in loaded.values()}
        if not loaded or len(checkpoints) != 1 or next(iter(checkpoints)) > revision:
            return set()
        index.binary.update(loaded)
        index.saved_checkpoint = next(iter(checkpoints))
        index.saved_at = time.monotonic()
        return set(loaded)

    def save(self, index: ListIndex) -> bool:
        """Write a list's binary indexes as segments at its current checkpoint (skipped if another process is)."""
        folder = self._list_folder(index)
        if folder is None or index.kind != "hash":
            return False
        with self._locked(folder) as mine:
            if not mine:
                return False
            for signal_type, hamming in index.binary.items():
                if signal_type in PERSISTED:
                    hamming.apply((), index.checkpoint)
                    hamming.save(folder / signal_type)
        index.saved_checkpoint, index.saved_at = index.checkpoint, time.monotonic()
        return True

    def _maybe_save(self, index: ListIndex) -> None:
        behind = index.checkpoint - index.saved_checkpoint
        if behind >= SAVE_AFTER_CHANGES or (behind > 0 and time.monotonic() - index.saved_at > SAVE_AFTER_SECONDS):
            self._save_soon(index)

    def _save_soon(self, index: ListIndex) -> None:
        """Save in the background: a snapshot is written while searches and updates go on.

        A snapshot newer than its recorded checkpoint is harmless: replaying changes is idempotent.
        """
        if self.folder is None or index.kind != "hash" or not (set(index.binary) & PERSISTED):
            return
        if index.id in self._saving:
            return
        self._saving.add(index.id)

        def run() -> None:
            try:
                self.save(index)
            except Exception:
                log.exception("saving the index of list %s failed", index.name)
            finally:
                self._saving.discard(index.id)

        thread = threading.Thread(target=run, name=f"seawall-index-save-{index.id}", daemon=True)
        self._savers.append(thread)
        thread.start()

    def wait_for_saves(self, timeout: float = 60.0) -> None:
        for thread in list(self._savers):
            thread.join(timeout)
        self._savers = [t for t in self._savers if t.is_alive()]

    def _catch_up(self, session: Session, index: ListIndex, target: int) -> None:
        while True:
            hl = session.get(HashList, index.id)
            if hl is None:
                return
            changes = lists_service.changes_since(session, hl, index.checkpoint, limit=5000)
            if not changes:
                return
            for change in changes:
                entry = change.entry
                if entry is not None:
                    if entry.status == "active":
                        index.put(
                            entry.id,
                            entry.signal_type,
                            entry.value,
                            entry.level,
                            entry.external_id,
                            entry.trimmed_value,
                        )
                    else:
                        index.drop(entry.id, entry.signal_type, entry.value, entry.external_id)
                index.checkpoint = change.revision
            for callback in self.on_change:
                callback(index)
            session.expunge_all()

    # -- reporting -------------------------------------------------------------------------

    def status(self, session: Session) -> dict[str, Any]:
        revisions = dict(session.execute(select(HashList.id, HashList.revision)).all())
        out: dict[str, Any] = {}
        for list_id, index in sorted(list(self.lists.items()), key=lambda kv: kv[1].name):
            current = int(revisions.get(list_id, index.checkpoint))
            out[index.name] = {"revision": index.checkpoint, "lag": max(0, current - index.checkpoint)}
        return out
