"""numba kernels for the Hamming index: popcount distance, table build, multi-index probe, scan.

Codes are handled as rows of native uint64 words. A substring ``t`` is the bit range
``[start[t], start[t] + length[t])`` of that word row (bit ``p`` is bit ``p % 64`` of word
``p // 64``); any fixed partition of the bits works for the pigeonhole argument, so this one is
chosen because it is cheap to extract. All kernels release the GIL so searches run in threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_PREFETCH_AHEAD = 8


def _ctpop64_def(typingctx: Any, x: Any) -> Any:
    """LLVM's ctpop, so the host's popcnt instruction is used (no table, no SWAR)."""
    sig = types.int64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return sig, codegen


_ctpop64: Any = intrinsic(_ctpop64_def)


def _prefetch_def(typingctx: Any, arr: Any, idx: Any) -> Any:
    """LLVM's prefetch hint for ``arr[idx]`` (1-d): the probe phases know their addresses a
    few steps ahead, so the cache misses overlap instead of queueing."""
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_prefetch: Any = intrinsic(_prefetch_def)


@njit(cache=True, nogil=True)
def _distance(words: Any, row: int, q: Any) -> int:
    d = 0
    for w in range(q.shape[0]):
        d += _ctpop64(words[row, w] ^ q[w])
    return d


@njit(cache=True, nogil=True)
def _extract(words: Any, row: int, start: int, length: int) -> Any:
    w = start >> 6
    off = start & 63
    v = words[row, w] >> np.uint64(off)
    if off + length > 64:
        v |= words[row, w + 1] << np.uint64(64 - off)
    mask = (np.uint64(1) << np.uint64(length)) - np.uint64(1)
    return np.int64(v & mask)


@njit(cache=True, nogil=True)
def build_tables(words: Any, starts: Any, lengths: Any, table_base: Any, offsets: Any, perm: Any) -> None:
    """Counting sort of the rows by each substring: ``offsets`` (concatenated, one run of
    ``2**length + 1`` per table) and ``perm[t]`` (row numbers grouped by key)."""
    n = words.shape[0]
    for t in range(starts.shape[0]):
        base = table_base[t]
        size = 1 << lengths[t]
        keys = np.empty(n, dtype=np.int64)
        for i in range(n):
            k = _extract(words, i, starts[t], lengths[t])
            keys[i] = k
            offsets[base + k + 1] += 1
        for k in range(size):
            offsets[base + k + 1] += offsets[base + k]
        fill = offsets[base : base + size].copy()
        for i in range(n):
            k = keys[i]
            perm[t, fill[k]] = i
            fill[k] += 1


@njit(cache=True, nogil=True)
def _probes(queries: Any, qi: int, starts: Any, lengths: Any, radii: Any, table_base: Any, out: Any) -> Any:
    """Every probe of query ``qi`` as (absolute offsets slot, table): for table ``t``, all keys
    within ``radii[t]`` bits of the query's substring."""
    count = 0
    pos = np.empty(64, dtype=np.int64)
    for t in range(starts.shape[0]):
        radius = radii[t]
        if radius < 0:
            continue
        length = lengths[t]
        base = table_base[t]
        key = _extract(queries, qi, starts[t], length)
        # k flipped bits: every increasing index tuple pos[0] < ... < pos[k-1].
        for k in range(radius + 1):
            for i in range(k):
                pos[i] = i
            while True:
                probe = key
                for i in range(k):
                    probe ^= np.int64(1) << pos[i]
                if count == out.shape[0]:
                    grown = np.empty((out.shape[0] * 2, 2), dtype=np.int64)
                    grown[:count] = out[:count]
                    out = grown
                out[count, 0] = base + probe
                out[count, 1] = t
                count += 1
                i = k - 1
                while i >= 0 and pos[i] == length - k + i:
                    i -= 1
                if i < 0:
                    break
                pos[i] += 1
                for j in range(i + 1, k):
                    pos[j] = pos[j - 1] + 1
    return out, count


@njit(cache=True, nogil=True)
def mih_search(
    words: Any,
    queries: Any,
    threshold: int,
    starts: Any,
    lengths: Any,
    radii: Any,
    table_base: Any,
    offsets: Any,
    perm: Any,
    out_q: Any,
    out_r: Any,
    out_d: Any,
) -> int:
    """Probe every table ``t`` with all keys within ``radii[t]`` bits of the query's substring
    and verify each candidate's full distance. Returns (query, row, distance) triples; a row
    found through several tables appears several times (the caller de-duplicates). Writes at
    most ``len(out_q)`` triples and returns the full count, so the caller retries bigger when
    it overflows (growing arrays inside the loop would cost reference counting per row).

    Each query runs in phases (probe keys, bucket bounds, candidate rows, distances) whose
    memory reads are independent of each other, so the CPU overlaps the cache misses instead
    of waiting on a chain offsets -> perm -> code for every probe.
    """
    count = 0
    cap = out_q.shape[0]
    rows = words.shape[0]
    n_words = words.shape[1]
    perm_flat = perm.reshape(-1)
    words_flat = words.reshape(-1)
    probes = np.empty((4096, 2), dtype=np.int64)
    bounds = np.empty((4096, 2), dtype=np.int64)
    cand = np.empty(4096, dtype=np.int64)
    for qi in range(queries.shape[0]):
        q = queries[qi]
        probes, n_probes = _probes(queries, qi, starts, lengths, radii, table_base, probes)
        if bounds.shape[0] < n_probes:
            bounds = np.empty((probes.shape[0], 2), dtype=np.int64)
        total = 0
        for p in range(min(n_probes, _PREFETCH_AHEAD)):
            _prefetch(offsets, probes[p, 0])
        for p in range(n_probes):
            if p + _PREFETCH_AHEAD < n_probes:
                _prefetch(offsets, probes[p + _PREFETCH_AHEAD, 0])
            lo = offsets[probes[p, 0]]
            hi = offsets[probes[p, 0] + 1]
            bounds[p, 0] = lo
            bounds[p, 1] = hi
            total += hi - lo
        if cand.shape[0] < total:
            cand = np.empty(total * 2, dtype=np.int64)
        c = 0
        for p in range(n_probes):
            if p + _PREFETCH_AHEAD < n_probes and bounds[p + _PREFETCH_AHEAD, 0] < rows:
                _prefetch(perm_flat, probes[p + _PREFETCH_AHEAD, 1] * rows
                          + bounds[p + _PREFETCH_AHEAD, 0])  # fmt: skip
            t = probes[p, 1]
            for j in range(bounds[p, 0], bounds[p, 1]):
                cand[c] = perm[t, j]
                c += 1
        for k in range(c):
            if k + _PREFETCH_AHEAD < c:
                _prefetch(words_flat, cand[k + _PREFETCH_AHEAD] * n_words)
            row = cand[k]
            d = _distance(words, row, q)
            if d <= threshold:
                if count < cap:
                    out_q[count] = qi
                    out_r[count] = row
                    out_d[count] = d
                count += 1
    return count


@njit(cache=True, nogil=True)
def scan_search(words: Any, queries: Any, threshold: int, out_q: Any, out_r: Any, out_d: Any) -> int:
    """Exact brute force, blocked so a block of rows stays in cache for all queries."""
    count = 0
    cap = out_q.shape[0]
    n = words.shape[0]
    block = 2048
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        for qi in range(queries.shape[0]):
            q = queries[qi]
            for row in range(r0, r1):
                d = _distance(words, row, q)
                if d <= threshold:
                    if count < cap:
                        out_q[count] = qi
                        out_r[count] = row
                        out_d[count] = d
                    count += 1
    return count
