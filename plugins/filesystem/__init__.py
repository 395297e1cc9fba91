"""The built-in ``filesystem`` sink: finished videos as files people can find, with a gallery.

The engine keeps videos in a content-addressed store named by sha256. This sink puts readable
copies in an output folder, ``<out>/<platform>/<slug>.mp4``, next to a poster (``<slug>.jpg``)
and a JSON sidecar (``<slug>.json``) that records where the video came from and discloses that it
is AI-generated. ``close()`` writes ``<out>/index.html``, a gallery of every sidecar in the folder,
so videos from earlier runs stay listed.

Titles are CMS content: they only ever become sanitised slugs, every target is checked to lie
inside the output folder, and every file is written atomically.
"""

from __future__ import annotations

import asyncio
import shutil
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import av
from PIL import Image
from pydantic import ConfigDict

from reelpress import (
    Job,
    PluginConfig,
    PluginContext,
    Receipt,
    Sink,
    SinkError,
    Video,
    hookimpl,
)
from reelpress.media import MediaError, poster
from reelpress.store import fsync_dir

from . import fileops
from .gallery import write_gallery
from .slugs import slugify

__all__ = ["FilesystemSink"]

_LOCK_STRIPES = 64
"""Publishes of the same title share a lock (so two jobs never claim one name at once); a fixed
number of stripes keeps memory flat however many titles a run has."""
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
SIDECAR_VERSION = 1


class FilesystemSink(Sink["FilesystemSink.Config"]):
    """Writes each video with a poster and a JSON sidecar into a folder per platform."""

    name = "filesystem"

    class Config(PluginConfig):
        """Options of ``sinks: [{use: filesystem, ...}]``."""

        model_config = ConfigDict(use_attribute_docstrings=True)

        path: str = "out"
        """Output folder, relative to the pipeline file's folder."""
        link: Literal["auto", "hardlink", "copy", "symlink"] = "auto"
        """How a video gets there from the store: ``auto`` hard-links when both are on one
        filesystem (instant, no extra space) and copies otherwise. Note that a hard link shares
        the store's file: edit a copy, not the published file in place."""
        gallery: bool = True
        """Write ``index.html``, a gallery of every video in the folder, at the end of a run."""

    def __init__(self, config: FilesystemSink.Config, context: PluginContext) -> None:
        super().__init__(config, context)
        self._locks = tuple(asyncio.Lock() for _ in range(_LOCK_STRIPES))
        self._gallery: tuple[Path, int] | None = None

    # --- the Sink API ---------------------------------------------------------------------------

    async def find(self, job: Job) -> Receipt | None:
        """The receipt of an earlier publish of this job whose files are still complete."""
        return await asyncio.to_thread(self._find, job)

    async def publish(self, job: Job, video: Video) -> Receipt:
        """Write video, poster and sidecar; publishing the same job again overwrites its own."""
        async with self._lock_for(job):
            return await asyncio.to_thread(self._publish, job, video)

    async def close(self) -> None:
        """Rebuild the gallery from every sidecar in the output folder."""
        if not self.config.gallery:
            return
        root = await asyncio.to_thread(self._existing_root)
        if root is not None:
            index = fileops.contained(root, root, "index.html")
            with fileops.os_errors("could not write the gallery", index):
                count = await asyncio.to_thread(write_gallery, root, index, self.context.pipeline)
            self._gallery = (index, count)

    def summary(self) -> str | None:
        """Where the gallery is, once :meth:`close` wrote it."""
        if self._gallery is None:
            return None
        index, count = self._gallery
        return f"{count} videos in {index.parent}; open {index.as_uri()}"

    # --- where files go -------------------------------------------------------------------------

    def _root(self) -> Path:
        """The resolved output folder, created if needed."""
        root = self.context.resolve(self.config.path)
        with fileops.os_errors("could not create the output folder", root):
            root.mkdir(parents=True, exist_ok=True)
        return fileops.resolve(root)

    def _existing_root(self) -> Path | None:
        """The resolved output folder, or None before anything was published."""
        root = self.context.resolve(self.config.path)
        return fileops.resolve(root) if root.is_dir() else None

    def _folder(self, root: Path, job: Job) -> Path:
        """The platform's folder inside ``root``, created if needed."""
        folder = self._platform_path(root, job)
        with fileops.os_errors("could not create the folder", folder):
            folder.mkdir(exist_ok=True)
        return self._checked(root, folder)

    def _existing_folder(self, root: Path, job: Job) -> Path | None:
        """The platform's folder inside ``root``, or None if nothing was published there."""
        folder = self._platform_path(root, job)
        return self._checked(root, folder) if folder.is_dir() else None

    def _platform_path(self, root: Path, job: Job) -> Path:
        """``root/<platform>``, refusing a link planted there (it could lead anywhere)."""
        folder = root / (slugify(job.platform, keep="_") or "platform")
        if folder.is_symlink():
            raise SinkError(
                f"refusing to write into {folder}: it is a symbolic link (to {folder.readlink()}); "
                f"the filesystem sink only writes inside {root}, so remove the link"
            )
        return folder

    def _checked(self, root: Path, folder: Path) -> Path:
        """``folder`` resolved, proven to be a folder below ``root`` (not ``root`` itself)."""
        resolved = fileops.resolve(folder)
        if not resolved.is_relative_to(root) or resolved == root:
            raise SinkError(f"refusing to write into {folder}: it leads outside {root}")
        return resolved

    def _lock_for(self, job: Job) -> asyncio.Lock:
        """The lock shared by every job whose files would get the same name."""
        key = f"{job.platform}\0{_stems(job)[0]}".encode()
        return self._locks[zlib.crc32(key) % _LOCK_STRIPES]

    # --- publishing -----------------------------------------------------------------------------

    def _publish(self, job: Job, video: Video) -> Receipt:
        """Video, then poster, then the sidecar last: the sidecar is what marks a publish done."""
        if not video.path.is_file():
            raise SinkError(f"cannot publish job {job.id}: {video.path} is missing from the store")
        root = self._root()
        folder = self._folder(root, job)
        stem = _claim(folder, job)
        mp4, jpg, sidecar = (fileops.contained(root, folder, stem + ext) for ext in _EXTENSIONS)
        now = datetime.now(UTC)
        with fileops.os_errors("could not write the video", mp4):
            fileops.place(video.path, mp4, self.config.link)
        self._write_poster(video, jpg)
        with fileops.os_errors("could not write the sidecar", sidecar):
            fileops.write_json(sidecar, sidecar_data(job, video, mp4, jpg, now))
        fsync_dir(folder)
        return self._receipt(root, mp4, sidecar, now)

    def _write_poster(self, video: Video, dest: Path) -> None:
        """Use the provider's still if there is one, else take a frame from the video."""
        given = video.poster if video.poster is not None and video.poster.is_file() else None
        try:
            with (
                fileops.os_errors("could not write the poster", dest),
                fileops.atomic_path(dest) as tmp,
            ):
                if given is not None and given.suffix.lower() in _JPEG_SUFFIXES:
                    shutil.copyfile(given, tmp)
                elif given is not None:
                    with Image.open(given) as image:
                        image.convert("RGB").save(tmp, "JPEG", quality=85)
                else:
                    poster(video.path, tmp, at_s=min(1.0, video.duration_s / 2))
        except (MediaError, av.FFmpegError, ValueError) as exc:
            raise SinkError(f"could not make the poster {dest}: {exc}") from exc

    def _receipt(self, root: Path, mp4: Path, sidecar: Path, when: datetime) -> Receipt:
        return Receipt(
            sink=self.context.instance,
            remote_id=mp4.relative_to(root).as_posix(),
            url=mp4.as_uri(),
            published_at=when,
            details={"sidecar": sidecar.relative_to(root).as_posix()},
        )

    # --- finding --------------------------------------------------------------------------------

    def _find(self, job: Job) -> Receipt | None:
        """Look under every name the job could have had; never creates anything."""
        root = self._existing_root()
        folder = self._existing_folder(root, job) if root is not None else None
        if root is None or folder is None:
            return None
        for stem in _stems(job):
            mp4, _, sidecar = (fileops.contained(root, folder, stem + ext) for ext in _EXTENSIONS)
            data = fileops.read_sidecar(sidecar)
            if data is None or not _is_complete(data, job, mp4):
                continue
            return self._receipt(root, mp4, sidecar, _parse_time(data.get("published_at")))
        return None


_EXTENSIONS = (".mp4", ".jpg", ".json")


def _stems(job: Job) -> list[str]:
    """Candidate names for a job, in order: the title's slug, then with the job id added."""
    base = next((s for s in map(slugify, (job.texts.title, job.brief.title, job.id)) if s), "video")
    short = slugify(job.id[:8]) or "job"
    full = slugify(job.id, max_chars=40) or short
    return list(dict.fromkeys([base, f"{base}-{short}", f"{base}-{full}"]))


def _claim(folder: Path, job: Job) -> str:
    """The name this job's files go under: its own from an earlier publish, else the first free
    one. A sidecar is the claim, so files of another job are never overwritten."""
    owners = {stem: fileops.sidecar_owner(folder / f"{stem}.json") for stem in _stems(job)}
    for stem, owner in owners.items():
        if owner == job.id:
            return stem
    for stem, owner in owners.items():
        if owner is None:
            return stem
    raise SinkError(f"no free file name for job {job.id} in {folder}: {', '.join(owners)} taken")


def _is_complete(data: dict[str, Any], job: Job, mp4: Path) -> bool:
    """Whether a sidecar is this job's, for the same video, and its video is all there."""
    if data.get("job_id") != job.id:
        return False
    if job.video_sha256 and data.get("video_sha256") != job.video_sha256:
        return False
    try:
        size = mp4.stat().st_size
    except OSError:
        return False
    expected = data.get("size_bytes")
    return isinstance(expected, int) and size == expected


def _parse_time(value: object) -> datetime:
    """A sidecar's ``published_at``; now if it is unreadable (the receipt still needs a time)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def disclosure(provider: str, model: str) -> str:
    """The sentence that tells viewers how the video was made."""
    if provider == "preview":
        return (
            f"This is a preview card ({provider}/{model}) standing in for an AI-generated video; "
            "it was rendered offline, without an AI model."
        )
    return f"This video was generated with AI ({provider}/{model})."


def sidecar_data(job: Job, video: Video, mp4: Path, jpg: Path, when: datetime) -> dict[str, Any]:
    """Everything needed to know where a video came from without the ledger."""
    request = job.request
    return {
        "sidecar_version": SIDECAR_VERSION,
        "job_id": job.id,
        "pipeline": job.pipeline,
        "brief_id": job.brief.id,
        "brief_url": job.brief.url,
        "platform": job.platform,
        "title": job.texts.title.strip() or job.brief.title,
        "prompt": job.texts.prompt,
        "negative_prompt": job.texts.negative_prompt,
        "caption": job.texts.caption,
        "hashtags": list(job.texts.hashtags),
        "provider": request.provider,
        "model": request.model,
        "cost_usd": job.cost_usd,
        "cached": job.cached,
        "request_key": job.request_key,
        "video_sha256": video.sha256,
        "size_bytes": video.size,
        "duration_s": video.duration_s,
        "width": video.width,
        "height": video.height,
        "file": mp4.name,
        "poster": jpg.name,
        "published_at": when.isoformat(),
        "ai_generated": True,
        "disclosure": disclosure(request.provider, request.model),
    }


@hookimpl
def register_sinks(register: Callable[[type[Sink[Any]]], None]) -> None:
    """Offer ``sinks: [{use: filesystem}]``."""
    register(FilesystemSink)
