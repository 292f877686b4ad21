"""Fuzzing the image and video decoders and the hash entry point (issue #10): real files of every
format Seawall decodes (PNG, JPEG, GIF, WebP, animated GIF/WebP, MP4, MKV), truncated, with bytes
flipped, overwritten or inserted. Only :class:`MediaError` (with a message) may escape, and no call
decodes more than its budget.

Bounded for CI: 60 examples per test; ``SEAWALL_FUZZ_EXAMPLES`` multiplies them for a long local run, as for
every fuzz test (tests/fuzzing.py)."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from fuzzing import MULTIPLIER
from seawall.media import video
from seawall.media.budget import DecodeBudget, decode_budget
from seawall.media.errors import MediaError
from seawall.media.image import load_image, open_image, pdq_pixels
from seawall.media.synthetic import benign_image, canvas_bomb_gif
from seawall.signals.hashing import hash_file

EXAMPLES = 60 * MULTIPLIER
#: Budget of every fuzzed call: small, so a mutation that inflates a header is refused, not decoded.
MAX_PIXELS = 2_000_000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("SEAWALL_FUZZ_RANDOM") is None,  # reproducible in CI
)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _animated(fmt: str) -> bytes:
    frames = [benign_image(seed, 48, 40) for seed in range(4)]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=[30, 40, 50, 60], loop=0)
    return out.getvalue()


def _movie(fmt: str, codec: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip.{fmt}"
        with av.open(str(path), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
            for i in range(6):
                y, x = np.mgrid[0:32, 0:48]
                rgb = np.stack([(x * 5 + i * 9) % 256, (y * 7) % 256, (x + y + i) % 256], -1).astype(np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            out.mux(stream.encode())
        return path.read_bytes()


@cache
def seeds() -> dict[str, bytes]:
    """One small valid file of each format (made once per run)."""
    still = benign_image(11, 64, 48)
    return {
        "png": _encode(still, "PNG"),
        "png16": _encode(Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 21).reshape(48, 64)), "PNG"),
        "jpeg": _encode(still, "JPEG", quality=80),
        "jpeg-progressive": _encode(still, "JPEG", quality=80, progressive=True),
        "gif": _encode(still.convert("P"), "GIF"),
        "webp": _encode(still, "WEBP", quality=80),
        "gif-animated": _animated("GIF"),
        "webp-animated": _animated("WEBP"),
        "bmp": _encode(still, "BMP"),
        "tiff": _encode(still, "TIFF"),
        "mp4": _movie("mp4", "libx264"),
        "mkv": _movie("matroska", "mpeg4"),
        "gif-bomb": canvas_bomb_gif(3000, 40),
    }


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file, then a few mutations: truncation, flipped bits, overwritten runs (often with
    0x00/0xff, which inflate length and size fields), inserted bytes."""
    name = draw(st.sampled_from(sorted(seeds())))
    data = bytearray(seeds()[name])
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            fill = draw(st.sampled_from([b"\x00", b"\xff", b"\x7f", b"\x80"]))
            run = draw(st.integers(1, 8))
            data[at : at + run] = fill * run
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return name, bytes(data)


def _only_media_errors(call: Callable[[Path], Any], name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzzed.{name}"
        path.write_bytes(data)
        budget = DecodeBudget(max_pixels=MAX_PIXELS, max_frames=100, max_seconds=60.0)
        with decode_budget(budget):
            try:
                call(path)
            except MediaError as exc:
                assert exc.reason.strip(), "a MediaError must say why"
                assert str(path) in str(exc)
        assert budget.pixels <= MAX_PIXELS


def _decode_image(path: Path) -> None:
    img = open_image(path)
    try:
        pdq_pixels(img, name=str(path))
    finally:
        img.close()
    load_image(path).close()


def _decode_frames(path: Path) -> None:
    for _frame in video.iter_frames(path):
        pass


@FUZZ
@given(mutated())
@example(("gif-bomb", canvas_bomb_gif(3000, 40)))
@example(("png", b"\x89PNG\r\n\x1a\n"))
@example(("mp4", b""))
def test_the_hash_entry_point_raises_only_media_errors(case: tuple[str, bytes]) -> None:
    _only_media_errors(lambda p: hash_file(p, dihedral=True), *case)


@FUZZ
@given(mutated())
def test_the_image_decoder_raises_only_media_errors(case: tuple[str, bytes]) -> None:
    _only_media_errors(_decode_image, *case)


@FUZZ
@given(mutated())
def test_the_frame_decoder_raises_only_media_errors(case: tuple[str, bytes]) -> None:
    _only_media_errors(_decode_frames, *case)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_media_errors(data: bytes) -> None:
    _only_media_errors(lambda p: hash_file(p, dihedral=True), "bin", data)


def test_a_video_stream_with_an_unknown_codec_tag_is_a_media_error(tmp_path: Path) -> None:
    """Found by the long fuzzing run: a mutated sample entry left PyAV without a codec context."""
    data = seeds()["mp4"]
    at = data.index(b"avc1", data.index(b"stsd"))
    path = tmp_path / "unknown-codec.mp4"
    path.write_bytes(data[:at] + b"zzzz" + data[at + 4 :])
    with pytest.raises(MediaError) as caught:
        hash_file(path)
    assert caught.value.reason == "the video stream's codec is not supported"


def test_animations_cut_anywhere_are_media_errors(tmp_path: Path) -> None:
    """Found by the long fuzzing run: a GIF cut inside its second frame raised IndexError from
    Pillow's frame counting, and a corrupt later frame OSError from the delay pass."""
    for name in ("gif-animated", "webp-animated"):
        data = seeds()[name]
        for end in range(6, len(data), max(1, len(data) // 150)):
            path = tmp_path / f"{name}-{end}"
            path.write_bytes(data[:end])
            try:
                hash_file(path, dihedral=True)
            except MediaError as exc:
                assert exc.reason.strip()
    gif = seeds()["gif-animated"]
    second = gif.index(b"\x2c", gif.index(b"\x21\xf9", gif.index(b"\x2c")))
    path = tmp_path / "cut.gif"
    path.write_bytes(gif[: second + 10])  # the second frame's descriptor, then nothing
    with pytest.raises(MediaError) as caught:
        hash_file(path)
    assert caught.value.reason == "cannot read animated image: index out of range"
