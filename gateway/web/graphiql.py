"""An offline GraphiQL page for /v3/graphql.

Strawberry's bundled GraphiQL loads React and GraphiQL from a CDN, so it is blank on the
air-gapped machines our users run the gateway on. This page loads everything from the
gateway itself: the vendored npm builds in ``static/graphiql/`` (see its README.md) and
our small boot script and stylesheet in ``static/engineshed/``, all under ``/v3/static``.

- ``graphiql_html()`` renders the page; it contains no inline script and no external URL;
- ``graphiql_response()`` wraps it in an ``HTMLResponse`` with a strict Content-Security-Policy
  (scripts: same-origin files only; styles: same-origin files plus a per-response nonce);
- ``static_app()`` serves ``gateway/web/static`` (mounted by the app at ``/v3/static``).

Every operation needs a bearer token, so the page has a token box; the boot script keeps the
token in ``localStorage`` and sends it as ``Authorization: Bearer <token>`` unless the
GraphiQL headers editor sets an Authorization header of its own. A ``#token=...`` fragment (the link
``engineshed dev`` prints) fills the box and is then removed from the address bar; fragments never
reach the server, so the token is in no access log.
"""

from __future__ import annotations

import secrets
from html import escape
from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/v3/static"
DEFAULT_ENDPOINT = "/v3/graphql"

# Vendored files, relative to STATIC_DIR, in load order.
STYLESHEETS = ("graphiql/graphiql.min.css", "engineshed/graphiql-page.css")
SCRIPTS = (
    "graphiql/react.production.min.js",
    "graphiql/react-dom.production.min.js",
    "graphiql/graphiql.min.js",
    "engineshed/graphiql-boot.js",
)

# Scripts only from the gateway itself: no inline script, no eval (the UMD builds need neither).
# Styles: GraphiQL's dialogs (react-remove-scroll) inject a <style> element at run time; it carries
# the nonce the boot script hands over as __webpack_nonce__, so no 'unsafe-inline' is needed.
# Everything else GraphiQL styles at run time goes through the CSSOM, which CSP does not restrict.
# Fonts and a few background images in graphiql.min.css are data: URIs.
def content_security_policy(style_nonce: str) -> str:
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{style_nonce}'",
            "font-src 'self' data:",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # the CSP nonce is per response
}


def _local_path(value: str, what: str) -> str:
    """Refuse anything but an absolute path on this origin: the page must stay offline-safe."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        raise ValueError(f"{what} must be a path on this server such as '/v3/graphql', got {value!r}")
    return value


def graphiql_html(endpoint: str = DEFAULT_ENDPOINT, *, static_prefix: str = STATIC_PREFIX, style_nonce: str | None = None) -> str:
    """The GraphiQL page for ``endpoint``, loading its assets from ``static_prefix``.

    ``style_nonce`` is the CSP nonce GraphiQL's run-time <style> elements must carry (see ``graphiql_response``).
    """
    nonce_attr = f' data-style-nonce="{escape(style_nonce)}"' if style_nonce else ""
    endpoint = _local_path(endpoint, "endpoint")
    prefix = _local_path(static_prefix, "static_prefix").rstrip("/")
    links = "\n".join(f'  <link rel="stylesheet" href="{escape(f"{prefix}/{path}")}">' for path in STYLESHEETS)
    scripts = "\n".join(f'  <script src="{escape(f"{prefix}/{path}")}"></script>' for path in SCRIPTS)
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>engineshed GraphiQL</title>
  <link rel="icon" href="data:,">
{links}
</head>
<body>
  <header class="es-bar">
    <strong>engineshed</strong>
    <label for="es-token">Bearer token</label>
    <input id="es-token" type="password" autocomplete="off" spellcheck="false" placeholder="paste an API token, then press Enter">
    <span id="es-token-state" aria-live="polite"></span>
  </header>
  <div id="graphiql" data-endpoint="{escape(endpoint)}"{nonce_attr}>
    <noscript>GraphiQL needs JavaScript. The API itself is at {escape(endpoint)}.</noscript>
  </div>
{scripts}
</body>
</html>
"""


def graphiql_response(endpoint: str = DEFAULT_ENDPOINT, *, static_prefix: str = STATIC_PREFIX) -> HTMLResponse:
    """The page with its security headers (CSP with a fresh style nonce, nosniff, no-referrer, no framing)."""
    nonce = secrets.token_urlsafe(18)
    headers = {"Content-Security-Policy": content_security_policy(nonce), **SECURITY_HEADERS}
    return HTMLResponse(graphiql_html(endpoint, static_prefix=static_prefix, style_nonce=nonce), headers=headers)


class _NoSniffStaticFiles(StaticFiles):
    """StaticFiles that also forbids content sniffing on what it serves."""

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_app() -> StaticFiles:
    """Serves ``gateway/web/static``; the app mounts it at ``/v3/static``."""
    return _NoSniffStaticFiles(directory=STATIC_DIR)
