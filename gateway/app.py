"""create_app(settings) -> Starlette: routes, middleware, and the lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route, WebSocketRoute

from engines.runtime import provider_summary
from gateway.observability.endpoint import metrics_endpoint
from gateway.observability.process import observed
from gateway.resources import open_resources
from gateway.rest.routes import rest_routes
from gateway.schema.root import build_schema
from gateway.services import housekeeping
from gateway.settings import Settings
from gateway.web.body_limit import BodyLimitMiddleware
from gateway.web.errors import graphql_error, http_error
from gateway.web.files import download
from gateway.web.graphiql import static_app
from gateway.web.graphql_view import GraphQLEndpoint, body_limit
from gateway.web.health import healthz, readyz
from gateway.web.request_id import RequestIdMiddleware
from gateway.web.subscriptions import SubscriptionView
from storage.db import connection_name, listen
from storage.queries.jobs import EVENT_CHANNEL

log = logging.getLogger("engineshed")


def create_app(settings: Settings) -> Starlette:
    schema = build_schema(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_resources(settings, role="gateway") as resources, observed(settings, "gateway", resources.pool):
            async with listen(
                settings.database_url, [EVENT_CHANNEL], resources.events.publish, application_name=connection_name("gateway")
            ):
                app.state.resources = resources
                upkeep = asyncio.create_task(housekeeping.run_forever(resources))
                log.info("engineshed gateway ready; %s", await asyncio.to_thread(provider_summary, settings.onnx_provider))
                try:
                    yield
                finally:
                    upkeep.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await upkeep

    async def root(_request: Request) -> RedirectResponse:
        return RedirectResponse("/v3/graphql")

    origins = settings.cors_allowed_origins
    middleware = [Middleware(RequestIdMiddleware)] + ([
        # Preflights are answered here; bearer tokens travel in a header, so no credentials mode.
        Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"],
                   expose_headers=["X-Request-ID"], max_age=600)
    ] if origins else [])

    return Starlette(
        middleware=middleware,
        routes=[
            Route("/", root),
            Route("/v3/graphql", BodyLimitMiddleware(GraphQLEndpoint(schema), limit=body_limit, shape=graphql_error),
                  methods=["GET", "POST"]),
            WebSocketRoute("/v3/graphql", SubscriptionView(schema, allowed_origins=origins)),
            # The gateway's signed file links (ENGINESHED_LINKS): the signature is the capability, no token.
            Route("/v3/files/{key:path}", download, methods=["GET", "HEAD"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),  # only for ENGINESHED_METRICS_TOKEN (404 without one)
            Mount("/v3/static", app=static_app(), name="static"),
            *rest_routes(),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
