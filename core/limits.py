"""Rate windows and budget periods.

Rate limits are counted from the ledger's own submission log rather than an in-memory bucket: the
count survives a restart (a daily quota does not reset when the process does), every process on the
same ledger sees it, and the check and the submission are one transaction, so the limit is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` submissions in any ``seconds``-long window."""

    limit: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.limit}/{_human(self.seconds)}"


def parse_rate(text: str) -> list[RateWindow]:
    """Parse ``"10/minute; 50/day"`` or ``"120/10s"`` into windows. Raises ValueError."""
    windows = []
    for part in re.split(r"[;,]", text):
        if not part.strip():
            continue
        match = _RATE_RE.match(part.lower())
        if not match or match[3] not in _UNITS:
            raise ValueError(
                f"cannot read rate {part.strip()!r}; expected e.g. '10/minute', '120/10s' "
                "or '10/minute; 50/day'"
            )
        limit, span = int(match[1]), float(match[2] or 1) * _UNITS[match[3]]
        if limit < 1 or span <= 0:
            raise ValueError(f"rate {part.strip()!r} must allow at least 1 per window")
        windows.append(RateWindow(limit, span))
    if not windows:
        raise ValueError("empty rate; expected e.g. '10/minute; 50/day'")
    return windows


def _human(seconds: float) -> str:
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds == size:
            return name
    return f"{seconds:g}s"


def period_start(per: str, now: datetime, run_started: datetime) -> datetime:
    """Start of the budget period ``per`` (run, day or month, in UTC) that contains ``now``."""
    now = now.astimezone(UTC)
    if per == "run":
        return run_started
    if per == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if per == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown budget period {per!r}")


def backoff(
    attempt: int, *, base: float = 2.0, cap: float = 300.0, jitter: float = 0.0
) -> timedelta:
    """Exponential backoff for ``attempt`` (1-based), capped; ``jitter`` in [0, 1) is supplied by
    the caller so the schedule stays testable."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return timedelta(seconds=delay * (1 - 0.5 * jitter))
