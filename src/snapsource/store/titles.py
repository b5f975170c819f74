"""`keyword` as word match: what `Catalog.titled` keeps, the same whichever database holds the titles.

A keyword's words must each be in the title, in any case, as whole words: "bra" finds "Sports
Bra" and "bra-top" but not "Bralette" or "Zebra". Latin, Cyrillic and other spaced scripts end a
word at anything that is not a letter or digit (space, hyphen, underscore, punctuation). Chinese,
Japanese, Korean, Thai and the like write no spaces between words, so a character of theirs needs
no boundary: "文胸" finds "运动文胸女", and "T恤" finds "白色T恤" (a boundary before the T only).

The database narrows first with LIKE/ILIKE (`narrowing`: a superset, served by the trigram
indexes), then `holds` decides here, so SQLite and PostgreSQL keep the same offers whatever their
collations make of case outside ASCII.
"""

from __future__ import annotations

# scripts written without spaces between words (code point ranges): substring match there
_UNSPACED = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3040, 0x31FF),  # Hiragana, Katakana, Bopomofo, Hangul compatibility Jamo, Kanbun
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended-A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)


def _unspaced(char: str) -> bool:
    point = ord(char)
    return any(lo <= point <= hi for lo, hi in _UNSPACED)


def _in_word(char: str) -> bool:
    """A letter or digit of a spaced script: it continues a word, so a match may not stop beside it."""
    return char.isalnum() and not _unspaced(char)


def _has_word(title: str, word: str) -> bool:
    """`word` in `title` (both lower case) with no letter or digit of a spaced script running on at either end."""
    open_start, open_end = _in_word(word[0]), _in_word(word[-1])
    at = title.find(word)
    while at >= 0:
        end = at + len(word)
        if (not open_start or at == 0 or not _in_word(title[at - 1])) and (
            not open_end or end == len(title) or not _in_word(title[end])
        ):
            return True
        at = title.find(word, at + 1)
    return False


def holds(title: str | None, keyword: str) -> bool:
    """Every word of `keyword` (split at white space) is a word of `title`, in any case."""
    words = keyword.lower().split()
    lowered = (title or "").lower()
    return bool(words) and all(_has_word(lowered, word) for word in words)


def narrowing(keyword: str) -> list[str]:
    """Fragments that every title `holds` accepts contains, as LIKE (any ASCII case) finds them: the
    runs of each word's characters that are ASCII or have no case. A letter like "é" is left out,
    since SQLite's LIKE folds only ASCII. May be empty: then every title is read."""
    fragments = []
    for word in keyword.split():
        run: list[str] = []
        for char in word:
            if char.isascii() or char.lower() == char.upper():
                run.append(char)
            elif run:
                fragments.append("".join(run))
                run = []
        if run:
            fragments.append("".join(run))
    return fragments
