"""ExactIndex and URL normalisation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from seawall.index import ExactIndex, IndexCorruptError, KeyChange


def md5(text: str) -> bytes:
    return hashlib.md5(text.encode()).digest()


def test_lookup_add_remove_readd() -> None:
    index = ExactIndex(16)
    index.add([3, 1, 2], [md5("a"), md5("a"), md5("b")])
    assert index.lookup([md5("a"), md5("b"), md5("c")]) == [[1, 3], [2], []]
    index.add([3], [md5("c")])  # id 3 moves from "a" to "c"
    index.remove([2, 99])
    assert index.lookup([md5("a"), md5("b"), md5("c")]) == [[1], [], [3]]
    index.add([2], [md5("b")])
    assert index.lookup([md5("b")]) == [[2]]
    assert len(index) == 3
    assert index.lookup([b"\x00" * 16]) == [[]]
    with pytest.raises(ValueError, match="16 bytes"):
        index.lookup([b"short"])


def test_apply_and_persist(tmp_path: Path) -> None:
    index = ExactIndex(32)
    key = hashlib.sha256(b"x").digest()
    index.apply([KeyChange("add", 1, key), KeyChange("remove", 1), KeyChange("add", 2, key)], checkpoint=5)
    index.save(tmp_path)
    loaded = ExactIndex.load(tmp_path)
    assert (loaded.lookup([key]), loaded.checkpoint, loaded.key_size) == ([[2]], 5, 32)
    with pytest.raises(ValueError, match="behind"):
        loaded.apply([], checkpoint=4)
    keys = next(tmp_path.glob("*.keys.npy"))
    keys.write_bytes(keys.read_bytes()[:-1] + b"\xff")
    with pytest.raises(IndexCorruptError, match="checksum mismatch"):
        ExactIndex.load(tmp_path)
