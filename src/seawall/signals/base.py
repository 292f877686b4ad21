"""The signal-type interface and registry.

A signal type is one class: its name, the media it applies to, how to compute a value from a
file, and how to validate, parse and compare values. Built-in types are listed here; third-party
types (a licensed PhotoDNA, say) register through the entry-point group ``seawall.signal_types``,
each entry point naming a :class:`SignalType` subclass::

    [seawall.signal_types]
    photodna = seawall_photodna:PhotoDNASignal
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "seawall.signal_types"
#: Media kinds. ``BYTES`` types (cryptographic hashes) apply to any file.
IMAGE: Final = "image"
VIDEO: Final = "video"
BYTES: Final = "bytes"


class MediaItem:
    """One file being hashed; decodes lazily and once, so several signal types share the work."""

    def __init__(
        self,
        path: str | Path,
        media: str,
        *,
        fast: bool = False,
        dihedral: bool = False,
        every_n_frames: int | None = None,
        regions: bool = False,
    ) -> None:
        self.path = Path(path)
        self.media = media
        self.fast = fast  # reduced-size JPEG decoding: quicker, not bit-exact
        self.dihedral = dihedral  # PDQ: also the 8 rotation/flip hashes
        self.every_n_frames = every_n_frames  # vPDQ: None hashes every frame
        self.regions = regions  # PDQ: also hash the regions of the picture (media/regions.py)

    @property
    def name(self) -> str:
        return str(self.path)

    def close(self) -> None:
        """Let go of the decoded image and its pixels now rather than when collected."""
        image = self.__dict__.pop("image", None)
        self.__dict__.pop("pdq_pixels", None)
        if image is not None:
            image.close()

    @cached_property
    def image(self) -> Image.Image:
        """The opened image (first frame); only for ``media == "image"``."""
        from seawall.media.image import open_image

        return open_image(self.path)

    @cached_property
    def pdq_pixels(self) -> Any:
        """RGB pixels as the reference PDQ hasher sees them (sampled to 512x512 if larger)."""
        from seawall.media.errors import MediaError
        from seawall.media.image import pdq_pixels
        from seawall.signals.pdq import MIN_HASHABLE_DIM

        width, height = self.image.size
        if min(width, height) < MIN_HASHABLE_DIM:
            # The reference would print an all-zero hash, which matches every other such image.
            raise MediaError(
                self.name,
                f"image is {width}x{height} pixels; PDQ needs at least {MIN_HASHABLE_DIM}x{MIN_HASHABLE_DIM}",
            )
        return pdq_pixels(self.image, name=self.name, fast=self.fast)


class SignalType(ABC):
    """One kind of signal. Subclasses set the class attributes and implement the methods."""

    #: Registry key and JSON field name: lower case, no spaces.
    name: ClassVar[str]
    #: Media it applies to: a subset of {IMAGE, VIDEO}, or {BYTES} for any file.
    media: ClassVar[frozenset[str]]
    #: Bit width for binary hashes compared by Hamming distance; None for exact-match values.
    bits: ClassVar[int | None] = None
    #: Default match threshold (distance <= threshold is a match).
    default_threshold: ClassVar[int] = 0
    #: The highest threshold a list curator may set; beyond it matches are mostly unrelated content,
    #: so only an admin may go further (None: the default threshold is the safe maximum).
    max_safe_threshold: ClassVar[int | None] = None

    @property
    def safe_threshold(self) -> int:
        return self.default_threshold if self.max_safe_threshold is None else self.max_safe_threshold

    def applies_to(self, media: str) -> bool:
        return BYTES in self.media or media in self.media

    def applies_to_item(self, item: MediaItem) -> bool:
        """Whether this file gets this signal; a type may look closer than the media kind."""
        return self.applies_to(item.media)

    @abstractmethod
    def compute(self, item: MediaItem) -> dict[str, Any]:
        """JSON fields for this signal of one file, e.g. ``{"pdq": hex, "pdq_quality": 100}``.
        Media failures raise :class:`seawall.media.errors.MediaError`."""

    @abstractmethod
    def validate(self, value: str) -> str:
        """The normalised text form of ``value``, or ValueError with a clear message."""

    def parse(self, value: str) -> Any:
        """The value in its working form (bytes for binary hashes); validates first."""
        text = self.validate(value)
        if self.bits is not None:
            return bytes.fromhex(text)
        return text

    def compare(self, a: str, b: str) -> int:
        """Distance between two values: Hamming distance for binary hashes, else 0 or 1."""
        pa, pb = self.parse(a), self.parse(b)
        if self.bits is not None:
            return (int.from_bytes(pa, "big") ^ int.from_bytes(pb, "big")).bit_count()
        return 0 if pa == pb else 1

    def matches(self, a: str, b: str, threshold: int | None = None) -> bool:
        limit = self.default_threshold if threshold is None else threshold
        return self.compare(a, b) <= limit


def validate_hex(name: str, value: str, nbytes: int) -> str:
    """Lower-case hex of exactly ``nbytes`` bytes, or a ValueError naming the signal type."""
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a hex string, got {type(value).__name__}")
    text = value.strip().lower()
    if len(text) != 2 * nbytes:
        raise ValueError(f"{name}: expected {2 * nbytes} hex digits, got {len(text)}")
    if any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{name}: not hexadecimal: {value.strip()[:80]!r}")
    return text


# ---------------------------------------------------------------- registry

_BUILTIN: Final = (
    ("md5", "seawall.signals.crypto:MD5Signal"),
    ("sha1", "seawall.signals.crypto:SHA1Signal"),
    ("sha256", "seawall.signals.crypto:SHA256Signal"),
    ("pdq", "seawall.signals.perceptual:PDQSignal"),
    ("vpdq", "seawall.signals.perceptual:VPDQSignal"),
)


@lru_cache(maxsize=1)
def signal_types() -> dict[str, SignalType]:
    """All signal types by name (one instance each): built-ins, then plugins."""
    from seawall.plugins import discover

    found = discover(_BUILTIN, ENTRY_POINT_GROUP, SignalType, "signal type")
    return {name: cls() for name, cls in found.items()}  # type: ignore[abstract]  # discover loads concrete subclasses


def get_signal_type(name: str) -> SignalType:
    """The signal type called ``name``; KeyError listing the known names otherwise."""
    types = signal_types()
    try:
        return types[name.strip().lower()]
    except KeyError:
        known = ", ".join(types)
        raise KeyError(f"unknown signal type {name!r} (known: {known})") from None


def reload_signal_types() -> None:
    """Forget the registry (after installing a plugin at runtime, or in tests)."""
    signal_types.cache_clear()
