"""PDQ against Meta's C++ reference outputs (read in place from the shared reference data)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seawall.media.image import open_image, pdq_pixels
from seawall.signals.pdq import (
    hamming,
    is_low_quality,
    pdq_dihedral_rgb,
    pdq_from_hex,
    pdq_hash_rgb,
    pdq_to_hex,
)

I16 = "python-threatexchange/threatexchange/tests/hashing/resources/I16.png"


def _expected(reference_data: Path) -> list[dict[str, str]]:
    with open(reference_data / "pdq/expected/cpp-reference-generated-here.csv") as fh:
        return list(csv.DictReader(fh))


def _hash(path: Path) -> tuple[str, int]:
    value, quality = pdq_hash_rgb(pdq_pixels(open_image(path), name=str(path)))
    return pdq_to_hex(value), quality


def test_every_reference_image_exact_except_i16(reference_data: Path) -> None:
    rows = _expected(reference_data)
    assert len(rows) == 56  # 55 images of the issue + the decoded RANDOM_IMAGE
    misses = []
    for row in rows:
        got = _hash(reference_data / "pdq" / row["path"])
        if got != (row["hash"], int(row["quality"])):
            misses.append(row["path"])
    assert misses == [I16]


def test_i16_outlier_is_the_reference_keeping_the_low_byte(reference_data: Path) -> None:
    # CImg reads ImageMagick's 16-bit PPM into uint8 samples, keeping value mod 256 (noise).
    # Seawall keeps the high byte instead (as browsers do); the low-byte image reproduces the reference.
    row = next(r for r in _expected(reference_data) if r["path"] == I16)
    img = Image.open(reference_data / "pdq" / I16)
    assert img.mode == "I;16"
    low = (np.asarray(img).astype(np.uint32) & 0xFF).astype(np.uint8)
    value, quality = pdq_hash_rgb(np.repeat(low[:, :, None], 3, axis=2))
    assert (pdq_to_hex(value), quality) == (row["hash"], 100)
    ours, our_quality = _hash(reference_data / "pdq" / I16)
    assert hamming(pdq_from_hex(ours), value) == 130
    assert our_quality == 100


def test_dihedral_hashes_equal_reference(reference_data: Path) -> None:
    lines = reference_data / "pdq/expected/cpp-reference-generated-here-pdqdih-across.txt"
    rows = [line.split(",") for line in lines.read_text().split()]
    assert len(rows) == 8
    for row in rows:
        *hashes, quality, rel = row
        img = open_image(reference_data / "pdq" / rel)
        got, got_quality = pdq_dihedral_rgb(pdq_pixels(img))
        assert [pdq_to_hex(h) for h in got] == hashes, rel
        assert got_quality == int(quality)


def test_flat_and_tiny_buffers() -> None:
    # Below 5 px a side the reference returns an all-zero hash of quality 0.
    value, quality = pdq_hash_rgb(np.zeros((4, 100, 3), np.uint8))
    assert value == bytes(32) and quality == 0
    _flat, flat_quality = pdq_hash_rgb(np.full((64, 64, 3), 128, np.uint8))
    assert flat_quality == 0 and is_low_quality(flat_quality)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        pdq_hash_rgb(np.zeros((10, 10), np.uint8))


def test_hex_helpers() -> None:
    text = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22"
    raw = pdq_from_hex(text.upper() + "\n")
    assert pdq_to_hex(raw) == text
    assert raw[:2] == b"\xd8\xf8"
    assert hamming(raw, bytes(32)) == bin(int(text, 16)).count("1")
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        pdq_from_hex("abc")
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        pdq_from_hex("zz" * 32)
    assert not is_low_quality(50) and is_low_quality(49)
