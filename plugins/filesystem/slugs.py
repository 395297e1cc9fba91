"""File names from titles: readable in any script, safe on every filesystem.

Titles and platform names come from a CMS or a config file, so they are untrusted: whatever they
contain, the result is one plain path component that cannot climb out of a folder, hide behind a
right-to-left override, overflow a file-name limit or collide with a name Windows reserves.
"""

from __future__ import annotations

import unicodedata

MAX_CHARS = 80
"""Longest slug in characters: long enough to recognise a title, short enough to read."""
MAX_BYTES = 200
"""Longest slug in UTF-8 bytes. Most filesystems allow 255 bytes per name, and 80 CJK characters
already take 240: this leaves room for a ``-<job id>`` suffix and an extension."""

_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def slugify(
    text: str, *, keep: str = "", max_chars: int = MAX_CHARS, max_bytes: int = MAX_BYTES
) -> str:
    """Lowercase letters and digits of any script joined by single dashes; ``""`` if none.

    Everything else (spaces, punctuation, slashes, dots, control and format characters) becomes
    a dash, except the characters in ``keep``. Combining marks stay with their letter, so Hindi
    or Thai titles remain readable. The caller picks the fallback for an empty result.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for char in text:
        follows_letter = bool(out) and out[-1] != "-"
        if char.isalnum() or char in keep or (follows_letter and _is_mark(char)):
            out.append(char)
        elif follows_letter:
            out.append("-")
    slug = unicodedata.normalize("NFC", "".join(out))
    slug = _cap(slug, max_chars, max_bytes)
    return f"_{slug}" if slug in _WINDOWS_RESERVED else slug


def _cap(slug: str, max_chars: int, max_bytes: int) -> str:
    """Shorten to the limits, at a dash when one is in the second half (whole words are kept),
    and trim dashes and dots from the ends."""
    cut = slug[:max_chars]
    while len(cut.encode("utf-8")) > max_bytes:
        cut = cut[:-1]
    if len(cut) < len(slug) and slug[len(cut)] != "-":
        boundary = cut.rfind("-")
        if boundary >= len(cut) // 2:
            cut = cut[:boundary]
    return cut.strip("-.")


def _is_mark(char: str) -> bool:
    """A combining mark (a vowel sign, an accent), part of the letter before it."""
    return unicodedata.category(char).startswith("M")
