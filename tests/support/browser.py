"""A real headless Chromium for `tests/browser/` (`docs/browser.md`): Debian's `chromium` package
(installed by `make browser`) driven by Playwright, never a downloaded browser build; and small
static sites to serve the pages from, each its own origin.

Without Playwright or the browser the tests skip with one line (fail under
STK_REQUIRE_SERVICES=1), like any missing service.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.services import unavailable

CHROMIUM = Path(os.environ.get("STK_TEST_CHROMIUM", "/usr/bin/chromium"))
PAGE = b"<!doctype html><meta charset=utf-8><title>app</title><body>app</body>"

# `fetch` from the page, answered as plain data: status, JSON body (or null), the headers JS may
# read, or the error a blocked request raises (a CORS refusal is a TypeError, not a status).
FETCH = """
async ([url, init]) => {
  try {
    const r = await fetch(url, init);
    let body = null;
    try { body = await r.json(); } catch (e) {}
    const h = (name) => r.headers.get(name);
    return {status: r.status, type: r.type, body,
            requestId: h('x-request-id'), retryAfter: h('retry-after')};
  } catch (e) {
    return {error: e.name + ': ' + e.message};
  }
}
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def static_site() -> Iterator[str]:
    """An origin (`http://127.0.0.1:<port>`) serving one blank page at every path."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright `Browser`), one per test module: Playwright's sync API
    keeps its event loop current while it runs, which the async tests after it must not see."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("playwright", "is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        unavailable("chromium", f"is not installed at {CHROMIUM} (run `make browser`)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        except Error as exc:
            unavailable("chromium", f"does not start: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()
