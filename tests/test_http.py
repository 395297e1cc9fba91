"""The shared HTTP helper against a real loopback server: what it retries and what it does not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reelpress import http


class Scripted:
    """Answers each request with the next (status, headers) in its script, then 200."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                status, headers = owner.script.pop(0) if owner.script else (200, {})
                body = f"answer {owner.hits}".encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/x?key=s3cr3t"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.server.shutdown()
    s.server.server_close()


async def test_transient_statuses_are_retried_honouring_retry_after(server: Scripted) -> None:
    server.script = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    async with http.client() as client:
        response = await http.send(client, "GET", server.url)
    assert (response.status_code, response.text, server.hits) == (200, "answer 3", 3)


async def test_a_client_error_is_returned_at_once(server: Scripted) -> None:
    server.script = [(404, {}), (200, {})]
    async with http.client() as client:
        response = await http.send(client, "GET", server.url)
    assert (response.status_code, server.hits) == (404, 1)


async def test_retries_stop_after_the_last_attempt(server: Scripted) -> None:
    server.script = [(503, {"Retry-After": "0"})] * 5
    async with http.client() as client:
        with pytest.raises(http.RetryableStatus) as failed:
            await http.send(client, "GET", server.url, attempts=3)
    assert server.hits == 3
    assert "HTTP 503" in str(failed.value) and "s3cr3t" not in str(failed.value)


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert http.retry_after(http.Response(429, headers={"Retry-After": "7"})) == 7
    assert http.retry_after(http.Response(429, headers={"Retry-After": later}), now) == 30
    assert http.retry_after(http.Response(429)) is None


def test_redact_hides_credentials_in_urls() -> None:
    assert http.redact("https://x.test/a?key=abc&alt=media") == "https://x.test/a?key=***&alt=media"
