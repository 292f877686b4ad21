"""What media a fetched page shows or links: the parsing half of capture, with no I/O.

HTML is read with the standard library's tolerant parser (the one browsers' rules inspired), CSS
with tinycss2; nothing is matched with regular expressions. Found: ``<img src/srcset>`` (and the
``data-src`` attributes lazy loaders use), ``<source src/srcset>``, ``<video src/poster>``, CSS
``background``/``background-image`` URLs in style attributes and ``<style>`` blocks, and ``<a href>``
links that look like media (by their path) or wrap an image (a gallery's link to the full size).
Which of them really are media is decided later, from the bytes fetched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Final
from urllib.parse import urldefrag, urljoin, urlsplit

import tinycss2

# How a page showed an item (``CaseItem.found_as``).
FOUND_AS: Final = ("img", "srcset", "source", "video", "link", "css", "direct")
# Paths whose links are worth fetching to see whether they are media (the bytes then decide).
_IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic")
_VIDEO_SUFFIXES: Final = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".wmv", ".asf", ".flv", ".mpg", ".mpeg")
MEDIA_SUFFIXES: Final = frozenset((*_IMAGE_SUFFIXES, ".heif", ".avif", *_VIDEO_SUFFIXES, ".3gp", ".ts", ".ogv"))
_LAZY_SRC: Final = ("data-src", "data-original", "data-lazy-src")
_LAZY_SRCSET: Final = ("data-srcset", "data-lazy-srcset")
_CSS_IMAGE_PROPERTIES: Final = frozenset({"background", "background-image"})
_SCHEMES: Final = ("http", "https", "data")


@dataclass(frozen=True)
class Candidate:
    """A URL the page shows or links, and how."""

    url: str  # absolute: http, https or data
    found_as: str


def srcset_urls(value: str) -> list[str]:
    """The URLs of a ``srcset`` attribute, in order (the HTML standard's way of splitting it: a URL
    runs to whitespace, trailing commas end it; descriptors run to a comma outside parentheses)."""
    urls: list[str] = []
    pos, end = 0, len(value)
    while True:
        while pos < end and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        if pos >= end:
            return urls
        start = pos
        while pos < end and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0
            while pos < end and not (value[pos] == "," and depth == 0):
                if value[pos] == "(":
                    depth += 1
                elif value[pos] == ")":
                    depth = max(0, depth - 1)
                pos += 1
        if url:
            urls.append(url)


def _token_urls(tokens: list[Any]) -> list[str]:
    urls: list[str] = []
    for token in tokens:
        if token.type == "url":
            urls.append(token.value)
        elif token.type == "function":
            if token.lower_name == "url":
                urls.extend(t.value for t in token.arguments if t.type == "string")
            elif token.lower_name in ("image-set", "-webkit-image-set"):
                urls.extend(t.value for t in token.arguments if t.type == "string")
                urls.extend(_token_urls(token.arguments))
            else:
                urls.extend(_token_urls(token.arguments))
    return urls


def _block_urls(nodes: list[Any]) -> list[str]:
    urls: list[str] = []
    for node in nodes:
        if node.type == "declaration" and node.lower_name in _CSS_IMAGE_PROPERTIES:
            urls.extend(_token_urls(node.value))
        elif node.type in ("qualified-rule", "at-rule") and node.content is not None:
            urls.extend(_block_urls(tinycss2.parse_blocks_contents(node.content, True, True)))
    return urls


def css_urls(css: str, *, inline: bool) -> list[str]:
    """Background image URLs in a style attribute (``inline``) or a style sheet, nested rules too."""
    try:
        if inline:
            return _block_urls(tinycss2.parse_blocks_contents(css, skip_comments=True, skip_whitespace=True))
        return _block_urls(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True))
    except RecursionError:  # blocks nested thousands deep: no browser would render them either
        return []


def looks_like_media(url: str) -> bool:
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return dot > path.rfind("/") and path[dot:] in MEDIA_SUFFIXES


class _MediaFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.embedded: list[tuple[str, str]] = []
        self.links: list[str] = []
        self._anchor: list[Any] | None = None  # [href, wraps an image]
        self._style: list[str] | None = None

    def _add(self, url: str | None, found_as: str) -> None:
        if url and url.strip():
            self.embedded.append((url.strip(), found_as))

    def _close_anchor(self) -> None:
        if self._anchor is not None:
            href, wraps_image = self._anchor
            if href and (wraps_image or looks_like_media(href)):
                self.links.append(href)
            self._anchor = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values: dict[str, str] = {}
        for name, value in attrs:
            values.setdefault(name, value or "")  # the first of repeated attributes counts, as in browsers
        if values.get("style"):
            for url in css_urls(values["style"], inline=True):
                self._add(url, "css")
        if tag == "base":
            if self.base is None and values.get("href"):
                self.base = values["href"].strip()
        elif tag == "img":
            self._add(values.get("src"), "img")
            for name in _LAZY_SRC:
                self._add(values.get(name), "img")
            for name in ("srcset", *_LAZY_SRCSET):
                for url in srcset_urls(values.get(name, "")):
                    self._add(url, "srcset")
            if self._anchor is not None:
                self._anchor[1] = True
        elif tag == "source":
            self._add(values.get("src"), "source")
            for url in srcset_urls(values.get("srcset", "")):
                self._add(url, "source")
        elif tag == "video":
            self._add(values.get("src"), "video")
            self._add(values.get("poster"), "video")
        elif tag == "a":
            self._close_anchor()  # an <a> inside an open <a> closes it, as in browsers
            self._anchor = [values.get("href", "").strip(), False]
        elif tag == "style":
            self._style = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close_anchor()
        elif tag == "style" and self._style is not None:
            for url in css_urls("".join(self._style), inline=False):
                self._add(url, "css")
            self._style = None

    def handle_data(self, data: str) -> None:
        if self._style is not None:
            self._style.append(data)


def _absolute(base: str, raw: str) -> str | None:
    try:
        url = urldefrag(urljoin(base, raw)).url
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # an invalid IPv6 literal, say
        return None
    return url if scheme in _SCHEMES else None


def find_media(html: str, page_url: str) -> list[Candidate]:
    """The media a page shows, then the links worth fetching, each URL once, in page order."""
    finder = _MediaFinder()
    finder.feed(html)
    if finder._style is not None:
        finder.feed("</style>")  # a style block the page never closed runs to its end, as in browsers
    finder.close()
    finder._close_anchor()
    base = page_url
    if finder.base:
        with contextlib.suppress(ValueError):  # an invalid <base href> (a broken IPv6 literal) is ignored
            base = urljoin(page_url, finder.base)
    seen: set[str] = set()
    out: list[Candidate] = []
    for raw, found_as in [*finder.embedded, *((href, "link") for href in finder.links)]:
        url = _absolute(base, raw)
        if url is not None and url not in seen:
            seen.add(url)
            out.append(Candidate(url, found_as))
    return out


def decode_html(body: bytes, content_type: str) -> str:
    """The page's text, in the charset its Content-Type names (UTF-8 otherwise; bad bytes replaced)."""
    charset = "utf-8"
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value.strip().strip("\"'"):
            charset = value.strip().strip("\"'")
    try:
        return body.decode(charset, errors="replace")
    except (LookupError, UnicodeError):  # no such codec, or one that is no text encoding (idna, undefined)
        return body.decode("utf-8", errors="replace")
