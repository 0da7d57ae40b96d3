"""The built documentation site in headless Chromium, cut off from every other host: its
Mermaid diagrams render (from the site's own mermaid.js) and nothing is fetched elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("page", "diagrams"),
    [("tokens/", 2), ("sessions/", 1), ("scaling/", 1), ("howto/several-processes/", 1)],
)
def test_diagrams_render_with_no_other_host(
    site_url: str, browser: Browser, page: str, diagrams: int
) -> None:
    elsewhere: list[str] = []

    def only_the_site(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(site_url).netloc:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route("**/*", only_the_site)
    tab = context.new_page()
    tab.goto(site_url + "/" + page)
    # Material replaces each <pre class="mermaid"> by a <div class="mermaid"> holding the
    # rendered SVG in a closed shadow root; a diagram that fails to render stays a <pre>.
    expect(tab.locator("div.mermaid")).to_have_count(diagrams, timeout=20_000)
    expect(tab.locator("pre.mermaid")).to_have_count(0)
    heights = tab.locator("div.mermaid").evaluate_all(
        "blocks => blocks.map(block => block.getBoundingClientRect().height)"
    )
    assert all(height > 100 for height in heights), heights
    tab.screenshot(path=str(ARTIFACTS / f"docs-{page.strip('/').replace('/', '-')}.png"))
    context.close()
    assert elsewhere == []
