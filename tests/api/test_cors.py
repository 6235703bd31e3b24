"""Browser pages on other origins (Altair, Apollo Sandbox, a team's own tool) can call the API.

By default any origin may, because the API's credentials are bearer tokens the caller sends itself, never
cookies a browser would attach on its own. ENGINESHED_CORS_ORIGINS narrows that to a list, or to none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gateway.settings import Settings, SettingsError
from tests.conftest import Gateway, Stack, start_gateway

FOREIGN = "https://sandbox.example.com"
PREFLIGHT_HEADERS = {
    "Origin": FOREIGN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, apollographql-client-name",
}


def graphql_url(gateway: Gateway) -> str:
    return gateway.url + "/v3/graphql"


def ws_handshake(gateway: Gateway, origin: str, token: str) -> dict:
    url = graphql_url(gateway).replace("http://", "ws://")
    with connect(url, subprotocols=["graphql-transport-ws"], origin=origin, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        return json.loads(ws.recv(timeout=30))


class TestAnyOriginByDefault:
    def test_a_preflight_from_another_origin_allows_the_post_and_its_headers(self, org):
        response = httpx.options(graphql_url(org.gateway), headers=PREFLIGHT_HEADERS, timeout=30)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed and "apollographql-client-name" in allowed
        assert "access-control-allow-credentials" not in response.headers  # no cookies, no credentials mode

    def test_a_cross_origin_query_is_answered_and_readable(self, org):
        response = httpx.post(
            graphql_url(org.gateway),
            json={"query": "{ libraries { count } }"},
            headers={"Origin": FOREIGN, "Authorization": f"Bearer {org.token}"},
            timeout=30,
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.json()["data"] == {"libraries": {"count": 0}}

    def test_a_cross_origin_request_without_a_token_is_still_refused(self, org):
        response = httpx.post(
            graphql_url(org.gateway), json={"query": "{ libraries { count } }"}, headers={"Origin": FOREIGN}, timeout=30
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "authentication_error"

    def test_a_websocket_from_another_origin_is_accepted(self, org):
        assert ws_handshake(org.gateway, FOREIGN, org.token)["type"] == "connection_ack"


@pytest.fixture(scope="module")
def listed_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = dict(stack.env, ENGINESHED_CORS_ORIGINS="https://tools.example.org, http://localhost:3000")
    gw = start_gateway(env, tmp_path_factory.mktemp("cors-gateway-logs"), name="gateway-cors")
    try:
        yield gw
    finally:
        gw.process.stop()


class TestListedOrigins:
    def test_a_listed_origin_is_allowed_by_name(self, listed_gateway):
        headers = dict(PREFLIGHT_HEADERS, Origin="http://localhost:3000")
        response = httpx.options(graphql_url(listed_gateway), headers=headers, timeout=30)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"

    def test_an_unlisted_origin_gets_no_permission(self, listed_gateway, org):
        preflight = httpx.options(graphql_url(listed_gateway), headers=PREFLIGHT_HEADERS, timeout=30)
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        # A simple request is still served (the browser, not the server, withholds it), minus the header.
        response = httpx.post(
            graphql_url(listed_gateway),
            json={"query": "{ libraries { count } }"},
            headers={"Origin": FOREIGN, "Authorization": f"Bearer {org.token}"},
            timeout=30,
        )
        assert "access-control-allow-origin" not in response.headers

    def test_a_websocket_from_an_unlisted_origin_is_refused_and_a_listed_one_accepted(self, listed_gateway, org):
        with pytest.raises(InvalidStatus) as refused:
            ws_handshake(listed_gateway, FOREIGN, org.token)
        assert refused.value.response.status_code == 403
        assert ws_handshake(listed_gateway, "https://tools.example.org", org.token)["type"] == "connection_ack"


class TestSetting:
    def test_none_turns_cross_origin_access_off(self):
        assert Settings.from_env({"ENGINESHED_CORS_ORIGINS": "none"}).cors_allowed_origins == ()
        assert Settings.from_env({}).cors_allowed_origins == ("*",)

    @pytest.mark.parametrize("value", ["example.com", "https://example.com/app", "ftp://example.com", "https://u@example.com"])
    def test_a_value_that_is_not_an_origin_is_refused_by_name(self, value):
        with pytest.raises(SettingsError, match="ENGINESHED_CORS_ORIGINS"):
            Settings.from_env({"ENGINESHED_CORS_ORIGINS": value})

