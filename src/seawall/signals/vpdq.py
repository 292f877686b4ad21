"""vPDQ: a PDQ hash per video frame, and the comparison vPDQ defines on such hashes.

Hashing follows Meta's reference ``vpdq`` (see :mod:`seawall.media.video` for how frames are
decoded, numbered and timed). Each frame's PDQ is :func:`seawall.signals.pdq.pdq_hash_rgb` of the
full decoded frame: the reference hashes the frame buffer at its own size (its 512x512 sampling
is only in the photo hasher).

Comparison is the pseudocode of the vPDQ README: the unique hashes of frames with quality >= F on
each side, a query hash "matches" when some candidate hash is within distance D (``<= D``), and
the result is the percentage of unique query hashes matched and of unique candidate hashes
matched. (The C++ ``match-hashes-brute`` tool uses ``< D`` and no de-duplication; the README is
the definition, and the expected match matrix in the reference data is computed with it.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from seawall.media.errors import MediaError
from seawall.media.video import Frame, iter_frames
from seawall.signals.pdq import HASH_BYTES, MIN_HASHABLE_DIM, pdq_from_hex, pdq_hash_rgb, pdq_to_hex

#: The README's example thresholds, used as defaults.
DEFAULT_DISTANCE: Final = 31
DEFAULT_QUALITY: Final = 50
#: Pairwise distances are computed this many pairs at a time (~40 MB of temporaries).
_PAIRS_PER_BLOCK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class VpdqFeature:
    """One hashed frame: frame number, PDQ quality (0-100), 32-byte PDQ hash, seconds."""

    frame: int
    quality: int
    pdq: bytes
    timestamp: float

    def __post_init__(self) -> None:
        if len(self.pdq) != HASH_BYTES:
            raise ValueError(f"a PDQ hash is {HASH_BYTES} bytes, got {len(self.pdq)}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"PDQ quality is 0-100, got {self.quality}")
        if self.frame < 0:
            raise ValueError(f"frame number must not be negative, got {self.frame}")

    @property
    def hex(self) -> str:
        return pdq_to_hex(self.pdq)

    def to_dict(self) -> dict[str, Any]:
        """``{"frame", "quality", "pdq", "timestamp"}``; the timestamp rounded to milliseconds,
        as the reference prints it."""
        return {
            "frame": self.frame,
            "quality": self.quality,
            "pdq": self.hex,
            "timestamp": round(self.timestamp, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VpdqFeature:
        try:
            return cls(
                int(data["frame"]),
                int(data["quality"]),
                pdq_from_hex(str(data["pdq"])),
                float(data["timestamp"]),
            )
        except KeyError as exc:
            raise ValueError(f"vPDQ feature lacks {exc.args[0]!r}") from None

    def to_line(self) -> str:
        """The reference line: ``frame_number,quality,pdq_hex,timestamp`` (3 decimals)."""
        return f"{self.frame},{self.quality},{self.hex},{self.timestamp:.3f}"

    @classmethod
    def from_line(cls, line: str) -> VpdqFeature:
        """Parse a reference line. The timestamp is optional (older files have three fields)."""
        parts = [p.strip() for p in line.strip().split(",")]
        if len(parts) not in (3, 4):
            raise ValueError(f"a vPDQ line is frame,quality,pdq_hex[,timestamp]: {line.strip()[:120]!r}")
        try:
            frame, quality = int(parts[0]), int(parts[1])
            timestamp = float(parts[3]) if len(parts) == 4 else 0.0
        except ValueError:
            raise ValueError(f"bad number in vPDQ line: {line.strip()[:120]!r}") from None
        return cls(frame, quality, pdq_from_hex(parts[2]), timestamp)


# ---------------------------------------------------------------- text format


def dumps(features: Iterable[VpdqFeature]) -> str:
    """Reference text: one ``frame,quality,pdq_hex,timestamp`` line per feature."""
    return "".join(f.to_line() + "\n" for f in features)


def loads(text: str) -> list[VpdqFeature]:
    """Parse reference text (blank lines ignored). Raises ValueError naming the bad line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(VpdqFeature.from_line(line))
        except ValueError as exc:
            raise ValueError(f"line {lineno}: {exc}") from None
    return out


# ---------------------------------------------------------------- hashing


def vpdq_hash_frames(frames: Iterable[Frame], threads: int = 1) -> list[VpdqFeature]:
    """Hash decoded frames. With ``threads > 1`` frames are hashed on a thread pool while the
    next ones decode (the PDQ core releases the GIL); the result is the same."""
    if threads <= 1:
        return [_feature(f) for f in frames]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: list[Future[VpdqFeature]] = []
        # Bound the queue so a long video never holds more than a few decoded frames in memory.
        out: list[VpdqFeature] = []
        for frame in frames:
            pending.append(pool.submit(_feature, frame))
            if len(pending) >= 2 * threads:
                out.append(pending.pop(0).result())
        out.extend(p.result() for p in pending)
    return out


def _feature(frame: Frame) -> VpdqFeature:
    pdq, quality = pdq_hash_rgb(frame.rgb)
    return VpdqFeature(frame.number, quality, pdq, frame.timestamp)


def vpdq_hash_file(
    path: str | os.PathLike[str],
    every_n_frames: int | None = None,
    seconds_per_hash: float | None = None,
    *,
    downsample_width: int | None = None,
    downsample_height: int | None = None,
    threads: int = 1,
) -> list[VpdqFeature]:
    """vPDQ of a video or animated GIF/WEBP: every frame by default, or every n-th frame, or one
    frame per ``seconds_per_hash`` (the reference's rate option). Raises
    :class:`~seawall.media.errors.MediaError` for bad input; never returns a partial hash."""
    frames = iter_frames(
        path,
        every_n_frames=every_n_frames,
        seconds_per_frame=seconds_per_hash,
        width=downsample_width,
        height=downsample_height,
    )
    return vpdq_hash_frames(_hashable(str(path), frames), threads=threads)


def _hashable(source: str, frames: Iterable[Frame]) -> Iterator[Frame]:
    # The reference fails on frames under 5 pixels a side rather than emit all-zero hashes,
    # which would all match one another.
    for frame in frames:
        height, width = frame.rgb.shape[:2]
        if min(width, height) < MIN_HASHABLE_DIM:
            raise MediaError(
                source,
                f"frames are {width}x{height} pixels; PDQ needs at least {MIN_HASHABLE_DIM}x{MIN_HASHABLE_DIM}",
            )
        yield frame


# ---------------------------------------------------------------- comparison


def unique_hashes(features: Iterable[VpdqFeature], quality: int = DEFAULT_QUALITY) -> list[bytes]:
    """The distinct hashes of frames with quality >= ``quality``, in first-seen order."""
    return list(dict.fromkeys(f.pdq for f in features if f.quality >= quality))


def _words(hashes: Sequence[bytes]) -> npt.NDArray[np.uint64]:
    return np.frombuffer(b"".join(hashes), dtype=">u8").astype(np.uint64).reshape(len(hashes), 4)


def _matched(
    a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64], distance: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """For each row of ``a`` and of ``b``: is some row of the other within ``distance``?"""
    a_hit = np.zeros(len(a), dtype=bool)
    b_hit = np.zeros(len(b), dtype=bool)
    rows = max(1, _PAIRS_PER_BLOCK // max(len(b), 1))
    for start in range(0, len(a), rows):
        block = a[start : start + rows]
        d = np.bitwise_count(block[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int32)
        close = d <= distance
        a_hit[start : start + rows] = close.any(axis=1)
        b_hit |= close.any(axis=0)
    return a_hit, b_hit


def match_percentages(
    query: Iterable[VpdqFeature],
    candidate: Iterable[VpdqFeature],
    distance: int = DEFAULT_DISTANCE,
    quality: int = DEFAULT_QUALITY,
) -> tuple[float, float]:
    """(query %, candidate %) matched, as the vPDQ README defines them: the share of unique
    good-quality query hashes within ``distance`` (inclusive) of some unique good-quality
    candidate hash, and the other way round. 0.0 for both when either side has none."""
    q = unique_hashes(query, quality)
    c = unique_hashes(candidate, quality)
    if not q or not c:
        return 0.0, 0.0
    q_hit, c_hit = _matched(_words(q), _words(c), distance)
    return float(q_hit.sum()) * 100.0 / len(q), float(c_hit.sum()) * 100.0 / len(c)


def is_match(
    query: Iterable[VpdqFeature],
    candidate: Iterable[VpdqFeature],
    *,
    distance: int = DEFAULT_DISTANCE,
    quality: int = DEFAULT_QUALITY,
    query_pct: float = 0.0,
    candidate_pct: float = 80.0,
) -> bool:
    """The README's decision: candidate % >= ``candidate_pct`` and query % >= ``query_pct``
    (defaults 80 % and 0 %: a clip inside a longer upload still matches)."""
    q_pct, c_pct = match_percentages(query, candidate, distance, quality)
    return c_pct >= candidate_pct and q_pct >= query_pct
