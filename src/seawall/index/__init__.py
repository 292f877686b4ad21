"""Exact near-neighbour index for binary hashes (PDQ, vPDQ frames) and exact index for digests."""

from seawall.index.exact import ExactIndex, KeyChange
from seawall.index.hamming import HammingIndex, IndexChange, Match, brute_force
from seawall.index.storage import IndexCorruptError

__all__ = [
    "ExactIndex",
    "HammingIndex",
    "IndexChange",
    "IndexCorruptError",
    "KeyChange",
    "Match",
    "brute_force",
]
