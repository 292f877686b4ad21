"""Tables of the statistics domain.

A **page record** is one assessed URL and an **image record** one assessed image or video, as the
statistics count them: written when an assessment is confirmed (in its transaction) or imported
from a hotline's past years, and counted exactly alike. Each holds the local calendar ``day`` of its
``assessed_at`` in the hotline's time zone (``SEAWALL_TIMEZONE``; ``seawall stats rebuild`` after
changing it).

The **cube** keeps the ``csam`` records' counts per day for every dimension alone and every pair of
dimensions, and per ISO week and per month for every triple too, kept current by the same writes: a
query of up to two dimensions (three by week or longer periods), grouped or filtered, reads the
cells of its whole periods and of the days at its edges instead of millions of records.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seawall.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")


class PageRecord(Base):
    __tablename__ = "stats_pages"
    __table_args__ = (Index("ix_stats_pages_day", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # "case:<id>" for the hotline's own cases, "import:<id>" for imported lines: re-writing replaces.
    key: Mapped[str] = mapped_column(String(220), unique=True)
    source: Mapped[str] = mapped_column(String(8))  # live, import
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(1), nullable=True)
    age_band: Mapped[str | None] = mapped_column(String(8), nullable=True)
    sex: Mapped[str | None] = mapped_column(String(16), nullable=True)
    self_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    commercial: Mapped[bool] = mapped_column(Boolean, default=False)
    ai_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    site_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hosting_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)


class ImageRecord(Base):
    __tablename__ = "stats_images"
    __table_args__ = (Index("ix_stats_images_day", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(220), unique=True)  # "item:<id>" or "import:<id>"
    source: Mapped[str] = mapped_column(String(8))
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    media: Mapped[str] = mapped_column(String(8), default="image")  # image, video
    outcome: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(1), nullable=True)
    age_band: Mapped[str | None] = mapped_column(String(8), nullable=True)
    sex: Mapped[str | None] = mapped_column(String(16), nullable=True)
    self_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)


class CubeCount(Base):
    """How many csam records of ``measure`` fall on one day (grain ``d``), ISO week (``w``, its Monday)
    or month (``m``, its first day) with the values ``v1``, ``v2``, ``v3`` of the dimensions ``dims``
    ("" for the total, "age_band", "age_band,self_generated" — names in sorted order)."""

    __tablename__ = "stats_cube"
    __table_args__ = (UniqueConstraint("measure", "grain", "dims", "period", "v1", "v2", "v3", name="uq_stats_cube"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    measure: Mapped[str] = mapped_column(String(8))
    grain: Mapped[str] = mapped_column(String(1))
    dims: Mapped[str] = mapped_column(String(80))
    period: Mapped[date] = mapped_column(Date)
    v1: Mapped[str] = mapped_column(String(40), default="")
    v2: Mapped[str] = mapped_column(String(40), default="")
    v3: Mapped[str] = mapped_column(String(40), default="", server_default="")
    count: Mapped[int] = mapped_column(BigInteger, default=0)
