"""The endpoint's last resort: a failure nothing else shaped (a bug) still answers in GraphQL's JSON shape,
with the established internal_error code, no trace in the reply, and the trace in the log.

No bug is left in the gateway on purpose, so the fault is injected: the real endpoint, the real
PostgreSQL pool and a real token, in front of a schema whose execution raises."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.settings import Settings
from gateway.web.graphql_view import GraphQLEndpoint
from tests.api.conftest import assert_clean_error_text


class BrokenSchema:
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug at /srv/engineshed/secret.py line 1")


def test_a_failure_outside_execution_is_a_json_internal_error_and_is_logged(stack, org, caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(routes=[Route("/v3/graphql", GraphQLEndpoint(BrokenSchema()), methods=["GET", "POST"])])
    app.state.resources = SimpleNamespace(settings=Settings(), pool=stack.db.pool)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            headers = {"Authorization": f"Bearer {org.token}"}
            return [
                await client.post("/v3/graphql", json={"query": "{ me { id } }"}, headers=headers),
                await client.get("/v3/graphql", params={"query": "{ me { id } }"}, headers=headers),
            ]

    with caplog.at_level(logging.ERROR, logger="engineshed.graphql"):
        replies = stack.db.run(go())
    for reply in replies:
        assert reply.status_code == 500
        assert reply.headers["content-type"].startswith("application/json")
        body = reply.json()
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["internal_error"]
        assert "secret.py" not in reply.text and "RuntimeError" not in reply.text
        assert_clean_error_text(body)
    logged = [r for r in caplog.records if r.exc_info and "secret.py" in str(r.exc_info[1])]
    assert len(logged) == 2, "the trace is kept in the gateway's log"
