"""Helpers shared by the built-in file sources (``markdown`` and ``catalog``).

Both read local files with blocking calls and turn loosely typed records into briefs; what they
have in common lives here so the two behave the same way (same revision length, same image and
error conventions).
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import re
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

T = TypeVar("T")

_URL_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|data:|mailto:)")
_BUFFER = 256
"""Records read ahead of the consumer: enough to keep the reader busy, small enough to stay flat."""


def revision_of(data: bytes | str) -> str:
    """A short content hash: changes whenever the record does, short enough to show to a user."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:16]


def json_friendly(value: Any) -> Any:
    """Make a parsed value safe for the ledger's JSON: dates become ISO strings, tuples lists."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): json_friendly(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_friendly(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def scalar_text(value: Any) -> Any:
    """Numbers and dates in text fields (``title: 1984``) become text; anything else is left for
    the brief's own validation to report."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def is_url(value: str) -> bool:
    return bool(_URL_RE.match(value))


def resolve_image(value: Any, base: Path) -> Any:
    """A local image path is resolved against the file that named it, so the engine can find
    it from anywhere; URLs are left as they are."""
    if not isinstance(value, str) or not value.strip():
        return value
    value = value.strip()
    if is_url(value):
        return value
    return str((base / Path(value).expanduser()).resolve())


def type_name(value: Any) -> str:
    """How a user would call the type of a parsed value (YAML/JSON words, not Python's)."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "nothing (null)"
    return f"a {type(value).__name__}"


def describe_validation(exc: ValidationError, origin: Mapping[str, str] | None = None) -> str:
    """Name each field that failed and, when known, where its value came from."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else "brief"
        where = ".".join(loc) or "brief"
        message = str(err["msg"]).removeprefix("Value error, ")
        source = origin.get(field) if origin else None
        suffix = f" (from {source})" if source else ""
        parts.append(f"invalid {where}{suffix}: {message}")
    return "; ".join(parts)


async def in_thread(
    produce: Callable[[], Iterator[T]], *, buffer: int = _BUFFER
) -> AsyncGenerator[T, None]:
    """Run a blocking reader in its own thread and hand its items over one by one.

    File reads (a slow disk, a pipe) must never stall the event loop that is also polling
    renders; a bounded queue keeps memory flat however large the file is. The thread is a daemon
    so a reader stuck on a pipe cannot keep the process alive.
    """
    loop = asyncio.get_running_loop()
    items: queue.Queue[tuple[Literal["item", "error", "done"], Any]] = queue.Queue(buffer)
    ready = asyncio.Event()
    stop = threading.Event()
    waiting = threading.Event()  # the consumer found the queue empty and sleeps: wake it

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def hand_over(kind: Literal["item", "error", "done"], value: Any) -> bool:
        items.put((kind, value))
        if waiting.is_set() or kind != "item":  # waking the loop per item would cost more
            wake()  # than reading the item
        return not stop.is_set()

    def run() -> None:
        source: Iterator[T] | None = None
        try:
            source = produce()
            for item in source:
                if not hand_over("item", item):
                    return
        except BaseException as exc:
            hand_over("error", exc)
        else:
            hand_over("done", None)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    threading.Thread(target=run, name="reelpress-source-reader", daemon=True).start()
    try:
        while True:
            try:
                kind, value = items.get_nowait()
            except queue.Empty:
                ready.clear()
                waiting.set()
                if items.empty():  # checked after `waiting` is set: no hand-over is missed
                    await ready.wait()
                waiting.clear()
                continue
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        _drain(items)


def _drain(items: queue.Queue[Any]) -> None:
    """Free the queue so a reader blocked on a full queue wakes up, sees the stop and ends."""
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return
