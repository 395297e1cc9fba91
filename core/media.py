"""Looking inside video files (PyAV, in-process): probe a download, grab a poster frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from .errors import ReelpressError


class MediaError(ReelpressError):
    """A file is not a playable video."""


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    width: int
    height: int
    video_codec: str
    audio_codec: str


def probe(path: Path) -> MediaInfo:
    """Read container and stream facts. Raises :class:`MediaError` for anything unplayable."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path.name}: no video stream")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            duration = _duration(container, video)
            return MediaInfo(
                duration_s=duration,
                width=video.codec_context.width,
                height=video.codec_context.height,
                video_codec=video.codec_context.name,
                audio_codec=audio.codec_context.name if audio else "",
            )
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path.name}: not a readable video ({exc})") from exc


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def poster(path: Path, dest: Path, *, at_s: float = 1.0, max_width: int = 640) -> Path:
    """Save the frame at ``at_s`` seconds (or the last before it) as a JPEG still, atomically.
    Raises :class:`MediaError` for a file it cannot decode."""
    frame_image = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                frame_image = frame.to_image()  # type: ignore[no-untyped-call]
                if frame.time is not None and frame.time >= at_s:
                    break
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise MediaError(f"{path.name}: cannot take a poster frame ({exc})") from exc
    if frame_image is None:
        raise MediaError(f"{path.name}: no frames to take a poster from")
    if frame_image.width > max_width:
        ratio = max_width / frame_image.width
        frame_image = frame_image.resize((max_width, max(2, int(frame_image.height * ratio))))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    frame_image.convert("RGB").save(tmp, "JPEG", quality=85)
    tmp.replace(dest)
    return dest
