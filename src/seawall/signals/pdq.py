"""PDQ, bit for bit as Meta's C++ reference (``pdq/cpp``) computes it.

The reference works in 32-bit floats in a fixed order of operations: RGB -> luma, two passes of
a Jarosz (box) filter, decimation to 64x64, a 16x64 DCT, thresholding at the median. Floating-
point addition is not associative, so every loop here keeps the reference's order and float32
rounding; numba compiles them without fast-math (no reassociation, no fused multiply-add).
The ``pdqhash`` wheel wraps the same C++ core but computes luma in float64 before rounding, which
differs from the reference in the last bit for some pixels; that is why the core lives here.

Hash bytes are the 64-hex string the reference prints, as 32 bytes (bit k of the hash, set when
DCT coefficient k exceeds the median, has value 2**k in the big-endian 256-bit number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numba
import numpy as np
import numpy.typing as npt

HASH_BYTES: Final = 32
HASH_BITS: Final = 256
#: Below this the reference calls a hash low-quality (kept, not matched by default).
LOW_QUALITY_THRESHOLD: Final = 50
#: The reference hasher samples larger images down to this square by nearest neighbour.
DOWNSAMPLE_DIMS: Final = 512
#: Images smaller than this in either direction hash to all zeros with quality 0 (as reference).
MIN_HASHABLE_DIM: Final = 5
#: Order of the dihedral hashes, as ``pdq-photo-hasher --pdqdih-across`` prints them.
DIHEDRAL_NAMES: Final = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flipx",
    "flipy",
    "flipplus1",
    "flipminus1",
)

_F32 = np.float32
FloatArray = npt.NDArray[np.float32]
U8Array = npt.NDArray[np.uint8]


def _dct_matrix() -> FloatArray:
    # float scale (sqrt in double, rounded to float) times a double cosine, rounded to float.
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    d = np.empty((16, 64), dtype=np.float32)
    for i in range(16):
        for j in range(64):
            d[i, j] = np.float32(scale * math.cos((math.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1)))
    return d


_DCT: Final = _dct_matrix()
_LUMA_R: Final = np.float32(0.299)
_LUMA_G: Final = np.float32(0.587)
_LUMA_B: Final = np.float32(0.114)


@numba.njit(cache=True, nogil=True)
def _luma(rgb: U8Array) -> FloatArray:  # pragma: no cover - compiled
    rows, cols = rgb.shape[0], rgb.shape[1]
    out = np.empty((rows, cols), dtype=np.float32)
    cr, cg, cb = np.float32(0.299), np.float32(0.587), np.float32(0.114)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = (cr * np.float32(rgb[i, j, 0]) + cg * np.float32(rgb[i, j, 1])) + cb * np.float32(rgb[i, j, 2])
    return out


@numba.njit(cache=True, nogil=True)
def _box_rows(src: FloatArray, dst: FloatArray, window: int) -> None:  # pragma: no cover
    # One running sum per row, in the reference's four phases (grow, write, slide, shrink).
    rows, n = src.shape
    half = (window + 2) // 2
    p1 = half - 1
    p2 = window - half + 1
    p3 = n - window
    p4 = half - 1
    for r in range(rows):
        s = np.float32(0.0)
        cur = 0
        ri = 0
        li = 0
        oi = 0
        for _ in range(p1):
            s += src[r, ri]
            cur += 1
            ri += 1
        for _ in range(p2):
            s += src[r, ri]
            cur += 1
            dst[r, oi] = s / np.float32(cur)
            ri += 1
            oi += 1
        for _ in range(p3):
            s += src[r, ri]
            s -= src[r, li]
            dst[r, oi] = s / np.float32(cur)
            li += 1
            ri += 1
            oi += 1
        for _ in range(p4):
            s -= src[r, li]
            cur -= 1
            dst[r, oi] = s / np.float32(cur)
            li += 1
            oi += 1


@numba.njit(cache=True, nogil=True)
def _box_cols(src: FloatArray, dst: FloatArray, window: int) -> None:  # pragma: no cover
    # Same as _box_rows down each column; a vector of column sums keeps memory access by row
    # while each column sees exactly the reference's sequence of operations.
    n, cols = src.shape
    half = (window + 2) // 2
    p1 = half - 1
    p2 = window - half + 1
    p3 = n - window
    p4 = half - 1
    s = np.zeros(cols, dtype=np.float32)
    cur = 0
    ri = 0
    li = 0
    oi = 0
    for _ in range(p1):
        for c in range(cols):
            s[c] += src[ri, c]
        cur += 1
        ri += 1
    for _ in range(p2):
        cur += 1
        fc = np.float32(cur)
        for c in range(cols):
            s[c] += src[ri, c]
            dst[oi, c] = s[c] / fc
        ri += 1
        oi += 1
    fc = np.float32(cur)
    for _ in range(p3):
        for c in range(cols):
            s[c] += src[ri, c]
            s[c] -= src[li, c]
            dst[oi, c] = s[c] / fc
        li += 1
        ri += 1
        oi += 1
    for _ in range(p4):
        cur -= 1
        fc = np.float32(cur)
        for c in range(cols):
            s[c] -= src[li, c]
            dst[oi, c] = s[c] / fc
        li += 1
        oi += 1


@numba.njit(cache=True, nogil=True)
def _dct16(luma: FloatArray, dct: FloatArray) -> tuple[FloatArray, int]:  # pragma: no cover
    """Blur, decimate, quality and the 16x16 DCT of a float luma image (reference order)."""
    rows, cols = luma.shape
    a = np.empty((64, 64), dtype=np.float32)
    if rows == 64 and cols == 64:
        a[:, :] = luma
    else:
        buf1 = luma.copy()
        buf2 = np.empty_like(buf1)
        win_rows = (cols + 128 - 1) // 128  # window along rows, from the column count
        win_cols = (rows + 128 - 1) // 128
        for _ in range(2):
            _box_rows(buf1, buf2, win_rows)
            _box_cols(buf2, buf1, win_cols)
        for i in range(64):
            ii = int(((i + 0.5) * rows) / 64)
            for j in range(64):
                jj = int(((j + 0.5) * cols) / 64)
                a[i, j] = buf1[ii, jj]

    grad = 0
    c100 = np.float32(100.0)
    c255 = np.float32(255.0)
    for i in range(63):
        for j in range(64):
            grad += abs(int(((a[i, j] - a[i + 1, j]) * c100) / c255))
    for i in range(64):
        for j in range(63):
            grad += abs(int(((a[i, j] - a[i, j + 1]) * c100) / c255))
    quality = min(grad // 90, 100)

    t = np.empty((16, 64), dtype=np.float32)
    for i in range(16):
        for j in range(64):
            s = np.float32(0.0)
            for k in range(64):
                s += dct[i, k] * a[k, j]
            t[i, j] = s
    b = np.empty((16, 16), dtype=np.float32)
    for i in range(16):
        for j in range(16):
            s = np.float32(0.0)
            for k in range(64):
                s += t[i, k] * dct[j, k]
            b[i, j] = s
    return b, quality


def _bits_to_bytes(dct16: FloatArray) -> bytes:
    flat = dct16.reshape(256)
    # Torben's median as the reference uses it: the lower median (rank 128 of 256).
    median = np.partition(flat, 127)[127]
    bits = flat > median
    # Bit k has weight 2**k: reverse to most-significant-first, then pack.
    return np.packbits(bits[::-1]).tobytes()


def _dihedral_dcts(b: FloatArray) -> list[FloatArray]:
    """The DCTs of the 8 rotations/flips, from the original's (as the reference derives them)."""
    i = np.arange(16)
    odd_i = (i & 1)[:, None].astype(bool)  # sign pattern by row index of the ORIGINAL
    odd_j = (i & 1)[None, :].astype(bool)
    odd_ij = ((i[:, None] + i[None, :]) & 1).astype(bool)
    neg = np.negative
    rot90 = np.where(odd_j, b, neg(b)).T
    rot180 = np.where(odd_ij, neg(b), b)
    rot270 = np.where(odd_i, b, neg(b)).T
    flipx = np.where(odd_i, b, neg(b))
    flipy = np.where(odd_j, b, neg(b))
    flipplus1 = b.T
    flipminus1 = np.where(odd_ij, neg(b), b).T
    return [b, rot90, rot180, rot270, flipx, flipy, flipplus1, flipminus1]


def _check_rgb(rgb: np.ndarray) -> U8Array:
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    return rgb


def luma_from_rgb(rgb: np.ndarray) -> FloatArray:
    """Float luma exactly as the reference computes it (float32 ``0.299R + 0.587G + 0.114B``)."""
    return _luma(_check_rgb(rgb))


def pdq_from_luma(luma: FloatArray) -> tuple[bytes, int]:
    """PDQ hash and quality of a float32 luma image (no resizing)."""
    rows, cols = luma.shape
    if rows < MIN_HASHABLE_DIM or cols < MIN_HASHABLE_DIM:
        return bytes(HASH_BYTES), 0
    b, quality = _dct16(np.ascontiguousarray(luma, dtype=np.float32), _DCT)
    return _bits_to_bytes(b), int(quality)


def pdq_hash_rgb(rgb: np.ndarray) -> tuple[bytes, int]:
    """PDQ hash (32 bytes) and quality of an HxWx3 uint8 RGB array, as the reference hashes a
    buffer of that size. No resizing happens here (callers sample to 512x512 first when the
    reference would)."""
    return pdq_from_luma(luma_from_rgb(rgb))


def pdq_dihedral_rgb(rgb: np.ndarray) -> tuple[list[bytes], int]:
    """The 8 dihedral PDQ hashes (order of :data:`DIHEDRAL_NAMES`) and the quality."""
    luma = luma_from_rgb(rgb)
    rows, cols = luma.shape
    if rows < MIN_HASHABLE_DIM or cols < MIN_HASHABLE_DIM:
        return [bytes(HASH_BYTES)] * 8, 0
    b, quality = _dct16(luma, _DCT)
    return [_bits_to_bytes(np.ascontiguousarray(d)) for d in _dihedral_dcts(b)], int(quality)


# ---------------------------------------------------------------- values


def pdq_to_hex(value: bytes) -> str:
    """Lower-case 64-hex, as the reference prints it."""
    if len(value) != HASH_BYTES:
        raise ValueError(f"a PDQ hash is {HASH_BYTES} bytes, got {len(value)}")
    return value.hex()


def pdq_from_hex(text: str) -> bytes:
    """Parse a 64-hex PDQ hash (either case, surrounding whitespace ignored)."""
    s = text.strip()
    if len(s) != 2 * HASH_BYTES:
        raise ValueError(f"a PDQ hash is 64 hexadecimal digits, got {len(s)} characters")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise ValueError(f"a PDQ hash is 64 hexadecimal digits, got {s[:70]!r}") from None


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits."""
    if len(a) != len(b):
        raise ValueError(f"hashes differ in length: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def is_low_quality(quality: int) -> bool:
    """Quality below 50: kept, but not matched by default."""
    return quality < LOW_QUALITY_THRESHOLD


@dataclass(frozen=True, slots=True)
class PDQResult:
    """One PDQ hash with its quality."""

    hash: bytes
    quality: int

    @property
    def hex(self) -> str:
        return pdq_to_hex(self.hash)

    @property
    def low_quality(self) -> bool:
        return is_low_quality(self.quality)
