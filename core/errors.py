"""Errors a user can act on, grouped by how to recover.

Each error is raised at the edge where it is known and rendered once by the CLI: no traceback for a
user's mistake (``--debug`` shows it). Nothing here may carry a secret in its message.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ReelpressError(Exception):
    """Base class of every error reelpress reports to a user."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what was expected."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ReelpressError):
    """The pipeline configuration is invalid. Carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = [str(issue) for issue in issues]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


class PluginError(ReelpressError):
    """A plugin could not be found, loaded or used."""


class TemplateError(ReelpressError):
    """A prompt template failed: names the template, the line and what was missing."""

    def __init__(self, message: str, *, template: str | None = None, line: int | None = None):
        self.template = template
        self.line = line
        where = template or "<template>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class SkipBrief(ReelpressError):
    """Raised by a ``prepare_brief`` hook to leave one brief out of the plan."""


class InvalidRequest(ReelpressError):
    """A render request breaks a provider's rules (duration, ratio, prompt length...).

    Raised at plan time by ``Provider.validate`` so nothing is spent on a request that would fail.
    """


@dataclass
class ProviderError(ReelpressError):
    """A provider call failed.

    ``retryable`` says whether the same call may succeed later (429, 5xx, timeouts); ``retry_after``
    is the provider's own hint in seconds. ``outcome_unknown`` means a submission may have reached
    the provider (and may be billed) although no operation id came back: the engine then never
    resubmits by itself but asks the operator (``needs_reconcile``).
    """

    message: str
    retryable: bool = False
    retry_after: float | None = None
    outcome_unknown: bool = False
    code: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass
class SinkError(ReelpressError):
    """A sink could not publish. ``retryable`` as for :class:`ProviderError`."""

    message: str
    retryable: bool = False
    retry_after: float | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class LedgerError(ReelpressError):
    """The ledger cannot be opened or is from an incompatible version."""


class JobNotFound(ReelpressError):
    """No job matches an id or id prefix (or more than one does)."""
