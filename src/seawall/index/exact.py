"""Exact index for fixed-width digests (md5, sha1, sha256, and any exact-match plugin hash).

Equality lookup needs no cleverness: a dict from key to the ids holding it, plus the reverse
map so ``remove(ids)`` works from change rows that carry only the id. Saved with the same
checksummed manifest as the Hamming index. (URL lists have their own index, with path-prefix and
domain levels, in ``seawall.lists.urls``.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seawall.index.storage import (
    IndexCorruptError,
    read_array,
    read_manifest,
    remove_unreferenced,
    write_array,
    write_manifest,
)

KIND = "seawall-exact-index"
VERSION = 1


@dataclass(frozen=True)
class KeyChange:
    """One change row: ``add`` carries the key (digest bytes), ``remove`` does not."""

    op: str
    id: int
    key: bytes | None = None


class ExactIndex:
    """ids by exact key; keys are ``key_size`` bytes (16 md5, 20 sha1, 32 sha256)."""

    def __init__(self, key_size: int) -> None:
        if key_size <= 0:
            raise ValueError("key_size must be positive")
        self.key_size = key_size
        self._by_key: dict[bytes, frozenset[int]] = {}
        self._by_id: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._checkpoint = 0

    def _key(self, key: bytes) -> bytes:
        if not isinstance(key, bytes | bytearray) or len(key) != self.key_size:
            raise ValueError(f"key must be {self.key_size} bytes, got {key!r:.80}")
        return bytes(key)

    def add(self, ids: Iterable[int], keys: Sequence[bytes]) -> None:
        """Insert entries; an id already present moves to its new key."""
        id_list = [int(i) for i in ids]
        key_list = [self._key(k) for k in keys]
        if len(id_list) != len(key_list):
            raise ValueError(f"{len(id_list)} ids but {len(key_list)} keys")
        with self._lock:  # readers see a dict value swap, never a half-built set
            for i, k in zip(id_list, key_list, strict=True):
                self._drop(i)
                self._by_id[i] = k
                self._by_key[k] = self._by_key.get(k, frozenset()) | {i}

    def _drop(self, i: int) -> None:
        old = self._by_id.pop(i, None)
        if old is not None:
            rest = self._by_key[old] - {i}
            if rest:
                self._by_key[old] = rest
            else:
                del self._by_key[old]

    def remove(self, ids: Iterable[int]) -> None:
        """Retire entries; unknown ids are ignored."""
        with self._lock:
            for i in ids:
                self._drop(int(i))

    def lookup(self, keys: Sequence[bytes]) -> list[list[int]]:
        """For each key, the sorted ids holding exactly that key."""
        return [sorted(self._by_key.get(self._key(k), ())) for k in keys]

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def checkpoint(self) -> int:
        return self._checkpoint

    def apply(self, changes: Iterable[KeyChange], checkpoint: int) -> None:
        """Apply change rows in order, then record ``checkpoint`` (as HammingIndex.apply)."""
        if checkpoint < self._checkpoint:
            raise ValueError(f"checkpoint {checkpoint} is behind the index's {self._checkpoint}")
        for change in changes:
            if change.op == "add":
                if change.key is None:
                    raise ValueError(f"add of id {change.id} has no key")
                self.add([change.id], [change.key])
            elif change.op == "remove":
                self.remove([change.id])
            else:
                raise ValueError(f"unknown change op {change.op!r}")
        self._checkpoint = int(checkpoint)

    def save(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            items = sorted(self._by_id.items())
        ids = np.array([i for i, _ in items], dtype="<i8")
        keys = np.frombuffer(b"".join(k for _, k in items), dtype=np.uint8).reshape(len(items), self.key_size)
        tag = os.urandom(4).hex()
        records = {
            "ids": write_array(path, f"exact-{tag}.ids.npy", ids),
            "keys": write_array(path, f"exact-{tag}.keys.npy", keys),
        }
        write_manifest(path, {
            "kind": KIND, "version": VERSION, "key_size": self.key_size, "rows": len(items),
            "checkpoint": self._checkpoint, "files": records,
        })  # fmt: skip
        remove_unreferenced(path, {r["file"] for r in records.values()})

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, verify: bool = True) -> ExactIndex:
        path = Path(folder)
        manifest = read_manifest(path, KIND, VERSION)
        try:
            key_size, rows = int(manifest["key_size"]), int(manifest["rows"])
            files, checkpoint = dict(manifest["files"]), int(manifest["checkpoint"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(path / "manifest.json", "malformed manifest") from exc
        ids = read_array(path, files["ids"], dtype=np.dtype("<i8"), shape=(rows,),
                         mmap=False, verify=verify)  # fmt: skip
        keys = read_array(path, files["keys"], dtype=np.dtype(np.uint8),
                          shape=(rows, key_size), mmap=False, verify=verify)  # fmt: skip
        index = cls(key_size)
        index.add(ids.tolist(), [bytes(k) for k in keys])
        index._checkpoint = checkpoint
        return index
