"""The names people and machines are known by (users, API keys): one rule, so a name shows what it is.

Refused: invisible characters (controls, format characters such as zero-width joiners and the soft
hyphen, line and paragraph separators, private-use and unassigned code points), bidirectional
controls (which reorder what is shown), spaces other than the plain one, and letters of more than one
script, except the combinations Unicode's "highly restrictive" profile allows (UTS #39: Latin with
Han, Hiragana and Katakana; with Han and Bopomofo; with Han and Hangul) — so ``admin`` spelt with a
Cyrillic ``a`` (U+0430) cannot pass for ``admin``.
"""

from __future__ import annotations

import unicodedata

from confusable_homoglyphs import confusables

# Bidirectional formatting characters (Unicode's Bidi_Control property).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Zl": "",
    "Zp": "",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Cn": "an unassigned code point",
}
_ALLOWED_SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


def _describe(char: str, category: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X} ({_INVISIBLE.get(category) or 'unnamed'})"


def check_name(name: str, what: str) -> str:
    """``name`` if it is acceptable as a ``what`` ("username", "key name"…); else ValueError saying why."""
    for char in name:
        category = unicodedata.category(char)
        if char in BIDI_CONTROLS:
            raise ValueError(f"a {what} may not contain bidirectional controls: {_describe(char, category)}")
        if category in _INVISIBLE:
            raise ValueError(f"a {what} may not contain invisible characters: {_describe(char, category)}")
        if category == "Zs" and char != " ":
            raise ValueError(f"a {what} may not contain spaces other than the plain space: {_describe(char, category)}")
    # Digits, punctuation (Common) and combining marks (Inherited) belong to no script of their own.
    scripts = confusables.unique_aliases(name) - {"COMMON", "INHERITED"}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_SETS):
        raise ValueError(
            f"a {what} may not mix scripts ({', '.join(sorted(scripts))}): letters of different alphabets "
            "can imitate another name"
        )
    return name
