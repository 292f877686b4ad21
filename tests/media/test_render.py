"""Blurred greyscale thumbnails and in-memory media files."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from seawall.media import memfile, video
from seawall.media.errors import MediaError
from seawall.media.render import blurred_thumbnail
from seawall.media.synthetic import benign_image


def _edges(image: Image.Image) -> float:
    a = np.asarray(image.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())


def test_memory_file_never_touches_the_disk_and_the_fallback_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with memfile.memory_file(b"benign bytes") as path:
        assert str(path).startswith("/proc/self/fd/") and path.read_bytes() == b"benign bytes"
    assert not path.exists()

    monkeypatch.delattr(os, "memfd_create")
    with memfile.memory_file(b"benign bytes", fallback_dir=tmp_path / "tmp") as path:
        assert path.parent == tmp_path / "tmp" and path.read_bytes() == b"benign bytes"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list((tmp_path / "tmp").iterdir()) == []


def test_image_thumbnails_are_small_grey_blurred_and_upright(tmp_path: Path) -> None:
    picture = benign_image(3, 640, 480)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: shown rotated 90 degrees
    path = tmp_path / "turned.jpg"
    picture.save(path, format="JPEG", exif=exif)
    thumb = Image.open(io.BytesIO(blurred_thumbnail(path, "image", size=128, blur=6.0)))
    assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "L", (96, 128))  # upright, longest side 128
    sharp = picture.convert("L").transpose(Image.Transpose.ROTATE_270).resize((96, 128), Image.Resampling.LANCZOS)
    assert _edges(thumb) < 0.3 * _edges(sharp)

    with pytest.raises(MediaError, match="not a supported image format"):
        (tmp_path / "notes.png").write_bytes(b"not an image")
        blurred_thumbnail(tmp_path / "notes.png", "image")


def test_video_thumbnails_are_a_strip_of_key_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "10", "keyint_min": "10", "sc_threshold": "0"}
        for i in range(60):  # six seconds, six scenes, a key frame at each
            out.mux(stream.encode(av.VideoFrame.from_image(benign_image(200 + i // 10, 160, 120))))
        out.mux(stream.encode())
    frames = video.key_frames(path, 4, 80)
    assert [f.size for f in frames] == [(80, 60)] * 4
    strip = Image.open(io.BytesIO(blurred_thumbnail(path, "video", size=80, blur=4.0)))
    assert (strip.mode, strip.size) == ("L", (320, 60))
    # Four different scenes, not the first frame four times.
    tiles = [np.asarray(f.convert("L"), dtype=np.int16) for f in frames]
    assert all(np.abs(tiles[i] - tiles[i + 1]).mean() > 10 for i in range(3))
    assert video.container_of(path) == "matroska" and video.MIME_TYPES["matroska"] == "video/x-matroska"
