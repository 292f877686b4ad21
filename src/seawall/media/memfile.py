"""Bytes as a file path for decoders that want one, without the plaintext ever reaching a disk."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@contextlib.contextmanager
def memory_file(data: bytes, *, fallback_dir: Path | None = None) -> Iterator[Path]:
    """``data`` at a path that lives only in memory (a Linux memfd, read through /proc/self/fd).

    Where there is no memfd, a private (0600) temporary file in ``fallback_dir``, removed as soon as
    the block ends: media under evidence rules is never left in plaintext on disk."""
    create = getattr(os, "memfd_create", None)
    if create is not None and os.path.isdir("/proc/self/fd"):
        fd = create("seawall-media", getattr(os, "MFD_CLOEXEC", 0))
        try:
            _write_all(fd, data)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    if fallback_dir is not None:
        fallback_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".seawall-media-", dir=fallback_dir)  # mkstemp makes it 0600
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
