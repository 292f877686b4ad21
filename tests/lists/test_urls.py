# ruff: noqa: RUF001
"""URL normalisation table, match levels and the index's bookkeeping. Reserved names only."""

from __future__ import annotations

import threading

import pytest

from seawall.lists.urls import UrlIndex, UrlMatch, normalize_entry, normalize_url

NORMALIZATION = [
    # scheme and host case
    ("HTTP://EXAMPLE.COM/", "http://example.com/"),
    ("HtTpS://Www.Example.Org/Path", "https://www.example.org/Path"),  # path case is kept
    ("https://www.example.com/", "https://www.example.com/"),  # www. is a different host: kept
    # scheme-less and protocol-relative input
    ("example.com", "http://example.com/"),
    ("example.com/gallery/1", "http://example.com/gallery/1"),
    ("example.com:8080/x", "http://example.com:8080/x"),
    ("//example.net/a", "http://example.net/a"),
    ("  http://example.com/a  ", "http://example.com/a"),
    # IDNA and the trailing dot
    ("bücher.example/", "http://xn--bcher-kva.example/"),
    ("BÜCHER.example/", "http://xn--bcher-kva.example/"),
    ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
    ("bücher。example/", "http://xn--bcher-kva.example/"),  # ideographic full stop
    ("http://ｅｘａｍｐｌｅ.com/", "http://example.com/"),  # full-width letters
    ("http://example.com./a", "http://example.com/a"),
    ("ex%61mple.com/", "http://example.com/"),  # percent-encoded host
    ("http://www.test_b.example/", "http://www.test_b.example/"),  # underscores occur in real names
    # IPv4 and IPv6 hosts
    ("http://127.0.0.1/", "http://127.0.0.1/"),
    ("2130706433/", "http://127.0.0.1/"),
    ("0x7f.0.0.1/", "http://127.0.0.1/"),
    ("0177.0.0.1/", "http://127.0.0.1/"),
    ("http://127.1/", "http://127.0.0.1/"),
    ("http://[::1]/", "http://[::1]/"),
    ("http://[0:0:0:0:0:0:0:1]:80/", "http://[::1]/"),
    ("http://[2001:DB8::A]:8443/x", "http://[2001:db8::a]:8443/x"),
    # ports
    ("http://example.com:80/", "http://example.com/"),
    ("https://example.com:443/", "https://example.com/"),
    ("http://example.com:443/", "http://example.com:443/"),
    ("https://example.com:80/", "https://example.com:80/"),
    ("http://example.com:/a", "http://example.com/a"),
    # userinfo dropped
    ("http://user.test:secret@example.com/a", "http://example.com/a"),
    ("http://a.test@b@example.com/", "http://example.com/"),
    # percent-encoding
    ("http://example.com/%7Euser", "http://example.com/~user"),
    ("http://example.com/%41%62%63", "http://example.com/Abc"),
    ("http://example.com/a%2fb", "http://example.com/a%2Fb"),  # an encoded "/" stays encoded
    ("http://example.com/a%2Fb%3f", "http://example.com/a%2Fb%3F"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/café", "http://example.com/caf%C3%A9"),
    ("http://example.com/caf%c3%a9", "http://example.com/caf%C3%A9"),
    ("http://example.com/100%", "http://example.com/100%25"),
    ("http://example.com/%zz", "http://example.com/%25zz"),
    ('http://example.com/<a>"', "http://example.com/%3Ca%3E%22"),
    # dot segments, slashes, empty path
    ("http://example.com", "http://example.com/"),
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/../../a", "http://example.com/a"),
    ("http://example.com/a/%2e%2E/b", "http://example.com/b"),
    ("http://example.com/a/b/..", "http://example.com/a"),
    ("http://example.com//a///b", "http://example.com/a/b"),
    ("http://example.com\\a\\b", "http://example.com/a/b"),
    ("http://example.com/a/", "http://example.com/a"),
    ("http://example.com/a/?x=1", "http://example.com/a?x=1"),
    # fragment dropped
    ("http://example.com/a#top", "http://example.com/a"),
    ("http://example.com/a?x=1#y?z", "http://example.com/a?x=1"),
    # query: tracking parameters removed, parameters sorted, encodings normalised
    ("http://example.com/?utm_source=a&utm_medium=b", "http://example.com/"),
    ("http://example.com/p?id=3&UTM_Campaign=x&fbclid=1&gclid=2", "http://example.com/p?id=3"),
    ("http://example.com/p?mc_eid=1&mc_cid=2&msclkid=3&_ga=4&id=5", "http://example.com/p?id=5"),
    ("http://example.com/p?%75tm_source=x&id=1", "http://example.com/p?id=1"),
    ("http://example.com/p?b=2&a=1&c=3", "http://example.com/p?a=1&b=2&c=3"),
    ("http://example.com/p?a=2&b=1&a=1", "http://example.com/p?a=2&a=1&b=1"),  # repeated keys keep order
    ("http://example.com/p?", "http://example.com/p"),
    ("http://example.com/p?&&a=1&", "http://example.com/p?a=1"),
    ("http://example.com/p?q=a%20b&r=%7e&s=x+y", "http://example.com/p?q=a%20b&r=~&s=x+y"),
    ("http://example.com/p?k=a%26b%3Dc", "http://example.com/p?k=a%26b%3Dc"),
    ("http://example.com/p?flag", "http://example.com/p?flag"),
    # tab and newline inside a URL are ignored, as browsers do
    ("exam\tple.com/a\nb", "http://example.com/ab"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZATION)
def test_normalization_table(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


def test_normalization_is_idempotent() -> None:
    for _raw, expected in NORMALIZATION:
        assert normalize_url(expected) == expected


BAD = [
    ("", "empty"),
    ("   ", "empty"),
    ("ftp://example.com/", "unsupported URL scheme 'ftp'"),
    ("mailto:someone@example.com", "unsupported URL"),
    ("javascript:alert(1)", "unsupported URL"),
    ("http://", "no host"),
    ("http:///path", "no host"),
    ("http://a..example.com/", "empty label"),
    ("http://example.com:99999/", "invalid port"),
    ("http://example.com:8o/", "invalid port"),
    ("http://[::1/", "unterminated IPv6"),
    ("http://[::g]/", "invalid IPv6"),
    ("http://[fe80::1%25eth0]/", "zone"),
    ("1.2.3.256/", "invalid IPv4"),
    ("example.123/", "invalid IPv4"),
    ("exa mple.com/", "invalid host label"),
    ("http://-bad.example/", "invalid host label"),
    ("http://example.com/\x00", "control characters"),
    ("http://" + "a" * 64 + ".example/", "invalid host label"),
    ("http://example.com/" + "a" * 9000, "longer than"),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_bad_input_is_a_clear_value_error(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        normalize_url(raw)


def _index() -> UrlIndex:
    return UrlIndex(
        [
            (1, "http://example.com/gallery/item?id=7", "exact"),
            (2, "example.com/gallery/", "prefix"),
            (3, "example.org", "domain"),
            (4, "*.shop.example.net", "domain"),
            (5, "https://example.com/", "prefix"),
            (6, "http://127.0.0.1/x", "prefix"),
        ]
    )


LEVEL_TABLE = [
    ("http://example.com/gallery/item?id=7", [(1, "exact"), (2, "prefix"), (5, "prefix")]),
    ("HTTPS://EXAMPLE.COM/gallery/item?utm_source=x&id=7#f", [(1, "exact"), (2, "prefix"), (5, "prefix")]),
    ("http://example.com/gallery/item?id=8", [(2, "prefix"), (5, "prefix")]),
    ("http://example.com/gallery", [(2, "prefix"), (5, "prefix")]),
    ("http://example.com/gallery/x/y/z", [(2, "prefix"), (5, "prefix")]),
    ("http://example.com/gallery2", [(5, "prefix")]),
    ("http://example.com/a/../gallery/x", [(2, "prefix"), (5, "prefix")]),
    ("http://example.com:8080/gallery/x", []),  # another port is another service
    ("http://www.example.com/gallery/x", []),  # www. is another host
    ("http://example.org/anything?q=1", [(3, "domain")]),
    ("http://a.b.example.org/", [(3, "domain")]),
    ("notexample.org/", []),
    ("http://example.org.example.com/", []),  # a prefix entry is for its own host only
    ("http://shop.example.net/", [(4, "domain")]),
    ("http://x.shop.example.net/", [(4, "domain")]),
    ("http://example.net/", []),
    ("2130706433/x/y", [(6, "prefix")]),
    ("http://127.0.0.1/xy", []),
]


@pytest.mark.parametrize(("url", "expected"), LEVEL_TABLE)
def test_level_matching(url: str, expected: list[tuple[int, str]]) -> None:
    assert [(m.entry_id, m.level) for m in _index().match(url)] == expected


def test_match_reports_normalised_values_most_specific_first() -> None:
    index = UrlIndex(
        [
            (1, "example.com", "domain"),
            (2, "a.example.com", "domain"),
            (3, "http://a.example.com/x/", "prefix"),
            (4, "http://a.example.com/x/y", "prefix"),
            (5, "http://a.example.com/x/y", "exact"),
        ]
    )
    assert index.match("a.EXAMPLE.com/x/y/") == [
        UrlMatch(5, "http://a.example.com/x/y", "exact"),
        UrlMatch(4, "http://a.example.com/x/y", "prefix"),
        UrlMatch(3, "http://a.example.com/x", "prefix"),
        UrlMatch(2, "a.example.com", "domain"),
        UrlMatch(1, "example.com", "domain"),
    ]


def test_add_remove_replace_and_len() -> None:
    index = UrlIndex()
    assert index.add(1, "Example.COM/a/", "exact") == "http://example.com/a"
    assert index.add(2, "http://example.com/a", "exact") == "http://example.com/a"
    assert len(index) == 2
    assert [m.entry_id for m in index.match("example.com/a")] == [1, 2]
    assert index.remove(1) is True
    assert index.remove(1) is False
    assert [m.entry_id for m in index.match("example.com/a")] == [2]
    index.add(2, "example.org", "domain")  # same id again: replaces the old value
    assert len(index) == 1
    assert index.match("example.com/a") == []
    assert index.match("http://www.example.org/") == [UrlMatch(2, "example.org", "domain")]
    assert 2 in index and 1 not in index


def test_entry_validation() -> None:
    assert normalize_entry("*.Example.COM", "domain") == "example.com"
    assert normalize_entry("https://example.com/a/?b=1&a=2", "exact") == "https://example.com/a?a=2&b=1"
    with pytest.raises(ValueError, match="host only"):
        normalize_entry("example.com/path", "domain")
    with pytest.raises(ValueError, match="cannot have a query"):
        normalize_entry("example.com/p?id=1", "prefix")
    with pytest.raises(ValueError, match="unknown URL match level"):
        UrlIndex().add(1, "example.com", "regex")
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        UrlIndex().match("ftp://example.com/")


def test_readers_see_consistent_results_while_a_writer_changes_the_index() -> None:
    index = UrlIndex([(0, "example.com/stable/", "prefix")])
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            found = [m.entry_id for m in index.match("http://example.com/stable/page")]
            if 0 not in found:
                errors.append(f"lost the stable entry: {found}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(1, 3000):
        index.add(i, f"http://example.com/stable/page{i % 7}", "exact")
        if i % 3 == 0:
            index.remove(i - 1)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 2001
