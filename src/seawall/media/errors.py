"""The one error type for media that cannot be decoded safely."""

from __future__ import annotations


class MediaError(ValueError):
    """Media that cannot be decoded within the limits: names the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")
