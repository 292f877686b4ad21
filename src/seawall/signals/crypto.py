"""Cryptographic hashes of the file bytes (any media, videos too)."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Final

from seawall.signals.base import BYTES, MediaItem, SignalType, validate_hex

_CHUNK: Final = 1 << 20
ALGORITHMS: Final = {"md5": 16, "sha1": 20, "sha256": 32}


def file_digests(item: MediaItem, names: tuple[str, ...] = tuple(ALGORITHMS)) -> dict[str, str]:
    """Hex digests of the file, read once in chunks (bounded memory) and cached on the item."""
    cache: dict[str, str] = item.__dict__.setdefault("_digests", {})
    missing = [n for n in names if n not in cache]
    if missing:
        from seawall.config import get_settings
        from seawall.media.errors import MediaError

        limit = get_settings().max_file_bytes
        hashers = {n: hashlib.new(n) for n in missing}
        total = 0
        try:
            with open(item.path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise MediaError(item.name, f"file is over the limit of {limit} bytes")
                    for h in hashers.values():
                        h.update(chunk)
        except OSError as exc:
            raise MediaError(item.name, f"cannot read file: {exc.strerror or exc}") from None
        cache.update({n: h.hexdigest() for n, h in hashers.items()})
    return {n: cache[n] for n in names}


class _CryptoSignal(SignalType):
    media: ClassVar[frozenset[str]] = frozenset({BYTES})

    def compute(self, item: MediaItem) -> dict[str, Any]:
        # All three digests in one pass: asking for one type computes only that one.
        return {self.name: file_digests(item, (self.name,))[self.name]}

    def validate(self, value: str) -> str:
        return validate_hex(self.name, value, ALGORITHMS[self.name])


class MD5Signal(_CryptoSignal):
    name = "md5"


class SHA1Signal(_CryptoSignal):
    name = "sha1"


class SHA256Signal(_CryptoSignal):
    name = "sha256"
