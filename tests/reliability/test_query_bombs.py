"""Depth, token and alias bombs and other expensive documents: refused cheaply with a clean error (never a
5xx), 20 of each in a row, each within the client's timeout."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_gateway

from tests.reliability.conftest import assert_clean


def _deep(depth: int) -> str:
    inner = "id"
    for _ in range(depth):
        inner = f"library {{ entities {{ records {{ {inner} }} }} }}"
    return f"query {{ entity(id: \"00000000-0000-0000-0000-000000000000\") {{ {inner} }} }}"


BOMBS = {
    "depth 40": _deep(40),
    "depth 400": _deep(400),
    "20000 tokens": "query { " + " ".join("__typename" for _ in range(20000)) + " }",
    "500 aliases": "query { " + " ".join(f"a{i}: libraries {{ count }}" for i in range(500)) + " }",
    "alias of a heavy field": "query { " + " ".join(f"a{i}: jobs(limit: 1000) {{ records {{ tasks {{ records {{ id }} }} }} }}" for i in range(200)) + " }",
    "fragment cycle": "query { ...A } fragment A on Query { libraries { count } ...B } fragment B on Query { ...A }",
    "introspection depth": "query { __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }",
    "1 MB string argument": 'query { libraries(name: "' + "x" * (1024 * 1024) + '") { count } }',
    "10000 directives": "query { libraries " + "@include(if: true) " * 10000 + "{ count } }",
    "deep list variable": "query($v: [String!]) { libraries(entityIdentifierTypeIds: $v) { count } }",
    "unbalanced braces": "query { " + "{" * 50000,
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_query_bomb_is_refused_cheaply_twenty_times_in_a_row(org, name):
    query = BOMBS[name]
    body: dict = {"query": query}
    if name == "deep list variable":
        body["variables"] = {"v": ["x"] * 100_000}
    with httpx.Client(headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        for _ in range(20):
            response = http.post(org.client.url, json=body)
            assert response.status_code < 500, (name, response.status_code, response.text[:300])
            payload = response.json()
            assert_clean(payload)
            if name not in ("deep list variable", "introspection depth", "1 MB string argument"):
                assert payload.get("errors"), (name, str(payload)[:300])
                assert payload["errors"][0]["extensions"]["code"] in ("invalid_input",), (name, payload["errors"][0])


def _fan_out(levels: int) -> str:
    """Each fragment spreads the next one twice: 31 short lines that expand to 2**30 spreads."""
    spreads = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels))
    return f"query {{ ...F0 }} {spreads} fragment F{levels} on Query {{ __typename }}"


def test_a_fragment_fan_out_bomb_is_refused_cheaply(stack, org, tmp_path):
    # A gateway of its own: if the bomb goes off it is this one that is stuck, and it is killed afterwards.
    gateway = start_gateway(stack.env, tmp_path, "bomb-gateway")
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {org.token}"}, timeout=10) as http:
            for _ in range(20):
                response = http.post(gateway.url + "/v3/graphql", json={"query": _fan_out(30)})
                assert response.status_code < 500
                payload = response.json()
                assert_clean(payload)
                # Measured once per fragment, the bomb's expanded size is known at once: refused as too costly.
                assert payload["errors"][0]["extensions"]["code"] in ("capacity_exceeded", "invalid_input"), payload
                assert payload["data"] is None
    finally:
        gateway.process.kill()
        gateway.process.stop()
