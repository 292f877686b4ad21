"""URL normalisation and URL-list matching at exact, path-prefix and whole-domain level.

The rules are documented in ``docs/url-and-keyword-lists.md``. In short: two spellings that a
browser would send to the same resource normalise to the same string, so a list entry cannot be
evaded by case, IDNA, default ports, percent-encoding, dot segments, a trailing slash, a fragment
or tracking parameters.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Iterable
from typing import NamedTuple

import idna

__all__ = [
    "LEVELS",
    "TRACKING_PARAMS",
    "TRACKING_PREFIXES",
    "NormalizedUrl",
    "UrlIndex",
    "UrlMatch",
    "normalize_entry",
    "normalize_url",
    "parse_url",
]

LEVELS = ("exact", "prefix", "domain")
SCHEMES = {"http": 80, "https": 443}

# Parameters that only say where a click came from; removing them never changes the resource.
TRACKING_PREFIXES = ("utm_",)
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "ttclid", "igshid", "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok",
        "li_fat_id", "s_cid", "vero_id", "oly_enc_id", "oly_anon_id", "rb_clickid", "wickedid",
    }
)  # fmt: skip

MAX_URL_LENGTH = 8192
#: A list entry's stored (normalised) form fits the entries' value column.
MAX_ENTRY_LENGTH = 2048
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters left as they are (RFC 3986 pchar plus '/'); everything else is percent-encoded.
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
# In a query key or value '&' and '=' are structure, so they stay encoded when they were.
_QUERY_SAFE = (_PATH_SAFE | frozenset("?")) - frozenset("&=")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?$")
_HEX = frozenset("0123456789abcdefABCDEF")


class NormalizedUrl(NamedTuple):
    """A URL split into its normalised parts; ``str()`` of the whole is :func:`normalize_url`."""

    scheme: str
    host: str  # lower-case ASCII (punycode), IPv4 dotted quad, or "[v6]"
    port: int | None  # None when default for the scheme
    path: str  # starts with "/", no trailing "/" unless it is the root
    query: str  # without "?", tracking parameters removed, sorted; "" when none

    @property
    def authority(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def url(self) -> str:
        q = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.authority}{self.path}{q}"


class UrlMatch(NamedTuple):
    entry_id: int
    value: str  # the entry's normalised value (a URL, or a host for domain entries)
    level: str


def _pct_normalize(text: str, safe: frozenset[str]) -> str:
    """Decode escapes of unreserved characters, upper-case other escapes, encode what must be."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            byte = int(text[i + 1 : i + 3], 16)
            decoded = chr(byte)
            out.append(decoded if decoded in _UNRESERVED else f"%{byte:02X}")
            i += 3
            continue
        if ch in safe:
            out.append(ch)
        else:  # includes a stray "%", spaces, controls and non-ASCII (as UTF-8 bytes)
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on a path that starts with '/', also merging repeated slashes."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for seg in segments:
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".", ""):
            out.append(seg)
    # A trailing "/" (or "/." "/..") names the same resource for matching: dropped.
    return "/" + "/".join(out)


def _parse_ipv4_part(part: str) -> int | None:
    """A WHATWG IPv4 number: decimal, 0x-hex or 0-leading octal; None if not a number."""
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def _normalize_ipv4(host: str) -> str | None:
    """Browsers read '2130706433', '0x7f.1' and '127.1' as 127.0.0.1; so do we."""
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()
    if not parts:
        return None
    last = parts[-1]
    if not (last.isdigit() or (last[:2].lower() == "0x" and all(c in _HEX for c in last[2:]))):
        return None  # not an IPv4 address: an ordinary domain name
    if len(parts) > 4:
        raise ValueError(f"invalid IPv4 address {host!r}")
    numbers = [_parse_ipv4_part(p) if p else None for p in parts]
    if any(num is None for num in numbers):
        raise ValueError(f"invalid IPv4 address {host!r}")
    nums = [num for num in numbers if num is not None]
    if any(num > 255 for num in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise ValueError(f"invalid IPv4 address {host!r}")
    value = nums[-1]
    for i, num in enumerate(nums[:-1]):
        value += num << (8 * (3 - i))
    return str(ipaddress.IPv4Address(value))


def _pct_decode_host(host: str) -> str:
    if "%" not in host:
        return host
    raw = bytearray()
    i = 0
    while i < len(host):
        if host[i] == "%" and i + 2 < len(host) and host[i + 1] in _HEX and host[i + 2] in _HEX:
            raw.append(int(host[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(host[i].encode("utf-8"))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"host {host!r} is not valid percent-encoded UTF-8") from None


def _normalize_host(host: str) -> str:
    if not host:
        raise ValueError("URL has no host")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"unterminated IPv6 address {host!r}")
        inner = host[1:-1]
        if "%" in inner:
            raise ValueError("IPv6 zone identifiers are not supported in URLs")
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            raise ValueError(f"invalid IPv6 address {inner!r}") from None
    host = _pct_decode_host(host)
    try:
        # UTS #46 mapping: case folding, full-width dots and letters, NFC; keeps '_' (not STD3).
        host = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise ValueError(f"invalid host {host!r}: {exc}") from None
    if host.endswith("."):
        host = host[:-1]  # the root label: "example.com." is "example.com"
    ipv4 = _normalize_ipv4(host)
    if ipv4 is not None:
        return ipv4
    labels = host.split(".")
    out: list[str] = []
    for label in labels:
        if not label:
            raise ValueError(f"host {host!r} has an empty label")
        if not label.isascii():
            try:
                label = idna.alabel(label).decode("ascii")
            except idna.IDNAError as exc:
                raise ValueError(f"invalid internationalised host label {label!r}: {exc}") from None
        if len(label) > 63 or not _HOST_LABEL_RE.match(label):
            raise ValueError(f"invalid host label {label!r}")
        out.append(label)
    result = ".".join(out)
    if len(result) > 253:
        raise ValueError("host name is longer than 253 characters")
    return result


def _is_tracking(key: str) -> bool:
    k = key.lower()
    return k in TRACKING_PARAMS or k.startswith(TRACKING_PREFIXES)


def _normalize_query(query: str) -> str:
    params: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        key = _pct_normalize(key, _QUERY_SAFE)
        # A key that decodes to a tracking name is still a tracking parameter.
        if _is_tracking(key):
            continue
        params.append((key, f"{eq}{_pct_normalize(value, _QUERY_SAFE)}"))
    # Stable sort by key: order between different keys never selects a different resource in
    # practice, but the order of repeated keys (a=1&a=2) can, so it is kept.
    params.sort(key=lambda kv: kv[0])
    return "&".join(k + v for k, v in params)


def parse_url(url: str) -> NormalizedUrl:
    """Parse and normalise ``url``; raise ValueError with the reason when it is not an http(s) URL."""
    if not isinstance(url, str):
        raise ValueError("URL must be a string")
    text = url.strip()
    if not text:
        raise ValueError("URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        # Browsers strip tab/newline inside URLs; other controls make it no URL at all.
        if any((ord(c) < 0x20 and c not in "\t\r\n") or c == "\x7f" for c in text):
            raise ValueError("URL contains control characters")
        text = re.sub(r"[\t\r\n]", "", text)
    text = text.replace("\\", "/")  # browsers treat "\" as "/" in http(s) URLs
    m = _SCHEME_RE.match(text)
    scheme = m.group(1).lower() if m else ""
    if m and text[m.end() : m.end() + 2] == "//":
        rest = text[m.end() + 2 :]
    elif text.startswith("//"):
        scheme, rest = "http", text[2:]
    elif m and (scheme in SCHEMES or not re.match(r"^\d+(?:[/?#]|$)", text[m.end() :])):
        # "mailto:x", "javascript:x", "http:x": a scheme without "//" (but "host:8080/" is a port)
        raise ValueError(f"unsupported URL {url!r}: expected http(s)://host/…")
    else:
        scheme, rest = "http", text  # "example.com/path": scheme-less, read as http
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} (only http and https)")

    end = len(rest)
    for sep in "/?#":
        pos = rest.find(sep)
        if pos != -1:
            end = min(end, pos)
    authority, rest = rest[:end], rest[end:]
    rest = rest.split("#", 1)[0]  # the fragment never reaches the server
    path, _, query = rest.partition("?")

    authority = authority.rpartition("@")[2]  # userinfo is dropped
    host, port_text = authority, ""
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise ValueError(f"unterminated IPv6 address in {url!r}")
        host, tail = authority[: close + 1], authority[close + 1 :]
        if tail and not tail.startswith(":"):
            raise ValueError(f"unexpected text after IPv6 address in {url!r}")
        port_text = tail[1:]
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"invalid port {port_text!r}")
        port = int(port_text)
        if port == SCHEMES[scheme]:
            port = None
    norm_host = _normalize_host(host)
    norm_path = _remove_dot_segments(_pct_normalize(path or "/", _PATH_SAFE))
    return NormalizedUrl(scheme, norm_host, port, norm_path, _normalize_query(query))


def normalize_url(url: str) -> str:
    """The canonical form of an http(s) URL (see the module docs); ValueError for anything else."""
    return parse_url(url).url()


def _parse_domain(value: str) -> str:
    text = value.strip()
    if text.startswith("*."):
        text = text[2:]  # "*.example.com" is the usual way to write a whole-domain entry
    parsed = parse_url(text)
    if parsed.path != "/" or parsed.query:
        raise ValueError(f"a domain entry must be a host only, got {value!r}")
    return parsed.host


def normalize_entry(value: str, level: str) -> str:
    """The canonical stored form of a URL-list entry at ``level`` (a host for domain entries)."""
    if level == "domain":
        return _parse_domain(value)
    if level not in LEVELS:
        raise ValueError(f"unknown URL match level {level!r} (expected one of {', '.join(LEVELS)})")
    parsed = parse_url(value)
    if level == "prefix" and parsed.query:
        raise ValueError("a prefix entry cannot have a query string")
    normalised = parsed.url()
    # Percent-encoding can make the stored form several times longer than what was written.
    if len(normalised) > MAX_ENTRY_LENGTH:
        raise ValueError(f"the URL is longer than {MAX_ENTRY_LENGTH} characters once normalised")
    return normalised


def _key(parsed: NormalizedUrl) -> str:
    # http and https serve the same content for list purposes: keys leave the scheme out.
    q = f"?{parsed.query}" if parsed.query else ""
    return f"{parsed.authority}{parsed.path}{q}"


_Bucket = tuple[tuple[int, str], ...]


class UrlIndex:
    """URL entries keyed for O(path depth + host depth) lookups.

    Readers take no lock: each bucket is an immutable tuple that a writer replaces whole, and
    CPython's dict get/set are atomic, so a reader sees every bucket either before or after a
    change. Writers serialise on a lock.
    """

    def __init__(self, entries: Iterable[tuple[int, str, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._exact: dict[str, _Bucket] = {}
        self._prefix: dict[str, _Bucket] = {}
        self._domain: dict[str, _Bucket] = {}
        self._where: dict[int, tuple[dict[str, _Bucket], str]] = {}
        for entry_id, value, level in entries:
            self.add(entry_id, value, level)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def _table_and_key(self, value: str, level: str) -> tuple[dict[str, _Bucket], str, str]:
        if level == "domain":
            host = _parse_domain(value)
            return self._domain, host, host
        if level not in LEVELS:
            raise ValueError(f"unknown URL match level {level!r} (expected one of {', '.join(LEVELS)})")
        parsed = parse_url(value)
        if level == "prefix":
            if parsed.query:
                raise ValueError("a prefix entry cannot have a query string")
            return self._prefix, _key(parsed), parsed.url()
        return self._exact, _key(parsed), parsed.url()

    def add(self, entry_id: int, value: str, level: str = "exact") -> str:
        """Index an entry (replacing any entry with the same id); returns its normalised value."""
        table, key, normalized = self._table_and_key(value, level)
        with self._lock:
            self._remove_locked(entry_id)
            table[key] = (*table.get(key, ()), (entry_id, normalized))
            self._where[entry_id] = (table, key)
        return normalized

    def remove(self, entry_id: int) -> bool:
        """Drop an entry; False when it was not indexed."""
        with self._lock:
            return self._remove_locked(entry_id)

    def _remove_locked(self, entry_id: int) -> bool:
        where = self._where.pop(entry_id, None)
        if where is None:
            return False
        table, key = where
        bucket = tuple(item for item in table.get(key, ()) if item[0] != entry_id)
        if bucket:
            table[key] = bucket
        else:
            table.pop(key, None)
        return True

    def match(self, url: str) -> list[UrlMatch]:
        """Entries matching ``url``: exact first, then prefixes longest first, then domains most
        specific first. ValueError if ``url`` is not an http(s) URL."""
        parsed = parse_url(url)
        out: list[UrlMatch] = []
        for entry_id, value in self._exact.get(_key(parsed), ()):
            out.append(UrlMatch(entry_id, value, "exact"))
        if self._prefix:
            # Every ancestor path, segment by segment: "/a/b" tries "/a/b", "/a", "/".
            path = parsed.path
            authority = parsed.authority
            while True:
                for entry_id, value in self._prefix.get(authority + path, ()):
                    out.append(UrlMatch(entry_id, value, "prefix"))
                if path == "/":
                    break
                path = path.rsplit("/", 1)[0] or "/"
        if self._domain:
            host = parsed.host
            candidates = [host]
            if not host.startswith("[") and not _is_ipv4(host):
                labels = host.split(".")
                candidates += [".".join(labels[i:]) for i in range(1, len(labels))]
            for candidate in candidates:
                for entry_id, value in self._domain.get(candidate, ()):
                    out.append(UrlMatch(entry_id, value, "domain"))
        return out


def _is_ipv4(host: str) -> bool:
    return host.replace(".", "").isdigit() and host.count(".") == 3
