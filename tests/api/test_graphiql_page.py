"""The offline GraphiQL page: no external URL, every asset served locally, and (with chromium) it renders.

A tiny Starlette app serves ``graphiql_response()`` at /v3/graphql (GET) and ``static_app()`` at
/v3/static; POSTs to /v3/graphql are answered by a one-field graphql-core schema and their
Authorization headers recorded, so the headless-browser test can check the page's fetcher.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import psutil
import pytest
import uvicorn
from graphql import build_schema, graphql_sync
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from gateway.web.graphiql import (
    STATIC_DIR,
    graphiql_html,
    graphiql_response,
    static_app,
)
from tests.support.requirements import need

CHROMIUM = shutil.which("chromium")
TOKEN = "t0k-graphiql-test"
REFUSED_TOKEN = "es_revoked-long-ago"
TINY_SCHEMA = build_schema("type Query { hello: String }")


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            if attributes.get("src"):
                self.scripts.append(attributes["src"] or "")
            else:
                self.inline_scripts += 1
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes.get("href") or "")


def _assets(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    return parser


class _Server:
    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        self.urls: list[str] = []  # every URL the page and its fetcher asked for
        self.base_url = ""


def _build_app(state: _Server) -> Starlette:
    async def graphql(request: Request) -> Response:
        state.urls.append(str(request.url))
        if request.method == "GET":
            return graphiql_response()
        state.authorizations.append(request.headers.get("authorization"))
        if request.headers.get("authorization") == f"Bearer {REFUSED_TOKEN}":
            return JSONResponse({"errors": [{"message": "the token is not valid",
                                             "extensions": {"code": "authentication_error"}}]}, status_code=401)
        body = await request.json()
        result = graphql_sync(TINY_SCHEMA, body["query"], root_value={"hello": "world"},
                              variable_values=body.get("variables"), operation_name=body.get("operationName"))
        payload: dict = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        return JSONResponse(payload)

    async def seed(request: Request) -> Response:
        # Test-only page (no CSP): puts a token into localStorage the way the token box would, then opens GraphiQL.
        return HTMLResponse(
            "<!doctype html><script>"
            f"localStorage.setItem('engineshed.graphiql.token', '{TOKEN}');"
            "location.replace('/v3/graphql');"
            "</script>"
        )

    return Starlette(
        routes=[
            Route("/v3/graphql", graphql, methods=["GET", "POST"]),
            Route("/seed", seed),
            Mount("/v3/static", app=static_app()),
        ]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    state = _Server()
    port = _free_port()
    config = uvicorn.Config(_build_app(state), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    state.base_url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def test_html_has_no_external_url() -> None:
    html = graphiql_html()
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?//""", html)
    assets = _assets(html)
    assert assets.inline_scripts == 0  # CSP allows only same-origin script files
    assert assets.scripts and assets.stylesheets
    assert all(url.startswith("/v3/static/") for url in assets.scripts + assets.stylesheets)
    assert 'data-endpoint="/v3/graphql"' in html


def test_html_takes_a_local_endpoint_only() -> None:
    assert 'data-endpoint="/api/graphql?x=1&amp;y=2"' in graphiql_html("/api/graphql?x=1&y=2")
    for bad in ("https://example.com/graphql", "//example.com/graphql", "graphql", "/\\evil"):
        with pytest.raises(ValueError):
            graphiql_html(bad)


def test_vendored_files_present_with_licenses() -> None:
    vendored = STATIC_DIR / "graphiql"
    for name in ("graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js",
                 "LICENSE.graphiql", "LICENSE.react", "LICENSE.react-dom", "README.md"):
        assert (vendored / name).is_file(), name
    total = sum(path.stat().st_size for path in STATIC_DIR.rglob("*") if path.is_file())
    assert total < 4 * 1024 * 1024


def test_page_and_assets_are_served(server: _Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        page = client.get("/v3/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = {part.split()[0]: part.split()[1:] for part in page.headers["content-security-policy"].split("; ")}
        assert csp["default-src"] == ["'none'"]
        assert csp["script-src"] == ["'self'"]  # no inline script, no eval
        assert csp["connect-src"] == ["'self'"]
        nonce = re.search(r'data-style-nonce="([^"]+)"', page.text).group(1)
        assert csp["style-src"] == ["'self'", f"'nonce-{nonce}'"]
        assert "unsafe" not in page.headers["content-security-policy"]
        again = client.get("/v3/graphql", headers={"Accept": "text/html"})
        assert f"'nonce-{nonce}'" not in again.headers["content-security-policy"]  # fresh per response
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"

        assets = _assets(page.text)
        for url in assets.scripts + assets.stylesheets:
            assert not url.startswith(("http://", "https://", "//")), url
        expected = [(url, "javascript") for url in assets.scripts] + [(url, "text/css") for url in assets.stylesheets]
        for url, kind in expected:
            response = client.get(url)
            assert response.status_code == 200, url
            assert kind in response.headers["content-type"], (url, response.headers["content-type"])
            assert response.headers["x-content-type-options"] == "nosniff"
            assert len(response.content) > 100, url

        assert client.get("/v3/static/graphiql/nope.js").status_code == 404
        assert client.get("/v3/static/../graphiql.py").status_code == 404


@pytest.fixture
def chromium() -> str:
    """The browser for the headless checks; they cannot run without it."""
    if CHROMIUM is None:
        need("chromium", "chromium is not installed (apt-get install chromium): the headless browser checks cannot run")
    return CHROMIUM


def _chromium_flags(profile: str) -> list[str]:
    assert CHROMIUM is not None
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}",
    ]


@contextlib.contextmanager
def _browser(extra: list[str], **popen: object) -> Iterator[subprocess.Popen]:
    """Chromium on a fresh profile, in its own process group; on exit every process of the group is gone.

    Chromium's helpers (zygote, renderers, crash handler) can outlive the main process for a moment and
    keep writing to the profile, so the whole group is stopped and waited for before the profile is removed.
    """
    with tempfile.TemporaryDirectory(prefix="graphiql-chromium-") as profile:
        browser = subprocess.Popen([*_chromium_flags(profile), *extra], start_new_session=True, **popen)  # type: ignore[call-overload]
        try:
            yield browser
        finally:
            _stop_group(browser)


def _stop_group(browser: subprocess.Popen) -> None:
    try:
        members = [psutil.Process(browser.pid), *psutil.Process(browser.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        members = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, sig)
        for member in members:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(sig)
        _, members = psutil.wait_procs(members, timeout=10)
        if not members:
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        browser.wait(timeout=10)


def _chromium(url: str, *extra: str, timeout: float = 90) -> str:
    assert CHROMIUM is not None
    # --dump-dom would otherwise read the DOM before React's first render and the introspection fetch.
    with _browser(["--virtual-time-budget=15000", *extra, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as browser:
        stdout, stderr = browser.communicate(timeout=timeout)
    assert browser.returncode == 0, stderr[-2000:]
    return stdout


@pytest.mark.usefixtures("chromium")
def test_page_renders_in_headless_chromium(server: _Server) -> None:
    server.authorizations.clear()
    dom = _chromium(f"{server.base_url}/seed", "--dump-dom")
    assert "graphiql-container" in dom, dom[:2000]
    assert "graphiql-editor" in dom or "CodeMirror" in dom, dom[:2000]
    assert "data-csp-violations" not in dom, re.findall(r'data-csp-violations="[^"]*"', dom)
    # The fetcher sent the stored token with the schema introspection.
    assert f"Bearer {TOKEN}" in server.authorizations, server.authorizations


class _DevTools:
    """Just enough of the Chrome DevTools Protocol to click around the page."""

    def __init__(self, ws) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def js(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")


async def _drive_graphiql(server: _Server, debug_port: int, screenshot: str | None) -> None:
    import websockets

    async with websockets.connect(await _page_socket(debug_port), max_size=None) as ws:
        tools = _DevTools(ws)
        await tools.wait_for("location.pathname === '/v3/graphql' && !!document.querySelector('.graphiql-container .CodeMirror')")
        await tools.wait_for(f"document.getElementById('es-token').value === {json.dumps(TOKEN)}")
        assert await tools.js("document.getElementById('es-token').type") == "password"

        # Run a query with the stored token.
        await tools.js("document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue('{ hello }')")
        await asyncio.sleep(1)  # GraphiQL picks up the edit (and drops the old operation name) debounced
        server.authorizations.clear()
        await tools.js("document.querySelector('.graphiql-execute-button').click()")
        result = await tools.wait_for("((document.querySelector('.result-window') || {}).innerText || '').includes('\"data\"')"
                                      " && document.querySelector('.result-window').innerText")
        assert '"hello": "world"' in str(result).replace("\xa0", " "), result
        assert server.authorizations == [f"Bearer {TOKEN}"]

        # A token typed into the box is stored, stripped of a pasted "Bearer ", and used from then on.
        server.authorizations.clear()
        await tools.js("(() => { const box = document.getElementById('es-token'); box.value = ' Bearer typed-token ';"
                       " box.dispatchEvent(new Event('change')); })()")
        assert await tools.js("localStorage.getItem('engineshed.graphiql.token')") == "typed-token"
        assert await tools.js("document.getElementById('es-token').value") == "typed-token"
        await tools.js("document.querySelector('.graphiql-execute-button').click()")
        deadline = time.monotonic() + 10
        while len(server.authorizations) < 2 and time.monotonic() < deadline:  # schema refetch + the query
            await asyncio.sleep(0.1)
        assert server.authorizations and set(server.authorizations) == {"Bearer typed-token"}, server.authorizations

        # An Authorization header from the headers editor wins over the token box.
        await tools.js("[...document.querySelectorAll('.graphiql-editor-tools button')].find(b => b.textContent === 'Headers').click()")
        await tools.wait_for("!!document.querySelector('.graphiql-editor-tool .CodeMirror')")
        await tools.js("""[...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')].map(e => e.CodeMirror)"""
                       """.forEach(cm => cm.getValue() === '' && cm.setValue('{"Authorization": "Bearer from-headers"}'))""")
        await asyncio.sleep(1)  # debounced, like the query editor
        server.authorizations.clear()
        await tools.js("document.querySelector('.graphiql-execute-button').click()")
        deadline = time.monotonic() + 10
        while not server.authorizations and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert server.authorizations == ["Bearer from-headers"]

        # Dialogs inject a <style> element: the CSP nonce must cover it.
        await tools.js("document.querySelector('[aria-label=\\'Open settings dialog\\']').click()")
        await tools.wait_for("!!document.querySelector('.graphiql-dialog')")
        await tools.wait_for("[...document.querySelectorAll('style')].some(s => s.nonce)")
        if screenshot:
            shot = await tools.call("Page.captureScreenshot", format="png")
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        await asyncio.sleep(0.3)
        assert await tools.js("document.documentElement.getAttribute('data-csp-violations')") is None


@pytest.mark.usefixtures("chromium")
def test_graphiql_works_and_respects_csp_in_chromium(server: _Server) -> None:
    debug_port = _free_port()
    extra = [f"--remote-debugging-port={debug_port}", "--window-size=1280,800", f"{server.base_url}/seed"]
    with _browser(extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        asyncio.run(asyncio.wait_for(_drive_graphiql(server, debug_port, os.environ.get("GRAPHIQL_SCREENSHOT")), 90))


LINKED_TOKEN = "es_from-the-dev-link"


async def _page_socket(debug_port: int) -> str:
    """The DevTools websocket of the browser's page, once the browser answers."""
    async with httpx.AsyncClient(timeout=5) as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = (await client.get(f"http://127.0.0.1:{debug_port}/json")).json()
                return next(target for target in targets if target["type"] == "page")["webSocketDebuggerUrl"]
            except (httpx.HTTPError, StopIteration):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def _open_signed_in_link(server: _Server, debug_port: int) -> None:
    import websockets

    async with websockets.connect(await _page_socket(debug_port), max_size=None) as ws:
        tools = _DevTools(ws)
        await tools.wait_for("!!document.querySelector('.graphiql-container .CodeMirror')")
        await tools.wait_for(f"document.getElementById('es-token').value === {json.dumps(LINKED_TOKEN)}")
        assert await tools.js("location.href") == f"{server.base_url}/v3/graphql?x=1#keep=me"  # only the token went
        assert await tools.js("localStorage.getItem('engineshed.graphiql.token')") == LINKED_TOKEN
        assert (await tools.js("document.getElementById('es-token-state').textContent")).startswith("token set")
        # The schema introspection went out with the linked token, and the server's answer shows in its state.
        await tools.wait_for("document.getElementById('es-token-state').textContent === 'token set · accepted'")
        deadline = time.monotonic() + 20
        while f"Bearer {LINKED_TOKEN}" not in server.authorizations and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert f"Bearer {LINKED_TOKEN}" in server.authorizations, server.authorizations


@pytest.mark.usefixtures("chromium")
def test_a_link_with_a_token_fragment_signs_the_page_in_and_leaves_no_trace(server: _Server) -> None:
    server.authorizations.clear()
    server.urls.clear()
    debug_port = _free_port()
    link = f"{server.base_url}/v3/graphql?x=1#keep=me&token={LINKED_TOKEN}"
    extra = [f"--remote-debugging-port={debug_port}", "--window-size=1280,800", link]
    with _browser(extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        asyncio.run(asyncio.wait_for(_open_signed_in_link(server, debug_port), 90))
    assert server.urls and all(LINKED_TOKEN not in url for url in server.urls), server.urls  # fragments are never sent


async def _open_refused_link(server: _Server, debug_port: int) -> None:
    import websockets

    async with websockets.connect(await _page_socket(debug_port), max_size=None) as ws:
        tools = _DevTools(ws)
        await tools.wait_for("!!document.getElementById('es-token')")
        await tools.wait_for(f"document.getElementById('es-token').value === {json.dumps(REFUSED_TOKEN)}")
        # The schema fetch went out with the token and was refused: the box says so, in the refusal's colour.
        await tools.wait_for("document.getElementById('es-token-state').className === 'es-refused'")
        assert "refused" in await tools.js("document.getElementById('es-token-state').textContent")


@pytest.mark.usefixtures("chromium")
def test_a_token_the_server_refuses_is_shown_as_refused_not_as_set(server: _Server) -> None:
    debug_port = _free_port()
    link = f"{server.base_url}/v3/graphql#token={REFUSED_TOKEN}"
    extra = [f"--remote-debugging-port={debug_port}", "--window-size=1280,800", link]
    with _browser(extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        asyncio.run(asyncio.wait_for(_open_refused_link(server, debug_port), 90))
    assert f"Bearer {REFUSED_TOKEN}" in server.authorizations
