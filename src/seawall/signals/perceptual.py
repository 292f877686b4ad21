"""PDQ (images) and vPDQ (videos) as registered signal types."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from seawall.media.errors import MediaError
from seawall.signals.base import IMAGE, VIDEO, MediaItem, SignalType, validate_hex
from seawall.signals.pdq import HASH_BITS, HASH_BYTES, pdq_dihedral_rgb, pdq_hash_rgb


class PDQSignal(SignalType):
    """Meta's PDQ, reference-exact. ``item.dihedral`` adds the 8 rotation/flip hashes."""

    name = "pdq"
    media: ClassVar[frozenset[str]] = frozenset({IMAGE})
    bits = HASH_BITS
    default_threshold = 31  # the threshold Meta recommends for PDQ

    def compute(self, item: MediaItem) -> dict[str, Any]:
        if item.media != IMAGE:
            raise MediaError(item.name, f"pdq applies to images, not {item.media}")
        pixels = item.pdq_pixels
        out: dict[str, Any]
        if item.dihedral:
            hashes, quality = pdq_dihedral_rgb(pixels)
            out = {"pdq": hashes[0].hex(), "pdq_quality": quality, "pdq_dihedral": [h.hex() for h in hashes]}
        else:
            value, quality = pdq_hash_rgb(pixels)
            out = {"pdq": value.hex(), "pdq_quality": quality}
        if item.regions:
            out["pdq_regions"] = region_hashes(pixels, item.image.size, dihedral=item.dihedral)
        return out

    def validate(self, value: str) -> str:
        return validate_hex(self.name, value, HASH_BYTES)


class VPDQSignal(SignalType):
    """vPDQ: per-frame PDQ of a video. A value here is one frame's PDQ hash; computation and
    video comparison live in :mod:`seawall.signals.vpdq`."""

    name = "vpdq"
    media: ClassVar[frozenset[str]] = frozenset({VIDEO})
    bits = HASH_BITS
    default_threshold = 31

    def applies_to_item(self, item: MediaItem) -> bool:
        # Animated GIF/WEBP: the first frame gets PDQ, all frames get vPDQ.
        if item.media == IMAGE:
            from seawall.media.video import is_animated_image

            return is_animated_image(item.path)
        return super().applies_to_item(item)

    def compute(self, item: MediaItem) -> dict[str, Any]:
        if not self.applies_to_item(item):
            raise MediaError(item.name, f"vpdq applies to videos and animated images, not {item.media}")
        try:
            vpdq = importlib.import_module("seawall.signals.vpdq")
        except ImportError as exc:
            raise MediaError(item.name, f"vPDQ is not available: {exc}") from None
        frames = vpdq.vpdq_hash_file(item.path, every_n_frames=item.every_n_frames)
        return {"vpdq": [_frame_json(f) for f in frames]}

    def validate(self, value: str) -> str:
        return validate_hex(self.name, value, HASH_BYTES)


def region_hashes(pixels: Any, size: tuple[int, int], *, dihedral: bool = False) -> list[dict[str, Any]]:
    """PDQ of each region of a picture (``media/regions.py``) from the pixels PDQ sampled; boxes in
    the original's pixels (``size`` = width, height). Empty when the picture has no border."""
    from seawall.media.regions import find_regions, region_pixels, scale_box

    out: list[dict[str, Any]] = []
    sample = (pixels.shape[1], pixels.shape[0])
    for region in find_regions(pixels):
        x0, y0, x1, y1 = scale_box(region.box, sample, size)
        found: dict[str, Any] = {"region": region.kind, "box": {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}}
        if region.angle:
            found["angle"] = region.angle
        crop = region_pixels(pixels, region)
        if dihedral:
            hashes, quality = pdq_dihedral_rgb(crop)
            found.update(pdq=hashes[0].hex(), pdq_quality=quality, pdq_dihedral=[h.hex() for h in hashes])
        else:
            value, quality = pdq_hash_rgb(crop)
            found.update(pdq=value.hex(), pdq_quality=quality)
        out.append(found)
    return out


def _frame_json(frame: Any) -> dict[str, Any]:
    """A frame as the JSON shape prints it (``VpdqFeature.to_dict``: timestamp to the millisecond)."""
    result: dict[str, Any] = frame.to_dict()
    return result
