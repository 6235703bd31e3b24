"""/metrics on the API port: only for ENGINESHED_METRICS_TOKEN, so metrics stay off the public surface.

Without a token configured the path does not exist there (404, whether or not ENGINESHED_METRICS_PORT serves
metrics elsewhere); with one, any other credential is refused (401) after a constant-time comparison.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.observability import exposition
from gateway.web.errors import error_body, error_response


async def metrics_endpoint(request: Request) -> Response:
    settings = request.app.state.resources.settings
    expected = settings.metrics_token
    if not expected:
        return error_response(404, "not_found", f"no such path: {request.url.path}", shape=error_body)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return _refused()
    body = await asyncio.to_thread(exposition.render, settings)
    return Response(body, media_type=exposition.CONTENT_TYPE_LATEST)


def _refused() -> JSONResponse:
    return error_response(401, "authentication_error", "/metrics needs the metrics token (Authorization: Bearer ...)",
                          shape=error_body)
