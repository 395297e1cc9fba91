"""The title card: what a preview shows, laid out for portrait, landscape and square frames.

Everything that never changes is drawn once into :attr:`Card.base`. What moves (the progress bar
and the time counter) lives in one band of rows that :meth:`Card.draw_band` redraws per state, so
the encoder can reuse the static picture for every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from . import fonts, text
from .text import Line, Style

Color = tuple[int, int, int]

BG_TOP: Color = (17, 24, 39)
BG_BOTTOM: Color = (46, 27, 78)
ACCENT: Color = (251, 176, 59)
TITLE: Color = (248, 250, 252)
BODY: Color = (203, 213, 225)
MUTED: Color = (148, 163, 184)
TRACK: Color = (55, 65, 90)

TITLE_MAX_LINES = 3


@dataclass(frozen=True)
class CardSpec:
    """What goes on the card."""

    width: int
    height: int
    title: str
    prompt: str
    meta: str
    """Platform, ratio, resolution and duration, e.g. ``TikTok · 9:16 · 720p · 8 s``."""
    duration_s: float
    thumbnail: Image.Image | None = None


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class Card:
    """A drawn card: the static picture plus how to draw the band of rows that moves."""

    base: Image.Image
    band: Box
    """Full-width rows (even top and bottom, for 4:2:0 chroma) holding the bar and the counter."""
    bar: Box
    counter: Box
    counter_style: Style
    total_s: int

    def fill_x(self, fraction: float) -> int:
        """Column where the bar's fill ends, even so luma and chroma split at the same place."""
        fraction = min(1.0, max(0.0, fraction))
        return self.bar.left + 2 * round(fraction * self.bar.width / 2)

    def draw_band(self, second: int, filled: bool) -> Image.Image:
        """The band's pixels with the counter at ``second`` and the bar empty or full."""
        band = self.band
        image = self.base.crop((band.left, band.top, band.right, band.bottom))
        draw = ImageDraw.Draw(image)
        bar = _shift(self.bar, -band.left, -band.top)
        radius = bar.height // 2
        draw.rounded_rectangle(_xyxy(bar), radius=radius, fill=ACCENT if filled else TRACK)
        counter = _shift(self.counter, -band.left, -band.top)
        label = f"{clock(second)} / {clock(self.total_s)}"
        font = fonts.load(fonts.REGULAR, self.counter_style.size)
        draw.text(
            (counter.right, (counter.top + counter.bottom) / 2),
            label,
            font=font,
            fill=MUTED,
            anchor="rm",
        )
        return image


def clock(seconds: int) -> str:
    """``m:ss``, the way players show time."""
    return f"{seconds // 60}:{seconds % 60:02d}"


def load_thumbnail(path: Path | None) -> Image.Image | None:
    """The reference image as RGB, or None when it is missing or unreadable (never fatal: the
    card is still useful without it)."""
    if path is None:
        return None
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (2048, 2048))  # JPEG: decode at a reduced size, much faster
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def draw_card(spec: CardSpec) -> Card:
    """Lay out and draw the static card; adapts to orientation and scales with resolution."""
    w, h = spec.width, spec.height
    unit = min(w, h) / 720
    margin_y = round(48 * unit)
    margin_x = max(margin_y, round(0.05 * w))
    image = _background(w, h)
    draw = ImageDraw.Draw(image)
    label_bottom = _draw_label(draw, margin_x, margin_y, unit)
    card, footer_top = _footer(draw, spec, image, margin_x, margin_y, unit)

    # Middle: thumbnail, title, accent rule and prompt, centred in what is left.
    content = Box(
        margin_x, label_bottom + round(36 * unit), w - margin_x, footer_top - round(28 * unit)
    )
    thumb = spec.thumbnail
    if thumb is not None and w >= 1.2 * h:  # landscape: the image gets a column of its own
        left = content.right - round(content.width * 0.38)
        column = Box(left, content.top, content.right, content.bottom)
        _paste_thumbnail(image, thumb, column, unit, centre=True)
        content = Box(content.left, content.top, column.left - round(40 * unit), content.bottom)
        thumb = None
    thumb_height = 0
    if thumb is not None:
        thumb_height = round(content.height * (0.32 if h > w * 1.2 else 0.24))
    _draw_text_block(image, spec, content, unit, thumb, thumb_height)
    return card


def _footer(
    draw: ImageDraw.ImageDraw,
    spec: CardSpec,
    image: Image.Image,
    margin_x: int,
    margin_y: int,
    unit: float,
) -> tuple[Card, int]:
    """The moving band at the bottom (bar and counter) with the platform line above it; returns
    the card and the top of the footer."""
    w, h = spec.width, spec.height
    counter_style = Style(max(10, round(22 * unit)))
    band_height = _even(max(counter_style.size * 1.6, 12 * unit))
    band = Box(0, _even(h - margin_y - band_height), w, _even(h - margin_y))
    total_s = max(1, math.ceil(spec.duration_s - 1e-9))
    widest = f"{clock(total_s)} / {clock(total_s)}".translate(str.maketrans("123456789", "0" * 9))
    counter_width = math.ceil(text.measure(widest, counter_style)) + 2
    counter = Box(w - margin_x - counter_width, band.top, w - margin_x, band.bottom)
    thickness = _even(max(4, 10 * unit))
    bar_top = _even((band.top + band.bottom - thickness) / 2)
    bar = Box(_even(margin_x), bar_top, _even(counter.left - 24 * unit), bar_top + thickness)

    meta_style = Style(max(10, round(24 * unit)))
    meta_baseline = band.top - round(22 * unit)
    for line in text.wrap(spec.meta, meta_style, w - 2 * margin_x, 1)[0]:
        text.draw_line(
            draw,
            line,
            left=margin_x,
            right=w - margin_x,
            baseline=meta_baseline,
            style=meta_style,
            fill=MUTED,
        )
    footer_top = meta_baseline - round(meta_style.size * 1.1)
    return Card(image, band, bar, counter, counter_style, total_s), footer_top


def _draw_text_block(
    image: Image.Image,
    spec: CardSpec,
    box: Box,
    unit: float,
    thumb: Image.Image | None,
    thumb_height: int,
) -> None:
    """Thumbnail, title, accent rule and as much of the prompt as fits, centred in ``box``.

    The title may take at most about half the room, so some of the prompt always shows."""
    draw = ImageDraw.Draw(image)
    gap = round(28 * unit)
    room = box.height - (thumb_height + gap if thumb_height else 0)
    has_prompt = bool(spec.prompt.strip())
    title_lines, title_style = _fit_title(
        spec.title, box.width, unit, max_height=room // 2 if has_prompt else room
    )
    title_step = round(title_style.size * 1.18)
    rule_height = max(2, round(6 * unit))
    title_height = title_step * len(title_lines) + (2 * gap + rule_height if title_lines else 0)

    body_style = Style(max(10, round(30 * unit)))
    body_step = round(body_style.size * 1.42)
    body_lines: list[Line] = []
    if has_prompt and room - title_height >= body_step:
        body_lines, _ = text.wrap(
            spec.prompt, body_style, box.width, (room - title_height) // body_step
        )
    used = box.height - room + title_height + body_step * len(body_lines)
    if title_lines and not body_lines:
        used -= gap
    y = box.top + max(0, (box.height - used) // 2)

    rtl = bool(title_lines) and title_lines[0].direction == "rtl"
    if thumb is not None and thumb_height:
        _paste_thumbnail(image, thumb, Box(box.left, y, box.right, y + thumb_height), unit, rtl=rtl)
        y += thumb_height + gap
    for line in title_lines:
        text.draw_line(
            draw,
            line,
            left=box.left,
            right=box.right,
            baseline=y + round(title_style.size * 0.95),
            style=title_style,
            fill=TITLE,
        )
        y += title_step
    if title_lines:
        y += gap
        rule_width = round(84 * unit)
        x0 = box.right - rule_width if rtl else box.left
        draw.rounded_rectangle(
            (x0, y, x0 + rule_width, y + rule_height), radius=rule_height // 2, fill=ACCENT
        )
        y += rule_height + gap
    for line in body_lines:
        text.draw_line(
            draw,
            line,
            left=box.left,
            right=box.right,
            baseline=y + round(body_style.size * 1.05),
            style=body_style,
            fill=BODY,
        )
        y += body_step


def _fit_title(title: str, width: int, unit: float, *, max_height: int) -> tuple[list[Line], Style]:
    """The largest bold size at which the title fits in ``max_height`` (and at most three lines);
    at the smallest size, what fits, ending in an ellipsis."""
    size = round(68 * unit)
    smallest = max(12, round(42 * unit))
    if not title.strip():
        return [], Style(size, bold=True)
    while True:
        style = Style(size, bold=True)
        max_lines = min(TITLE_MAX_LINES, max_height // round(size * 1.18))
        if max_lines >= 1 or size <= smallest:
            lines, cut = text.wrap(title, style, width, max(1, max_lines))
            if not cut or size <= smallest:
                return lines, style
        size = max(smallest, round(size * 0.9))


def _draw_label(draw: ImageDraw.ImageDraw, x: int, y: int, unit: float) -> int:
    """The ``PREVIEW · reelpress`` pill at the top; returns its bottom edge."""
    style = Style(max(9, round(19 * unit)), bold=True)
    label = "PREVIEW · reelpress"
    pad_x, pad_y = round(14 * unit), round(8 * unit)
    width = math.ceil(text.measure(label, style))
    height = round(style.size * 1.3)
    box = (x, y, x + width + 2 * pad_x, y + height + 2 * pad_y)
    draw.rounded_rectangle(
        box, radius=box[3] - box[1], outline=ACCENT, width=max(1, round(2 * unit))
    )
    font = fonts.load(fonts.BOLD, style.size)
    draw.text((x + pad_x, (box[1] + box[3]) / 2), label, font=font, fill=ACCENT, anchor="lm")
    return box[3]


def _paste_thumbnail(
    image: Image.Image,
    thumb: Image.Image,
    box: Box,
    unit: float,
    *,
    centre: bool = False,
    rtl: bool = False,
) -> None:
    """Fit the reference image in ``box`` (aspect kept) with rounded corners: centred, or at the
    top on the side the text starts from."""
    if box.width < 8 or box.height < 8:
        return
    fitted = ImageOps.contain(thumb, (box.width, box.height), Image.Resampling.LANCZOS)
    mask = Image.new("L", fitted.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, fitted.width - 1, fitted.height - 1), radius=round(18 * unit), fill=255
    )
    top = box.top + (box.height - fitted.height) // 2 if centre else box.top
    left = box.left + (box.width - fitted.width) // 2 if centre else box.left
    if rtl and not centre:
        left = box.right - fitted.width
    image.paste(fitted, (left, top), mask)


def _background(width: int, height: int) -> Image.Image:
    """A dark vertical gradient (the same on every frame, so it costs nothing after frame 1)."""
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    return Image.composite(
        Image.new("RGB", (width, height), BG_BOTTOM),
        Image.new("RGB", (width, height), BG_TOP),
        ramp,
    )


def _even(value: float) -> int:
    return 2 * round(value / 2)


def _shift(box: Box, dx: int, dy: int) -> Box:
    return Box(box.left + dx, box.top + dy, box.right + dx, box.bottom + dy)


def _xyxy(box: Box) -> tuple[int, int, int, int]:
    """Pillow's inclusive rectangle corners."""
    return (box.left, box.top, box.right - 1, box.bottom - 1)
