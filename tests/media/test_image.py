"""Safe image decoding: formats, exact PDQ sampling, and the bad-input corpus."""

from __future__ import annotations

import io
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seawall.config import reset_settings
from seawall.media.errors import MediaError
from seawall.media.image import load_image, open_image, pdq_indices, pdq_pixels
from seawall.signals.hashing import hash_file
from seawall.signals.pdq import hamming, pdq_hash_rgb


def _rgb(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w, 1), y * 255 // max(h, 1), (x ^ y) & 255], -1)
    return (base + rng.integers(0, 30, (h, w, 1))).clip(0, 255).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pdq(data: bytes) -> tuple[bytes, int]:
    return pdq_hash_rgb(pdq_pixels(open_image(data)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height greyscale pixels with a tiny compressed body (a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024 * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + (_png_chunk(b"IEND", b""))


@pytest.mark.parametrize(("w", "h"), [(513, 700), (1000, 999), (4001, 37 * 16), (3024, 4032)])
def test_sampling_is_the_reference_nearest_neighbour(w: int, h: int) -> None:
    rgb = _rgb(w, h)
    got = pdq_pixels(Image.fromarray(rgb))
    assert got.shape == (512, 512, 3)
    assert np.array_equal(got, rgb[pdq_indices(h)[:, None], pdq_indices(w)[None, :]])


def test_indices() -> None:
    assert pdq_indices(1024)[:4].tolist() == [0, 2, 4, 6]
    assert pdq_indices(513)[-2:].tolist() == [510, 511]
    assert pdq_indices(100000)[1] == 195


def test_colour_modes_hash_their_colours() -> None:
    rgb = _rgb(300, 200)
    ref = _pdq(_save(Image.fromarray(rgb), "PNG"))
    # Palette PNG: hashed through its colours, not its indices.
    pal = Image.fromarray(rgb).quantize(256)
    assert _pdq(_save(pal, "PNG")) == pdq_hash_rgb(np.asarray(pal.convert("RGB")))
    # RGBA: alpha dropped, colours kept.
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]))
    assert _pdq(_save(rgba, "PNG")) == ref
    # Lossless formats give identical pixels, so identical hashes.
    for fmt in ("BMP", "TIFF", "WEBP", "GIF"):
        kw: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
        img = Image.fromarray(rgb) if fmt != "GIF" else pal.convert("RGB")
        expect = ref if fmt != "GIF" else pdq_hash_rgb(np.asarray(pal.convert("RGB")))
        assert _pdq(_save(img, fmt, **kw)) == expect, fmt
    # 16-bit greyscale keeps its high byte (not clipped): v*257 hashes like v.
    grey = rgb[:, :, 1]
    i16 = Image.fromarray(grey.astype(np.uint16) * 257)
    assert i16.mode == "I;16"
    assert _pdq(_save(i16, "PNG")) == _pdq(_save(Image.fromarray(grey), "PNG"))


def test_cmyk_greyscale_progressive_jpeg_and_heic() -> None:
    rgb = _rgb(640, 480)
    base, _ = _pdq(_save(Image.fromarray(rgb), "JPEG", quality=95))
    for img, kw in (
        (Image.fromarray(rgb).convert("CMYK"), {}),
        (Image.fromarray(rgb), {"progressive": True}),
    ):
        value, _ = _pdq(_save(img, "JPEG", quality=95, **kw))
        assert hamming(value, base) <= 16
    grey = Image.fromarray(rgb).convert("L")
    assert open_image(_save(grey, "JPEG")).mode == "L"
    from pillow_heif import register_heif_opener

    register_heif_opener()
    heic = _save(Image.fromarray(rgb), "HEIF", quality=90)
    img = open_image(heic)
    assert img.format == "HEIF" and img.size == (640, 480)
    value, _ = _pdq(heic)
    assert hamming(value, base) <= 24


def test_animated_gif_first_frame() -> None:
    a, b = Image.fromarray(_rgb(64, 64, 1)), Image.fromarray(_rgb(64, 64, 2)[::-1].copy())
    anim = _save(a, "GIF", save_all=True, append_images=[b], duration=100)
    assert getattr(open_image(anim), "n_frames", 1) == 2
    assert _pdq(anim) == _pdq(_save(a, "GIF"))


def test_exif_orientation_is_ignored() -> None:
    img = Image.fromarray(_rgb(120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    plain = _pdq(_save(img, "JPEG", quality=95))
    assert _pdq(_save(img, "JPEG", quality=95, exif=exif.tobytes())) == plain


# ---------------------------------------------------------------- bad input


def _error(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MediaError) as info:
        hash_file(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value.reason


def test_bad_input_corpus(tmp_path: Path) -> None:
    jpeg = _save(Image.fromarray(_rgb(400, 300)), "JPEG")
    rng = np.random.default_rng(7)
    assert _error(tmp_path, "zero.jpg", b"") == "empty file (0 bytes)"
    assert _error(tmp_path, "cut.jpg", jpeg[: len(jpeg) // 2]).startswith(
        "corrupt or truncated image data: image file is truncated"
    )
    assert _error(tmp_path, "random.png", rng.bytes(5000)) == ("not a supported image or video format")
    assert _error(tmp_path, "text.jpg", b"hello, not a picture\n" * 10) == ("not a supported image or video format")
    one = _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")
    assert _error(tmp_path, "one.png", one) == "image is 1x1 pixels; PDQ needs at least 5x5"
    line = _save(Image.new("L", (100000, 1), 5), "PNG")
    assert _error(tmp_path, "line.png", line) == ("image is 100000x1 pixels; PDQ needs at least 5x5")
    # The crypto hashes of such a file are still available on their own.
    assert hash_file(tmp_path / "line.png", signals="md5")["media"] == "image"


def test_decompression_bombs_refused_before_decoding(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    huge = _png_header_only(100000, 100000)  # 10 gigapixels in a few hundred bytes
    assert len(huge) < 2000
    reason = _error(tmp_path, "bomb.png", huge)
    assert "decompression bomb" in reason
    medium = _png_header_only(12000, 10000)  # 120 MP: over Seawall's 100 MP default
    assert _error(tmp_path, "bomb2.png", medium) == (
        "image is 12000x10000 = 120000000 pixels, over the limit of 100000000 (decompression bomb?)"
    )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024  # nothing near the 10-120 GB a decode would need


def test_limits_from_settings_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _save(Image.fromarray(_rgb(100, 100)), "PNG")
    with pytest.raises(MediaError, match="over the limit of 9999 \\(decompression"):
        open_image(data, max_pixels=9999)
    with pytest.raises(MediaError, match=f"file is {len(data)} bytes, over the limit of 100"):
        open_image(data, max_file_bytes=100)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    monkeypatch.setenv("SEAWALL_MAX_IMAGE_PIXELS", "5000")
    reset_settings()
    try:
        with pytest.raises(MediaError, match="10000 pixels, over the limit of 5000"):
            load_image(path)
        assert load_image(path, max_pixels=10000).size == (100, 100)
    finally:
        monkeypatch.delenv("SEAWALL_MAX_IMAGE_PIXELS")
        reset_settings()


def test_truncated_png_and_missing_file(tmp_path: Path) -> None:
    png = _save(Image.fromarray(_rgb(200, 200)), "PNG")
    with pytest.raises(MediaError, match="<bytes>: corrupt or truncated image data"):
        load_image(png[:-300])
    with pytest.raises(MediaError, match="cannot read file"):
        open_image(tmp_path / "missing.png")
