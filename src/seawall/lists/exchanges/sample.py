"""The ``sample`` exchange: a small fixed set of benign example signals, for trying exchanges out.

It stands in for HMA's ``sample`` exchange type (``StaticSampleSignalExchangeAPI``), which HMA's own
match tests configure: an exchange that needs no network and no credentials, whose entries match
the examples ``SAMPLE_SIGNALS`` lists. The values are derived from fixed phrases: they stand for no
content at all. A full snapshot: an unchanged sample is skipped by its version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from seawall.lists.exchanges.base import Batch, ExchangeConfig, ExchangeType
from seawall.lists.records import EntryRecord

SAMPLE_VERSION = 1


def _examples() -> list[tuple[str, str, str]]:
    """(signal type, value, external id) of every sample entry."""
    out = []
    for i in range(8):
        out.append(("pdq", hashlib.sha256(f"seawall sample pdq {i}".encode()).hexdigest(), f"sample-pdq-{i}"))
    for i in range(4):
        out.append(("md5", hashlib.md5(f"seawall sample md5 {i}".encode()).hexdigest(), f"sample-md5-{i}"))
    return out


SAMPLE_SIGNALS: list[tuple[str, str, str]] = _examples()


class SampleConfig(ExchangeConfig):
    pass


class SampleExchange(ExchangeType[SampleConfig]):
    name = "sample"
    description = "A fixed set of benign example signals (HMA's sample exchange), for trying exchanges out."
    Config = SampleConfig

    def fetch(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        if (checkpoint or {}).get("version") == SAMPLE_VERSION:
            return
        records = [
            EntryRecord(signal_type=kind, value=value, external_id=external, labels=("sample",))
            for kind, value, external in SAMPLE_SIGNALS
        ]
        yield Batch(
            upserts=records,
            checkpoint={"version": SAMPLE_VERSION},
            snapshot_begin=True,
            snapshot_end=True,
        )
