# ruff: noqa: RUF001, RUF003
"""Keyword evasion table, spans in the original text, patterns, scale. Neutral placeholder terms only."""

from __future__ import annotations

import logging
import random
import string

import pytest

from seawall.lists.keywords import (
    KeywordMatch,
    KeywordMatcher,
    KeywordTerm,
    check_keyword,
    normalize_term,
    normalize_with_offsets,
)

TERMS = [(1, "bluebird"), (2, "lantern"), (3, "marmalade"), (4, "teapot"), (5, "blue sky")]

# (text, entry id expected to match, the exact original substring reported)
EVASIONS = [
    ("bluebird", 1, "bluebird"),
    ("BLUEBIRD", 1, "BLUEBIRD"),
    ("BlueBird", 1, "BlueBird"),
    ("ｂｌｕｅｂｉｒｄ", 1, "ｂｌｕｅｂｉｒｄ"),  # full-width (NFKC)
    ("𝐛𝐥𝐮𝐞𝐛𝐢𝐫𝐝", 1, "𝐛𝐥𝐮𝐞𝐛𝐢𝐫𝐝"),  # mathematical bold, outside the BMP
    ("blüebïrd", 1, "blüebïrd"),  # accents
    ("blue\u0301bird", 1, "blue\u0301bird"),  # a combining accent
    ("bluеbird", 1, "bluеbird"),  # Cyrillic е
    ("ВLUЕВIRD", 1, "ВLUЕВIRD"),  # Cyrillic capitals В and Е
    ("tеаpоt", 4, "tеаpоt"),  # Cyrillic е а о
    ("teapοt", 4, "teapοt"),  # Greek omicron
    ("1antern", 2, "1antern"),  # 1 read as l
    ("bluebird".replace("i", "1"), 1, "blueb1rd"),  # 1 read as i
    ("b|uebird", 1, "b|uebird"),  # | read as l
    ("bIuebird", 1, "bIuebird"),  # capital I drawn like l
    ("LANTERN", 2, "LANTERN"),
    ("l4ntern", 2, "l4ntern"),
    ("m@rmalade", 3, "m@rmalade"),
    ("marma1ade", 3, "marma1ade"),
    ("t3ap0t", 4, "t3ap0t"),
    ("7eapo7", 4, "7eapo7"),
    ("8luebird", 1, "8luebird"),
    ("te@pot", 4, "te@pot"),
    ("blue $ky", 5, "blue $ky"),
    ("bluebírd", 1, "bluebírd"),
    ("b.l.u.e.b.i.r.d", 1, "b.l.u.e.b.i.r.d"),
    ("b-l-u-e-b-i-r-d", 1, "b-l-u-e-b-i-r-d"),
    ("b_l_u_e_b_i_r_d", 1, "b_l_u_e_b_i_r_d"),
    ("b*l*u*e*b*i*r*d", 1, "b*l*u*e*b*i*r*d"),
    ("b l u e b i r d", 1, "b l u e b i r d"),
    ("l  a  n  t  e  r  n", 2, "l  a  n  t  e  r  n"),
    ("blue\u200bbird", 1, "blue\u200bbird"),  # zero-width space
    ("lan\u00adtern", 2, "lan\u00adtern"),  # soft hyphen
    ("t\u200de\u2060a\ufeffpot", 4, "t\u200de\u2060a\ufeffpot"),  # joiner, word joiner, BOM
    ("bluuuuebiiiird", 1, "bluuuuebiiiird"),
    ("lanttteeern", 2, "lanttteeern"),
    ("mmmarmalade", 3, "mmmarmalade"),
    ("B.L.U.3-B.1.R.D", 1, "B.L.U.3-B.1.R.D"),  # several evasions at once
    ("blue  sky", 5, "blue  sky"),
    ("BLUE\tSKY", 5, "BLUE\tSKY"),
    ("b1ue 5ky", 5, "b1ue 5ky"),
    ("I saw a bluebird.", 1, "bluebird"),
    ("(lantern)", 2, "lantern"),
    ("teapot!", 4, "teapot"),
    # A one-word term written as two words.
    ("blue bird", 1, "blue bird"),
    ("BLUE  BIRD", 1, "BLUE  BIRD"),
    ("a blue\nbird sang", 1, "blue\nbird"),
    ("tea pot", 4, "tea pot"),
    ("lan tern", 2, "lan tern"),
    ("marma lade", 3, "marma lade"),
    ("8lue b1rd", 1, "8lue b1rd"),  # with other evasions at once
]


@pytest.fixture(scope="module")
def matcher() -> KeywordMatcher:
    return KeywordMatcher(TERMS)


@pytest.mark.parametrize(("text", "entry_id", "found"), EVASIONS)
def test_evasion_table(matcher: KeywordMatcher, text: str, entry_id: int, found: str) -> None:
    matches = matcher.match(text)
    assert [m.entry_id for m in matches] == [entry_id]
    assert text[matches[0].start : matches[0].end] == found


NOT_MATCHING = [
    "the blue sea and a bird",  # the parts apart in a sentence
    "blue, bird",  # punctuation between the words: two words
    "a blue birdhouse",  # the second part runs on into another word
    "b luebird",  # a single letter split off: a typo more often than a hidden term
    "blue birb",
    "bluebirds",  # whole words by default
    "thebluebird",
    "lanterns",
    "marmalad",
    "teapo t",
    "blue skyline",
    "b l u e b i r",  # a different spelling
    "bluebirb",
    "",
    "   ",
]


@pytest.mark.parametrize("text", NOT_MATCHING)
def test_near_misses_do_not_match(matcher: KeywordMatcher, text: str) -> None:
    assert matcher.match(text) == []


def test_a_split_term_matches_only_as_two_adjacent_whole_words() -> None:
    matcher = KeywordMatcher([(1, "bookkeeper"), (2, "sub:bluebird")])
    # A letter doubled across the gap is still the term ("book keeper" and "bookkeeper" alike).
    for text in ("book keeper", "BOOK KEEPER", "bookkeeper", "bo okkeeper"):
        assert [m.entry_id for m in matcher.match(text)] == [1], text
    assert matcher.match("a book, a keeper") == []
    # A substring term is found inside words, split or not.
    assert [(m.entry_id, m.start, m.end) for m in matcher.match("xblue birdy")] == [(2, 1, 10)]


def test_check_keyword_uses_the_matchers_own_rules() -> None:
    check_keyword("bluebird")
    check_keyword("re:blue\\s*bird")
    with pytest.raises(ValueError, match="invalid regular expression: unterminated character set at position 3"):
        check_keyword("re:[[]")  # Python's re accepts this; the regex engine that runs it does not
    with pytest.raises(ValueError, match="has no letters or digits to match"):
        check_keyword("sub:...")


def test_a_lenient_matcher_leaves_bad_entries_out_and_matches_the_rest() -> None:
    matcher = KeywordMatcher([(1, "re:[[]"), (2, "teapot"), (3, "!!!"), (4, "re:lan(tern")], strict=False)
    assert len(matcher) == 1
    assert [entry for entry, _ in matcher.skipped] == [1, 4, 3]
    assert [m.entry_id for m in matcher.match("a teapot")] == [2]


def test_spans_in_original_text_sorted_by_start() -> None:
    text = "Ａ ＬＡＮＴＥＲＮ, a b.l.u.e.b.i.r.d and ｍａｒｍａｌａｄｅ; teapot…"
    got = KeywordMatcher(TERMS).match(text)
    assert got == [
        KeywordMatch(2, "lantern", 2, 9),
        KeywordMatch(1, "bluebird", 13, 28),
        KeywordMatch(3, "marmalade", 33, 42),
        KeywordMatch(4, "teapot", 44, 50),
    ]
    assert [text[m.start : m.end] for m in got] == ["ＬＡＮＴＥＲＮ", "b.l.u.e.b.i.r.d", "ｍａｒｍａｌａｄｅ", "teapot"]


def test_normalize_with_offsets_maps_back_to_the_original() -> None:
    assert normalize_with_offsets("") == ("", [])
    assert normalize_with_offsets("Wooord") == ("word", [0, 1, 4, 5])
    assert normalize_with_offsets("ﬁ b.l.u.e") == ("fi blue", [0, 0, 1, 2, 4, 6, 8])
    assert normalize_with_offsets("t\u200bea  p0t!") == ("tea pot!", [0, 2, 3, 4, 6, 7, 8, 9])
    assert normalize_with_offsets("$ale 5ALE $") == ("sale sale $", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert normalize_with_offsets("a cat, x y z") == ("a cat, xyz", [0, 1, 2, 3, 4, 5, 6, 7, 9, 11])
    assert normalize_with_offsets("Straße") == ("strase", [0, 1, 2, 3, 4, 5])


def test_term_normalisation() -> None:
    assert normalize_term("  Blue-Bird ") == "bluebird"
    assert normalize_term("LIGHT") == "l1ght"  # a capital I is ambiguous (i or l)
    assert normalize_term("m4rmalade") == "marmalade"
    with pytest.raises(ValueError, match="no letters"):
        normalize_term(" .-! ")


def test_whole_word_is_a_per_entry_flag() -> None:
    matcher = KeywordMatcher([(1, "bird"), KeywordTerm(2, "lamp", whole_word=False), (3, "sub:tea")])
    got = matcher.match("bluebird lampshade bird steatite")
    assert [(m.entry_id, m.term, m.start, m.end) for m in got] == [
        (2, "lamp", 9, 13),
        (1, "bird", 19, 23),
        (3, "sub:tea", 25, 28),
    ]


def test_same_term_in_several_entries_and_overlaps() -> None:
    matcher = KeywordMatcher([(1, "sub:blue"), (2, "sub:bluebird"), (3, "BLUEBIRD"), (4, "sub:bird")])
    assert [(m.entry_id, m.start, m.end) for m in matcher.match("xbluebird")] == [(1, 1, 5), (2, 1, 9), (4, 5, 9)]
    assert [(m.entry_id, m.start, m.end) for m in matcher.match("bluebird")] == [
        (1, 0, 4),
        (2, 0, 8),
        (3, 0, 8),
        (4, 4, 8),
    ]


def test_regex_patterns_run_on_normalised_text() -> None:
    matcher = KeywordMatcher([(7, r"re:\bblue\s*b[i1]rd\b"), (8, r"re:lantern\d+"), (9, "re:TEA(pot|cup)")])
    text = "B L U E B I R D, Blue Bird, lantern42, LANTERN, teacup"
    got = [(m.entry_id, text[m.start : m.end]) for m in matcher.match(text)]
    # "lantern42" normalises to "1anterna2": patterns see the normalised alphabet (documented).
    assert got == [(7, "B L U E B I R D"), (7, "Blue Bird"), (9, "teacup")]


def test_bad_patterns_and_terms_name_the_entry() -> None:
    with pytest.raises(ValueError, match="entry 5: invalid regular expression"):
        KeywordMatcher([(5, "re:(unclosed")])
    with pytest.raises(ValueError, match="entry 6: empty regular expression"):
        KeywordMatcher([(6, "re:")])
    with pytest.raises(ValueError, match=r"entry 9: keyword '\.\.\.' has no letters"):
        KeywordMatcher([(i, f"term{c}") for i, c in enumerate("abcdefghi")] + [(9, "...")])


def test_catastrophic_pattern_is_cut_off_not_hung(caplog: pytest.LogCaptureFixture) -> None:
    matcher = KeywordMatcher([(1, r"re:(\w|\w\w)+$"), (2, "teapot")])
    text = "a b teapot " + "ab" * 40 + "!"  # the regex backtracks exponentially here
    with caplog.at_level(logging.WARNING, logger="seawall.lists.keywords"):
        got = matcher.match(text)
    assert [(m.entry_id, m.start, m.end) for m in got] == [(2, 4, 10)]
    assert "keyword pattern of entry 1 timed out" in caplog.text


def test_empty_inputs() -> None:
    assert KeywordMatcher([]).match("bluebird") == []
    assert len(KeywordMatcher([])) == 0
    assert KeywordMatcher(TERMS).match("") == []


def test_one_megabyte_of_text() -> None:
    rng = random.Random(5)
    filler = "".join(rng.choice(string.ascii_lowercase + "  .,") for _ in range(1_000_000))
    text = filler[:400_000] + " 1ANTERN " + filler[400_000:] + " B.L.U.E.B.I.R.D"
    got = KeywordMatcher(TERMS).match(text)
    spans = [(m.entry_id, text[m.start : m.end]) for m in got if m.entry_id in (1, 2)]
    assert (2, "1ANTERN") in spans
    assert spans[-1] == (1, "B.L.U.E.B.I.R.D")
    assert got[-1].end == len(text)


def test_ten_thousand_terms() -> None:
    rng = random.Random(7)
    words = sorted({"".join(rng.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(8)) for _ in range(10_000)})
    matcher = KeywordMatcher(list(enumerate(words)))
    assert len(matcher) == len(words)
    chosen = [17, 4242, len(words) - 1]
    text = " ".join(words[i].upper() for i in chosen)
    got = matcher.match(text)
    assert [m.entry_id for m in got] == chosen
    assert [(m.start, m.end) for m in got] == [(0, 8), (9, 17), (18, 26)]


def test_ambiguous_one_readings_of_a_long_term() -> None:
    # Ten i/l places: more than MAX_FULL_VARIANT_LETTERS, so only the documented spellings.
    matcher = KeywordMatcher([(1, "lilililili"), (2, "BILL")])
    assert [m.entry_id for m in matcher.match("LILILILILI")] == [1]  # all capitals
    assert [m.entry_id for m in matcher.match("lililil1li")] == [1]  # one change
    assert matcher.match("1111111111") == []  # collapses to "1": would match any lone "1"
    assert matcher.match("I") == []
    assert matcher.match("1i1i1i1i1i") == []  # every l but no i changed: not indexed
    # A term written in capitals reads its I as i or l, like the text does.
    assert [m.entry_id for m in matcher.match("bill b1ll bi11 BILL")] == [2, 2, 2, 2]
    assert matcher.match("BI B1 b111") == []
