"""The shape of a self-report as the page sends it: hashes only, strictly bounded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from seawall.hotline.models import AGE_BANDS

#: Files one self-report may carry (the page says so before sending).
MAX_FILES = 20
#: The most bytes a self-report body may have (20 files of hashes fit in under 6 KiB).
BODY_BYTES = 16 * 1024

_HEX32 = r"^[0-9a-fA-F]{32}$"
_HEX64 = r"^[0-9a-fA-F]{64}$"


class FileHashes(BaseModel):
    """The hashes of one picture or video, computed on the young person's device."""

    model_config = ConfigDict(extra="forbid")

    md5: str = Field(pattern=_HEX32)
    sha256: str = Field(pattern=_HEX64)
    pdq: str | None = Field(None, pattern=_HEX64)
    pdq_quality: int | None = Field(None, ge=0, le=100)


class SelfReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[FileHashes] = Field(min_length=1, max_length=MAX_FILES)
    age_band: Literal[AGE_BANDS] | None = None  # type: ignore[valid-type]
    consent: bool


class SelfReportOut(BaseModel):
    case: str
    pin: str
