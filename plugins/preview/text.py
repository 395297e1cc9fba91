"""Multi-script text: split into runs one font can draw, wrap by measured width, draw in order.

Pillow's raqm layout shapes each run (Arabic joins, Devanagari conjuncts) and orders it within
itself; this module picks the font per run and puts the runs of a line in visual order, so a
title in Arabic, Chinese or Hindi is drawn with real glyphs instead of empty boxes.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from dataclasses import dataclass
from typing import Literal

from PIL import ImageDraw

from . import fonts

Direction = Literal["ltr", "rtl"]

ELLIPSIS = "…"
_SPACES = re.compile(r"\s+")
_RTL_CLASSES = {"R", "AL"}
_NO_BREAK_BEFORE = set("、。，．,.:;!?！？：；)]}）］｝〕〉》」』】〙〗〟’”ー々ゝゞヽヾ")
_NO_BREAK_AFTER = set("([{（［｛〔〈《「『【〘〖〝‘“")
_JOINERS = {"\u200c", "\u200d"}
_THAI_LEADING = {chr(c) for c in range(0x0E40, 0x0E45)}  # written before their consonant
_THAI_FOLLOWING = {chr(c) for c in (*range(0x0E30, 0x0E3B), *range(0x0E45, 0x0E4F))}
_NO_BREAK_AFTER_CLUSTER = {"\u094d", *_JOINERS, *_THAI_LEADING}  # Devanagari virama


@dataclass(frozen=True)
class Style:
    """Size in pixels and weight: all a line needs to be measured and drawn."""

    size: int
    bold: bool = False


@dataclass(frozen=True)
class Run:
    """Consecutive characters drawn with one font in one direction."""

    text: str
    font: str
    direction: Direction | None
    """None when the run has no strong character (spaces, digits, punctuation)."""


@dataclass(frozen=True)
class Line:
    """One wrapped line and the direction it reads in (right-to-left lines align right)."""

    text: str
    direction: Direction


def strong_direction(text: str) -> Direction | None:
    """Direction of the first strongly directional character, None if there is none."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in _RTL_CLASSES:
            return "rtl"
    return None


def runs(text: str, *, bold: bool = False) -> list[Run]:
    """Split text into font runs; spaces, punctuation and marks stay in the run they follow, so
    words keep one font and raqm sees whole phrases (bidi and shaping work inside a run)."""
    out: list[Run] = []
    chars: list[str] = []
    current = ""
    for char in text:
        if chars and _sticks(char, current):
            chars.append(char)
            continue
        name = fonts.font_for(char, bold=bold)
        if chars and name != current:
            out.append(_run("".join(chars), current))
            chars = []
        current = name
        chars.append(char)
    if chars:
        out.append(_run("".join(chars), current))
    return out


def _sticks(char: str, font: str) -> bool:
    """Whether a character may stay in the current run instead of choosing its own font."""
    category = unicodedata.category(char)
    if category[0] == "M" or char in _JOINERS or category == "Cf":
        return True  # a mark belongs with its base, whatever covers it
    return category[0] in "ZPN" and ord(char) in fonts.coverage(font)


def _run(text: str, font: str) -> Run:
    return Run(text, font, strong_direction(text))


def measure(text: str, style: Style) -> float:
    """Advance width in pixels of ``text`` drawn on one line."""
    return sum(_run_width(run, style) for run in runs(text, bold=style.bold))


def _run_width(run: Run, style: Style) -> float:
    font = fonts.load(run.font, style.size)
    return float(font.getlength(run.text, direction=run.direction or "ltr"))


def draw_line(
    draw: ImageDraw.ImageDraw,
    line: Line,
    *,
    left: float,
    right: float,
    baseline: float,
    style: Style,
    fill: tuple[int, int, int] | int,
) -> None:
    """Draw a line between ``left`` and ``right``: aligned to its reading start, runs in visual
    order, each with its own font, all on one baseline."""
    visual = _visual_order(_split_edges(runs(line.text, bold=style.bold), line.direction), line)
    widths = [_run_width(run, style) for run in visual]
    x = right - sum(widths) if line.direction == "rtl" else left
    for run, width in zip(visual, widths, strict=True):
        draw.text(
            (x, baseline),
            run.text,
            font=fonts.load(run.font, style.size),
            fill=fill,
            anchor="ls",
            direction=run.direction or line.direction,
        )
        x += width


def _split_edges(items: list[Run], base: Direction) -> list[Run]:
    """Detach spaces at the ends of runs that read against the line, so the gap between, say,
    an English phrase and the Arabic around it lands between them rather than at one end."""
    out: list[Run] = []
    for run in items:
        if run.direction is None or run.direction == base:
            out.append(run)
            continue
        core = run.text.strip(" ")
        lead = run.text[: len(run.text) - len(run.text.lstrip(" "))]
        trail = run.text[len(lead) + len(core) :]
        out.extend(
            Run(t, run.font, d)
            for t, d in ((lead, None), (core, run.direction), (trail, None))
            if t
        )
    return out


def _visual_order(items: list[Run], line: Line) -> list[Run]:
    """Order runs left to right (the reordering step of the Unicode bidi algorithm, for runs)."""
    base = 1 if line.direction == "rtl" else 0
    levels = []
    for index, run in enumerate(items):
        if run.direction is None:
            before = _neighbour_level(items, index, -1, base)
            after = _neighbour_level(items, index, 1, base)
            levels.append(before if before == after else base)
        else:
            levels.append(_level(run.direction, base))
    order = list(range(len(items)))
    for level in range(max(levels, default=0), 0, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] >= level:
                j = i
                while j < len(order) and levels[order[j]] >= level:
                    j += 1
                order[i:j] = reversed(order[i:j])
                i = j
            else:
                i += 1
    return [items[i] for i in order]


def _level(direction: Direction, base: int) -> int:
    if direction == "rtl":
        return 1
    return 2 if base == 1 else 0


def _neighbour_level(items: list[Run], index: int, step: int, base: int) -> int:
    index += step
    while 0 <= index < len(items):
        direction = items[index].direction
        if direction is not None:
            return _level(direction, base)
        index += step
    return base


# --- wrapping -----------------------------------------------------------------------------------


def wrap(text: str, style: Style, width: float, max_lines: int) -> tuple[list[Line], bool]:
    """Greedy wrap by measured width into at most ``max_lines`` lines: between words, and between
    characters for CJK. Returns the lines and whether text was cut (the last line then ends with
    an ellipsis)."""
    lines: list[str] = []
    cut = False
    paragraphs = [p for p in (_SPACES.sub(" ", p).strip() for p in text.splitlines()) if p]
    for paragraph in paragraphs:
        if len(lines) >= max_lines:
            cut = True
            break
        more, cut = _wrap_paragraph(paragraph, style, width, max_lines - len(lines))
        lines.extend(more)
        if cut:
            break
    if cut and lines:
        lines[-1] = _ellipsize(lines[-1], style, width)
    return _directions(lines), cut


def _directions(texts: list[str]) -> list[Line]:
    """Each line reads in the direction of its first strong character (else the line before)."""
    out: list[Line] = []
    previous: Direction = "ltr"
    for text in texts:
        previous = strong_direction(text) or previous
        out.append(Line(text, previous))
    return out


def _wrap_paragraph(
    paragraph: str, style: Style, width: float, max_lines: int
) -> tuple[list[str], bool]:
    """Lines of one paragraph (spaces already collapsed), and whether it did not fit."""
    lines: list[str] = []
    current, used = "", 0.0
    space = measure(" ", style)
    pending = deque(_units(paragraph))
    while pending:
        unit = pending.popleft()
        inked = measure(unit.rstrip(" "), style)
        if current and used + inked > width:
            lines.append(current.rstrip(" "))
            if len(lines) == max_lines:
                return lines, True
            current, used = "", 0.0
        if not current and inked > width:
            unit, tail = _hard_break(unit, style, width)
            if tail:
                pending.appendleft(tail)
                inked = measure(unit, style)
        current += unit
        used += inked + (space if unit.endswith(" ") else 0.0)
    if current:
        lines.append(current.rstrip(" "))
    return lines, False


def _units(paragraph: str) -> list[str]:
    """Pieces a line may break between, each with its trailing space."""
    units: list[str] = []
    current = ""
    for char in paragraph:
        if char == " ":
            current += char
            continue
        last = current[-1:] if current else ""
        breaks = bool(current) and (last == " " or _is_cjk(char) or _is_cjk(last))
        allowed = char not in _NO_BREAK_BEFORE and last not in _NO_BREAK_AFTER
        if breaks and allowed and not _joins(last, char):
            units.append(current)
            current = ""
        current += char
    if current:
        units.append(current)
    return units


def _is_cjk(char: str) -> bool:
    """Scripts written without spaces whose lines may break between any two characters."""
    if not char:
        return False
    code = ord(char)
    return (
        0x2E80 <= code <= 0x30FF  # radicals, CJK symbols and punctuation, kana
        or 0x3100 <= code <= 0x31FF  # bopomofo, kana extensions
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF  # full-width forms
        or 0x20000 <= code <= 0x3FFFF
    )


def _joins(before: str, char: str) -> bool:
    """No break inside a cluster: before a mark, joiner or Thai following vowel; after a virama,
    joiner or Thai leading vowel."""
    if char in _JOINERS or char in _THAI_FOLLOWING or before in _NO_BREAK_AFTER_CLUSTER:
        return True
    return unicodedata.category(char)[0] == "M"


def _hard_break(unit: str, style: Style, width: float) -> tuple[str, str]:
    """Split a piece too wide for any line at the last cluster boundary that fits."""
    best = 1
    for end in range(1, len(unit) + 1):
        if end < len(unit) and _joins(unit[end - 1], unit[end]):
            continue
        if measure(unit[:end], style) > width:
            break
        best = end
    while best < len(unit) and _joins(unit[best - 1], unit[best]):
        best += 1  # a single cluster wider than the line still goes out whole
    return unit[:best], unit[best:]


def _ellipsize(line: str, style: Style, width: float) -> str:
    """End a line with an ellipsis, dropping words (or characters) until it fits."""
    text = line.rstrip(" ")
    while text and measure(text + ELLIPSIS, style) > width:
        cut = text.rstrip(" ").rfind(" ")
        if cut > 0 and not _is_cjk(text[-1]):
            text = text[:cut].rstrip(" ")
        else:
            end = len(text) - 1
            while end > 0 and _joins(text[end - 1], text[end]):
                end -= 1
            text = text[:end].rstrip(" ")
    return text + ELLIPSIS
