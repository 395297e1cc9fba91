"""Reference images: from a brief's ``image`` (a path or a URL) to a file in the store, by hash.

A render request names its image by content hash, so a changed image is a new request and an
unchanged one is a cache hit. Hashes are remembered in the ledger per file identity (path, size,
mtime) or URL, so a re-plan neither re-reads nor re-downloads what it already has.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert, select

from . import http
from . import schema as t
from .errors import ReelpressError
from .ledger import Ledger
from .store import Store

MAX_IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


class AssetError(ReelpressError):
    """A brief's image cannot be used (missing, too big, not an image, unreachable)."""


class Assets:
    """Resolves images for one planning pass."""

    def __init__(self, store: Store, ledger: Ledger | None, base_dir: Path) -> None:
        self.store = store
        self.ledger = ledger
        self.base_dir = base_dir
        self._known: dict[str, str] = {}
        self._fetching: dict[str, asyncio.Future[str]] = {}
        self._http: http.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def resolve(self, image: str, now: datetime) -> str:
        """The store hash for an image reference, fetching or copying it if needed."""
        is_url = image.startswith(("http://", "https://"))
        if not is_url and ("://" in image or image.startswith(("data:", "mailto:"))):
            raise AssetError(
                f"unsupported image reference {image[:60]!r}: give a file path or an http(s) URL"
            )
        path, ref = (None, image) if is_url else _file_ref(image, self.base_dir)
        if ref in self._known:
            return self._known[ref]
        task = self._fetching.get(ref)
        if task is None:  # briefs sharing an image (in one batch) fetch it once
            task = self._fetching[ref] = asyncio.ensure_future(self._fetch(ref, image, path, now))
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._fetching.pop(ref, None)

    async def _fetch(self, ref: str, image: str, path: Path | None, now: datetime) -> str:
        known = await self._remembered(ref)
        if known is None:
            if path is not None:
                sha, size = await asyncio.to_thread(self.store.put_asset, path)
            else:
                sha, size = await self._download(image)
            await self._remember(ref, sha, size, now)
            known = sha
        self._known[ref] = known
        return known

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _remembered(self, ref: str) -> str | None:
        if self.ledger is None:
            return None
        async with self.ledger.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(t.assets.c.sha256, t.assets.c.size).where(t.assets.c.ref == ref)
                )
            ).first()
        if row is None or not self.store.has(self.store.asset(row.sha256), row.size):
            return None
        return str(row.sha256)

    async def _remember(self, ref: str, sha: str, size: int, now: datetime) -> None:
        if self.ledger is None:
            return
        async with self.ledger.engine.begin() as conn:
            await conn.execute(t.assets.delete().where(t.assets.c.ref == ref))
            await conn.execute(
                insert(t.assets).values(ref=ref, sha256=sha, size=size, created_at=now)
            )

    async def _download(self, url: str) -> tuple[str, int]:
        async with self._lock:
            if self._http is None:
                self._http = http.client()
        tmp = self.store.tmp_path()
        try:
            await http.download(self._http, url, tmp, max_bytes=MAX_IMAGE_BYTES,
                                content_types=IMAGE_TYPES)  # fmt: skip
        except (http.DownloadRefused, http.RetryableStatus, http.HTTPError) as exc:
            tmp.unlink(missing_ok=True)
            raise AssetError(f"image download failed: {exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return await asyncio.to_thread(self.store.put_asset, tmp, move=True)


def _file_ref(image: str, base_dir: Path) -> tuple[Path, str]:
    """A local image and the identity it is remembered by (path, size, modification time)."""
    path = Path(image).expanduser()
    path = path if path.is_absolute() else base_dir / path
    try:
        st = path.stat()
    except OSError:
        raise AssetError(f"image not found: {path}") from None
    if st.st_size > MAX_IMAGE_BYTES:
        raise AssetError(f"image is larger than {MAX_IMAGE_BYTES // 2**20} MB: {path}")
    return path, f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
