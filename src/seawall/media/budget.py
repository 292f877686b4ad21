"""What one request may spend decoding media, and how many decodes a process runs at once.

A :class:`DecodeBudget` is installed for the length of one request (:func:`request_decode`); the
decoders in :mod:`seawall.media.image` and :mod:`seawall.media.video` find it through
:func:`current_budget` and check it from the headers before decoding (declared canvas x frames) and
charge it while decoding (headers can lie). Outside a request (the CLI, scans) there is no budget and
only the per-file ``max_*`` limits apply.

:class:`DecodeSlots` bounds decodes in flight per process: the server's memory is then about
``decode_concurrency`` x the largest decode, whatever the number of callers. A request that finds
no slot within a short wait gets :class:`DecodeBusy` (the web layer answers 503 with Retry-After).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

from seawall.config import Settings
from seawall.media.errors import MediaError

#: After a decode of at least this many pixels, freed memory is handed back to the OS.
_TRIM_AFTER_PIXELS: Final = 4_000_000
#: Allocations of at least this many bytes get their own mapping, returned to the OS when freed
#: (glibc otherwise raises this threshold after each large free and keeps pixel buffers in its heap).
_MMAP_THRESHOLD: Final = 1024 * 1024


class DecodeBusy(Exception):
    """Every decode slot stayed taken for the whole wait: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the server is busy decoding other uploads; retry in {retry_after} s")


@dataclass
class DecodeBudget:
    """Pixels, animation frames and time one request may spend decoding."""

    max_pixels: int
    max_frames: int
    max_seconds: float
    started: float = field(default_factory=time.monotonic)
    pixels: int = 0
    """Pixels decoded so far."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeBudget:
        return cls(settings.max_decode_pixels, settings.max_animation_frames, settings.max_decode_seconds)

    def check_declared(self, source: str, width: int, height: int, frames: int = 1) -> None:
        """Refuse, before any pixel is decoded, what the headers say would be over the budget."""
        if frames > 1 and frames > self.max_frames:
            raise MediaError(source, f"animation has {frames} frames, over the limit of {self.max_frames}")
        total = width * height * max(frames, 1)
        if self.pixels + total > self.max_pixels:
            raise MediaError(
                source,
                f"decoding {frames} frame(s) of {width}x{height} is {total} pixels, over the budget of "
                f"{self.max_pixels} pixels per request (decompression bomb?)",
            )

    def charge(self, source: str, pixels: int) -> None:
        """Count pixels about to be decoded; MediaError when they would go over the budget or time."""
        self.check_time(source)
        if self.pixels + pixels > self.max_pixels:
            raise MediaError(
                source, f"over the budget of {self.max_pixels} decoded pixels per request (decompression bomb?)"
            )
        self.pixels += pixels

    def check_time(self, source: str) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed > self.max_seconds:
            raise MediaError(source, f"decoding took over {self.max_seconds:g} s, the limit per request")


_current: ContextVar[DecodeBudget | None] = ContextVar("seawall_decode_budget", default=None)


def current_budget() -> DecodeBudget | None:
    """The budget of the request being served in this context, if any."""
    return _current.get()


@contextlib.contextmanager
def decode_budget(budget: DecodeBudget) -> Iterator[DecodeBudget]:
    """Decoders in this block (this thread/context) charge ``budget``."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


class DecodeSlots:
    """A per-process limit on decodes in flight."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"decode concurrency must be at least 1, got {size}")
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.active = 0

    def acquire(self, wait: float) -> None:
        if not self._semaphore.acquire(timeout=max(wait, 0.0)):
            raise DecodeBusy(max(1, round(wait)) + 1)
        with self._lock:
            self.active += 1

    def release(self) -> int:
        """Free a slot; the number of decodes still in flight."""
        with self._lock:
            self.active -= 1
            left = self.active
        self._semaphore.release()
        return left


_slots: DecodeSlots | None = None
_slots_lock = threading.Lock()


def slots_for(settings: Settings) -> DecodeSlots:
    """The process's decode slots (made on first use, sized by ``decode_concurrency``)."""
    global _slots
    with _slots_lock:
        if _slots is None or _slots.size != settings.decode_concurrency:
            _tune_malloc()
            _slots = DecodeSlots(settings.decode_concurrency)
        return _slots


@contextlib.contextmanager
def request_decode(settings: Settings) -> Iterator[DecodeBudget]:
    """A decode slot and a fresh budget for one request's decoding; memory given back afterwards.

    Raises :class:`DecodeBusy` when no slot frees up within ``decode_wait_seconds``."""
    slots = slots_for(settings)
    slots.acquire(settings.decode_wait_seconds)
    budget = DecodeBudget.from_settings(settings)
    try:
        with decode_budget(budget):
            yield budget
    finally:
        left = slots.release()
        if budget.pixels >= _TRIM_AFTER_PIXELS and left == 0:
            release_memory()


# ---------------------------------------------------------------- memory


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # glibc only: malloc_trim and mallopt are not in musl or the BSD libcs.
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC: Final = _libc()
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_malloc_tuned = False
#: For a process that decodes file after file: allocations below this size come from the heap (the
#: most glibc allows), and freed heap is handed back only past ``_BULK_TRIM_THRESHOLD``.
_BULK_MMAP_THRESHOLD: Final = 32 * 1024 * 1024
_BULK_TRIM_THRESHOLD: Final = 128 * 1024 * 1024


def _tune_malloc() -> None:
    global _malloc_tuned
    if _LIBC is not None and not _malloc_tuned:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        _malloc_tuned = True


def keep_freed_memory() -> None:
    """Tune this process (glibc) for decoding one file after another, as ``seawall match`` and a
    scan worker do: the next picture reuses the pixel buffers the last one freed.

    Otherwise glibc gives buffers of a few megabytes their own mappings, or trims them off its heap
    when freed (always so when ``MALLOC_TRIM_THRESHOLD_`` is set, as Dask's nanny sets it for its
    workers), and the kernel faults in and zeroes fresh pages for every picture: 1 200-1 900 page
    faults per 800x600 JPEG, which made hashing cost 1.4-1.8x the CPU. A process keeps at most
    ``_BULK_TRIM_THRESHOLD`` of free heap; pictures past ``_BULK_MMAP_THRESHOLD`` are mapped as before.
    Not for the server, which hands memory back after large decodes (``request_decode``)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _BULK_MMAP_THRESHOLD)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, _BULK_TRIM_THRESHOLD)


def release_memory() -> None:
    """Collect cycles and hand free heap pages back to the OS (glibc), so a burst of large decodes
    does not leave the process at its peak size."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
