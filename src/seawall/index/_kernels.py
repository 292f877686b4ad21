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

# How far ahead the probe phases prefetch: far enough that ~dozens of misses are in flight
# (8 -> 64 took a query at 10^7 from 146 to 99 us on a 2-core EPYC VM).
_PREFETCH_AHEAD = 64


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
def _emit(out_q: Any, out_r: Any, out_d: Any, count: int, qi: int, row: int, d: int) -> int:
    """Write one (query, row, distance) triple if there is room; the count goes on regardless,
    so the caller learns how much room a retry needs."""
    if count < out_q.shape[0]:
        out_q[count] = qi
        out_r[count] = row
        out_d[count] = d
    return count + 1


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
def build_tables(
    words: Any, starts: Any, lengths: Any, table_base: Any, slots: Any, overflow_base: Any, overflow: Any
) -> int:
    """One slot per substring value and table: -1 for no row, the row itself when exactly one
    row has that value (the common case at ~1 row per value, so a probe costs one memory read),
    else ``-2 - position`` of ``[count, rows...]`` in the table's overflow area. Rows are grouped
    by a counting sort (linear, no argsort). The tables' overflow areas are laid end to end from
    the start of ``overflow`` (which must hold ``m * (n + n // 2)`` cells: a bucket there has at
    least two rows); returns how many cells were used."""
    n = words.shape[0]
    keys = np.empty(n, dtype=np.int64)
    rows = np.empty(n, dtype=np.int32)
    used = 0
    for t in range(starts.shape[0]):
        size = 1 << lengths[t]
        offsets = np.zeros(size + 1, dtype=np.int64)
        for i in range(n):
            k = _extract(words, i, starts[t], lengths[t])
            keys[i] = k
            offsets[k + 1] += 1
        for k in range(size):
            offsets[k + 1] += offsets[k]
        fill = offsets[:size].copy()
        for i in range(n):
            rows[fill[keys[i]]] = i
            fill[keys[i]] += 1
        base = table_base[t]
        overflow_base[t] = used
        pos = 0
        for k in range(size):
            lo = offsets[k]
            c = offsets[k + 1] - lo
            if c == 0:
                slots[base + k] = -1
            elif c == 1:
                slots[base + k] = rows[lo]
            else:
                slots[base + k] = -2 - pos
                overflow[used + pos] = c
                for j in range(c):
                    overflow[used + pos + 1 + j] = rows[lo + j]
                pos += c + 1
        used += pos
    return used


@njit(cache=True, nogil=True)
def mih_search(
    words: Any,
    queries: Any,
    threshold: int,
    starts: Any,
    lengths: Any,
    table_base: Any,
    slots: Any,
    overflow_base: Any,
    overflow: Any,
    probe_table: Any,
    probe_mask: Any,
    out_q: Any,
    out_r: Any,
    out_d: Any,
) -> int:
    """Probe table ``probe_table[p]`` at the query's substring XOR ``probe_mask[p]`` for every
    probe ``p`` of the plan (every key within the table's radius; see ``probe_plan``) and verify
    each candidate's full distance. Returns (query, row, distance) triples, each (query, row)
    once, grouped by query. Writes at most ``len(out_q)`` triples and returns the full count, so
    the caller retries bigger when it overflows (growing arrays inside the loop would cost
    reference counting per row).

    Each query runs in phases (slots, overflow buckets, distances) whose memory reads are
    independent of each other, prefetched far ahead, so the CPU overlaps dozens of cache misses
    instead of waiting on a chain slot -> overflow -> code for every probe.
    """
    count = 0
    cap = out_q.shape[0]
    n_words = words.shape[1]
    n_tables = starts.shape[0]
    n_probes = probe_mask.shape[0]
    words_flat = words.reshape(-1)
    keys = np.empty(n_tables, dtype=np.int64)
    where = np.empty(n_probes, dtype=np.int64)
    spill = np.empty(n_probes, dtype=np.int64)
    cand = np.empty(max(4096, 2 * n_probes), dtype=np.int64)
    for qi in range(queries.shape[0]):
        q = queries[qi]
        for t in range(n_tables):
            keys[t] = _extract(queries, qi, starts[t], lengths[t])
        for p in range(n_probes):
            t = probe_table[p]
            where[p] = table_base[t] + (keys[t] ^ probe_mask[p])
        # slots: a row, nothing, or a bucket in the overflow area
        c = 0
        n_spill = 0
        for p in range(min(n_probes, _PREFETCH_AHEAD)):
            _prefetch(slots, where[p])
        for p in range(n_probes):
            if p + _PREFETCH_AHEAD < n_probes:
                _prefetch(slots, where[p + _PREFETCH_AHEAD])
            # branch-free: which case a slot holds is random, so a branch would mispredict often
            v = slots[where[p]]
            cand[c] = v
            c += int(v >= 0)
            spill[n_spill] = overflow_base[probe_table[p]] - 2 - v
            n_spill += int(v <= -2)
        # buckets of several rows
        for p in range(min(n_spill, _PREFETCH_AHEAD)):
            _prefetch(overflow, spill[p])
        for p in range(n_spill):
            if p + _PREFETCH_AHEAD < n_spill:
                _prefetch(overflow, spill[p + _PREFETCH_AHEAD])
            at = spill[p]
            size = overflow[at]
            if c + size > cand.shape[0]:
                grown = np.empty(2 * (c + size), dtype=np.int64)
                grown[:c] = cand[:c]
                cand = grown
            for j in range(size):
                cand[c] = overflow[at + 1 + j]
                c += 1
        # full distances
        for k in range(min(c, _PREFETCH_AHEAD)):
            _prefetch(words_flat, cand[k] * n_words)
        first = count
        for k in range(c):
            if k + _PREFETCH_AHEAD < c:
                _prefetch(words_flat, cand[k + _PREFETCH_AHEAD] * n_words)
            row = cand[k]
            d = _distance(words, row, q)
            if d <= threshold:
                count = _emit(out_q, out_r, out_d, count, qi, row, d)
        if first + 1 < count <= cap:
            # a row reached through several tables is reported once
            rows_found = np.sort(out_r[first:count])
            kept = first
            for k in range(rows_found.shape[0]):
                if k == 0 or rows_found[k] != rows_found[k - 1]:
                    out_r[kept] = rows_found[k]
                    out_d[kept] = _distance(words, rows_found[k], q)
                    kept += 1
            count = kept
    return count


@njit(cache=True, nogil=True)
def scan_search(words: Any, queries: Any, threshold: int, out_q: Any, out_r: Any, out_d: Any) -> int:
    """Exact brute force, blocked so a block of rows stays in cache for all queries."""
    count = 0
    n = words.shape[0]
    block = 2048
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        for qi in range(queries.shape[0]):
            q = queries[qi]
            for row in range(r0, r1):
                d = _distance(words, row, q)
                if d <= threshold:
                    count = _emit(out_q, out_r, out_d, count, qi, row, d)
    return count
