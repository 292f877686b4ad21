"""Blurred greyscale thumbnails, rendered on the server: what the console shows before anyone asks
to see more. The blur is in the stored pixels, so no browser setting or missing stylesheet can
show an analyst more than a shape and a tone."""

from __future__ import annotations

import io
import os
from typing import Final

from PIL import Image, ImageFilter, ImageOps

from seawall.media.errors import MediaError
from seawall.media.image import _decoding, _to_rgb_array, open_image

THUMBNAIL_TYPE: Final = "image/jpeg"  # single-channel JPEG: greyscale by construction
VIDEO_STRIP_FRAMES: Final = 4
_JPEG_LIKE: Final = ("JPEG", "MPO")


def _image_tile(path: str | os.PathLike[str], size: int, name: str) -> Image.Image:
    img = open_image(path, name=name)
    with _decoding(name):
        if img.format in _JPEG_LIKE:
            img.draft("RGB", (size * 2, size * 2))  # decode at a reduced DCT scale: far less work
        img.load()
        img = ImageOps.exif_transpose(img)  # shown as the camera held it (hashes ignore orientation)
        if img.mode not in ("RGB", "L"):
            img = Image.fromarray(_to_rgb_array(img))  # palette, CMYK, 16-bit, alpha: converted properly
        img.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return img


def _video_strip(path: str | os.PathLike[str], size: int) -> Image.Image:
    from seawall.media.video import key_frames

    frames = key_frames(path, VIDEO_STRIP_FRAMES, size)
    strip = Image.new("RGB", (sum(f.width for f in frames), max(f.height for f in frames)))
    x = 0
    for frame in frames:
        strip.paste(frame, (x, (strip.height - frame.height) // 2))
        x += frame.width
    return strip


def blurred_thumbnail(
    path: str | os.PathLike[str], media: str, *, size: int = 256, blur: float = 8.0, name: str | None = None
) -> bytes:
    """A JPEG thumbnail of an image (its first frame) or a strip of a video's key frames: each tile
    at most ``size`` pixels a side, greyscale, Gaussian-blurred with radius ``blur``. Decoding is
    under the media limits; anything refused raises :class:`MediaError`."""
    label = name or os.fspath(path)
    if size < 1 or blur < 0:
        raise ValueError(f"size must be at least 1 and blur not negative, got {size} and {blur}")
    if media == "video":
        picture = _video_strip(path, size)
    elif media == "image":
        picture = _image_tile(path, size, label)
    else:
        raise MediaError(label, f"cannot render {media!r} media")
    grey = picture.convert("L").filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    grey.save(out, format="JPEG", quality=70, optimize=True)
    return out.getvalue()
