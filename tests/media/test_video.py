"""Video decoding: sniffing, probing, frame selection, reference colour conversion, limits and bad
input. Every video here is generated with PyAV (benign moving patterns) in a temporary folder."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from seawall.config import reset_settings
from seawall.media.errors import MediaError
from seawall.media.video import Frame, VideoInfo, is_animated_image, is_video, iter_frames, probe

W, H, FPS, N = 64, 48, 10, 30


def pattern(i: int, w: int = W, h: int = H) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + i * 8) % 256, (y * 5 + i * 3) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)


def write_video(
    path: Path,
    n: int = N,
    w: int = W,
    h: int = H,
    codec: str = "libx264",
    fmt: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")))
        out.mux(stream.encode())
    return path


def write_flat_yuv(path: Path, yuv: tuple[int, int, int], colorspace: int) -> Path:
    """One lossless (FFV1) frame with constant Y/U/V planes, tagged with ``colorspace``."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        frame = av.VideoFrame(32, 16, "yuv420p")
        for plane, value in zip(frame.planes, yuv, strict=True):
            plane.update(np.full((plane.height, plane.line_size), value, np.uint8).tobytes())
        if colorspace:
            stream.codec_context.colorspace = colorspace
            frame.colorspace = colorspace
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set SEAWALL_* limits for one test; settings are re-read and restored afterwards."""
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def set_limit(limits: pytest.MonkeyPatch, name: str, value: object) -> None:
    limits.setenv(f"SEAWALL_{name.upper()}", str(value))
    reset_settings()


def media_error(path: Path, *args: object, **kwargs: object) -> MediaError:
    with pytest.raises(MediaError) as info:
        list(iter_frames(path, *args, **kwargs))  # type: ignore[arg-type]
    assert info.value.source == str(path)
    return info.value


# ---------------------------------------------------------------- sniffing


def test_is_video_sniffs_containers_by_content(mp4: Path, tmp_path: Path) -> None:
    webm = write_video(tmp_path / "c.webm", n=3, codec="libvpx")
    avi = write_video(tmp_path / "c.avi", n=3, codec="mpeg4")
    disguised = tmp_path / "holiday.jpg"
    disguised.write_bytes(mp4.read_bytes())
    assert [is_video(p) for p in (mp4, webm, avi, disguised)] == [True, True, True, True]
    assert is_video(mp4.read_bytes()[:64]) is True
    # Matroska declares no frame count; AVI does
    assert probe(webm) == VideoInfo(0.3, W, H, 10.0, None, "vp8", "matroska")
    assert probe(avi) == VideoInfo(0.3, W, H, 10.0, 3, "mpeg4", "avi")
    assert [len(list(iter_frames(p))) for p in (webm, avi, disguised)] == [3, 3, N]


def test_is_video_rejects_images_and_noise(tmp_path: Path) -> None:
    png = tmp_path / "movie.mp4"  # wrong extension: content decides
    Image.fromarray(pattern(0)).save(png, format="PNG")
    heic_header = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    m4a_header = b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A mp42"
    noise = np.random.default_rng(1).bytes(4096)
    samples = (png, heic_header, m4a_header, noise, b"", b"GIF89a")
    assert [is_video(x) for x in samples] == [False] * 6
    assert is_video(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ") is True  # QuickTime .mov


def test_is_animated_image(tmp_path: Path) -> None:
    gif = write_gif(tmp_path / "a.gif", 3)
    still = tmp_path / "s.gif"
    Image.fromarray(pattern(0)).convert("P").save(still)
    assert (is_animated_image(gif), is_animated_image(still), is_animated_image(b"\x00" * 10)) == (True, False, False)


# ---------------------------------------------------------------- probing and frames


def test_probe_reports_header_facts(mp4: Path) -> None:
    assert probe(mp4) == VideoInfo(
        duration=3.0, width=W, height=H, frame_rate=10.0, frame_count=N, codec="h264", container="mov"
    )


def test_every_frame_numbered_and_timed_as_the_reference(mp4: Path) -> None:
    frames = list(iter_frames(mp4))
    assert [f.number for f in frames] == list(range(N))
    # float32(n) / float32(fps), the reference's formula (not the packet pts)
    assert [f.timestamp for f in frames] == [float(np.float32(n) / np.float32(FPS)) for n in range(N)]
    assert frames[3].timestamp == 0.30000001192092896
    assert {(f.rgb.shape, f.rgb.dtype.name) for f in frames} == {((H, W, 3), "uint8")}


def test_frame_selection_by_count_and_by_seconds(mp4: Path) -> None:
    assert [f.number for f in iter_frames(mp4, every_n_frames=7)] == [0, 7, 14, 21, 28]
    # 0.55 s x 10 fps = 5.5 -> every 5th frame (the reference truncates)
    assert [f.number for f in iter_frames(mp4, seconds_per_frame=0.55)] == [0, 5, 10, 15, 20, 25]
    # under one frame's duration still means every frame
    assert len(list(iter_frames(mp4, seconds_per_frame=0.01))) == N
    with pytest.raises(ValueError, match="not both"):
        iter_frames(mp4, every_n_frames=2, seconds_per_frame=1.0)
    with pytest.raises(ValueError, match="at least 1"):
        iter_frames(mp4, every_n_frames=0)


def test_downsample_to_requested_size(mp4: Path) -> None:
    frame = next(iter(iter_frames(mp4, width=16, height=12)))
    assert frame.rgb.shape == (12, 16, 3)


@pytest.mark.parametrize(
    ("yuv", "rgb"),
    [((16, 128, 128), (0, 0, 0)), ((235, 128, 128), (255, 255, 255)), ((126, 200, 60), (19, 154, 255))],
)
def test_colour_conversion_is_bt601_limited_whatever_the_tag(
    tmp_path: Path, yuv: tuple[int, int, int], rgb: tuple[int, int, int]
) -> None:
    # The reference's swscale context never sets colour details: BT.601, limited range. A stream
    # tagged BT.709 must convert the same (PyAV would otherwise honour the tag: 6,148,255).
    untagged = write_flat_yuv(tmp_path / "a.mkv", yuv, colorspace=0)
    tagged = write_flat_yuv(tmp_path / "b.mkv", yuv, colorspace=1)
    for path in (untagged, tagged):
        (frame,) = list(iter_frames(path))
        assert np.array_equal(frame.rgb, np.broadcast_to(np.array(rgb, np.uint8), (16, 32, 3)))


# ---------------------------------------------------------------- animated images


def write_gif(path: Path, n: int, duration: int = 100) -> Path:
    frames = [Image.fromarray(palette_pattern(i)) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0, disposal=1)
    return path


def palette_pattern(i: int) -> np.ndarray:
    # 4x4 blocks of few colours: GIF stores them exactly, so decoded frames compare exactly.
    y, x = np.mgrid[0:H, 0:W]
    v = ((x // 8 + y // 8 + i) % 4 * 80).astype(np.uint8)
    return np.stack([v, 255 - v, np.full_like(v, i * 40)], -1)


def test_animated_gif_frames(tmp_path: Path) -> None:
    gif = write_gif(tmp_path / "a.gif", 5, duration=200)
    assert probe(gif) == VideoInfo(1.0, W, H, 5.0, 5, "gif", "gif")
    frames = list(iter_frames(gif))
    assert [f.number for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames] == [
        0.0,
        0.20000000298023224,
        0.4000000059604645,
        0.6000000238418579,
        0.800000011920929,
    ]
    assert all(np.array_equal(f.rgb, palette_pattern(f.number)) for f in frames)
    assert [f.number for f in iter_frames(gif, every_n_frames=2)] == [0, 2, 4]


def test_animated_webp_frames(tmp_path: Path) -> None:
    path = tmp_path / "a.webp"
    imgs = [Image.fromarray(pattern(i)) for i in range(4)]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=100, lossless=True)
    frames = list(iter_frames(path))
    assert [f.number for f in frames] == [0, 1, 2, 3]
    assert all(np.array_equal(f.rgb, pattern(f.number)) for f in frames)


# ---------------------------------------------------------------- bad input


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert media_error(path).reason == "empty file (0 bytes)"
    with pytest.raises(MediaError, match="empty file"):
        probe(path)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(7).bytes(20_000))
    assert media_error(path).reason.startswith("not a readable video")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "cannot read file" in media_error(tmp_path / "absent.mp4").reason
    assert media_error(tmp_path).reason == "not a regular file"


def test_truncated_mp4_without_index(mp4: Path, tmp_path: Path) -> None:
    # moov (the index) is written last: cutting the tail leaves nothing decodable.
    data = mp4.read_bytes()
    half, tail = tmp_path / "half.mp4", tmp_path / "tail.mp4"
    half.write_bytes(data[: len(data) // 2])
    tail.write_bytes(data[:-100])
    assert media_error(half).reason.startswith("not a readable video: ")
    assert media_error(tail).reason == "no frames could be decoded (truncated or corrupt)"


def test_truncated_faststart_mp4(tmp_path: Path) -> None:
    # Index first, media cut short: frames stop early, which is an error, never a short result.
    whole = write_video(tmp_path / "fs.mp4", options={"movflags": "faststart"}).read_bytes()
    path = tmp_path / "fs-cut.mp4"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    # how many frames come out before the cut depends on the decoder's threads (8 on a quiet machine)
    reason = media_error(path).reason
    found = re.fullmatch(r"truncated: decoded (\d+) of the 30 frames the header declares", reason)
    assert found and 0 < int(found.group(1)) < 30, reason


def test_garbled_mp4(mp4: Path, tmp_path: Path) -> None:
    data = bytearray(mp4.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(48, len(data) // 2, 200):
        data[i] = int(rng.integers(0, 256))
    path = tmp_path / "garbled.mp4"
    path.write_bytes(bytes(data))
    assert media_error(path).reason.startswith("corrupt video data after ")


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        for i in range(8):
            tone = np.sin(np.arange(1024) * (0.05 + i * 0.01)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    assert media_error(path).reason == "no video stream"
    with pytest.raises(MediaError, match="no video stream"):
        probe(path)


def test_playlists_and_concat_scripts_are_refused(tmp_path: Path, mp4: Path) -> None:
    # Demuxers that open other files or URLs are not on the whitelist. Without it, FFmpeg would
    # follow this concat entry (relative to the list's folder) and decode the clip it names.
    concat = mp4.parent / "concat-list.mp4"
    concat.write_text(f"ffconcat version 1.0\nfile {mp4.name}\n")
    hls = tmp_path / "list2.mp4"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n")
    for path in (concat, hls):
        assert media_error(path).reason.startswith("not a readable video")


def test_over_limit_duration(mp4: Path, limits: pytest.MonkeyPatch) -> None:
    set_limit(limits, "max_video_seconds", 2.5)
    assert media_error(mp4).reason == "video lasts 3.0 s, over the limit of 2.5 s"


def test_over_limit_resolution(mp4: Path, limits: pytest.MonkeyPatch) -> None:
    set_limit(limits, "max_video_pixels", W * H - 1)
    assert media_error(mp4).reason == "video frames are 64x48 = 3072 pixels, over the limit of 3071"
    with pytest.raises(MediaError, match="over the limit"):
        probe(mp4)


def test_over_limit_frames(mp4: Path, limits: pytest.MonkeyPatch) -> None:
    set_limit(limits, "max_video_frames", 10)
    assert media_error(mp4).reason == "more than 10 frames to hash (the limit)"
    # hashing every 3rd frame keeps 10: within the limit
    assert len(list(iter_frames(mp4, every_n_frames=3))) == 10


def test_over_limit_file_size(mp4: Path, limits: pytest.MonkeyPatch) -> None:
    set_limit(limits, "max_file_bytes", 1000)
    size = mp4.stat().st_size
    assert media_error(mp4).reason == f"file is {size} bytes, over the limit of 1000"


def test_over_limit_animated_image(tmp_path: Path, limits: pytest.MonkeyPatch) -> None:
    gif = write_gif(tmp_path / "a.gif", 4)
    set_limit(limits, "max_video_frames", 3)
    assert media_error(gif).reason == "4 frames, over the limit of 3"


def test_truncated_gif(tmp_path: Path) -> None:
    data = write_gif(tmp_path / "a.gif", 4).read_bytes()
    early, late = tmp_path / "early.gif", tmp_path / "late.gif"
    early.write_bytes(data[:200])
    late.write_bytes(data[:-20])  # fails after the first frames: the whole call fails
    assert media_error(early).reason.startswith("cannot decode animated image: image file is truncated")
    assert media_error(late).reason.startswith("corrupt animated image: image file is truncated")


def test_frame_type_is_plain_data() -> None:
    f = Frame(3, 0.1, np.zeros((5, 5, 3), np.uint8))
    assert (f.number, f.timestamp, f.rgb.shape) == (3, 0.1, (5, 5, 3))
