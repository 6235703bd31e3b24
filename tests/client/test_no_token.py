"""A client that sends no token is told how to get one, in the same words as the command line."""

from __future__ import annotations

import pytest

from engineshed.client import AsyncClient, AuthenticationError, Client
from engineshed.client.connection import NO_TOKEN


@pytest.fixture
def no_dev_stack(tmp_path, monkeypatch):
    # No ENGINESHED_TOKEN and an empty data dir: nothing supplies a token.
    monkeypatch.delenv("ENGINESHED_TOKEN", raising=False)
    monkeypatch.setenv("ENGINESHED_DATA_DIR", str(tmp_path))


def test_a_call_without_a_token_says_where_a_token_comes_from(org, no_dev_stack):
    with Client(org.gateway.url) as client:
        assert client.token is None
        with pytest.raises(AuthenticationError) as refused:
            client.libraries()
    message = str(refused.value)
    assert "bearer token is missing" in message and NO_TOKEN in message
    assert "ENGINESHED_TOKEN" in message and "make run" in message


async def test_the_async_client_says_the_same(org, no_dev_stack):
    async with AsyncClient(org.gateway.url) as client:
        with pytest.raises(AuthenticationError) as refused:
            await client.libraries()
    assert NO_TOKEN in str(refused.value)


def test_a_refused_token_is_not_mistaken_for_a_missing_one(org):
    with Client(org.gateway.url, "es_not-a-real-token") as client:
        with pytest.raises(AuthenticationError) as refused:
            client.libraries()
    assert NO_TOKEN not in str(refused.value)
