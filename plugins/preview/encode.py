"""H.264 + AAC MP4 from a static picture and one band of rows that changes.

Converting RGB to YUV and drawing are the slow parts of a naive loop, so each picture is converted
once: the static frame, and the band per state (bar empty or full, one counter value per second).
A frame is the static planes with the band's rows spliced in at the bar's fill column; only the
encoder sees every frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.audio.stream import AudioStream
from av.codec.context import ThreadType
from av.container import OutputContainer
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from av.video.stream import VideoStream
from PIL import Image

SAMPLE_RATE = 48000
AAC_FRAME = 1024
"""Samples per AAC frame: the encoder takes exactly this many (fewer only in the last one)."""
MARGIN = 16
"""Rows of context converted around the band, so the scaler's chroma filter sees the same
neighbours as in the full picture and the band's edges match the static frame exactly."""

# BT.709 throughout: untagged HD video is assumed to be BT.709 by players.
_COLOR = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}


@dataclass(frozen=True)
class Settings:
    """x264 settings. ``threads`` is fixed so output does not depend on the machine's cores."""

    preset: str = "veryfast"
    crf: int = 23
    threads: int = 2


@dataclass(frozen=True)
class Band:
    """Full-width rows ``top``..``bottom`` (even) and how to draw them in a state: ``draw(state,
    filled)`` returns the band with the bar empty (False) or full (True)."""

    top: int
    bottom: int
    draw: Callable[[int, bool], Image.Image]


@dataclass(frozen=True)
class Step:
    """One frame: the band's state and the column where the filled picture gives way to the
    empty one (even)."""

    state: int
    split: int


Rows = list[list[bytes]]
"""Per plane, the band's rows (visible bytes only, no stride padding)."""


def video_frames(
    base: Image.Image, band: Band, steps: Sequence[Step], fps: int
) -> Iterator[av.VideoFrame]:
    """The frames to encode, timed by ``pts`` (1/fps): the static planes with the band's rows
    spliced in. Each band state is drawn and converted once, on first use."""
    width, height = base.size
    static = _Planes(_convert(base))
    rows: dict[tuple[int, bool], Rows] = {}

    def band_rows(state: int, filled: bool) -> Rows:
        if (state, filled) not in rows:
            rows[state, filled] = _band_rows(base, band, band.draw(state, filled))
        return rows[state, filled]

    time_base = Fraction(1, fps)
    for index, step in enumerate(steps):
        frame = av.VideoFrame(width, height, "yuv420p")
        empty, full = band_rows(step.state, False), band_rows(step.state, True)
        for number, plane in enumerate(frame.planes):
            shift = 0 if number == 0 else 1
            stride = plane.line_size
            buffer = bytearray(static.plane(number, stride))
            split = step.split >> shift
            _splice(buffer, stride, band.top >> shift, full[number], empty[number], split)
            plane.update(buffer)  # type: ignore[arg-type]  # takes any buffer
        frame.pts = index
        frame.time_base = time_base
        for key, value in _COLOR.items():
            setattr(frame, key, value)
        yield frame


def encode(
    path: Path,
    frames: Iterable[av.VideoFrame],
    *,
    width: int,
    height: int,
    fps: int,
    settings: Settings,
) -> None:
    """Write the frames (``pts`` in 1/fps) plus silent stereo AAC of the same length, the two
    interleaved as they are made, ``moov`` first so playback starts before the download ends."""
    with av.open(
        str(path),
        "w",
        format="mp4",
        container_options={"movflags": "+faststart", "fflags": "+bitexact"},
    ) as container:
        video = _video_stream(container, width, height, fps, settings)
        silence = _Silence(container, _audio_stream(container))
        count = 0
        for frame in frames:
            container.mux(video.encode(frame))
            count += 1
            silence.write_until(Fraction(count, fps))
        container.mux(video.encode(None))
        silence.finish(Fraction(count, fps))


def _splice(
    buffer: bytearray, stride: int, top: int, full: list[bytes], empty: list[bytes], split: int
) -> None:
    """Overwrite the band's rows: the full picture left of ``split``, the empty one right of it."""
    for offset, (left, right) in enumerate(zip(full, empty, strict=True)):
        start = (top + offset) * stride
        buffer[start : start + split] = left[:split]
        buffer[start + split : start + len(right)] = right[split:]


class _Planes:
    """A converted picture's plane bytes, repacked to whatever stride the frame uses."""

    def __init__(self, frame: av.VideoFrame) -> None:
        self.rows = [_plane_rows(plane) for plane in frame.planes]
        self._packed: dict[tuple[int, int], bytes] = {}

    def plane(self, number: int, stride: int) -> bytes:
        if (number, stride) not in self._packed:
            pad = bytes(stride - len(self.rows[number][0]))
            self._packed[number, stride] = b"".join(row + pad for row in self.rows[number])
        return self._packed[number, stride]


def _convert(image: Image.Image) -> av.VideoFrame:
    frame: av.VideoFrame = av.VideoFrame.from_image(image.convert("RGB"))  # type: ignore[no-untyped-call]
    return frame.reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG,
        dst_color_trc=ColorTrc.BT709,
        dst_color_primaries=ColorPrimaries.BT709,
    )


def _plane_rows(plane: av.video.plane.VideoPlane) -> list[bytes]:
    data = bytes(plane)
    stride, width = plane.line_size, plane.width
    return [data[row * stride : row * stride + width] for row in range(plane.height)]


def _band_rows(base: Image.Image, band: Band, pixels: Image.Image) -> Rows:
    """Convert the band in its context (``MARGIN`` rows around it) and keep only its own rows."""
    top = max(0, band.top - MARGIN)
    bottom = min(base.height, band.bottom + MARGIN)
    context = base.crop((0, top, base.width, bottom))
    context.paste(pixels, (0, band.top - top))
    converted = _Planes(_convert(context)).rows
    skip = band.top - top
    count = band.bottom - band.top
    return [
        rows[skip >> shift : (skip + count) >> shift]
        for rows, shift in zip(converted, (0, 1, 1), strict=True)
    ]


def _video_stream(
    container: OutputContainer, width: int, height: int, fps: int, settings: Settings
) -> VideoStream:
    stream = container.add_stream(
        "libx264",
        rate=fps,
        options={"preset": settings.preset, "crf": str(settings.crf)},
    )
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    context = stream.codec_context
    context.thread_count = settings.threads
    context.thread_type = ThreadType.FRAME  # x264's own model: deterministic for a fixed count
    for key, value in _COLOR.items():
        setattr(context, key, value)
    return stream


def _audio_stream(container: OutputContainer) -> AudioStream:
    stream = container.add_stream("aac", rate=SAMPLE_RATE)
    stream.layout = "stereo"
    stream.time_base = Fraction(1, SAMPLE_RATE)
    return stream


class _Silence:
    """Silent AAC written alongside the video, so the muxer interleaves the two as it goes."""

    def __init__(self, container: OutputContainer, stream: AudioStream) -> None:
        self.container = container
        self.stream = stream
        self.written = 0

    def write_until(self, seconds: Fraction, *, last: bool = False) -> None:
        """Encode silence up to ``seconds`` in whole AAC frames (only the last may be short)."""
        end = round(seconds * SAMPLE_RATE)
        while self.written < end:
            samples = min(AAC_FRAME, end - self.written)
            if samples < AAC_FRAME and not last:
                return
            frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self.written
            frame.time_base = Fraction(1, SAMPLE_RATE)
            self.container.mux(self.stream.encode(frame))
            self.written += samples

    def finish(self, seconds: Fraction) -> None:
        """Pad to the video's end and flush the encoder."""
        self.write_until(seconds, last=True)
        self.container.mux(self.stream.encode(None))
