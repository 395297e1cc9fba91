"""Writing into the output folder: atomically, never outside it, never through a link.

Every file appears complete or not at all (a temp file in the same folder, fsynced, then
a rename), so a crash mid-publish leaves the previous version or nothing, and a reader such
as the gallery never sees half a sidecar. a rename swaps a link planted at the target
instead of writing through it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from reelpress import SinkError

LinkMode = Literal["auto", "hardlink", "copy", "symlink"]

_PERMANENT = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EROFS,
        errno.EXDEV,
        errno.EINVAL,
        errno.ENOTSUP,
        errno.EOPNOTSUPP,
    }
)
"""OS errors that trying again later will not fix (permissions, bad paths); the rest (a full
disk, an I/O error, a busy network share) may clear up."""

_NO_HARDLINK = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
)
"""Errors from ``os.link`` after which ``auto`` falls back to copying."""


@contextmanager
def os_errors(doing: str, path: Path) -> Iterator[None]:
    """Turn an OS error into a :class:`SinkError` saying what failed on which path."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        retryable = exc.errno is not None and exc.errno not in _PERMANENT
        raise SinkError(f"{doing} {path}: {reason}", retryable=retryable) from exc


def resolve(path: Path) -> Path:
    """``path.resolve()`` with a symlink loop reported as a :class:`SinkError`."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:
        raise SinkError(f"cannot resolve {path}: {exc}") from exc


def contained(root: Path, folder: Path, name: str) -> Path:
    """``folder/name``, proven to lie inside ``root`` (both already resolved).

    ``name`` must be one plain component. The folder is resolved again and the name appended:
    the file itself may be a link (``link: symlink``, or one planted there), which is replaced by
    rename and never followed.
    """
    if not name or name in {".", ".."} or Path(name).name != name or "\\" in name:
        raise SinkError(f"refusing to write {name!r}: not a plain file name")
    path = resolve(folder) / name
    if not path.is_relative_to(root):
        raise SinkError(f"refusing to write {path}: it is outside the output folder {root}")
    return path


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A fresh temp path next to ``dest``; whatever is there on exit replaces ``dest``."""
    tmp = dest.parent / f".reelpress-{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        if stat.S_ISREG(tmp.lstat().st_mode):
            _fsync(tmp)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(dest: Path, data: bytes) -> None:
    """Replace ``dest`` with ``data`` atomically."""
    with atomic_path(dest) as tmp, tmp.open("xb") as handle:
        handle.write(data)


def write_json(dest: Path, data: dict[str, Any]) -> None:
    """Replace ``dest`` with pretty UTF-8 JSON (people read sidecars too)."""
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    write_bytes(dest, text.encode("utf-8"))


def place(src: Path, dest: Path, mode: LinkMode) -> None:
    """Put the store file ``src`` at ``dest`` by hard link, copy or symbolic link.

    ``auto`` hard-links when both are on one filesystem (instant, no extra space) and copies
    otherwise, or when the filesystem refuses hard links.
    """
    with atomic_path(dest) as tmp:
        if mode == "symlink":
            tmp.symlink_to(src.resolve())
        elif mode == "hardlink":
            os.link(src, tmp)
        elif not (mode == "auto" and _hardlinked(src, tmp)):
            shutil.copyfile(src, tmp)


def _hardlinked(src: Path, tmp: Path) -> bool:
    """Hard-link ``src`` at ``tmp`` if both are on one filesystem that allows it."""
    if src.stat().st_dev != tmp.parent.stat().st_dev:
        return False
    try:
        os.link(src, tmp)
    except OSError as exc:
        if exc.errno in _NO_HARDLINK:
            return False
        raise
    return True


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's data, or None unless ``path`` is a regular file holding a JSON object with a
    ``job_id`` (a link, a folder, a stray or broken file is never trusted)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        with path.open("rb") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("job_id"), str):
        return data
    return None


def sidecar_owner(path: Path) -> str | None:
    """The job id a sidecar belongs to; ``""`` for something there that is not ours to
    overwrite; None when the name is free."""
    if not os.path.lexists(path):
        return None
    data = read_sidecar(path)
    return str(data["job_id"]) if data else ""


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
