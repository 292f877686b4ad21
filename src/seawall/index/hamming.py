"""Exact Hamming-distance index for binary codes (PDQ: 256 bits) with incremental updates.

Design (see docs/index.md): the index is a list of immutable segments, each with its own
multi-index hashing tables, plus per-segment tombstones. Every mutation publishes a new
immutable snapshot (copy-on-write of the small segment list), so a search reads one consistent
snapshot without taking a lock and never sees half of an add or remove. Small segments created
by ``add`` are merged in a background thread; the merge is built outside the lock and swapped in
with the tombstones that arrived meanwhile carried over.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seawall.index import _kernels as kernels
from seawall.index.storage import (
    IndexCorruptError,
    read_array,
    read_manifest,
    remove_unreferenced,
    write_array,
    write_manifest,
)

KIND = "seawall-hamming-index"
# 2: one slot per substring value (a row inline, or a bucket in the overflow area) instead of
# offsets + row lists; version-1 folders are refused and the matcher rebuilds from the database.
VERSION = 2

# Segments below this many rows are scanned: a scan of 8k rows costs less than probing tables.
SCAN_ONLY_ROWS = 8192
# Substring tables never exceed 2**24 keys (64 MiB of slots each).
MAX_SUBSTRING_BITS = 24
# Relative costs for choosing probe-vs-scan per segment and threshold (measured on x86: one
# random table probe or candidate check ~ a cache miss; one sequential row ~ 1/16 of that).
_PROBE_COST = 1.0
_CANDIDATE_COST = 1.0
_SCAN_COST = 1.0 / 16

Match = tuple[int, int]

_NO_HITS = (np.empty(0, dtype=np.int64),) * 3

# Cache-line alignment for the arrays the probe kernel reads at random: large numpy buffers come
# from malloc 16 bytes past a page start, which makes every 32-byte code straddle two cache
# lines (two misses per candidate; aligning measured 10-15% faster at 10^7). Files loaded by
# mmap are aligned already (page-aligned mapping, 128-byte .npy header).
_ALIGN = 64


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = -buf.ctypes.data % _ALIGN
    return buf[start : start + nbytes].view(dtype).reshape(shape)


@dataclass(frozen=True)
class IndexChange:
    """One change row from the list database: ``add`` carries the code, ``remove`` does not."""

    op: Literal["add", "remove"]
    id: int
    code: bytes | None = None


def substring_layout(bits: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``bits`` into m nearly equal substrings of about log2(rows) bits (Norouzi et al.:
    then each bucket holds ~1 row, balancing probes against candidates)."""
    length = min(MAX_SUBSTRING_BITS, max(8, math.log2(max(rows, 2))))
    m = max(1, min(bits, round(bits / length)))
    while math.ceil(bits / m) > MAX_SUBSTRING_BITS:
        m += 1
    base, extra = divmod(bits, m)
    lengths = np.array([base + 1] * extra + [base] * (m - extra), dtype=np.int64)
    return _bases(lengths), lengths


def probe_radii(threshold: int, m: int) -> np.ndarray:
    """Search radius per table. With threshold d = r*m + a (0 <= a < m), a neighbour within d
    has some table among the first a+1 within r bits, or some other table within r-1 bits:
    otherwise its distance would be at least (a+1)(r+1) + (m-a-1)r = d+1."""
    r, a = divmod(threshold, m)
    return np.array([r if t <= a else r - 1 for t in range(m)], dtype=np.int64)


def _bases(sizes: np.ndarray) -> np.ndarray:
    """Start of each run when runs of these sizes are laid end to end."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _ball(length: int, radius: int) -> int:
    return sum(math.comb(length, k) for k in range(radius + 1))


@functools.lru_cache(maxsize=64)
def probe_plan(lengths: tuple[int, ...], radii: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every probe of a search as (table, XOR mask): all masks of at most ``radii[t]`` bits
    over table ``t``'s substring. Computed once per layout and threshold, so a query only
    XORs its keys with them. Within a table, masks that differ only in their low 4 bits are
    adjacent: those probes read the same 64-byte line of slots, one miss for the group."""
    tables: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for t, (length, radius) in enumerate(zip(lengths, radii, strict=True)):
        if radius < 0:
            continue
        values = [
            sum(1 << b for b in bits) for k in range(radius + 1) for bits in itertools.combinations(range(length), k)
        ]
        ball = np.array(sorted(values, key=lambda v: (v >> 4, v)), dtype=np.int64)
        masks.append(ball)
        tables.append(np.full(ball.shape[0], t, dtype=np.int64))
    if not masks:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(tables), np.concatenate(masks)


@dataclass(frozen=True, eq=False)
class Segment:
    """Immutable rows sorted by id, with their multi-index tables (None: scan only)."""

    name: str
    ids: np.ndarray  # int64 (n,), sorted, unique
    words: np.ndarray  # <u8 (n, bits/64)
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None
    table_base: np.ndarray | None = None
    slots: np.ndarray | None = None  # int32, 2**len per table, concatenated (see build_tables)
    overflow_base: np.ndarray | None = None  # int64, where each table's overflow area starts
    overflow: np.ndarray | None = None  # int32, [count, rows...] of buckets with 2+ rows
    _plans: dict[int, tuple[np.ndarray, np.ndarray] | None] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def build(cls, ids: np.ndarray, words: np.ndarray, name: str | None = None) -> Segment:
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, words = ids[order], words[order]
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if words.ctypes.data % _ALIGN or not words.flags.c_contiguous:
            aligned = _aligned_empty(words.shape, words.dtype)
            aligned[...] = words
            words = aligned
        name = name or uuid.uuid4().hex[:16]
        n = ids.shape[0]
        if n < SCAN_ONLY_ROWS:
            return cls(name, ids, words)
        starts, lengths = substring_layout(words.shape[1] * 64, n)
        table_base = _bases(np.int64(1) << lengths)
        slots = _aligned_empty((int((np.int64(1) << lengths).sum()),), np.dtype(np.int32))
        # Sized for the worst case; only the used prefix is ever touched, so the rest of the
        # reservation costs address space, not memory.
        overflow = _aligned_empty((lengths.shape[0] * (n + n // 2),), np.dtype(np.int32))
        overflow_base = np.empty(lengths.shape[0], dtype=np.int64)
        used = kernels.build_tables(words, starts, lengths, table_base, slots, overflow_base, overflow)
        return cls(name, ids, words, starts, lengths, table_base, slots, overflow_base, overflow[:used])

    def _use_tables(self, threshold: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The probe plan if probing is cheaper than a scan at this threshold, else None."""
        if threshold not in self._plans:
            self._plans[threshold] = self._plan(threshold)
        return self._plans[threshold]

    def _plan(self, threshold: int) -> tuple[np.ndarray, np.ndarray] | None:
        if self.lengths is None:
            return None
        radii = probe_radii(threshold, self.lengths.shape[0])
        used = [(int(ln), int(r)) for ln, r in zip(self.lengths, radii, strict=True) if r >= 0]
        probes = sum(_ball(ln, r) for ln, r in used)
        cands = sum(_ball(ln, r) * self.rows / 2.0**ln for ln, r in used)
        probe_cost = probes * _PROBE_COST + cands * _CANDIDATE_COST
        if probe_cost >= self.rows * _SCAN_COST:
            return None
        return probe_plan(tuple(int(x) for x in self.lengths), tuple(int(x) for x in radii))

    def search(self, queries: np.ndarray, threshold: int) -> tuple[np.ndarray, ...]:
        """(query, row, distance) for every row within ``threshold``, each pair once."""
        plan = self._use_tables(threshold)
        # room for a whole cluster of near-duplicates per query before a retry is needed
        cap = max(1024, queries.shape[0] * 16)
        while True:
            out = np.empty((3, cap), dtype=np.int64)
            if plan is None:
                count = kernels.scan_search(self.words, queries, threshold, out[0], out[1], out[2])
            else:
                assert self.starts is not None
                count = kernels.mih_search(
                    self.words, queries, threshold, self.starts, self.lengths,
                    self.table_base, self.slots, self.overflow_base, self.overflow, *plan,
                    out[0], out[1], out[2],
                )  # fmt: skip
            if count <= cap:
                break
            cap = count
        return out[0, :count], out[1, :count], out[2, :count]

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: Path) -> dict[str, Any]:
        files: dict[str, Any] = {}
        parts: dict[str, np.ndarray | None] = {
            "ids": self.ids, "words": self.words, "slots": self.slots, "overflow": self.overflow,
        }  # fmt: skip
        for part, array in parts.items():
            if array is None:
                continue
            fname = f"seg-{self.name}.{part}.npy"
            known = _known(folder / fname)
            if known is None:
                known = write_array(folder, fname, array)
                _remember(folder / fname, known)
            files[part] = known
        record: dict[str, Any] = {"name": self.name, "rows": self.rows, "files": files}
        if self.lengths is not None and self.overflow_base is not None and self.overflow is not None:
            record["lengths"] = [int(x) for x in self.lengths]
            ends = [*self.overflow_base[1:], self.overflow.shape[0]]
            record["overflow_sizes"] = [int(e - b) for b, e in zip(self.overflow_base, ends, strict=True)]
        return record

    @classmethod
    def load(cls, folder: Path, record: dict[str, Any], words_per_code: int, mmap: bool, verify: bool) -> Segment:
        try:
            name = str(record["name"])
            rows = int(record["rows"])
            files = dict(record["files"])
            lengths_list = record.get("lengths")
            spill_list = record.get("overflow_sizes")
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(folder / "manifest.json", "malformed segment record") from exc

        def part(key: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
            if key not in files:
                raise IndexCorruptError(folder / "manifest.json", f"segment {name}: no {key}")
            arr = read_array(folder, files[key], dtype=np.dtype(dtype), shape=shape, mmap=mmap, verify=verify)
            _remember(folder / str(files[key]["file"]), files[key])
            return arr

        ids = part("ids", "<i8", (rows,))
        words = part("words", "<u8", (rows, words_per_code))
        if lengths_list is None:
            return cls(name, ids, words)
        try:
            lengths = np.array(lengths_list, dtype=np.int64)
            spill_sizes = np.array(spill_list, dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise IndexCorruptError(folder / "manifest.json", f"segment {name}: bad layout") from exc
        if (
            lengths.ndim != 1
            or int(lengths.sum()) != words_per_code * 64
            or (lengths > MAX_SUBSTRING_BITS).any()
            or (lengths < 1).any()
            or spill_sizes.shape != lengths.shape
            or (spill_sizes < 0).any()
        ):
            raise IndexCorruptError(folder / "manifest.json", f"segment {name}: bad layout")
        starts = _bases(lengths)
        table_base = _bases(np.int64(1) << lengths)
        slots = part("slots", "<i4", (int((np.int64(1) << lengths).sum()),))
        overflow = part("overflow", "<i4", (int(spill_sizes.sum()),))
        return cls(name, ids, words, starts, lengths, table_base, slots, _bases(spill_sizes), overflow)


# Records (size, SHA-256) of segment files this process wrote or loaded: segment files are
# immutable and uniquely named, so saving again into the same folder reuses them instead of
# rewriting (or re-hashing) gigabytes -- and never rewrites a file that is memory-mapped.
_KNOWN_FILES: dict[str, dict[str, Any]] = {}


def _remember(path: Path, record: dict[str, Any]) -> None:
    _KNOWN_FILES[str(path.resolve())] = dict(record)


def _known(path: Path) -> dict[str, Any] | None:
    record = _KNOWN_FILES.get(str(path.resolve()))
    if record is None or not path.is_file() or path.stat().st_size != record["size"]:
        return None
    return record


@dataclass(frozen=True, eq=False)
class _Live:
    """A segment as seen by one snapshot: the segment plus its tombstoned rows (sorted)."""

    segment: Segment
    dead: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def live_rows(self) -> int:
        return self.segment.rows - int(self.dead.shape[0])

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows holding these ids that are not yet tombstoned."""
        seg_ids = self.segment.ids
        pos = np.searchsorted(seg_ids, ids)
        inside = pos < seg_ids.shape[0]
        pos, wanted = pos[inside], ids[inside]
        found = pos[seg_ids[pos] == wanted]
        if self.dead.size and found.size:
            found = found[~np.isin(found, self.dead, assume_unique=True)]
        return found

    def with_dead(self, rows: np.ndarray) -> _Live:
        if rows.size == 0:
            return self
        return _Live(self.segment, np.union1d(self.dead, rows).astype(np.int64))


@dataclass(frozen=True)
class _Snapshot:
    lives: tuple[_Live, ...]
    checkpoint: int


class HammingIndex:
    """Exact index of binary codes: every entry within the threshold, nothing else."""

    def __init__(
        self,
        bits: int = 256,
        *,
        background_compaction: bool = True,
        max_segments: int = 8,
        workers: int | None = None,
    ) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError(f"bits must be a positive multiple of 64, got {bits}")
        self.bits = bits
        self._words = bits // 64
        self._snap = _Snapshot((), 0)
        self._lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._background = background_compaction
        self._max_segments = max_segments
        self._workers = workers or min(os.cpu_count() or 1, 8)
        self._pool: ThreadPoolExecutor | None = None
        self._compactor: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False

    # -- validation ----------------------------------------------------------------------

    def _codes(self, codes: Any, what: str = "codes") -> np.ndarray:
        if isinstance(codes, bytes | bytearray):
            codes = [codes]
        if isinstance(codes, list | tuple) and all(isinstance(c, bytes | bytearray) for c in codes):
            bad = [len(c) for c in codes if len(c) != self.bits // 8]
            if bad:
                raise ValueError(f"{what}: expected {self.bits // 8}-byte codes, got {bad[0]} bytes")
            codes = (
                np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), -1)
                if codes
                else np.empty((0, self.bits // 8), dtype=np.uint8)
            )
        arr = np.asarray(codes)
        width = self.bits // 8
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != width:
            raise ValueError(f"{what}: expected a (n, {width}) uint8 array, got {arr.dtype}{arr.shape}")
        return np.ascontiguousarray(arr).view("<u8")

    @staticmethod
    def _ids(ids: Any) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"ids: expected a 1-d integer array, got {arr.dtype}{arr.shape}")
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError("ids: must fit in int64")
        return arr.astype(np.int64)

    def _threshold(self, threshold: int) -> int:
        if not isinstance(threshold, int | np.integer) or not 0 <= threshold <= self.bits:
            raise ValueError(f"threshold must be an integer in 0..{self.bits}, got {threshold!r}")
        return int(threshold)

    # -- mutation ------------------------------------------------------------------------

    def add(self, ids: Any, codes: Any) -> None:
        """Insert entries; an id already present is replaced (its old code stops matching)."""
        id_arr = self._ids(ids)
        words = self._codes(codes)
        if id_arr.shape[0] != words.shape[0]:
            raise ValueError(f"{id_arr.shape[0]} ids but {words.shape[0]} codes")
        if id_arr.size == 0:
            return
        # the last occurrence of a repeated id wins, as if the adds ran one by one.
        rev_unique, rev_first = np.unique(id_arr[::-1], return_index=True)
        keep = id_arr.shape[0] - 1 - rev_first
        segment = Segment.build(id_arr[keep], words[keep])
        with self._lock:
            snap = self._snap
            lives = self._tombstone(snap.lives, rev_unique)
            self._snap = _Snapshot((*lives, _Live(segment)), snap.checkpoint)
        self._maybe_compact()

    def remove(self, ids: Any) -> None:
        """Retire entries; ids not present are ignored (replaying a change log is idempotent)."""
        id_arr = np.unique(self._ids(ids))
        if id_arr.size == 0:
            return
        with self._lock:
            snap = self._snap
            self._snap = _Snapshot(self._tombstone(snap.lives, id_arr), snap.checkpoint)
        self._maybe_compact()

    @staticmethod
    def _tombstone(lives: tuple[_Live, ...], sorted_ids: np.ndarray) -> tuple[_Live, ...]:
        return tuple(live.with_dead(live.rows_of(sorted_ids)) for live in lives)

    @property
    def checkpoint(self) -> int:
        """Revision of the last change applied (persisted by ``save``)."""
        return self._snap.checkpoint

    def apply(self, changes: Iterable[IndexChange], checkpoint: int) -> None:
        """Apply database change rows in order, then record ``checkpoint``. Runs of adds and of
        removes are batched; order between them is kept, so add-remove-add ends present."""
        if checkpoint < self.checkpoint:
            raise ValueError(f"checkpoint {checkpoint} is behind the index's {self.checkpoint}")
        run_op: str | None = None
        run_ids: list[int] = []
        run_codes: list[bytes] = []

        def flush() -> None:
            if run_op == "add":
                self.add(np.array(run_ids, dtype=np.int64), run_codes)
            elif run_op == "remove":
                self.remove(np.array(run_ids, dtype=np.int64))
            run_ids.clear()
            run_codes.clear()

        for change in changes:
            if change.op not in ("add", "remove"):
                raise ValueError(f"unknown change op {change.op!r}")
            if change.op != run_op:
                flush()
                run_op = change.op
            run_ids.append(int(change.id))
            if change.op == "add":
                if change.code is None or len(change.code) != self.bits // 8:
                    raise ValueError(f"add of id {change.id}: needs a {self.bits // 8}-byte code")
                run_codes.append(bytes(change.code))
        flush()
        with self._lock:
            self._snap = _Snapshot(self._snap.lives, int(checkpoint))

    # -- search --------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(live.live_rows for live in self._snap.lives)

    def _raw_search(
        self, words: np.ndarray, threshold: int, snap: _Snapshot
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, id, distance) over one snapshot; ids are unique among live rows."""
        qs, ids, ds = [], [], []
        for live in snap.lives:
            q, r, d = live.segment.search(words, threshold)
            if not r.size:
                continue  # the common case for a lookup: no neighbour in this segment
            if live.dead.size:
                # dead is sorted: a binary search per hit, not a pass over all tombstones
                pos = np.minimum(np.searchsorted(live.dead, r), live.dead.size - 1)
                alive = live.dead[pos] != r
                q, r, d = q[alive], r[alive], d[alive]
            qs.append(q)
            ids.append(live.segment.ids[r])
            ds.append(d)
        if len(qs) == 1:
            return qs[0], ids[0], ds[0]
        if not qs:
            return _NO_HITS
        return np.concatenate(qs), np.concatenate(ids), np.concatenate(ds)

    def _parallel(self, words: np.ndarray, threshold: int) -> tuple[np.ndarray, ...]:
        snap = self._snap  # one snapshot for the whole call, however it is split
        n = words.shape[0]
        chunks = min(self._workers, max(1, n // 16))
        if chunks <= 1:
            return self._raw_search(words, threshold, snap)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="seawall-index")
        bounds = np.linspace(0, n, chunks + 1).astype(int)
        pool = self._pool
        futures = [pool.submit(self._raw_search, words[a:b], threshold, snap) for a, b in itertools.pairwise(bounds)]
        parts = [f.result() for f in futures]
        return tuple(
            np.concatenate([p[i] + (a if i == 0 else 0) for p, a in zip(parts, bounds[:-1], strict=True)])
            for i in range(3)
        )

    @staticmethod
    def _group(n: int, q: np.ndarray, ids: np.ndarray, d: np.ndarray) -> list[list[Match]]:
        if not q.size:
            return [[] for _ in range(n)]
        if n == 1:
            order = np.lexsort((ids, d))
            return [list(zip(ids[order].tolist(), d[order].tolist(), strict=True))]
        order = np.lexsort((ids, d, q))
        q, ids, d = q[order], ids[order], d[order]
        cuts = np.searchsorted(q, np.arange(n + 1))
        pairs = list(zip(ids.tolist(), d.tolist(), strict=True))
        return [pairs[cuts[i] : cuts[i + 1]] for i in range(n)]

    def search(self, codes: Any, threshold: int) -> list[list[Match]]:
        """For each query code, every (id, distance) within ``threshold``, sorted by distance
        then id."""
        words = self._codes(codes, "queries")
        threshold = self._threshold(threshold)
        q, ids, d = self._parallel(words, threshold)
        return self._group(words.shape[0], q, ids, d)

    def search_dihedral(self, variants: Any, threshold: int) -> list[list[Match]]:
        """Search the 8 dihedral variants of each query at once: ``variants`` is
        ``(n, 8, bits/8)`` uint8 (from ``seawall.signals.pdq.pdq_dihedral_rgb``); each id is
        reported once per query with its smallest distance over the variants.

        The variants must come from the image's DCT: a PDQ bit is "coefficient above the
        median", and a flip negates half the coefficients, moving the median, so the
        variants cannot be derived exactly from the 256 bits alone (docs/index.md)."""
        arr = np.asarray(variants)
        width = self.bits // 8
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (8, width):
            raise ValueError(f"variants: expected (n, 8, {width}) uint8, got {arr.dtype}{arr.shape}")
        n = arr.shape[0]
        words = self._codes(arr.reshape(n * 8, width), "variants")
        q, ids, d = self._parallel(words, self._threshold(threshold))
        q = q // 8
        order = np.lexsort((d, ids, q))
        q, ids, d = q[order], ids[order], d[order]
        first = np.ones(q.shape[0], dtype=bool)
        first[1:] = (q[1:] != q[:-1]) | (ids[1:] != ids[:-1])
        return self._group(n, q[first], ids[first], d[first])

    # -- compaction ----------------------------------------------------------------------

    def _needs_compaction(self, snap: _Snapshot) -> bool:
        if len(snap.lives) > self._max_segments:
            return True
        return any(live.dead.size > max(1024, live.segment.rows // 4) for live in snap.lives)

    def _maybe_compact(self) -> None:
        if not self._needs_compaction(self._snap):
            return
        if not self._background:
            self.compact()
            return
        if self._compactor is None or not self._compactor.is_alive():
            self._compactor = threading.Thread(
                target=self._compaction_loop, name="seawall-index-compactor", daemon=True
            )
            self._compactor.start()
        self._wake.set()

    def _compaction_loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            while self._needs_compaction(self._snap) and not self._closed:
                self.compact()

    def compact(self) -> None:
        """Merge segments (small ones together; any with many tombstones is rewritten).
        Searches keep running on the old snapshot meanwhile; tombstones that arrive during
        the merge are carried over when the merged segment is swapped in."""
        with self._compact_lock:
            snap = self._snap
            if not snap.lives:
                return
            largest = max(snap.lives, key=lambda lv: lv.segment.rows)
            others = [lv for lv in snap.lives if lv is not largest]
            heavy = largest.dead.size > max(1024, largest.segment.rows // 4)
            small_total = sum(lv.live_rows for lv in others)
            merge_all = heavy or small_total * 4 >= largest.live_rows or not others
            sources = list(snap.lives) if merge_all else others
            if len(sources) == 1 and sources[0].dead.size == 0:
                return
            ids_parts, word_parts = [], []
            for lv in sources:
                keep = np.ones(lv.segment.rows, dtype=bool)
                keep[lv.dead] = False
                ids_parts.append(lv.segment.ids[keep])
                word_parts.append(lv.segment.words[keep])
            merged = Segment.build(np.concatenate(ids_parts), np.concatenate(word_parts))
            with self._lock:
                current = self._snap
                by_segment = {id(lv.segment): lv for lv in current.lives}
                late_dead: list[np.ndarray] = []
                for lv in sources:
                    now = by_segment[id(lv.segment)]
                    extra = np.setdiff1d(now.dead, lv.dead, assume_unique=True)
                    late_dead.append(lv.segment.ids[extra])
                source_keys = {id(lv.segment) for lv in sources}
                kept = [lv for lv in current.lives if id(lv.segment) not in source_keys]
                new_live = _Live(merged)
                gone = np.unique(np.concatenate(late_dead))
                if gone.size:
                    new_live = new_live.with_dead(new_live.rows_of(gone))
                # the merged rows are older than any segment added during the merge
                self._snap = _Snapshot((new_live, *kept), current.checkpoint)

    def close(self) -> None:
        """Stop the background compactor and the search threads."""
        self._closed = True
        self._wake.set()
        if self._compactor is not None:
            self._compactor.join()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> HammingIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write the index: segment files not already in ``folder`` (they are immutable),
        fresh tombstone files, then the manifest atomically; unreferenced files go last."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        snap = self._snap
        records = []
        for live in snap.lives:
            record = live.segment.save(path)
            if live.dead.size:
                tag = uuid.uuid4().hex[:8]
                record["tombstones"] = write_array(path, f"seg-{live.segment.name}.dead-{tag}.npy", live.dead)
                record["dead"] = int(live.dead.size)
            records.append(record)
        manifest = {
            "kind": KIND, "version": VERSION, "bits": self.bits,
            "checkpoint": snap.checkpoint, "segments": records,
        }  # fmt: skip
        write_manifest(path, manifest)
        keep = {f["file"] for r in records for f in r["files"].values()}
        keep |= {r["tombstones"]["file"] for r in records if "tombstones" in r}
        remove_unreferenced(path, keep)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike[str],
        mmap: bool = True,
        *,
        verify: bool = True,
        **options: Any,
    ) -> HammingIndex:
        """Open a saved index. ``mmap=True`` maps the segment files (shared page cache across
        processes, nothing copied); ``verify`` checks every file's SHA-256 first."""
        path = Path(folder)
        manifest = read_manifest(path, KIND, VERSION)
        try:
            bits = int(manifest["bits"])
            checkpoint = int(manifest["checkpoint"])
            records = list(manifest["segments"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(path / "manifest.json", "malformed manifest") from exc
        index = cls(bits, **options)
        lives = []
        for record in records:
            segment = Segment.load(path, record, bits // 64, mmap, verify)
            dead = np.empty(0, dtype=np.int64)
            if "tombstones" in record:
                dead = read_array(
                    path, record["tombstones"], dtype=np.dtype("<i8"),
                    shape=(int(record.get("dead", -1)),), mmap=False, verify=verify,
                )  # fmt: skip
                if dead.size and (dead.min() < 0 or dead.max() >= segment.rows):
                    raise IndexCorruptError(path, f"segment {segment.name}: tombstone out of range")
            lives.append(_Live(segment, dead))
        index._snap = _Snapshot(tuple(lives), checkpoint)
        return index


def brute_force(entries: Sequence[tuple[int, bytes]], queries: Sequence[bytes], threshold: int) -> list[list[Match]]:
    """Reference answer (slow, obviously correct): used by tests and the benchmark."""
    out = []
    for query in queries:
        qv = int.from_bytes(query, "big")
        hits = [(i, (int.from_bytes(c, "big") ^ qv).bit_count()) for i, c in entries]
        out.append(sorted(((i, d) for i, d in hits if d <= threshold), key=lambda m: (m[1], m[0])))
    return out
