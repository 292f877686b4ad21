"""Match indexes persist as segments: a new process maps them and applies only the changes since."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from seawall.auth.permissions import SYSTEM
from seawall.db import make_sessionmaker
from seawall.lists import service as lists_service
from seawall.lists.records import EntryRecord
from seawall.matching.indexes import MatchIndexes


def _codes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [c.tobytes().hex() for c in rng.integers(0, 256, (n, 32), dtype=np.uint8)]


def _found(indexes: MatchIndexes, values: list[str]) -> set[int]:
    [index] = indexes.lists.values()
    codes = np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(len(values), 32)
    return {int(e) for row in index.binary["pdq"].search(codes, 0) for e, _ in row}


def test_a_new_process_maps_saved_segments_and_catches_up(db: Session, engine: Engine, tmp_path: Path) -> None:
    hl = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    first = _codes(3000, 1)
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", v) for v in first])
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("md5", "0" * 32)])
    db.commit()
    folder = tmp_path / "index"
    one = MatchIndexes(make_sessionmaker(engine), folder=folder)
    one.refresh()
    one.wait_for_saves()
    assert (folder / f"list-{hl.uid}" / "pdq" / "manifest.json").exists()
    one.stop()

    # While no process runs: more entries, and some retired.
    later = _codes(50, 2)
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", v) for v in later])
    retired = lists_service.find_entries(db, hl, first[0], "pdq") + lists_service.find_entries(db, hl, first[1], "pdq")
    lists_service.set_status(db, SYSTEM, retired, "retracted")
    db.commit()

    two = MatchIndexes(make_sessionmaker(engine), folder=folder)
    two.refresh()
    [index] = two.lists.values()
    assert index.saved_checkpoint == 3001 and index.checkpoint == 3053  # mapped at 3001, 52 changes applied
    active = {e.id for e in lists_service.iter_entries(db, hl) if e.status == "active" and e.signal_type == "pdq"}
    assert _found(two, first + later) == active
    assert len(active) == 3048 and index.exact["md5"].lookup([bytes(16)]) == [[3001]]
    two.stop()


def test_a_corrupted_segment_falls_back_to_the_database(db: Session, engine: Engine, tmp_path: Path) -> None:
    hl = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    values = _codes(500, 3)
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", v) for v in values])
    db.commit()
    folder = tmp_path / "index"
    one = MatchIndexes(make_sessionmaker(engine), folder=folder)
    one.refresh()
    one.wait_for_saves()
    one.stop()
    [segment] = sorted((folder / f"list-{hl.uid}" / "pdq").glob("*.words.npy"))
    segment.write_bytes(segment.read_bytes()[:-64])  # truncated
    two = MatchIndexes(make_sessionmaker(engine), folder=folder)
    two.refresh()
    [index] = two.lists.values()
    assert index.checkpoint == 500
    assert len(_found(two, values)) == 500
    two.stop()
