"""The operator's offline tracing data: MaxMind-format ``.mmdb`` files and a CSV of CIDR ranges.

Each file is opened once per process and opened again when it changes (its size, modification time
or inode: replacing it by renaming a new file over it, as ``geoipupdate`` does, is picked up at the
next look-up). A file that cannot be read is logged once per version, naming the file and the line,
and answers nothing until it is fixed; :func:`problems` says the same to the command line.

The CIDR table (``cidr,asn,as_name,country``) is flattened when loaded into sorted, non-overlapping
ranges per address family, each holding the facts of the most specific CIDR that covers it, so a
look-up is one binary search (:mod:`bisect`) over an array of range starts.
"""

from __future__ import annotations

import bisect
import csv
import io
import ipaddress
import logging
import os
import re
import socket
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import maxminddb

from seawall.lists.records import FormatError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
CIDR_COLUMNS = ("cidr", "asn", "as_name", "country")
MAX_AS_NAME = 200  # the width of the case's column
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_ASN = re.compile(r"(?:AS)?(\d{1,10})", re.IGNORECASE)


class TraceDataError(ValueError):
    """A configured tracing file that cannot be used; the message names the file (and the line)."""


def parse_address(text: str) -> IPAddress:
    """The address ``text`` spells (an IPv6 zone dropped; IPv4-mapped IPv6 read as the IPv4 address)."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def hex_address(address: IPAddress) -> str:
    """32 hex digits of the address as IPv6 (IPv4 mapped): text that sorts in address order."""
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(int(_IPV4_MAPPED.network_address) | int(address))
    return f"{int(address):032x}"


def parse_asn(text: str) -> int | None:
    """An AS number written ``64500`` or ``AS64500``; None for an empty cell; ValueError otherwise."""
    text = text.strip()
    if not text:
        return None
    match = _ASN.fullmatch(text)
    number = int(match.group(1)) if match else 0
    if not 0 < number < 2**32:
        raise ValueError(f"AS number {text!r} is not a number from 1 to 4294967295")
    return number


def parse_country(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if not _COUNTRY.fullmatch(text):
        raise ValueError(f"country {text!r} is not a two-letter ISO 3166 code")
    return text.upper()


@dataclass(frozen=True)
class Facts:
    """What one source says of an address."""

    asn: int | None = None
    as_name: str | None = None
    country: str | None = None


# ---- the CIDR table ---------------------------------------------------------------------------


class _Ranges:
    """Non-overlapping ranges of one address family, sorted, and the facts of each."""

    def __init__(self, starts: list[int], ends: list[int], facts: list[Facts], *, small: bool) -> None:
        # IPv4 bounds fit 32 bits: a typed array holds a million ranges in a few megabytes.
        self.starts: array[int] | list[int] = array("I", starts) if small else starts
        self.ends: array[int] | list[int] = array("I", ends) if small else ends
        self.facts = facts

    def find(self, value: int) -> Facts | None:
        i = bisect.bisect_right(self.starts, value) - 1
        if i >= 0 and value <= self.ends[i]:
            return self.facts[i]
        return None

    def __len__(self) -> int:
        return len(self.facts)


def _flatten(networks: list[tuple[int, int, Facts, int]], *, small: bool) -> _Ranges:
    """CIDR blocks are nested or disjoint: a sweep in start order (the wider first at one start) with a
    stack of the open blocks cuts them into ranges each owned by the most specific block. The same
    block twice is a BadLine naming both lines."""
    networks.sort(key=lambda n: (n[0], -n[1], n[3]))
    starts: list[int] = []
    ends: list[int] = []
    facts: list[Facts] = []

    def emit(first: int, last: int, owner: Facts) -> None:
        if first <= last:
            starts.append(first)
            ends.append(last)
            facts.append(owner)

    stack: list[tuple[int, Facts]] = []  # (last address, facts) of the open blocks, innermost on top
    position = 0  # the first address not yet emitted
    previous: tuple[int, int, Facts, int] | None = None
    for network in networks:
        first, last, owner, line = network
        if previous is not None and previous[0] == first and previous[1] == last:
            raise BadLine(FormatError(line, f"{_cidr_text(first, last, small)} is listed twice (line {previous[3]})"))
        previous = network
        while stack and stack[-1][0] < first:
            closed_last, closed = stack.pop()
            emit(position, closed_last, closed)
            position = closed_last + 1
        if stack:
            emit(position, first - 1, stack[-1][1])
        stack.append((last, owner))
        position = first
    while stack:
        closed_last, closed = stack.pop()
        emit(position, closed_last, closed)
        position = closed_last + 1
    return _Ranges(starts, ends, facts, small=small)


def _cidr_text(first: int, last: int, v4: bool) -> str:
    bits = 32 if v4 else 128
    network = (ipaddress.IPv4Network if v4 else ipaddress.IPv6Network)((first, bits - (last - first).bit_length()))
    return str(network)


class CidrTable:
    """The operator's CIDR CSV, ready for look-ups."""

    def __init__(self, v4: _Ranges, v6: _Ranges) -> None:
        self.v4 = v4
        self.v6 = v6

    def lookup(self, address: IPAddress) -> Facts | None:
        ranges = self.v4 if isinstance(address, ipaddress.IPv4Address) else self.v6
        return ranges.find(int(address))

    @classmethod
    def load(cls, path: Path) -> CidrTable:
        """Read the whole file; the first bad line refuses it (TraceDataError naming file and line)."""
        try:
            with path.open("rb") as raw:
                return cls.read(raw, str(path))
        except OSError as exc:
            raise TraceDataError(f"{path}: {exc.strerror or exc}") from None

    @classmethod
    def read(cls, raw: Any, name: str) -> CidrTable:
        v4: list[tuple[int, int, Facts, int]] = []
        v6: list[tuple[int, int, Facts, int]] = []
        # One Facts per distinct (asn, as_name, country) cells: a big table repeats them, and each
        # is checked once.
        facts_of: dict[tuple[str, str, str], Facts] = {}
        try:
            for line, (cidr, *cells) in csv_rows(raw, CIDR_COLUMNS, required=("cidr",)):
                key = (cells[0], cells[1], cells[2])
                try:
                    version, first, last = parse_cidr(cidr)
                    facts = facts_of.get(key)
                    if facts is None:
                        facts = facts_of[key] = _facts(*key)
                except ValueError as exc:
                    raise BadLine(FormatError(line, str(exc))) from None
                (v4 if version == 4 else v6).append((first, last, facts, line))
            facts_of.clear()
            ranges_v4 = _flatten(v4, small=True)
            del v4
            return cls(ranges_v4, _flatten(v6, small=False))
        except BadLine as exc:
            raise TraceDataError(f"{name}: {exc.error}") from None


def parse_cidr(text: str) -> tuple[int, int, int]:
    """``192.0.2.0/24`` → (4, first, last) as integers; a bare address is its own /32 or /128.

    Parsed with the C library's inet_pton (strict, and much faster than :mod:`ipaddress` for a table
    of a million lines); host bits set are refused, as ``ip_network(strict=True)`` does."""
    cidr = text.strip()
    address, _, length = cidr.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in address else (socket.AF_INET, 32)
    try:
        value = int.from_bytes(socket.inet_pton(family, address), "big")
    except OSError:
        raise ValueError(f"{cidr!r} is not an address range (CIDR)") from None
    if not length:
        prefix = bits
    elif length.isdigit() and int(length) <= bits:
        prefix = int(length)
    else:
        raise ValueError(f"{cidr!r} has no valid prefix length (0 to {bits})")
    host = (1 << (bits - prefix)) - 1
    if value & host:
        raise ValueError(f"{cidr} has host bits set")
    if bits == 128 and prefix >= 96 and value >> 32 == 0xFFFF:
        raise ValueError("write IPv4 ranges as IPv4, not IPv4-mapped IPv6")
    return (6 if bits == 128 else 4), value, value | host


def _facts(asn: str, as_name: str, country: str) -> Facts:
    name = as_name.strip() or None
    if name is not None and len(name) > MAX_AS_NAME:
        raise ValueError(f"as_name is longer than {MAX_AS_NAME} characters")
    return Facts(parse_asn(asn), name, parse_country(country))


def check_header(header: list[str], columns: tuple[str, ...], required: tuple[str, ...]) -> str | None:
    unknown = [h for h in header if h not in columns]
    if unknown:
        return f"unknown column(s) {', '.join(unknown)}; columns are {','.join(columns)}"
    missing = [c for c in required if c not in header]
    if missing:
        return f"missing column(s) {', '.join(missing)}"
    if len(set(header)) != len(header):
        return "a column is named twice"
    return None


class BadLine(ValueError):
    """A line of a CSV file that cannot be read."""

    def __init__(self, error: FormatError) -> None:
        self.error = error
        super().__init__(str(error))


def csv_rows(raw: Any, columns: tuple[str, ...], *, required: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV file whose header names some of ``columns``, as (line, cells in the order of
    ``columns``, "" for a column the file lacks). Blank lines and lines starting with ``#`` are
    skipped; a malformed file raises BadLine."""
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    header: list[str] | None = None
    order: list[int | None] = []
    in_order = False
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [h.strip().lower() for h in row]
                problem = check_header(header, columns, required)
                if problem:
                    raise BadLine(FormatError(reader.line_num, problem))
                order = [header.index(c) if c in header else None for c in columns]
                in_order = header == list(columns)  # the usual case: rows need no reordering
                continue
            if len(row) != len(header):
                raise BadLine(FormatError(reader.line_num, f"expected {len(header)} fields, got {len(row)}"))
            yield reader.line_num, row if in_order else [row[i] if i is not None else "" for i in order]
    except csv.Error as exc:
        raise BadLine(FormatError(reader.line_num, f"bad CSV: {exc}")) from None
    except UnicodeDecodeError:
        raise BadLine(FormatError(reader.line_num + 1, "invalid UTF-8")) from None
    if header is None:
        raise BadLine(FormatError(1, f"no header line naming the columns ({','.join(columns)})"))


# ---- MaxMind-format databases ----------------------------------------------------------------


def open_mmdb(path: Path) -> maxminddb.Reader:
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise TraceDataError(f"{path}: not a readable MaxMind DB file ({exc})") from None


def mmdb_facts(reader: maxminddb.Reader, address: IPAddress) -> Facts | None:
    """The facts a GeoLite2 / DB-IP Lite (Country, ASN) or a combined file's record gives."""
    try:
        record = reader.get(address)
    except ValueError:  # an IPv6 address in an IPv4-only file
        return None
    except maxminddb.InvalidDatabaseError as exc:
        log.error("tracing: %s is damaged: %s", reader.metadata().database_type, exc)
        return None
    if not isinstance(record, dict):
        return None
    return Facts(_record_asn(record), _record_as_name(record), _record_country(record))


def _record_country(record: dict[str, Any]) -> str | None:
    # GeoLite2 and DB-IP: {"country": {"iso_code": "GB"}, "registered_country": {...}}; flat files: "GB".
    for key in ("country", "registered_country", "country_code"):
        value = record.get(key)
        if isinstance(value, dict):
            value = value.get("iso_code")
        if isinstance(value, str) and _COUNTRY.fullmatch(value):
            return value.upper()
    return None


def _record_asn(record: dict[str, Any]) -> int | None:
    for key in ("autonomous_system_number", "asn"):
        value = record.get(key)
        if isinstance(value, int) and 0 < value < 2**32:
            return value
        if isinstance(value, str):
            try:
                return parse_asn(value)
            except ValueError:
                continue
    return None


def _record_as_name(record: dict[str, Any]) -> str | None:
    for key in ("autonomous_system_organization", "as_name", "as_org"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_AS_NAME]
    return None


# ---- files opened once, reopened when they change ----------------------------------------------

T = TypeVar("T")
_Stamp = tuple[int, int, int]  # inode, size, modification time (ns)


@dataclass
class _Loaded(Generic[T]):
    stamp: _Stamp
    value: T | None
    error: str | None


class FileCache(Generic[T]):
    """One loaded value per path, loaded again when the file changes; a file that fails to load is
    logged once per version and gives None."""

    def __init__(self, what: str, loader: Callable[[Path], T]) -> None:
        self.what = what
        self.loader = loader
        self._loaded: dict[Path, _Loaded[T]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> T | None:
        return self._current(path).value

    def error(self, path: Path) -> str | None:
        return self._current(path).error

    def _current(self, path: Path) -> _Loaded[T]:
        try:
            st = os.stat(path)
            stamp: _Stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as exc:
            stamp = (-1, -1, -1)
            missing = f"{path}: {exc.strerror or exc}"
        else:
            missing = ""
        loaded = self._loaded.get(path)
        if loaded is not None and loaded.stamp == stamp:
            return loaded
        with self._lock:  # one thread loads; the others wait and take its result
            loaded = self._loaded.get(path)
            if loaded is not None and loaded.stamp == stamp:
                return loaded
            if missing:
                loaded = _Loaded(stamp, None, missing)
            else:
                try:
                    loaded = _Loaded(stamp, self.loader(path), None)
                    log.info("tracing: loaded %s %s", self.what, path)
                except TraceDataError as exc:
                    loaded = _Loaded(stamp, None, str(exc))
            if loaded.error:
                log.error("tracing: the %s is not used: %s", self.what, loaded.error)
            self._loaded[path] = loaded
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()


MMDB_FILES: FileCache[maxminddb.Reader] = FileCache("MaxMind DB file", open_mmdb)
CIDR_FILES: FileCache[CidrTable] = FileCache("CIDR file", CidrTable.load)


def problems(paths: Iterable[tuple[FileCache[Any], Path | None]]) -> list[str]:
    """What is wrong with the configured files (empty: each loads)."""
    return [e for cache, path in paths if path is not None and (e := cache.error(path))]
