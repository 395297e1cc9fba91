"""The one place reelpress makes HTTP requests: client construction, timeouts, retries.

Every plugin that talks HTTP should use :func:`client` and :func:`send`, so timeouts, retry rules
and secret redaction are the same everywhere, and a move to another HTTP library is one file.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from . import __version__

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = f"reelpress/{__version__}"
_SECRET_QUERY_RE = re.compile(r"(?i)([?&](?:key|token|access_token|api_key|signature|sig)=)[^&]+")

AsyncClient = httpx.AsyncClient
HTTPError = httpx.HTTPError
Response = httpx.Response


class RetryableStatus(Exception):
    """A response whose status says trying again later may work (408, 429, 5xx)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status_code} from {redact(str(response.request.url))}")


def client(
    *,
    headers: Mapping[str, str] | None = None,
    base_url: str = "",
    timeout: httpx.Timeout | float | None = None,
) -> httpx.AsyncClient:
    """An async client with reelpress's defaults (timeouts, redirects, user agent)."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
        follow_redirects=True,
    )


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` as seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, RetryableStatus | httpx.TransportError)


def _wait(max_wait: float) -> Any:
    backoff = wait_random_exponential(multiplier=0.5, max=max_wait)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus):
            hint = retry_after(exc.response)
            if hint is not None:
                return min(hint, max_wait)
        return float(backoff(state))

    return wait


def _retrying(attempts: int, max_wait: float) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(_is_transient),
        wait=_wait(max_wait),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    attempts: int = 4,
    max_wait: float = 30.0,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, retrying transport errors and 408/429/5xx (honouring ``Retry-After``).

    Returns the final response, whatever its status: the caller maps 4xx to its own errors. Use
    only for requests that are safe to repeat.
    """
    async for attempt in _retrying(attempts, max_wait):
        with attempt:
            response = await http.request(method, url, **kwargs)
            if response.status_code in RETRY_STATUSES:
                await response.aread()
                raise RetryableStatus(response)
    return response


class DownloadRefused(Exception):
    """The server answered, but not with a file we take (status, content type or size)."""


async def download(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    content_types: Collection[str] | None = None,
    attempts: int = 4,
    max_wait: float = 30.0,
) -> int:
    """Stream ``url`` into ``dest`` and return its size. A dropped connection or a 408/429/5xx
    starts the download again (honouring ``Retry-After``); any other status, an unexpected
    content type or more than ``max_bytes`` raise :class:`DownloadRefused` at once."""
    async for attempt in _retrying(attempts, max_wait):
        with attempt:
            async with http.stream("GET", url) as response:
                if response.status_code in RETRY_STATUSES:
                    await response.aread()
                    raise RetryableStatus(response)
                if response.status_code != 200:
                    raise DownloadRefused(f"HTTP {response.status_code} from {redact(url)}")
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_types is not None and kind not in content_types:
                    raise DownloadRefused(f"content type {kind or '(none)'} from {redact(url)}, "
                                          f"expected {', '.join(content_types)}")  # fmt: skip
                size = 0
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadRefused(
                                f"more than {max_bytes // 2**20} MB from {redact(url)}"
                            )
                        out.write(chunk)
    return size


def redact(text: str) -> str:
    """Remove credentials from a URL or message before it is logged or shown."""
    return _SECRET_QUERY_RE.sub(r"\1***", text)
