"""Reference images: local files and URLs become store assets named by their hash, fetched once."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import fakes
import pytest
from conftest import FAKE_PIPELINE, Harness
from PIL import Image

PNG = BytesIO()
Image.new("RGB", (8, 8), (200, 30, 30)).save(PNG, "PNG")
PNG_BYTES = PNG.getvalue()


class ImageServer:
    """A real HTTP server on loopback that counts what it serves."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        routes = {
            "/red.png": (200, "image/png", PNG_BYTES),
            "/page.html": (200, "text/html", b"<html></html>"),
            "/huge.png": (200, "image/png", b"\x89PNG" + b"0" * (21 * 1024 * 1024)),
        }
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, kind, body = routes.get(self.path, (404, "text/plain", b"not found"))
                if self.path == "/flaky.png":  # busy the first time, fine after
                    first = server.requests.count(self.path) == 1
                    status, kind, body = (
                        (503, "text/plain", b"busy") if first else routes["/red.png"]
                    )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ImageServer]:
    s = ImageServer()
    yield s
    s.close()


ONE_PLATFORM = FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]")


async def test_an_image_url_is_fetched_once_and_named_by_its_hash(
    harness: Harness, script: fakes.Script, server: ImageServer
) -> None:
    script.briefs = [fakes.brief(1, image=f"{server.url}/red.png"),
                     fakes.brief(2, image=f"{server.url}/red.png")]  # fmt: skip
    pipeline = await harness.open(ONE_PLATFORM)
    report = await harness.plan()
    assert report.failed_count == 0
    sha = hashlib.sha256(PNG_BYTES).hexdigest()
    assert [job.request.image for job, _ in report.sample] == [sha, sha]
    assert pipeline.store.asset(sha).read_bytes() == PNG_BYTES
    assert server.requests == ["/red.png"]
    await harness.plan()  # a new plan remembers the URL
    assert server.requests == ["/red.png"]


async def test_a_busy_image_server_is_asked_again(
    harness: Harness, script: fakes.Script, server: ImageServer
) -> None:
    script.briefs = [fakes.brief(1, image=f"{server.url}/flaky.png")]
    await harness.open(ONE_PLATFORM)
    report = await harness.plan()
    assert report.failed_count == 0 and report.new == 1
    assert server.requests == ["/flaky.png", "/flaky.png"]
    assert report.sample[0][0].request.image == hashlib.sha256(PNG_BYTES).hexdigest()


async def test_a_local_image_changes_the_request_when_its_content_changes(
    harness: Harness, script: fakes.Script, tmp_path: Path
) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(PNG_BYTES)
    script.briefs = [fakes.brief(1, image=str(image))]
    await harness.open(ONE_PLATFORM)
    first = (await harness.plan()).sample[0][0]
    Image.new("RGB", (8, 8), (0, 0, 255)).save(image, "PNG")
    second = (await harness.plan()).sample[0][0]
    assert first.request.image != second.request.image
    assert first.id != second.id


@pytest.mark.parametrize(
    ("path", "message"),
    [("/missing.png", "HTTP 404"), ("/page.html", "content type text/html"),
     ("/huge.png", "more than 20 MB")],
)  # fmt: skip
async def test_an_unusable_image_fails_that_brief_only(
    harness: Harness, script: fakes.Script, server: ImageServer, path: str, message: str
) -> None:
    script.briefs = [fakes.brief(1, image=f"{server.url}{path}"), fakes.brief(2)]
    await harness.open(ONE_PLATFORM)
    report = await harness.plan()
    assert report.new == 1
    [issue] = report.failed
    assert issue.where == "fake:1" and message in issue.message
    assert "127.0.0.1" in issue.message  # says which URL


async def test_a_missing_local_image_names_the_path(
    harness: Harness, script: fakes.Script, tmp_path: Path
) -> None:
    script.briefs = [fakes.brief(1, image="images/nope.png")]
    await harness.open(ONE_PLATFORM)
    report = await harness.plan()
    assert report.failed[0].message == f"image not found: {tmp_path / 'images' / 'nope.png'}"
