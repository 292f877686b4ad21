"""Keyword-list matching that survives the usual evasions, with spans in the original text.

Text and terms go through the same normalisation (rules and their reasons in
``docs/url-and-keyword-lists.md``): compatibility forms and accents, homoglyphs from other scripts,
case, digits and symbols used as letters, separators between letters, letter-by-letter spacing and
repeated letters. Plain terms are found all at once by an Aho-Corasick automaton; ``re:`` patterns
run on the normalised text with a time limit. The normalisation is vectorised with numpy so a
megabyte of text costs tens of milliseconds, not a Python loop per character.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import ahocorasick
import numpy as np
import numpy.typing as npt
import regex
from confusable_homoglyphs import confusables as _confusables

__all__ = [
    "AMBIGUOUS",
    "KeywordMatch",
    "KeywordMatcher",
    "KeywordTerm",
    "check_keyword",
    "normalize_term",
    "normalize_with_offsets",
    "parse_keyword",
]

log = logging.getLogger(__name__)

# "1", "|", a capital "I" and their look-alikes read as either "i" or "l"; the normalised text
# keeps the ambiguity as this one character and terms are indexed under both readings.
AMBIGUOUS = "1"
REGEX_PREFIX = "re:"
SUBSTRING_PREFIX = "sub:"
MAX_PATTERN_LENGTH = 1000
REGEX_TIMEOUT_SECONDS = 0.25
# A term with more i/l than this is indexed under fewer spellings (see _ambiguous_variants).
MAX_FULL_VARIANT_LETTERS = 5

# Digits read as letters unconditionally (also in terms, so "area51" still matches itself).
_DIGIT_LETTERS = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"}
# Symbols read as letters only in front of a letter ("bl!nd", "$ale"); at a word's end they stay
# punctuation, so "bluebird!" still ends a word.
_SYMBOL_LETTERS = {"@": "a", "$": "s", "!": "i", "|": AMBIGUOUS, "€": "e", "£": "l"}

_Int = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]

# Character classes of normalised characters.
_WORD, _SEP, _SPACE, _SYMBOL, _OTHER = 1, 2, 3, 4, 5


def _build_homoglyphs() -> dict[str, str]:
    """Non-ASCII look-alikes of ASCII letters and digits, from Unicode's confusables data."""
    out: dict[str, str] = {}
    data = _confusables.confusables_data
    # Lower-case first so a glyph that resembles both "o" and "O" reads as "o".
    for target in itertools.chain("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"):
        for item in data.get(target, ()):
            glyph = item["c"]
            if len(glyph) == 1 and not glyph.isascii() and glyph not in out:
                out[glyph] = target
    return out


_HOMOGLYPHS = _build_homoglyphs()


@lru_cache(maxsize=65536)
def _map_char(ch: str) -> str:
    """Normalise one character on its own: the result may be empty or several characters."""
    cat = unicodedata.category(ch)
    if cat == "Cf" or cat.startswith("M"):
        return ""  # zero-width joiners, soft hyphens, bidi marks, stray combining marks
    if cat.startswith("Z") or cat == "Cc":
        return " "
    out: list[str] = []
    # NFKD folds compatibility forms (full-width, ligatures, maths letters) and splits accents off.
    for part in unicodedata.normalize("NFKD", ch):
        if unicodedata.category(part).startswith("M"):
            continue
        if part == "I":
            out.append(AMBIGUOUS)  # a capital I is drawn like a lower-case l
            continue
        if not part.isascii():
            part = _HOMOGLYPHS.get(part, part)
            if part in ("I", "l", "1"):
                out.append(AMBIGUOUS)  # look-alikes of I/l (Cyrillic palochka, Greek capital iota …) are ambiguous too
                continue
        for folded in part.casefold():
            out.append(_DIGIT_LETTERS.get(folded, folded))
    return "".join(out)


@lru_cache(maxsize=65536)
def _char_class(ch: str) -> int:
    if ch in _SYMBOL_LETTERS:
        return _SYMBOL
    if ch.isalnum():
        return _WORD
    if ch == " ":
        return _SPACE
    cat = unicodedata.category(ch)
    if cat[0] in "PS" and ch not in "()[]{}<>«»“”":
        return _SEP  # punctuation between two letters is a separator ("w.o.r.d", "w-o-r-d")
    return _OTHER


_MAX_CP = 0x110000


class _Tables:
    """Per-code-point caches as flat arrays so a whole text is mapped with one gather."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.length = np.full(_MAX_CP, 255, dtype=np.uint8)  # 255: not computed yet
        self.first = np.zeros(_MAX_CP, dtype=np.uint32)
        self.multi: dict[int, npt.NDArray[np.uint32]] = {}
        self.cls = np.zeros(_MAX_CP, dtype=np.uint8)  # 0: not computed yet
        self.symbol_letter = np.zeros(_MAX_CP, dtype=np.uint32)
        for sym, letter in _SYMBOL_LETTERS.items():
            self.symbol_letter[ord(sym)] = ord(letter)

    def fill(self, cps: npt.NDArray[np.uint32]) -> None:
        missing = np.unique(cps[self.length[cps] == 255])
        if missing.size == 0:
            return
        with self.lock:
            for cp in missing.tolist():
                mapped = _map_char(chr(cp))
                if len(mapped) > 1:
                    self.multi[cp] = np.array([ord(c) for c in mapped], dtype=np.uint32)
                self.first[cp] = ord(mapped[0]) if mapped else 0
                for c in mapped:
                    if self.cls[ord(c)] == 0:
                        self.cls[ord(c)] = _char_class(c)
                self.length[cp] = len(mapped)


_TABLES = _Tables()


@dataclass(frozen=True, slots=True)
class _Normalized:
    text: str
    starts: _Int  # original index of each normalised character
    ends: _Int  # original end (exclusive) of the run each normalised character stands for
    word: _Bool  # normalised character is a letter/digit


def _forward_fill_index(mask: _Bool) -> _Int:
    """For each position, the last index <= it where ``mask`` holds (-1 if none)."""
    idx = np.where(mask, np.arange(mask.size), -1)
    return np.maximum.accumulate(idx) if idx.size else idx


def _backward_fill_index(mask: _Bool) -> _Int:
    """For each position, the first index >= it where ``mask`` holds (len if none)."""
    n = mask.size
    idx = np.where(mask, np.arange(n), n)
    return np.minimum.accumulate(idx[::-1])[::-1] if n else idx


def _normalize(text: str) -> _Normalized:
    empty = np.zeros(0, dtype=np.int64)
    if not text:
        return _Normalized("", empty, empty, np.zeros(0, dtype=bool))
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    tables = _TABLES
    tables.fill(cps)

    # 1. Map every character (0, 1 or several output characters each).
    lengths = tables.length[cps].astype(np.int64)
    if np.all(lengths == 1):
        out = tables.first[cps]
        starts = np.arange(cps.size, dtype=np.int64)
    else:
        starts = np.repeat(np.arange(cps.size, dtype=np.int64), lengths)
        base = np.cumsum(lengths) - lengths
        out = np.zeros(starts.size, dtype=np.uint32)
        single = lengths == 1
        out[base[single]] = tables.first[cps[single]]
        for pos in np.flatnonzero(lengths > 1).tolist():
            chars = tables.multi[int(cps[pos])]
            out[base[pos] : base[pos] + chars.size] = chars
    ends = starts + 1
    cls = tables.cls[out]

    # 2. Symbols in front of a letter are letters ("$ale", "bl!nd"); elsewhere punctuation.
    sym = cls == _SYMBOL
    if sym.any():
        nxt = _backward_fill_index(~sym)
        word_ext = np.append(cls == _WORD, False)
        as_letter = sym & word_ext[nxt]
        out = np.where(as_letter, tables.symbol_letter[out], out)
        cls = np.where(as_letter, _WORD, np.where(sym, _SEP, cls)).astype(np.uint8)

    # 3. Separators between two letters go: "w.o.r.d", "w-o-r-d", "w*o*r*d".
    sep = cls == _SEP
    if sep.any():
        word_ext = np.append(cls == _WORD, False)
        prev = _forward_fill_index(~sep)
        nxt = _backward_fill_index(~sep)
        drop = sep & (prev >= 0) & word_ext[prev] & word_ext[nxt]
        keep = ~drop
        out, starts, ends, cls = out[keep], starts[keep], ends[keep], cls[keep]

    # 4. Runs of whitespace become one space; a space between single letters goes when there
    #    are at least three in a row ("b l u e", not "a cat").
    space = cls == _SPACE
    if space.any():
        keep = ~(space & np.concatenate(([False], space[:-1])))
        out, starts, ends, cls = out[keep], starts[keep], ends[keep], cls[keep]
        word = cls == _WORD
        pad = np.concatenate(([False, False], word, [False, False]))  # pad[i + 2] == word[i]
        single = pad[2:-2] & ~pad[1:-3] & ~pad[3:-1]  # a one-character word
        single_pad = np.concatenate(([False], single, [False]))
        space = cls == _SPACE
        joinable = space & single_pad[:-2] & single_pad[2:]
        jp = np.concatenate(([False, False], joinable, [False, False]))
        in_run = joinable & (jp[:-4] | jp[4:])  # another joinable space two places away
        if in_run.any():
            keep = ~in_run
            out, starts, ends, cls = out[keep], starts[keep], ends[keep], cls[keep]

    # 5. Repeated characters collapse to one ("wooord" → "word"); the kept one spans the run.
    if out.size > 1:
        keep = np.concatenate(([True], out[1:] != out[:-1]))
        if not keep.all():
            run_starts = np.flatnonzero(keep)
            ends = np.maximum.reduceat(ends, run_starts)
            out, starts, cls = out[keep], starts[keep], cls[keep]
    normalized = out.astype("<u4").tobytes().decode("utf-32-le")
    return _Normalized(normalized, starts, ends, cls == _WORD)


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index in ``text`` it came from."""
    norm = _normalize(text)
    return norm.text, norm.starts.tolist()


def normalize_term(term: str) -> str:
    """A term's normalised form (what it is matched as); ValueError if nothing is left."""
    norm = _normalize(term).text.strip()
    if not any(ch.isalnum() for ch in norm):
        raise ValueError(f"keyword {term!r} has no letters or digits to match")
    return norm


_BOUNDARIES = ("\ue000", "\ue001")  # private-use: no class that joins or collapses across them


def _normalize_terms(terms: Sequence[str]) -> list[str]:
    """normalize_term for many terms in one vectorised pass (one pass costs ~0.1 ms)."""
    if len(terms) < 8 or any(b in t for t in terms for b in _BOUNDARIES):
        return [normalize_term(t) for t in terms]
    # Alternating boundaries so that even an empty result cannot collapse two of them into one.
    joined = "".join(t + _BOUNDARIES[i % 2] for i, t in enumerate(terms))
    parts = re.split("[\ue000\ue001]", _normalize(joined).text)[: len(terms)]
    out: list[str] = []
    for term, part in zip(terms, parts, strict=True):
        norm = part.strip()
        if not any(ch.isalnum() for ch in norm):
            raise ValueError(f"keyword {term!r} has no letters or digits to match")
        out.append(norm)
    return out


_READINGS = {"i": ("i", AMBIGUOUS), "l": ("l", AMBIGUOUS), AMBIGUOUS: (AMBIGUOUS, "i", "l")}


def _ambiguous_variants(norm: str) -> set[str]:
    """Spellings of a normalised term that the ambiguous "1" can stand in for.

    In text, "1", "|" and a capital I became "1", so an i or l of the term may appear as "1"; a
    "1" in the term itself (written "1" or "I") may appear as i, l or "1". Up to
    MAX_FULL_VARIANT_LETTERS such places every combination is indexed; beyond that, each single
    change plus the all-at-once ones (an all-capitals text turns every I into "1"). Spellings in
    which two "1" would meet are left out: "b11" collapses to "b1" and would match "BI".
    """
    positions = [i for i, ch in enumerate(norm) if ch in _READINGS]

    def spell(choice: dict[int, str]) -> str:
        chars = list(norm)
        for p, ch in choice.items():
            chars[p] = ch
        spelled = "".join(chars)
        # A spelling that collapses ("bil" → "b11" → "b1") would match far too much: dropped.
        return spelled if _collapse(spelled) == spelled else norm

    if len(positions) <= MAX_FULL_VARIANT_LETTERS:
        return {
            spell(dict(zip(positions, combo, strict=True)))
            for combo in itertools.product(*(_READINGS[norm[p]] for p in positions))
        }
    variants = {norm}
    for p in positions:
        variants.update(spell({p: alt}) for alt in _READINGS[norm[p]])
    ones = [p for p in positions if norm[p] == AMBIGUOUS]
    variants.add(spell({p: AMBIGUOUS for p in positions if norm[p] == "i"}))
    variants.add(spell({p: AMBIGUOUS for p in positions}))
    variants.add(spell({p: "i" for p in ones}))
    variants.add(spell({p: "l" for p in ones}))
    return variants


def _collapse(text: str) -> str:
    return "".join(ch for ch, _ in itertools.groupby(text))


MIN_SPLIT_PART = 2


def _split_variants(norm: str) -> set[str]:
    """A one-word term written as two words: "bluebird" as "blue bird", with whole-word bounds
    around both parts (so "blue" and "bird" elsewhere in a sentence never match).

    Each part keeps at least MIN_SPLIT_PART letters: a split off single letter ("teapo t") is more
    often a typo than a hidden term. A letter doubled across the gap ("book keeper" normalises to
    "bok keper", while the term is "bokeper") is a spelling of its own."""
    if " " in norm:
        return set()
    out: set[str] = set()
    for i in range(MIN_SPLIT_PART, len(norm) - MIN_SPLIT_PART + 1):
        left, right = norm[:i], norm[i:]
        out.add(f"{left} {right}")
        out.add(f"{left} {left[-1]}{right}")
    return out


class KeywordTerm(NamedTuple):
    """One list entry: a plain term (whole words by default) or a ``re:`` pattern."""

    entry_id: int
    value: str
    whole_word: bool = True


class KeywordMatch(NamedTuple):
    entry_id: int
    term: str  # the entry's value as given
    start: int  # span in the original text, end exclusive
    end: int


def parse_keyword(entry_id: int, value: str, whole_word: bool | None = None) -> KeywordTerm:
    """Read the value syntax: ``re:PATTERN`` is a regex, ``sub:TERM`` matches inside words too."""
    if value.startswith(SUBSTRING_PREFIX):
        return KeywordTerm(entry_id, value, False)  # the value's own syntax wins over a flag
    return KeywordTerm(entry_id, value, True if whole_word is None else whole_word)


def check_keyword(value: str) -> None:
    """ValueError unless ``value`` is an entry the matcher can run: validated by the same code
    (and the same regex engine) that will match it."""
    if value.startswith(REGEX_PREFIX):
        _compile_pattern(0, value[len(REGEX_PREFIX) :], named=False)
    else:
        normalize_term(value[len(SUBSTRING_PREFIX) :] if value.startswith(SUBSTRING_PREFIX) else value)


class KeywordMatcher:
    """Matches many terms and patterns at once. Immutable once built, so safe to share between
    threads; rebuild (cheap: ~1 s for 10k terms) to change the set.

    With ``strict`` (the default) an entry that cannot be matched (a pattern that does not compile,
    a term with no letters) raises ValueError naming it; without, it is left out and listed in
    ``skipped``, so one bad entry never stops the others from matching (the matcher serving lists)."""

    def __init__(
        self, entries: Iterable[tuple[int, str] | tuple[int, str, bool] | KeywordTerm], *, strict: bool = True
    ) -> None:
        self._automaton = ahocorasick.Automaton()
        self._terms: list[KeywordTerm] = []
        self._patterns: list[tuple[KeywordTerm, regex.Pattern[str]]] = []
        self.skipped: list[tuple[int, str]] = []  # (entry id, why)
        found: dict[str, list[tuple[int, int]]] = {}  # variant -> [(term index, normalised length)]
        texts: list[str] = []
        for raw in entries:
            term = parse_keyword(raw[0], raw[1], raw[2] if len(raw) == 3 else None)
            value = term.value
            if value.startswith(REGEX_PREFIX):
                try:
                    self._patterns.append((term, _compile_pattern(term.entry_id, value[len(REGEX_PREFIX) :])))
                except ValueError as exc:
                    self._skip(term.entry_id, exc, strict)
                continue
            self._terms.append(term)
            texts.append(value[len(SUBSTRING_PREFIX) :] if value.startswith(SUBSTRING_PREFIX) else value)
        try:
            normalized: list[str | None] = list(_normalize_terms(texts))
        except ValueError:
            normalized = []
            for term, text in zip(self._terms, texts, strict=True):  # again, to name the entry
                try:
                    normalized.append(normalize_term(text))
                except ValueError as exc:
                    self._skip(term.entry_id, ValueError(f"entry {term.entry_id}: {exc}"), strict)
                    normalized.append(None)
        self._usable = sum(1 for norm in normalized if norm is not None) + len(self._patterns)
        for index, norm in enumerate(normalized):
            if norm is None:
                continue
            for variant in _ambiguous_variants(norm):
                found.setdefault(variant, []).append((index, len(variant)))
                for split in _split_variants(variant):
                    found.setdefault(split, []).append((index, len(split)))
        for variant, payload in found.items():
            self._automaton.add_word(variant, tuple(payload))
        if found:
            self._automaton.make_automaton()
        if self.skipped:
            log.warning("keyword entries left out of matching: %s", "; ".join(why for _, why in self.skipped))

    def _skip(self, entry_id: int, exc: ValueError, strict: bool) -> None:
        if strict:
            raise exc
        self.skipped.append((entry_id, str(exc)))

    def __len__(self) -> int:
        return self._usable

    def match(self, text: str) -> list[KeywordMatch]:
        """Every term and pattern occurrence, spans in ``text``, sorted by start then end."""
        if not text or not (self._terms or self._patterns):
            return []
        norm = _normalize(text)
        ntext, starts, ends, word = norm.text, norm.starts, norm.ends, norm.word
        n = len(ntext)
        hits: set[tuple[int, int, int]] = set()  # (term index or ~pattern index, nstart, nend)
        if self._terms:
            for last, payload in self._automaton.iter(ntext):
                for index, length in payload:
                    first = last - length + 1
                    if self._terms[index].whole_word and (
                        (first > 0 and word[first - 1]) or (last + 1 < n and word[last + 1])
                    ):
                        continue
                    hits.add((index, first, last + 1))
        for p_index, (_term, pattern) in enumerate(self._patterns):
            try:
                for m in pattern.finditer(ntext, timeout=REGEX_TIMEOUT_SECONDS):
                    if m.end() > m.start():
                        hits.add((~p_index, m.start(), m.end()))
            except TimeoutError:
                log.warning("keyword pattern of entry %s timed out; skipped for this text", _term.entry_id)
        out: list[KeywordMatch] = []
        for index, first, stop in hits:
            term = self._terms[index] if index >= 0 else self._patterns[~index][0]
            out.append(KeywordMatch(term.entry_id, term.value, int(starts[first]), int(ends[stop - 1])))
        out.sort(key=lambda m: (m.start, m.end, m.entry_id))
        return out


def _compile_pattern(entry_id: int, source: str, *, named: bool = True) -> regex.Pattern[str]:
    prefix = f"entry {entry_id}: " if named else ""
    if not source:
        raise ValueError(f"{prefix}empty regular expression")
    if len(source) > MAX_PATTERN_LENGTH:
        raise ValueError(f"{prefix}regular expression longer than {MAX_PATTERN_LENGTH} characters")
    try:
        # V1 semantics with full case folding, matching the case-folded normalised text.
        return regex.compile(source, regex.IGNORECASE | regex.FULLCASE | regex.V1)
    except (regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise ValueError(f"{prefix}invalid regular expression: {exc}") from None


def match_terms(terms: Sequence[tuple[int, str]], text: str) -> list[KeywordMatch]:
    """One-off convenience: build a matcher for ``terms`` and run it on ``text``."""
    return KeywordMatcher(terms).match(text)
