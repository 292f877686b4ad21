"""Scan progress on ``/metrics``: a scan runs in its own process, so the server reads the run table
(updated at every checkpoint) when it is scraped, rather than holding counters of its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from seawall.scan.models import COUNTERS, ScanRun

log = logging.getLogger(__name__)
MAX_RUNS = 20  # the most recent running runs shown: a scrape stays small whatever was left behind


class ScanCollector(Collector):
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        items = GaugeMetricFamily("seawall_scan_items", "Items of a running scan, by outcome", labels=["run", "kind"])
        partitions = GaugeMetricFamily(
            "seawall_scan_partitions", "Partitions of a running scan", labels=["run", "state"]
        )
        updated = GaugeMetricFamily(
            "seawall_scan_updated_timestamp_seconds", "When a running scan last checkpointed", labels=["run"]
        )
        try:
            with self.factory() as session:
                runs = session.scalars(
                    select(ScanRun).where(ScanRun.state == "running").order_by(ScanRun.id.desc()).limit(MAX_RUNS)
                ).all()
        except SQLAlchemyError as exc:  # a scrape never fails because the database is away: readiness says so
            log.warning("scan metrics unavailable: %s", exc)
            runs = []
        for run in runs:
            label = str(run.id)
            for kind in COUNTERS:
                items.add_metric([label, kind], float(getattr(run, kind)))
            partitions.add_metric([label, "done"], float(run.partitions_done))
            partitions.add_metric([label, "total"], float(run.partitions))
            updated.add_metric([label], run.updated_at.timestamp())
        yield items
        yield partitions
        yield updated


def register(registry: CollectorRegistry, factory: sessionmaker[Session]) -> None:
    registry.register(ScanCollector(factory))
