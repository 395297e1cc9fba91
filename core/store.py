"""The content-addressed store: every video and input kept once, under its sha256.

A file enters the store by being written to ``tmp/`` first, hashed, flushed to disk and renamed into
place, so a path in the store is always a complete file whose name is its hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

CHUNK = 1 << 20


def video_path(store_dir: Path, sha256: str) -> Path:
    return store_dir / "videos" / sha256[:2] / f"{sha256}.mp4"


def asset_path(store_dir: Path, sha256: str) -> Path:
    return store_dir / "assets" / sha256[:2] / sha256


def file_sha256(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Store:
    """Files by hash under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def tmp_path(self, suffix: str = "") -> Path:
        """A fresh path in the store's scratch folder (same filesystem, so renames are atomic)."""
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{uuid.uuid4().hex}{suffix}"

    def video(self, sha256: str) -> Path:
        return video_path(self.root, sha256)

    def asset(self, sha256: str) -> Path:
        return asset_path(self.root, sha256)

    def put_video(self, tmp: Path) -> tuple[str, Path, int]:
        """Move a finished file from scratch into place; returns (sha256, path, size)."""
        sha, size = file_sha256(tmp)
        return sha, self._place(tmp, self.video(sha)), size

    def put_asset(self, src: Path, *, move: bool = False) -> tuple[str, int]:
        """Keep a copy of an input file (a reference image) under its hash."""
        sha, size = file_sha256(src)
        dest = self.asset(sha)
        if not dest.exists():
            tmp = src if move else self.tmp_path()
            if not move:
                shutil.copyfile(src, tmp)
            self._place(tmp, dest)
        elif move:
            src.unlink(missing_ok=True)
        return sha, size

    def has(self, path: Path, size: int) -> bool:
        try:
            return path.stat().st_size == size
        except OSError:
            return False

    def _place(self, tmp: Path, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(dest)
        fsync_dir(dest.parent)
        return dest


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
