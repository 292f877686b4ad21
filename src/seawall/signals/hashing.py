"""The ``seawall hash`` object for one file: media kind, then each requested signal."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from seawall.config import Settings
from seawall.media.errors import MediaError
from seawall.signals.base import BYTES, IMAGE, VIDEO, MediaItem, get_signal_type
from seawall.signals.crypto import ALGORITHMS, file_digests

DEFAULT_SIGNALS: Final = ("md5", "sha1", "sha256", "pdq", "vpdq")


def parse_signal_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated signal names from ``"md5,pdq"`` or a list; KeyError names an unknown one."""
    if text is None:
        return DEFAULT_SIGNALS
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(p.strip().lower() for p in parts if p.strip()))
    if not names:
        raise KeyError("no signal types given")
    for name in names:
        get_signal_type(name)
    return names


def detect_media(path: Path) -> str:
    """``"video"`` or ``"image"`` from the content (never the extension); MediaError otherwise."""
    name = str(path)
    if not path.exists():
        raise MediaError(name, "no such file")
    if path.is_dir():
        raise MediaError(name, "is a folder (use --recursive to hash the files in it)")
    if not path.is_file():
        raise MediaError(name, "not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(name, "empty file (0 bytes)")
    try:
        from seawall.media import video
    except ImportError:  # video support not installed: images only
        video = None  # type: ignore[assignment]
    if video is not None and video.is_video(path):
        return VIDEO
    from seawall.media.image import open_image

    try:
        open_image(path).close()
    except MediaError as exc:
        if exc.reason == "not a supported image format":
            raise MediaError(name, "not a supported image or video format") from None
        raise
    return IMAGE


def hash_file(
    path: str | os.PathLike[str],
    signals: str | Sequence[str] | None = None,
    *,
    dihedral: bool = False,
    fast: bool = False,
    every_n_frames: int | None = None,
    regions: bool = False,
) -> dict[str, Any]:
    """``{"path", "media", <signal fields>...}`` for one file; MediaError if it cannot be hashed.

    Signals that do not apply to the file's media (pdq for a video) are left out. ``regions`` adds
    ``pdq_regions``: the PDQ of each region of a bordered or embedded picture (docs/regions.md).
    """
    names = parse_signal_names(signals)
    p = Path(path)
    media = detect_media(p)
    item = MediaItem(p, media, fast=fast, dihedral=dihedral, every_n_frames=every_n_frames, regions=regions)
    out: dict[str, Any] = {"path": str(path), "media": media}
    try:
        crypto = tuple(n for n in names if n in ALGORITHMS)
        if crypto:
            file_digests(item, crypto)  # one read for all requested digests
        for name in names:
            st = get_signal_type(name)
            if st.applies_to_item(item):
                out.update(st.compute(item))
    finally:
        item.close()
    return out


def hash_for_request(path: str | os.PathLike[str], settings: Settings, **options: Any) -> dict[str, Any]:
    """:func:`hash_file` for a server request: in one of the process's decode slots (DecodeBusy
    when none frees up soon) and within the request's decode budget."""
    from seawall.media.budget import request_decode

    with request_decode(settings):
        return hash_file(path, **options)


def hash_file_or_error(path: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """:func:`hash_file`, or ``{"path", "error"}`` for a file that cannot be hashed."""
    try:
        return hash_file(path, **options)
    except MediaError as exc:
        return {"path": str(path), "error": exc.reason}
    except OSError as exc:
        return {"path": str(path), "error": f"cannot read file: {exc.strerror or exc}"}


def expand_paths(paths: Iterable[str | os.PathLike[str]], *, recursive: bool) -> Iterator[Path]:
    """Files named, and with ``recursive`` every file below named folders (sorted, symlinked
    folders not followed). A folder without ``recursive`` is yielded as is (it then errors)."""
    for raw in paths:
        p = Path(raw)
        if recursive and p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    yield Path(root) / f
        else:
            yield p


__all__ = [
    "BYTES",
    "DEFAULT_SIGNALS",
    "detect_media",
    "expand_paths",
    "hash_file",
    "hash_file_or_error",
    "hash_for_request",
    "parse_signal_names",
]
