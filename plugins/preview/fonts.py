"""The bundled fonts: which one draws a given character, read from each font's own cmap table.

Coverage comes from the fonts themselves (a small reader for cmap subtable formats 4 and 12), so
adding or updating a font never needs a hand-kept list of Unicode ranges, and no fontTools.
"""

from __future__ import annotations

import io
import struct
import threading
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from PIL import ImageFont

REGULAR = "NotoSans-Regular.ttf"
BOLD = "NotoSans-Bold.ttf"
ARABIC = "NotoSansArabic-Regular.ttf"
HEBREW = "NotoSansHebrew-Regular.ttf"
DEVANAGARI = "NotoSansDevanagari-Regular.ttf"
THAI = "NotoSansThai-Regular.ttf"
HANGUL = "NanumSquareR.ttf"
"""Korean: every one of the 11,172 Hangul syllables (the CJK fallback has only a handful)."""
FALLBACK = "DroidSansFallbackFull.ttf"
"""CJK, Kana, and the last resort for anything no other font covers."""

SCRIPT_FONTS = (ARABIC, HEBREW, DEVANAGARI, THAI)
"""Tried in this order after the primary (Latin/Greek/Cyrillic) font, before the fallback."""

_local = threading.local()

# (platform id, encoding id) of the Unicode cmap subtables; others (symbol, Mac Roman) are ignored.
_UNICODE_ENCODINGS = {(0, 3), (0, 4), (0, 6), (3, 1), (3, 10)}


def font_file(name: str) -> Traversable:
    """The packaged font file (inside the installed ``reelpress_plugins.preview`` package)."""
    return files("reelpress_plugins.preview") / "fonts" / name


@cache
def coverage(name: str) -> frozenset[int]:
    """Code points the font maps to a real glyph (cached: the CJK font maps ~30k of them)."""
    return frozenset(parse_cmap(font_file(name).read_bytes()))


def load(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at a pixel size, laid out with raqm (shaping, bidi).

    Cached per thread: renders run in worker threads, and a FreeType face must not be used by
    two threads at once. Opened by path where the package is on disk, so FreeType maps the file
    instead of each size holding its own copy (the CJK font is 4 MB)."""
    if not hasattr(_local, "fonts"):
        _local.fonts = {}
    loaded: dict[tuple[str, int], ImageFont.FreeTypeFont] = _local.fonts
    font = loaded.get((name, size))
    if font is None:
        source = font_file(name)
        handle = source if isinstance(source, Path) else io.BytesIO(source.read_bytes())
        font = ImageFont.truetype(handle, size, layout_engine=ImageFont.Layout.RAQM)
        loaded[name, size] = font
    return font


def font_for(char: str, *, bold: bool = False) -> str:
    """Name of the first bundled font that has a glyph for ``char`` (fallback if none does)."""
    code = ord(char)
    primary = BOLD if bold else REGULAR
    for name in (primary, *SCRIPT_FONTS):
        if code in coverage(name):
            return name
    # Nanum maps some Han characters to empty glyphs: it only draws what the CJK font lacks.
    if code not in coverage(FALLBACK) and code in coverage(HANGUL):
        return HANGUL
    return FALLBACK


def parse_cmap(data: bytes) -> set[int]:
    """Code points mapped by a TrueType/OpenType font's Unicode cmap subtables (formats 4, 12)."""
    cmap = _table(data, b"cmap")
    if cmap is None:
        raise ValueError("font has no cmap table")
    (count,) = struct.unpack_from(">H", data, cmap + 2)
    codes: set[int] = set()
    seen: set[int] = set()
    for index in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * index)
        start = cmap + offset
        if (platform, encoding) not in _UNICODE_ENCODINGS or start in seen:
            continue
        seen.add(start)
        (fmt,) = struct.unpack_from(">H", data, start)
        if fmt == 4:
            codes |= _format4(data, start)
        elif fmt == 12:
            codes |= _format12(data, start)
    return codes


def _table(data: bytes, tag: bytes) -> int | None:
    """Offset of a table from the font's table directory, None if absent."""
    (count,) = struct.unpack_from(">H", data, 4)
    for index in range(count):
        name, _checksum, offset, _length = struct.unpack_from(">4sIII", data, 12 + 16 * index)
        if name == tag:
            return int(offset)
    return None


def _format4(data: bytes, start: int) -> set[int]:
    """Segment mapping to delta values: the BMP subtable every font has."""
    (seg_x2,) = struct.unpack_from(">H", data, start + 6)
    segs = seg_x2 // 2
    ends = struct.unpack_from(f">{segs}H", data, start + 14)
    starts = struct.unpack_from(f">{segs}H", data, start + 16 + seg_x2)
    deltas = struct.unpack_from(f">{segs}H", data, start + 16 + 2 * seg_x2)
    range_base = start + 16 + 3 * seg_x2
    range_offsets = struct.unpack_from(f">{segs}H", data, range_base)
    codes: set[int] = set()
    for i in range(segs):
        first, last, delta, range_offset = starts[i], ends[i], deltas[i], range_offsets[i]
        if first == 0xFFFF:
            continue
        for code in range(first, last + 1):
            if range_offset == 0:
                glyph = (code + delta) & 0xFFFF
            else:
                # idRangeOffset is relative to its own position in the array.
                at = range_base + 2 * i + range_offset + 2 * (code - first)
                (glyph,) = struct.unpack_from(">H", data, at)
                if glyph:
                    glyph = (glyph + delta) & 0xFFFF
            if glyph:
                codes.add(code)
    return codes


def _format12(data: bytes, start: int) -> set[int]:
    """Segmented coverage: the subtable that reaches beyond the BMP."""
    (groups,) = struct.unpack_from(">I", data, start + 12)
    codes: set[int] = set()
    for index in range(groups):
        first, last, glyph = struct.unpack_from(">III", data, start + 16 + 12 * index)
        codes.update(range(first + (1 if glyph == 0 else 0), last + 1))
    return codes
