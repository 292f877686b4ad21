"""On-disk plumbing shared by the indexes: checksummed .npy files and an atomic manifest.

A folder holds immutable array files plus ``manifest.json``, the only mutable file. The
manifest names every file with its size and SHA-256, so a truncated or corrupted file is
reported at load instead of being silently half-read. It is replaced atomically (write a
temporary file, fsync, rename, fsync the folder), so a crash leaves the old or the new state.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


class IndexCorruptError(ValueError):
    """An index folder that cannot be loaded as written: names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_array(folder: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Write ``array`` to ``folder/name`` durably and return its manifest record."""
    path = folder / name
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return {"file": name, "size": path.stat().st_size, "sha256": _sha256(path)}


def read_array(
    folder: Path,
    record: dict[str, Any],
    *,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    mmap: bool,
    verify: bool,
) -> np.ndarray:
    """Load one array named by a manifest record, checking size, checksum, dtype and shape."""
    try:
        path = folder / str(record["file"])
        size = int(record["size"])
        digest = str(record["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexCorruptError(folder / MANIFEST, f"malformed file record {record!r}") from exc
    if not path.is_file():
        raise IndexCorruptError(path, "file named in the manifest is missing")
    actual = path.stat().st_size
    if actual != size:
        raise IndexCorruptError(path, f"truncated or altered: {actual} bytes, manifest says {size}")
    if verify and _sha256(path) != digest:
        raise IndexCorruptError(path, "checksum mismatch: the file is corrupted")
    try:
        # "c" (copy-on-write) rather than "r": the pages are shared just the same, but the arrays
        # are writable-typed, so the numba kernels need no second, read-only compilation.
        loaded = np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexCorruptError(path, f"not a readable .npy file ({exc})") from exc
    if loaded.dtype != dtype or loaded.shape != shape:
        raise IndexCorruptError(path, f"holds {loaded.dtype}{loaded.shape}, expected {np.dtype(dtype)}{shape}")
    # A plain ndarray view over the mapping: numba and numpy treat it as any array, no copy.
    return np.asarray(loaded)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    path = folder / MANIFEST
    tmp = folder / (MANIFEST + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(folder)


def read_manifest(folder: Path, kind: str, version: int) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorruptError(path, "no manifest: not an index folder") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(path, f"unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise IndexCorruptError(path, f"not a {kind} manifest")
    if manifest.get("version") != version:
        raise IndexCorruptError(path, f"unsupported version {manifest.get('version')!r}")
    return manifest


def remove_unreferenced(folder: Path, keep: set[str]) -> None:
    """Delete files the current manifest no longer names (after the manifest swap, so a
    crash before this point only leaves garbage, never a manifest naming deleted files)."""
    for path in folder.iterdir():
        if path.name == MANIFEST or not path.is_file():
            continue
        if path.name not in keep and path.suffix in {".npy", ".tmp"}:
            path.unlink(missing_ok=True)
