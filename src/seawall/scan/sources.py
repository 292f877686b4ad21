"""What a scan reads: sources planned into partitions, and a partition expanded into items.

Everything is recognised by content, never by name: zip, tar (plain, gzip, zstd), gzip and zstd
files, WARC crawls (``warcio``), and anything else is a leaf that hashing then accepts as media or
skips. Archives are opened inside archives down to ``scan_max_depth``; what one top-level file
expands to is bounded in bytes and members (a bomb stops with an error, the run goes on).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from seawall.config import Settings

# A path inside an archive is written archive!/member (nested: outer!/inner!/member), as jar: URLs do.
MEMBER_SEPARATOR = "!/"
_SNIFF = 512


class ScanError(ValueError):
    """A scan that cannot start as asked; the message says what to change."""


def is_url(source: str) -> bool:
    return "://" in source


# ---------------------------------------------------------------------------------------- planning


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def plan(sources: list[str], settings: Settings) -> list[dict[str, Any]]:
    """The partitions of a run, in a fixed order: batches of a folder's (or bucket's) files, one
    partition per named file. Listing happens once, here: a resumed run scans what was planned."""
    size = settings.scan_partition_items
    specs: list[dict[str, Any]] = []
    for source in sources:
        if is_url(source):
            urls = _list_url(source)
            specs.extend({"kind": "urls", "source": source, "urls": chunk} for chunk in _chunks(urls, size))
            continue
        path = Path(source)
        if path.is_dir():
            files: list[str] = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(str(Path(root) / n) for n in sorted(names))
            specs.extend({"kind": "files", "source": source, "paths": chunk} for chunk in _chunks(files, size))
        elif path.is_file():
            specs.append({"kind": "files", "source": source, "paths": [str(path)]})
        else:
            raise ScanError(f"{source}: no such file or folder")
    return specs


def _list_url(source: str) -> list[str]:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        raise ScanError("object store sources need fsspec installed") from None
    try:
        fs, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as exc:
        raise ScanError(f"{source}: {exc} (install the protocol's package, e.g. seawall[s3])") from None
    try:
        if fs.isdir(root):
            return [fs.unstrip_protocol(p) for p in sorted(fs.find(root))]
        if fs.isfile(root):
            return [fs.unstrip_protocol(root)]
    except OSError as exc:
        raise ScanError(f"{source}: cannot list it: {exc}") from None
    raise ScanError(f"{source}: no such object or folder")


# ---------------------------------------------------------------------------------------- items


@dataclass
class Item:
    """One thing found: a file, an archive member or a crawled response. Exactly one of ``data``
    (bytes read into memory), ``file`` (a local file hashed in place) or ``error`` is set."""

    path: str
    size: int = 0
    url: str | None = None
    data: bytes | None = None
    file: Path | None = None
    error: str | None = None


class _Budget:
    """What one top-level file may expand to; a bomb stops at the first member past a limit."""

    def __init__(self, settings: Settings) -> None:
        self.bytes_left = settings.scan_max_expanded_bytes
        self.members_left = settings.scan_max_members
        self.settings = settings

    def take(self, size: int) -> None:
        self.bytes_left -= size
        self.members_left -= 1
        if self.bytes_left < 0:
            raise _Bomb(f"archive expands to more than {self.settings.scan_max_expanded_bytes} bytes")
        if self.members_left < 0:
            raise _Bomb(f"archive holds more than {self.settings.scan_max_members} members")

    def read_limit(self) -> int:
        return min(self.settings.max_file_bytes, max(self.bytes_left, 0))


class _Bomb(Exception):
    pass


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already (to recognise it) and are served again."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def sniff(head: bytes) -> str:
    """What a stream is, from its first bytes."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"WARC/"):
        return "warc"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "leaf"


def _read_bounded(stream: IO[bytes], limit: int, label: str) -> bytes:
    """All of a stream, or _TooBig past ``limit`` bytes (some readers return short reads: loop)."""
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = stream.read(min(limit + 1 - got, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    if got > limit:
        raise _TooBig(f"{label}: more than {limit} bytes")
    return b"".join(parts)


class _TooBig(Exception):
    pass


class Expander:
    """Expands partitions into items within the limits of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def partition(self, spec: dict[str, Any]) -> Iterator[Item]:
        if spec["kind"] == "files":
            for path in spec["paths"]:
                yield from self.local_file(Path(path))
        elif spec["kind"] == "urls":
            for url in spec["urls"]:
                yield from self.remote_file(url)
        else:
            raise ValueError(f"unknown partition kind {spec['kind']!r}")

    # -- top level -------------------------------------------------------------------------

    def local_file(self, path: Path) -> Iterator[Item]:
        label = str(path)
        try:
            if path.is_symlink() or not path.is_file():
                yield Item(label, error="not a regular file")
                return
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(_SNIFF)
                kind = sniff(head)
                if kind == "leaf":
                    yield Item(label, size=size, file=path)
                    return
                handle.seek(0)
                yield from self._top(label, kind, handle, size)
        except OSError as exc:
            yield Item(label, error=f"cannot read file: {exc.strerror or exc}")

    def remote_file(self, url: str) -> Iterator[Item]:
        import fsspec

        try:
            with fsspec.open(url, "rb") as handle:
                head = handle.read(_SNIFF)
                kind = sniff(head)
                rest = io.BufferedReader(_Prefixed(head, handle))
                if kind == "leaf":
                    limit = self.settings.max_file_bytes
                    data = head + _read_bounded(handle, limit - len(head), url) if len(head) == _SNIFF else head
                    yield Item(url, size=len(data), data=data)
                    return
                if handle.seekable():  # object stores read by range: a zip's directory at the end is cheap
                    handle.seek(0)
                    stream: IO[bytes] = handle
                else:
                    stream = io.BytesIO(_read_bounded(rest, self.settings.scan_max_expanded_bytes, url))
                yield from self._top(url, kind, stream, None)
        except _TooBig:
            yield Item(url, error=f"file is over the limit of {self.settings.max_file_bytes} bytes")
        except (OSError, ValueError) as exc:
            yield Item(url, error=f"cannot read it: {exc}")

    def _top(self, label: str, kind: str, stream: IO[bytes], size: int | None) -> Iterator[Item]:
        budget = _Budget(self.settings)
        try:
            yield from self._container(label, kind, stream, 0, budget, None)
        except _Bomb as exc:
            yield Item(label, size=size or 0, error=str(exc))

    # -- containers ------------------------------------------------------------------------

    def _container(
        self, label: str, kind: str, stream: IO[bytes], nesting: int, budget: _Budget, url: str | None
    ) -> Iterator[Item]:
        """The items of an archive (or a compressed or crawled file) at ``nesting`` archives deep."""
        if nesting > self.settings.scan_max_depth:
            yield Item(label, url=url, error=f"archive nested more than {self.settings.scan_max_depth} deep")
            return
        try:
            if kind == "zip":
                yield from self._zip(label, stream, nesting, budget)
            elif kind == "tar":
                yield from self._tar(label, stream, nesting, budget)
            elif kind == "warc":
                yield from self._warc(label, stream, nesting, budget)
            elif kind in ("gzip", "zstd"):
                yield from self._compressed(label, kind, stream, nesting, budget, url)
            else:  # pragma: no cover - sniff names only these
                raise ValueError(kind)
        except _Bomb:
            raise
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError) as exc:
            yield Item(label, url=url, error=f"corrupt or unreadable {kind}: {_reason(exc)}")

    def _member(
        self, label: str, read: Callable[[int], bytes], nesting: int, budget: _Budget, url: str | None = None
    ) -> Iterator[Item]:
        """A member's bytes: a leaf item, or (recognised as a container) what is inside it."""
        try:
            data = read(budget.read_limit())
        except _TooBig:
            if budget.bytes_left < self.settings.max_file_bytes:
                raise _Bomb(f"archive expands to more than {self.settings.scan_max_expanded_bytes} bytes") from None
            yield Item(label, url=url, error=f"member is over the limit of {self.settings.max_file_bytes} bytes")
            return
        budget.take(len(data))
        kind = sniff(data[:_SNIFF])
        if kind == "leaf":
            yield Item(label, size=len(data), url=url, data=data)
        else:
            yield from self._container(label, kind, io.BytesIO(data), nesting + 1, budget, url)

    def _zip(self, label: str, stream: IO[bytes], nesting: int, budget: _Budget) -> Iterator[Item]:
        with zipfile.ZipFile(stream) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = f"{label}{MEMBER_SEPARATOR}{info.filename}"
                if info.flag_bits & 0x1:
                    yield Item(name, error="encrypted member")
                    continue

                def read(limit: int, info: zipfile.ZipInfo = info, name: str = name) -> bytes:
                    if info.file_size > limit:  # the declared size; reading is bounded too, headers lie
                        raise _TooBig(name)
                    with archive.open(info) as member:
                        return _read_bounded(member, limit, name)

                try:
                    yield from self._member(name, read, nesting, budget)
                except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
                    yield Item(name, error=f"corrupt member: {_reason(exc)}")

    def _tar(self, label: str, stream: IO[bytes], nesting: int, budget: _Budget) -> Iterator[Item]:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # streaming: members in order, no seeking
            for info in archive:
                if not info.isfile():
                    continue
                name = f"{label}{MEMBER_SEPARATOR}{info.name}"

                def read(limit: int, info: tarfile.TarInfo = info, name: str = name) -> bytes:
                    if info.size > limit:
                        raise _TooBig(name)
                    handle = archive.extractfile(info)
                    return _read_bounded(handle, limit, name) if handle is not None else b""

                yield from self._member(name, read, nesting, budget)

    def _compressed(
        self, label: str, kind: str, stream: IO[bytes], nesting: int, budget: _Budget, url: str | None
    ) -> Iterator[Item]:
        if kind == "gzip":
            raw: IO[bytes] = stream
            opened: Any = gzip.GzipFile(fileobj=stream)
        else:
            import zstandard

            raw = stream
            opened = zstandard.ZstdDecompressor().stream_reader(stream)
        head = opened.read(_SNIFF)
        inner = sniff(head)
        rest: IO[bytes] = io.BufferedReader(_Prefixed(head, opened))
        if inner == "warc" and kind == "gzip" and raw.seekable():
            raw.seek(0)  # warcio reads record-per-member gzip itself: offsets are then the file's own
            yield from self._warc(label, raw, nesting, budget)
        elif inner == "warc":
            yield from self._warc(label, rest, nesting, budget)
        elif inner == "tar":
            yield from self._tar(label, rest, nesting, budget)
        else:  # one compressed file: its content is the member
            name = f"{label}{MEMBER_SEPARATOR}{_strip_suffix(label)}"
            yield from self._member(name, lambda limit: _read_bounded(rest, limit, name), nesting, budget, url)

    def _warc(self, label: str, stream: IO[bytes], nesting: int, budget: _Budget) -> Iterator[Item]:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        records = ArchiveIterator(stream)
        try:
            for record in records:
                if record.rec_type not in ("response", "resource"):
                    continue
                uri = record.rec_headers.get_header("WARC-Target-URI") or ""
                # The body first: asking for the record's offset before reading it loses the body.
                too_big: _TooBig | None = None
                try:
                    body = _read_bounded(record.content_stream(), budget.read_limit(), uri)
                except _TooBig as exc:
                    body, too_big = b"", exc
                name = f"{label}#{records.get_record_offset()}"

                def read(limit: int, body: bytes = body, too_big: _TooBig | None = too_big) -> bytes:
                    if too_big is not None:
                        raise too_big
                    return body

                yield from self._member(name, read, nesting, budget, uri)
        except ArchiveLoadFailed as exc:
            yield Item(label, error=f"corrupt or unreadable warc: {_reason(exc)}")


def _strip_suffix(label: str) -> str:
    base = label.rsplit("/", 1)[-1].rsplit(MEMBER_SEPARATOR, 1)[-1]
    for suffix in (".gz", ".zst", ".zstd"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
