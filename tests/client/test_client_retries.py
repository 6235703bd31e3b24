"""Retries with backoff, against a real HTTP server on loopback in front of the real gateway (tests/client/loopback.py):
it answers 503 / ``service_unavailable`` or drops connections a given number of times, then forwards; the client's
retries are counted by what it saw. No mock of our own code."""

from __future__ import annotations

import json

import pytest

from engineshed.client import AsyncClient, Client, ConnectionFailed, RetryPolicy, ServiceUnavailableError
from tests.client.helpers import cli, png
from tests.client.loopback import Flaky, flaky_server

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05)


@pytest.mark.parametrize("style", ["http", "graphql"])
def test_service_unavailable_is_retried_until_the_service_answers(org, style):
    flaky = Flaky(org.gateway.url, unavailable=2, style=style)
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client:
        library = client.create_library("after-outage", "people")  # a mutation: service_unavailable means it did not run
    assert len(flaky.requests) == 3
    with Client(org.gateway.url, org.token) as direct:
        assert [r["id"] for r in direct.libraries(name="after-outage")["records"]] == [library["id"]]


def test_service_unavailable_is_raised_once_the_attempts_are_spent(org):
    flaky = Flaky(org.gateway.url, unavailable=10)
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client, pytest.raises(ServiceUnavailableError) as raised:
        client.me()
    assert raised.value.code == "service_unavailable" and len(flaky.requests) == FAST.attempts


def test_an_upload_is_sent_whole_again_after_service_unavailable(org):
    flaky = Flaky(org.gateway.url, unavailable=1)
    with Client(org.gateway.url, org.token) as direct:
        library = direct.create_library("uploads", "people")
        entity = direct.create_entity(library["id"], "gina")
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client:
        created = client.create_entity_identifier(entity["id"], png(4), filename="gina.png")
    assert len(flaky.requests) == 2 and all(png(4) in request for request in flaky.requests)  # the whole file both times
    with Client(org.gateway.url, org.token) as direct:
        assert direct.library_contents(library["id"])["gina"]["sha256"] == {created["contentSha256"]}


def test_a_dropped_connection_is_retried_for_a_query_but_not_for_a_mutation(org):
    flaky = Flaky(org.gateway.url, drops=1)
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client:
        assert client.me()["organizationId"] == str(org.id)
        assert len(flaky.requests) == 2
        flaky.drops = 1
        with pytest.raises(ConnectionFailed):
            client.create_library("maybe-created", "people")  # it may have run: never sent twice
    assert len(flaky.requests) == 3


async def test_the_async_client_retries_too(org):
    flaky = Flaky(org.gateway.url, unavailable=2)
    with flaky_server(flaky) as url:
        async with AsyncClient(url, org.token, retry=FAST) as client:
            assert (await client.me())["organizationId"] == str(org.id)
    assert len(flaky.requests) == 3


def test_the_cli_rides_out_a_short_outage(org):
    flaky = Flaky(org.gateway.url, unavailable=2)
    with flaky_server(flaky) as url:
        done = cli(org, "jobs", "list", "--json", url=url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [] and len(flaky.requests) == 3


def test_a_server_slower_than_the_timeout_is_reported_as_a_timeout_not_as_unreachable(org):
    with flaky_server(Flaky(org.gateway.url, stall=3.0)) as url, \
            Client(url, org.token, timeout=0.3, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(ConnectionFailed, match="did not answer in time") as slow:
            client.libraries()
    assert "cannot reach" not in str(slow.value)


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"attempts": -1}, {"attempts": True}, {"initial_delay": -5},
                                 {"initial_delay": 10, "max_delay": 1}])
def test_a_retry_policy_that_cannot_work_is_refused_when_made(bad):
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**bad)
