"""Small formatting helpers shared by the commands."""

from __future__ import annotations

from datetime import UTC, datetime

STATE_STYLES = {
    "planned": "cyan",
    "submitting": "blue",
    "submitted": "blue",
    "generated": "magenta",
    "published": "green",
    "failed": "red",
    "filtered": "yellow",
    "over_budget": "yellow",
    "cancelled": "dim",
    "needs_reconcile": "bold red",
}


def money(value: float | None) -> str:
    if value is None:
        return "–"
    if 0 < abs(value) < 0.01:
        return f"${value:.3f}"
    return f"${value:,.2f}"


def short(text: str, width: int) -> str:
    """One line, cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "white")


def when(moment: datetime | None) -> str:
    """A UTC time as people read it: "12:04:05" today, else the date too."""
    if moment is None:
        return "–"
    moment = moment.astimezone(UTC)
    if moment.date() == datetime.now(UTC).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")
