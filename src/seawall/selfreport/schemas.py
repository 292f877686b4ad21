"""The shape of a self-report as the page sends it: hashes only, strictly bounded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from seawall.hotline.models import AGE_BANDS

#: Files one self-report may carry (the page says so before sending).
MAX_FILES = 20
#: vPDQ frames one video may carry (the page samples every n-th frame of a longer video).
MAX_VIDEO_FRAMES = 64
#: vPDQ frames one self-report may carry in all (the page shares them among its videos).
MAX_FRAMES = 128
#: The most bytes a self-report body may have: 20 files of hashes take under 6 KiB, a vPDQ frame
#: about 105 bytes, so 128 frames and 20 files fit in 24 KiB.
BODY_BYTES = 24 * 1024
#: The longest video whose frames are timed (seconds): a frame's timestamp past it is refused.
MAX_TIMESTAMP = 24 * 3600

_HEX32 = r"^[0-9a-fA-F]{32}$"
_HEX64 = r"^[0-9a-fA-F]{64}$"


class VpdqFrame(BaseModel):
    """One hashed video frame, as the server's vPDQ writes it."""

    model_config = ConfigDict(extra="forbid")

    frame: int = Field(ge=0, le=10_000_000)
    quality: int = Field(ge=0, le=100)
    pdq: str = Field(pattern=_HEX64)
    timestamp: float = Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)


class FileHashes(BaseModel):
    """The hashes of one picture or video, computed on the young person's device."""

    model_config = ConfigDict(extra="forbid")

    md5: str = Field(pattern=_HEX32)
    sha256: str = Field(pattern=_HEX64)
    pdq: str | None = Field(None, pattern=_HEX64)
    pdq_quality: int | None = Field(None, ge=0, le=100)
    vpdq: list[VpdqFrame] | None = Field(None, min_length=1, max_length=MAX_VIDEO_FRAMES)


class SelfReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[FileHashes] = Field(min_length=1, max_length=MAX_FILES)
    age_band: Literal[AGE_BANDS] | None = None  # type: ignore[valid-type]
    consent: bool

    @model_validator(mode="after")
    def _bounded_frames(self) -> SelfReportIn:
        frames = sum(len(f.vpdq or ()) for f in self.files)
        if frames > MAX_FRAMES:
            raise ValueError(f"a report carries at most {MAX_FRAMES} video frames in all, not {frames}")
        return self


class SelfReportOut(BaseModel):
    case: str
    pin: str
