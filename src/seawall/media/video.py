"""Safe decoding of video (PyAV) and of animated GIF/WEBP frames (Pillow), for vPDQ.

Frames come out exactly as Meta's reference ``vpdq`` prepares them, so hashes match its lists:

* each decoded frame is converted to packed RGB24 by swscale with ``SWS_AREA`` at the stream's
  coded width x height (or the requested downsample size), from BT.601 limited-range YUV: the
  reference builds its scaler with ``sws_getContext`` and never sets colour details, so those are
  swscale's defaults whatever the stream is tagged with;
* the frame number is the decoder's output index (0-based), and the timestamp is
  ``float32(number) / float32(fps)`` with fps the stream's average frame rate (falling back to
  ``r_frame_rate``), not the packet's pts;
* rotation metadata and sample aspect ratio are ignored (the reference hashes frames as stored);
* rate selection keeps frame ``n`` when ``n % every_n_frames == 0``, and a rate in seconds becomes
  ``every_n_frames = max(1, int(seconds * fps))``.

Every limit comes from :func:`seawall.config.get_settings` and is checked before decoding (from
the headers) and again while decoding (headers can lie). Anything wrong raises
:class:`~seawall.media.errors.MediaError`; a stream that stops early is an error, not a short
result, so nothing half-decoded is hashed.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.video.reformatter import Colorspace, VideoReformatter
from PIL import Image, ImageSequence

from seawall.config import get_settings
from seawall.media.budget import current_budget
from seawall.media.errors import MediaError

PathLike = str | os.PathLike[str]

#: Demuxers FFmpeg may use. A whitelist keeps playlist/concat demuxers (which open further files
#: or URLs) and exotic parsers away from untrusted input.
_DEMUXERS: Final = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,m4v"
#: ftyp major brands of still images (HEIC/HEIF/AVIF) and audio (M4A/M4B...) that share the
#: ISO-BMFF box layout with MP4/MOV.
_NOT_VIDEO_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
    | {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
)
#: Top-level ISO-BMFF boxes a QuickTime file without ``ftyp`` may start with.
_QT_BOXES: Final = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
#: The reference's swscale default matrix (it never calls sws_setColorspaceDetails).
_BT601: Final = int(Colorspace.ITU601)
#: Bytes read for sniffing.
_SNIFF_BYTES: Final = 4096
#: Pillow frame delay of 0 means "as fast as possible"; browsers show such frames for 100 ms.
_GIF_DEFAULT_DELAY_MS: Final = 100
#: A declared frame count may exceed what decodes by this much before the file counts as
#: truncated (edit lists legitimately drop a few leading frames).
_DROP_SLACK_FRAMES: Final = 2


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container headers say about the first video stream."""

    duration: float | None
    """Seconds, if known."""
    width: int
    height: int
    frame_rate: float
    """Average frames per second (what the reference divides frame numbers by)."""
    frame_count: int | None
    """Frames declared by the container, if it declares them."""
    codec: str
    container: str
    """``"gif"``/``"webp"`` for animated images read through Pillow."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: 0-based decoder index, ``number / fps`` seconds, HxWx3 uint8 RGB."""

    number: int
    timestamp: float
    rgb: npt.NDArray[np.uint8]


# ---------------------------------------------------------------- sniffing


def _head(path_or_bytes: PathLike | bytes | bytearray | memoryview) -> bytes:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return bytes(path_or_bytes[:_SNIFF_BYTES])
    try:
        with open(path_or_bytes, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise MediaError(str(path_or_bytes), f"cannot read file: {exc.strerror or exc}") from None


def _sniff(head: bytes) -> str | None:
    """Container family from magic bytes, or None when it is not a video container we accept."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in _NOT_VIDEO_BRANDS else "mp4"
    if len(head) >= 8 and head[4:8] in _QT_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if len(head) >= 377 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"
    if head.startswith(b"OggS") and b"theora" in head[:_SNIFF_BYTES]:
        return "ogg"
    return None


def _animated_kind(head: bytes) -> str | None:
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return None


def is_video(path_or_bytes: PathLike | bytes | bytearray | memoryview) -> bool:
    """True when the content (not the name) is a video container: MP4/MOV/3GP, MKV/WEBM, AVI, FLV,
    ASF/WMV, MPEG-PS/TS, Ogg Theora. Still images (HEIC, AVIF) and M4A audio in ISO-BMFF are not.
    Magic bytes only: a container holding no video stream is found out when decoding."""
    return _sniff(_head(path_or_bytes)) is not None


#: Media types of the containers :func:`container_of` names.
MIME_TYPES: Final = {
    "mp4": "video/mp4",
    "matroska": "video/x-matroska",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "asf": "video/x-ms-asf",
    "mpeg": "video/mpeg",
    "mpegts": "video/mp2t",
    "ogg": "video/ogg",
}


def container_of(path_or_bytes: PathLike | bytes | bytearray | memoryview) -> str | None:
    """The video container family the content is (a key of :data:`MIME_TYPES`), from magic bytes."""
    return _sniff(_head(path_or_bytes))


def is_animated_image(path_or_bytes: PathLike | bytes | bytearray | memoryview) -> bool:
    """True for a GIF or WEBP with more than one frame (PDQ takes the first, vPDQ all of them)."""
    head = _head(path_or_bytes)
    if _animated_kind(head) is None:
        return False
    source = _source_name(path_or_bytes)
    try:
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            with Image.open(io.BytesIO(bytes(path_or_bytes))) as img:
                return bool(getattr(img, "is_animated", False))
        with Image.open(path_or_bytes) as img:
            return bool(getattr(img, "is_animated", False))
    except Exception as exc:  # any Pillow failure on hostile input (IndexError, EOFError…) is a clear error
        raise MediaError(source, f"cannot read animated image: {_pil_reason(exc)}") from None


def _source_name(path_or_bytes: object) -> str:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return "<bytes>"
    return str(path_or_bytes)


# ---------------------------------------------------------------- limits


def _check_file(path: PathLike) -> tuple[str, bytes]:
    source = str(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise MediaError(source, f"cannot read file: {exc.strerror or exc}") from None
    if not Path(path).is_file():
        raise MediaError(source, "not a regular file")
    limit = get_settings().max_file_bytes
    if size > limit:
        raise MediaError(source, f"file is {size} bytes, over the limit of {limit}")
    if size == 0:
        raise MediaError(source, "empty file (0 bytes)")
    return source, _head(path)


def _check_dims(source: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise MediaError(source, f"video has no valid frame size ({width}x{height})")
    limit = get_settings().max_video_pixels
    if width * height > limit:
        raise MediaError(
            source, f"video frames are {width}x{height} = {width * height} pixels, over the limit of {limit}"
        )


def _check_duration(source: str, seconds: float | None) -> None:
    limit = get_settings().max_video_seconds
    if seconds is not None and seconds > limit:
        raise MediaError(source, f"video lasts {seconds:.1f} s, over the limit of {limit:g} s")


def _check_selection(
    every_n_frames: int | None, seconds_per_frame: float | None, width: int | None, height: int | None
) -> None:
    if every_n_frames is not None and seconds_per_frame is not None:
        raise ValueError("give every_n_frames or seconds_per_frame, not both")
    if every_n_frames is not None and every_n_frames < 1:
        raise ValueError(f"every_n_frames must be at least 1, got {every_n_frames}")
    if seconds_per_frame is not None and not seconds_per_frame > 0:
        raise ValueError(f"seconds_per_frame must be positive, got {seconds_per_frame}")
    for name, value in (("width", width), ("height", height)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _frame_step(fps: float, every_n_frames: int | None, seconds_per_frame: float | None) -> int:
    if every_n_frames is not None:
        return every_n_frames
    if seconds_per_frame is not None:
        # The reference truncates (int cast) and never goes below one frame.
        return max(1, int(seconds_per_frame * fps))
    return 1


def _timestamp(number: int, fps: float) -> float:
    # float32 arithmetic, as the reference computes it; exact in a Python float afterwards.
    return float(np.float32(number) / np.float32(fps))


# ---------------------------------------------------------------- PyAV


@contextlib.contextmanager
def _open_container(source: str, path: PathLike) -> Iterator[Any]:
    """The container, opened from a Python file object (so FFmpeg never interprets the name as a
    URL or protocol) with a whitelist of demuxers."""
    with open(path, "rb") as fh:
        try:
            container = av.open(fh, mode="r", options={"format_whitelist": _DEMUXERS})
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise MediaError(source, f"not a readable video: {_reason(exc)}") from None
        try:
            yield container
        finally:
            container.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


def _stream_info(source: str, container: Any) -> tuple[Any, VideoInfo]:
    streams = container.streams.video
    if not streams:
        raise MediaError(source, "no video stream")
    stream = streams[0]
    ctx = stream.codec_context
    if ctx is None:  # FFmpeg has no decoder for the stream's codec tag
        raise MediaError(source, "the video stream's codec is not supported")
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    _check_dims(source, width, height)
    rate = stream.average_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not fps > 0:
        raise MediaError(source, "video frame rate is unknown or zero")
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    _check_duration(source, duration)
    frames = int(stream.frames or 0) or None
    codec = ctx.codec.name if ctx.codec is not None else "unknown"
    name = str(container.format.name).split(",")[0]
    return stream, VideoInfo(duration, width, height, fps, frames, codec, name)


def _iter_av(
    source: str,
    path: PathLike,
    every_n_frames: int | None,
    seconds_per_frame: float | None,
    width: int | None,
    height: int | None,
) -> Iterator[Frame]:
    settings = get_settings()
    budget = current_budget()
    with _open_container(source, path) as container:
        stream, info = _stream_info(source, container)
        step = _frame_step(info.frame_rate, every_n_frames, seconds_per_frame)
        out_w, out_h = width or info.width, height or info.height
        stream.thread_type = "AUTO"
        reformatter = VideoReformatter()
        decoded = 0
        # Frames decoded only to be skipped cost time too: stop at step x the hashed-frame limit.
        max_decoded = settings.max_video_frames * step
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    number = decoded
                    decoded += 1
                    if budget is not None:
                        budget.check_time(source)
                    if frame.width * frame.height > settings.max_video_pixels:
                        _check_dims(source, frame.width, frame.height)
                    # Checked on every decoded frame, hashed or not: headers can lie about length.
                    timestamp = _timestamp(number, info.frame_rate)
                    if timestamp > settings.max_video_seconds:
                        _check_duration(source, timestamp)
                    if decoded > max_decoded:
                        # i.e. this is hashed frame number max_video_frames + 1
                        raise MediaError(source, f"more than {settings.max_video_frames} frames to hash (the limit)")
                    if number % step:
                        continue
                    rgb = reformatter.reformat(
                        frame,
                        width=out_w,
                        height=out_h,
                        format="rgb24",
                        interpolation="AREA",
                        src_colorspace=_BT601,
                        src_color_range=_src_range(frame),
                        threads=1,
                    )
                    yield Frame(number, timestamp, cast(npt.NDArray[np.uint8], rgb.to_ndarray()))
        except av.error.FFmpegError as exc:
            raise MediaError(source, f"corrupt video data after {decoded} frames: {_reason(exc)}") from None
        if decoded == 0:
            raise MediaError(source, "no frames could be decoded (truncated or corrupt)")
        if info.frame_count is not None and decoded + _DROP_SLACK_FRAMES < info.frame_count:
            raise MediaError(
                source,
                f"truncated: decoded {decoded} of the {info.frame_count} frames the header declares",
            )


def _src_range(frame: Any) -> str:
    # swscale's legacy default: limited range, except for the full-range "J" pixel formats.
    return "JPEG" if str(frame.format.name).startswith("yuvj") else "MPEG"


# ---------------------------------------------------------------- Pillow (animated images)


def _pil_open(source: str, path: PathLike) -> Image.Image:
    try:
        img = Image.open(path)
        budget = current_budget()
        if budget is not None:
            # Every frame is composited on the whole canvas: refuse a bomb before decoding any of it.
            try:
                _check_dims(source, img.width, img.height)
                budget.check_declared(source, img.width, img.height, int(getattr(img, "n_frames", 1)))
                budget.charge(source, img.width * img.height)
            except MediaError:
                img.close()
                raise
        img.load()  # header parsed and first frame decoded: truncation surfaces here
    except MediaError:
        raise
    except Exception as exc:  # any Pillow failure on hostile input is a clear error
        raise MediaError(source, f"cannot decode animated image: {_pil_reason(exc)}") from None
    return img


def _pil_info(source: str, img: Image.Image, kind: str, path: PathLike | None = None) -> tuple[VideoInfo, list[int]]:
    try:
        return _pil_info_unchecked(source, img, kind, path)
    except MediaError:
        raise
    except Exception as exc:  # a corrupt frame met while reading delays
        raise MediaError(source, f"cannot decode animated image: {_pil_reason(exc)}") from None


def _pil_reason(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__)[:300]


def _pil_info_unchecked(source: str, img: Image.Image, kind: str, path: PathLike | None) -> tuple[VideoInfo, list[int]]:
    _check_dims(source, img.width, img.height)
    n = int(getattr(img, "n_frames", 1))
    if n > get_settings().max_video_frames:
        raise MediaError(source, f"{n} frames, over the limit of {get_settings().max_video_frames}")
    found = _gif_delays(path) if kind == "gif" and path is not None else None
    if found is not None and len(found) == n:
        delays = [d or _GIF_DEFAULT_DELAY_MS for d in found]
    else:
        # Pillow's seek decodes each frame: twice the work, so only where the headers cannot be read.
        delays = []
        for i in range(n):
            img.seek(i)
            delays.append(int(img.info.get("duration") or 0) or _GIF_DEFAULT_DELAY_MS)
        img.seek(0)
    duration = sum(delays) / 1000.0
    _check_duration(source, duration)
    fps = n / duration
    return VideoInfo(duration, img.width, img.height, fps, n, kind, kind), delays


def _gif_delays(path: PathLike) -> list[int] | None:
    """Each frame's delay in ms (0 when it has none) from the GIF's blocks, without decoding any
    pixels; as Pillow reads them (a frame's graphic control extension, else nothing). None when the
    block structure is not what this walker expects: the caller then asks Pillow."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if len(data) < 13:
        return None
    pos = 13
    if data[10] & 0x80:  # global colour table
        pos += 3 << ((data[10] & 7) + 1)
    delays: list[int] = []
    pending = 0
    try:
        while pos < len(data):
            marker = data[pos]
            pos += 1
            if marker == 0x3B:  # trailer
                break
            if marker == 0x21:  # extension: label, then sub-blocks
                label = data[pos]
                pos += 1
                first = True
                while (size := data[pos]) != 0:
                    if first and label == 0xF9 and size >= 3:
                        pending = int.from_bytes(data[pos + 2 : pos + 4], "little") * 10
                    first = False
                    pos += 1 + size
                pos += 1
            elif marker == 0x2C:  # image descriptor, optional local colour table, LZW data
                flags = data[pos + 8]
                pos += 9
                if flags & 0x80:
                    pos += 3 << ((flags & 7) + 1)
                pos += 1  # LZW minimum code size
                while (size := data[pos]) != 0:
                    pos += 1 + size
                pos += 1
                delays.append(pending)
                pending = 0
            else:
                return None
    except IndexError:
        return None
    return delays


def _iter_pil(
    source: str,
    path: PathLike,
    kind: str,
    every_n_frames: int | None,
    seconds_per_frame: float | None,
    width: int | None,
    height: int | None,
) -> Iterator[Frame]:
    img = _pil_open(source, path)
    budget = current_budget()
    with img:
        info, _ = _pil_info(source, img, kind, path)
        step = _frame_step(info.frame_rate, every_n_frames, seconds_per_frame)
        try:
            for number, frame in enumerate(ImageSequence.Iterator(img)):
                if budget is not None and number:  # the first frame was decoded (and charged) on opening
                    budget.charge(source, info.width * info.height)
                if number % step:
                    continue
                rgb = frame.convert("RGB")  # composited frame, palette resolved, alpha dropped
                if width or height:
                    rgb = rgb.resize((width or info.width, height or info.height), Image.Resampling.BOX)
                yield Frame(number, _timestamp(number, info.frame_rate), np.asarray(rgb, dtype=np.uint8))
        except MediaError:
            raise
        except Exception as exc:  # any Pillow failure on hostile input is a clear error
            raise MediaError(source, f"corrupt animated image: {_pil_reason(exc)}") from None


# ---------------------------------------------------------------- public


def probe(path: PathLike) -> VideoInfo:
    """Header facts of a video (or animated GIF/WEBP), checked against the configured limits."""
    source, head = _check_file(path)
    kind = _animated_kind(head)
    if kind is not None:
        with _pil_open(source, path) as img:
            return _pil_info(source, img, kind, path)[0]
    with _open_container(source, path) as container:
        return _stream_info(source, container)[1]


def iter_frames(
    path: PathLike,
    every_n_frames: int | None = None,
    seconds_per_frame: float | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Iterator[Frame]:
    """Decoded RGB frames of a video or animated GIF/WEBP, as the reference vPDQ sees them.

    Every frame by default; ``every_n_frames=n`` keeps frames 0, n, 2n, ...; ``seconds_per_frame``
    picks the equivalent step from the frame rate. ``width``/``height`` downsample (area
    averaging) as the reference's ``downsample_width``/``downsample_height`` do.
    Raises :class:`MediaError` for unreadable, corrupt, truncated or over-limit input, possibly
    after some frames were yielded: callers must discard partial results.
    """
    _check_selection(every_n_frames, seconds_per_frame, width, height)
    source, head = _check_file(path)
    kind = _animated_kind(head)
    if kind is not None:
        return _iter_pil(source, path, kind, every_n_frames, seconds_per_frame, width, height)
    return _iter_av(source, path, every_n_frames, seconds_per_frame, width, height)


def key_frames(path: PathLike, count: int, box: int) -> list[Image.Image]:
    """Up to ``count`` key frames spread over a video, each scaled to fit a ``box``-pixel square
    (RGB). Only key frames are decoded (and only one after each seek), so a long video costs a few
    frames, not all of them. A video that cannot be decoded raises :class:`MediaError`."""
    if count < 1 or box < 1:
        raise ValueError(f"count and box must be at least 1, got {count} and {box}")
    source, head = _check_file(path)
    if _animated_kind(head) is not None:
        raise MediaError(source, "an animated image, not a video: render its first frame")
    out: list[Image.Image] = []
    with _open_container(source, path) as container:
        stream, info = _stream_info(source, container)
        stream.codec_context.skip_frame = "NONKEY"
        duration = info.duration or 0.0
        targets = [duration * (i + 0.5) / count for i in range(count)] if duration > 0 else [0.0]
        seen: set[int | None] = set()
        try:
            for target in targets:
                if target > 0 and stream.time_base:
                    container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
                frame = _first_frame(container, stream)
                if frame is None or frame.pts in seen:
                    continue
                seen.add(frame.pts)
                _check_dims(source, frame.width, frame.height)
                image = frame.to_image()
                image.thumbnail((box, box), Image.Resampling.BILINEAR)
                out.append(image)
        except av.error.FFmpegError as exc:
            raise MediaError(source, f"corrupt video data: {_reason(exc)}") from None
    if not out:
        raise MediaError(source, "no key frame could be decoded (truncated or corrupt)")
    return out


def _first_frame(container: Any, stream: Any, max_packets: int = 2000) -> Any:
    for number, packet in enumerate(container.demux(stream)):
        if number >= max_packets:
            return None
        for frame in packet.decode():
            return frame
    return None
