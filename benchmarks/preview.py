"""How fast the ``preview`` provider renders, against the obvious ways of making the same clip.

Run: ``.venv/bin/python benchmarks/preview.py [--runs N]``. Prints seconds per 8 s 720x1280
clip (median of N) for:

* the provider's renderer (static card converted once, only the progress band spliced per frame);
* a naive loop: every frame drawn with Pillow and converted by PyAV, same x264 settings;
* the ffmpeg command line (colour source, drawtext, a growing drawbox, silent AAC), if an
  ``ffmpeg`` binary is on PATH.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from importlib.resources import as_file
from pathlib import Path

import av
from PIL import ImageDraw

from reelpress import RenderRequest
from reelpress_plugins.preview import fonts
from reelpress_plugins.preview.card import ACCENT, MUTED, TRACK, clock
from reelpress_plugins.preview.encode import SAMPLE_RATE, Settings
from reelpress_plugins.preview.render import card_for, fps_of, frame_count, render

TITLE = "How to brew the perfect pour-over coffee at home"
PROMPT = (
    "A slow dolly shot over a kitchen counter at dawn: a gooseneck kettle pours in thin spirals, "
    "steam curls in golden light, the bloom rises and settles. Warm tones, 35mm, shallow focus."
)


def sample_request() -> RenderRequest:
    """An 8 s 9:16 720p card, as a TikTok pipeline would ask for it."""
    return RenderRequest(
        provider="preview",
        model="preview-card-1",
        prompt=PROMPT,
        aspect_ratio="9:16",
        resolution="720p",
        duration_s=8,
        options={"title": TITLE, "platform": "TikTok", "fps": 24},
    )


def timed(runs: int, job: Callable[[], object]) -> float:
    """Median wall time of ``runs`` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive(request: RenderRequest, dest: Path, settings: Settings) -> None:
    """Every frame: copy the card, draw bar and counter with Pillow, let PyAV convert it."""
    card = card_for(request)
    fps, frames = fps_of(request), frame_count(request)
    font = fonts.load(fonts.REGULAR, card.counter_style.size)
    bar, counter = card.bar, card.counter
    with av.open(
        str(dest), "w", format="mp4", container_options={"movflags": "+faststart"}
    ) as container:
        video = container.add_stream(
            "libx264", rate=fps, options={"preset": settings.preset, "crf": str(settings.crf)}
        )
        video.width, video.height = card.base.size
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = settings.threads
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        samples = 0
        for index in range(frames):
            image = card.base.copy()
            draw = ImageDraw.Draw(image)
            box = (bar.left, bar.top, bar.right - 1, bar.bottom - 1)
            draw.rounded_rectangle(box, radius=bar.height // 2, fill=TRACK)
            split = card.fill_x(index / max(1, frames - 1))
            if split > bar.left:
                draw.rounded_rectangle(
                    (bar.left, bar.top, split - 1, bar.bottom - 1),
                    radius=bar.height // 2,
                    fill=ACCENT,
                )
            label = f"{clock(math.floor(index / fps))} / {clock(card.total_s)}"
            middle = (counter.top + counter.bottom) / 2
            draw.text((counter.right, middle), label, font=font, fill=MUTED, anchor="rm")
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            frame.pts = index
            container.mux(video.encode(frame))
            while samples + 1024 <= (index + 1) * SAMPLE_RATE // fps:
                silent = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                for plane in silent.planes:
                    plane.update(bytes(plane.buffer_size))
                silent.sample_rate = SAMPLE_RATE
                silent.pts = samples
                silent.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(audio.encode(silent))
                samples += 1024
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def ffmpeg_command(binary: str, font: Path, dest: Path, settings: Settings) -> list[str]:
    """A similar card from the ffmpeg CLI: background, title, a bar sliding in (drawbox has no
    time variable, so an overlay moves it), a ticking counter, silent AAC."""
    width, height, seconds, fps, bar = 720, 1280, 8, 24, 492
    font_path = str(font).replace("\\", "/").replace(":", "\\:")
    title = TITLE.replace(":", "\\:").replace("'", "")
    graph = (
        f"[0:v]drawbox=x=48:y=1208:w={bar}:h=10:color=0x37415a:t=fill,"
        f"drawtext=fontfile='{font_path}':text='{title}':x=48:y=300:fontsize=40:fontcolor=white,"
        f"drawtext=fontfile='{font_path}':text='0\\:%{{eif\\:trunc(t)\\:d\\:2}} / 0\\:08'"
        f":x=w-48-tw:y=1200:fontsize=22:fontcolor=0x94a3b8[card];"
        f"[card][1:v]overlay=x='48-{bar}+{bar}*t/{seconds}':y=1208:eval=frame,"
        f"drawbox=x=0:y=1208:w=48:h=10:color=0x111827:t=fill[v]"
    )
    return [
        binary, "-y", "-v", "error",
        "-f", "lavfi", "-i", f"color=c=0x111827:s={width}x{height}:r={fps}:d={seconds}",
        "-f", "lavfi", "-i", f"color=c=0xfbb03b:s={bar}x10:r={fps}:d={seconds}",
        "-f", "lavfi", "-i", f"anullsrc=r={SAMPLE_RATE}:cl=stereo",
        "-filter_complex", graph, "-map", "[v]", "-map", "2:a",
        "-c:v", "libx264", "-preset", settings.preset, "-crf", str(settings.crf),
        "-threads", str(settings.threads), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-t", str(seconds), "-movflags", "+faststart",
        str(dest),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="renders per method (median)")
    args = parser.parse_args()
    runs = max(1, args.runs)
    request = sample_request()
    settings = Settings()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        render(request, out / "warm.mp4", settings=settings)  # fonts and codecs loaded once
        ours = timed(runs, lambda: render(request, out / "preview.mp4", settings=settings))
        size = (out / "preview.mp4").stat().st_size
        print(f"preview provider  {ours:6.3f} s  ({size / 1024:.0f} KiB, median of {runs})")

        slow = timed(runs, lambda: naive(request, out / "naive.mp4", settings))
        print(f"naive Pillow loop {slow:6.3f} s  ratio {slow / ours:.2f}x the provider's time")

        binary = shutil.which("ffmpeg")
        if binary is None:
            print("ffmpeg CLI        skipped: no ffmpeg on PATH")
            return
        with as_file(fonts.font_file(fonts.REGULAR)) as font:
            command = ffmpeg_command(binary, font, out / "ffmpeg.mp4", settings)
            try:
                cli = timed(runs, lambda: subprocess.run(command, check=True, capture_output=True))
            except subprocess.CalledProcessError as exc:
                print(f"ffmpeg CLI        failed: {exc.stderr.decode(errors='replace')[-300:]}")
                return
        print(f"ffmpeg CLI        {cli:6.3f} s  ratio {cli / ours:.2f}x the provider's time")


if __name__ == "__main__":
    main()
