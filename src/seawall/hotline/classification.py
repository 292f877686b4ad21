"""The hotline's assessment in the schemes partners speak.

An assessment records the UK legal category (A, B, C), the youngest visible child's age band, the
outcome and flags. Each other scheme is ONE table below, keyed by those fields; docs/classification.md
gives every row its reason and marks the rows that are judgement calls. A combination a table does
not hold maps to None: the scheme has no answer for it (not CSAM, or not assessed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Industry classification (Tech Coalition scale, CyberTipline ``industryClassification``):
# A = prepubescent, B = pubescent; 1 = sex act, 2 = lascivious exhibition. Keyed by (UK category,
# youngest age band) of a ``csam`` assessment. Judgement calls: 11-13 counted pubescent (the age
# bands say age, the scale means physical development); category C counted as exhibition.
INDUSTRY: dict[tuple[str, str], str] = {
    ("A", "0-2"): "A1",
    ("A", "3-6"): "A1",
    ("A", "7-10"): "A1",
    ("A", "11-13"): "B1",
    ("A", "14-15"): "B1",
    ("A", "16-17"): "B1",
    ("B", "0-2"): "A1",
    ("B", "3-6"): "A1",
    ("B", "7-10"): "A1",
    ("B", "11-13"): "B1",
    ("B", "14-15"): "B1",
    ("B", "16-17"): "B1",
    ("C", "0-2"): "A2",
    ("C", "3-6"): "A2",
    ("C", "7-10"): "A2",
    ("C", "11-13"): "B2",
    ("C", "14-15"): "B2",
    ("C", "16-17"): "B2",
}

# INTERPOL / ICCAM: "baseline" (illegal in every country: a real child of 13 or under, sexual
# activity or a focus on the genital or anal region), "national" (illegal here, not baseline),
# "not_illegal". Keyed by (outcome, UK category, youngest age band); outcomes other than ``csam``
# are keyed with no category or age. A ``csam`` assessment flagged ``ai_generated`` is "national"
# whatever its row says: the baseline needs a real child. Judgement call: category C is never
# claimed as baseline (genital focus is not recorded, and baseline claims "illegal everywhere").
INTERPOL: dict[tuple[str, str | None, str | None], str] = {
    ("csam", "A", "0-2"): "baseline",
    ("csam", "A", "3-6"): "baseline",
    ("csam", "A", "7-10"): "baseline",
    ("csam", "A", "11-13"): "baseline",
    ("csam", "A", "14-15"): "national",
    ("csam", "A", "16-17"): "national",
    ("csam", "B", "0-2"): "baseline",
    ("csam", "B", "3-6"): "baseline",
    ("csam", "B", "7-10"): "baseline",
    ("csam", "B", "11-13"): "baseline",
    ("csam", "B", "14-15"): "national",
    ("csam", "B", "16-17"): "national",
    ("csam", "C", "0-2"): "national",
    ("csam", "C", "3-6"): "national",
    ("csam", "C", "7-10"): "national",
    ("csam", "C", "11-13"): "national",
    ("csam", "C", "14-15"): "national",
    ("csam", "C", "16-17"): "national",
    ("other_illegal", None, None): "national",
    ("not_csam", None, None): "not_illegal",
}

# Project VIC (US profile): 0 non-pertinent, 1 child abuse material, 2 child exploitive (non-CAM)
# age difficult, 3 CGI/animation child exploitive, 4 comparison images. Keyed by (outcome,
# AI-generated flag). Judgement calls: AI-generated CSAM and ``other_illegal`` (prohibited
# non-photographic images) are 3; 2 and 4 are never produced (an assessed child is not "age
# difficult"; comparison images are an investigator's reference set, not a hotline finding).
PROJECT_VIC: dict[tuple[str, bool], int] = {
    ("csam", False): 1,
    ("csam", True): 3,
    ("other_illegal", False): 3,
    ("other_illegal", True): 3,
    ("not_csam", False): 0,
    ("not_csam", True): 0,
}


def industry(outcome: str, category: str | None, age_band: str | None) -> str | None:
    """A1/A2/B1/B2 for a ``csam`` assessment; None otherwise."""
    if outcome != "csam" or category is None or age_band is None:
        return None
    return INDUSTRY.get((category, age_band))


def interpol(outcome: str, category: str | None, age_band: str | None, flags: Iterable[str] = ()) -> str | None:
    """baseline, national or not_illegal; None for outcomes INTERPOL does not classify."""
    if outcome != "csam":
        return INTERPOL.get((outcome, None, None))
    found = INTERPOL.get((outcome, category, age_band))
    if found is not None and "ai_generated" in set(flags):
        return "national"
    return found


def project_vic(outcome: str, flags: Iterable[str] = ()) -> int | None:
    return PROJECT_VIC.get((outcome, "ai_generated" in set(flags)))


@dataclass(frozen=True)
class Classification:
    """One assessment in every scheme (None where a scheme has no answer)."""

    uk_category: str | None
    age_band: str | None
    industry: str | None
    interpol: str | None
    project_vic: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "uk_category": self.uk_category,
            "age_band": self.age_band,
            "industry": self.industry,
            "interpol": self.interpol,
            "project_vic": self.project_vic,
        }


def classify(outcome: str, category: str | None, age_band: str | None, flags: Iterable[str] = ()) -> Classification:
    flags = list(flags)
    return Classification(
        uk_category=category if outcome == "csam" else None,
        age_band=age_band,
        industry=industry(outcome, category, age_band),
        interpol=interpol(outcome, category, age_band, flags),
        project_vic=project_vic(outcome, flags),
    )
