"""Metrics across processes: the gateway processes of one `serve --workers 2` count into one sum, which either
of them, or the metrics port of the process that started them, reports whole."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.devstack import find_free_port
from tests.conftest import Gateway, Stack, make_org, start_gateway
from tests.observability.conftest import metrics_env, scrape
from tests.support.waits import wait_for

REQUESTS = "engineshed_graphql_requests_total"


@pytest.fixture
def two_processes(stack: Stack, tmp_path: Path) -> Iterator[tuple[Gateway, str, int, Path]]:
    directory = tmp_path / "metrics"
    token = secrets.token_urlsafe(24)
    port = find_free_port()
    env = metrics_env(stack, directory, token, ENGINESHED_METRICS_PORT=str(port))
    gateway = start_gateway(env, tmp_path, name="two-processes", workers=2)
    try:
        yield gateway, token, port, directory
    finally:
        gateway.process.stop()


def counting_pids(directory: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}


def test_two_gateway_processes_are_summed_in_every_scrape(stack: Stack, two_processes) -> None:
    gateway, token, port, directory = two_processes
    org = make_org(stack, gateway, "procs")
    sent = 0
    try:
        def both_counted() -> bool:
            nonlocal sent
            # A new connection per request: the kernel hands connections to either process.
            reply = httpx.post(gateway.url + "/v3/graphql", json={"query": "{ __typename }"},
                               headers={"Authorization": f"Bearer {org.token}"}, timeout=10)
            assert reply.status_code == 200
            sent += 1
            return len(counting_pids(directory)) >= 2

        wait_for(both_counted, timeout=60, interval=0.01, what="both gateway processes to serve a request")
        # The scrapes themselves are not GraphQL requests; whichever process answers, the sum is the same.
        for _ in range(4):
            assert scrape(gateway.url + "/metrics", token).value(REQUESTS, operation="__typename", code="ok") == sent
        from_port = scrape(f"http://127.0.0.1:{port}/metrics")
        assert from_port.value(REQUESTS, operation="__typename", code="ok") == sent
        assert from_port.value("engineshed_db_pool_size", role="gateway") >= 2  # two live pools, one each
    finally:
        org.close()


def test_the_metrics_port_answers_only_metrics_and_the_api_port_still_needs_the_token(two_processes) -> None:
    gateway, _token, port, _directory = two_processes
    assert httpx.get(gateway.url + "/metrics", timeout=10).status_code == 401
    assert httpx.post(f"http://127.0.0.1:{port}/v3/graphql", json={"query": "{ __typename }"}, timeout=10).status_code != 200
