"""Safe image opening and the pixels PDQ hashes.

Limits (file size, pixel count) are read from the settings at call time and checked before any
pixel is decoded; every failure is one :class:`MediaError` naming the file and the reason, and
nothing half-decoded is returned (truncated data is an error, never padded).

The reference PDQ hasher (Meta's ``pdq-photo-hasher``) decodes through CImg/ImageMagick, ignores
EXIF orientation, and samples any image wider or taller than 512 px to exactly 512x512 by nearest
neighbour, picking source column ``floor(x * W / 512)`` and row ``floor(y * H / 512)``. Colour
conversion is per pixel, so sampling first and converting 512x512 pixels afterwards gives the same
result as converting the full image, at a fraction of the cost.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, Final

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from seawall.media.budget import current_budget
from seawall.media.errors import MediaError

PDQ_SAMPLE: Final = 512
#: Formats Seawall decodes; anything else Pillow knows is refused (smaller attack surface).
FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF")  # JPEG covers MPO
_JPEG_LIKE: Final = ("JPEG", "MPO")

_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        Image.init()  # all of Pillow's plugins, so FORMATS resolves
        _heif_registered = True


ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview


def source_name(source: ImageSource, name: str | None = None) -> str:
    """The name an error message uses for a source."""
    if name:
        return name
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    return os.fspath(source)


def _limits(max_pixels: int | None, max_file_bytes: int | None) -> tuple[int, int]:
    if max_pixels is None or max_file_bytes is None:
        from seawall.config import get_settings

        settings = get_settings()
        max_pixels = settings.max_image_pixels if max_pixels is None else max_pixels
        max_file_bytes = settings.max_file_bytes if max_file_bytes is None else max_file_bytes
    return max_pixels, max_file_bytes


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Turn any decoder failure into a MediaError for ``name``."""
    try:
        with warnings.catch_warnings():
            # Seawall enforces its own pixel limit; Pillow's warning below it is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(name, f"decompression bomb refused: {_reason(exc)}") from None
    except UnidentifiedImageError:
        raise MediaError(name, "not a supported image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # Pillow reports truncation/corruption as OSError/SyntaxError/ValueError.
        raise MediaError(name, f"corrupt or truncated image data: {_reason(exc)}") from None
    except MemoryError:
        raise MediaError(name, "not enough memory to decode the image") from None
    except Exception as exc:  # a decoder bug must still be a clear error, not a crash
        raise MediaError(name, f"cannot decode image: {type(exc).__name__}: {_reason(exc)}") from None


def open_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    max_file_bytes: int | None = None,
) -> Image.Image:
    """Open an image (header only, first frame) after checking file size and pixel count.

    Pixels are decoded later by :func:`load_image` or when first accessed. EXIF orientation is
    deliberately not applied (the reference hashes ignore it).
    """
    label = source_name(source, name)
    max_pixels, max_file_bytes = _limits(max_pixels, max_file_bytes)
    fp: IO[bytes] | str
    if isinstance(source, bytes | bytearray | memoryview):
        size = len(source)
        fp = io.BytesIO(bytes(source))
    else:
        path = os.fspath(source)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise MediaError(label, f"cannot read file: {exc.strerror or exc}") from None
        if not Path(path).is_file():
            raise MediaError(label, "not a regular file")
        size = st.st_size
        fp = path
    if size == 0:
        raise MediaError(label, "empty file (0 bytes)")
    if size > max_file_bytes:
        raise MediaError(label, f"file is {size} bytes, over the limit of {max_file_bytes}")
    _register_heif()
    with _decoding(label):
        img = Image.open(fp, formats=FORMATS)
        width, height = img.size
        if width <= 0 or height <= 0:
            raise MediaError(label, f"invalid image size {width}x{height}")
        if width * height > max_pixels:
            img.close()
            raise MediaError(
                label,
                f"image is {width}x{height} = {width * height} pixels, over the limit of "
                f"{max_pixels} (decompression bomb?)",
            )
        budget = current_budget()
        if budget is not None:
            budget.check_declared(label, width, height)  # the first frame; animations are checked by vPDQ
    return img


def _charge(img: Image.Image, name: str) -> None:
    """Count the pixels of the frame about to be decoded against the request's budget."""
    budget = current_budget()
    if budget is not None and getattr(img, "_im", None) is None:  # not decoded yet
        budget.charge(name, img.width * img.height)


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    max_file_bytes: int | None = None,
) -> Image.Image:
    """:func:`open_image` and decode the pixels of the first frame; errors are MediaError."""
    label = source_name(source, name)
    img = open_image(source, name=label, max_pixels=max_pixels, max_file_bytes=max_file_bytes)
    with _decoding(label):
        _charge(img, label)
        img.load()
    return img


# ---------------------------------------------------------------- PDQ pixels


def pdq_indices(length: int, target: int = PDQ_SAMPLE) -> npt.NDArray[np.intp]:
    """Source indices the reference's nearest-neighbour resize picks (CImg: floor(i*len/target))."""
    return (np.arange(target, dtype=np.int64) * length // target).astype(np.intp)


@lru_cache(maxsize=1024)
def _pil_affine_exact(length: int) -> bool:
    """Whether Pillow's nearest affine transform, set up as in :func:`_pil_sample`, picks exactly
    the reference's indices for this dimension (Pillow steps in fixed point, so check, once)."""
    probe = Image.new("I", (length, 1))
    probe.putdata(range(length))
    out = probe.transform((PDQ_SAMPLE, 1), Image.Transform.AFFINE, _affine(length, 1), Image.Resampling.NEAREST)
    got = np.asarray(out, dtype=np.int64)[0]
    return bool(np.array_equal(got, pdq_indices(length)))


def _affine(width: int, height: int) -> tuple[float, ...]:
    # Pillow samples at a*(x+0.5)+c; shift by half a step to land on floor(x*W/512), plus a
    # quarter of the 1/512 grid so fixed-point rounding cannot fall below an exact integer.
    sx, sy = width / PDQ_SAMPLE, height / PDQ_SAMPLE
    eps = 0.25 / PDQ_SAMPLE
    return (sx, 0.0, -0.5 * sx + eps, 0.0, sy, -0.5 * sy + eps)


def _pil_sample(img: Image.Image) -> Image.Image | None:
    """The 512x512 nearest-neighbour sample through Pillow (no full-size copy), when exact."""
    width, height = img.size
    if img.mode not in ("RGB", "RGBA", "RGBX", "L", "P", "CMYK", "LA", "PA", "YCbCr", "I"):
        return None
    if not (_pil_affine_exact(width) and _pil_affine_exact(height)):
        return None
    return img.transform(
        (PDQ_SAMPLE, PDQ_SAMPLE), Image.Transform.AFFINE, _affine(width, height), Image.Resampling.NEAREST
    )


def _to_rgb_array(img: Image.Image) -> npt.NDArray[np.uint8]:
    """HxWx3 uint8 RGB of an image, per-pixel conversion without the other Python paths' bugs:
    CMYK and palette images go through their colours (not raw channels or indices), and 16-bit
    images keep their high byte (not clipped)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img)
        if mode == "F":
            grey = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        else:
            # 16-bit samples (PNG/TIFF): keep the high byte, as Pillow does for 16-bit RGB and as
            # browsers decode them, so a self-report hashed in the browser matches (docs/self-report.md).
            v = np.clip(a.astype(np.int64), 0, 65535)
            grey = (v >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "RGBX", "RGBa"):
        # Alpha is dropped, not composited: the reference reads the colour channels as they are.
        return np.asarray(img)[:, :, :3]
    return np.asarray(img.convert("RGB"))


def pdq_pixels(img: Image.Image, *, name: str = "<image>", fast: bool = False) -> npt.NDArray[np.uint8]:
    """The RGB pixels the reference hashes: the whole image if both sides are <= 512, else the
    exact 512x512 nearest-neighbour sample. ``fast`` lets a JPEG decode at a reduced DCT scale
    first (quicker, no longer bit-exact)."""
    with _decoding(name):
        width, height = img.size
        if fast and img.format in _JPEG_LIKE and (width > PDQ_SAMPLE or height > PDQ_SAMPLE):
            img.draft(img.mode, (PDQ_SAMPLE, PDQ_SAMPLE))
            width, height = img.size
        _charge(img, name)
        img.load()
        if width <= PDQ_SAMPLE and height <= PDQ_SAMPLE:
            out = _to_rgb_array(img)
        else:
            small = _pil_sample(img)
            if small is not None:
                out = _to_rgb_array(small)
            else:
                rows, cols = pdq_indices(height), pdq_indices(width)
                full = _to_rgb_array(img)
                out = full[rows[:, None], cols[None, :]]
        return np.ascontiguousarray(out, dtype=np.uint8)


def first_frame_rgb(img: Image.Image, *, name: str = "<image>") -> npt.NDArray[np.uint8]:
    """Full-resolution RGB pixels of the current frame (for thumbnails and rendering)."""
    with _decoding(name):
        _charge(img, name)
        img.load()
        return np.ascontiguousarray(_to_rgb_array(img), dtype=np.uint8)
