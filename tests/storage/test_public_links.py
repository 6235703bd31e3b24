"""Links that work from elsewhere: with S3_PUBLIC_ENDPOINT_URL set, the presigned links the API hands out name
the S3 host clients reach, and S3 serves them there, while the gateway's own reads and writes stay on
S3_ENDPOINT_URL. Here the stack's SeaweedFS is reached as ``localhost:<port>`` by clients and as
``127.0.0.1:<port>`` by the gateway: one server, two host names, and a signature that covers the host."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.settings import Settings, SettingsError
from sampledata import digits
from storage.blobs import connect_blobs
from tests.conftest import ROOT, Gateway, Org, Stack, make_org, start_gateway

pytestmark = pytest.mark.timeout(180)

PUBLIC_API = "https://shed.example.org/engineshed"


def public_endpoint(stack: Stack) -> str:
    """The stack's S3 by the other loopback name: what a client elsewhere would use in place of 127.0.0.1."""
    internal = urlsplit(stack.env["S3_ENDPOINT_URL"])
    assert internal.hostname == "127.0.0.1"
    return f"http://localhost:{internal.port}"


@pytest.fixture(scope="module")
def public_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = dict(stack.env, S3_PUBLIC_ENDPOINT_URL=public_endpoint(stack), ENGINESHED_PUBLIC_URL=PUBLIC_API)
    gw = start_gateway(env, tmp_path_factory.mktemp("public-links"))
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture
def public_org(stack: Stack, public_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, public_gateway, prefix="public")
    try:
        yield o
    finally:
        o.close()


def fetch(url: str) -> bytes:
    reply = httpx.get(httpx.URL(url), timeout=30)
    assert reply.status_code == 200, (url, reply.status_code, reply.text[:300])
    return reply.content


def test_identifier_urls_and_model_data_urls_name_the_public_host_and_serve_the_bytes_there(
    public_org: Org, stack: Stack, digit_library: digits.Digits
):
    public = urlsplit(public_endpoint(stack))
    entry = digit_library.train[0]
    library_id = public_org.create_library("digits")
    entity_id = public_org.create_entity(library_id, entry.entity_name)
    identifier_id = public_org.add_identifier(entity_id, entry.data)
    url = public_org.client.query("query($id: ID!) { entityIdentifier(id: $id) { url } }", id=identifier_id).ok()[
        "entityIdentifier"
    ]["url"]
    assert urlsplit(url).netloc == public.netloc, url
    assert fetch(url) == entry.data

    model_id = public_org.client.query(
        "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
        e="test-sleeper", l=library_id,
    ).ok()["createLibraryEngineModel"]["id"]
    artifact = os.urandom(20_000)
    saved = public_org.client.upload_form(
        f'mutation {{ updateLibraryEngineModel(input: {{id: "{model_id}", trainStatus: complete}}) {{ dataUrl }} }}',
        artifact, "application/octet-stream",
    ).ok()["updateLibraryEngineModel"]
    assert urlsplit(saved["dataUrl"]).netloc == public.netloc, saved["dataUrl"]
    assert fetch(saved["dataUrl"]) == artifact

    # A link signed for the public host is refused under the internal one: it is signed, not rewritten.
    internal = saved["dataUrl"].replace(public.netloc, urlsplit(stack.env["S3_ENDPOINT_URL"]).netloc, 1)
    assert httpx.get(httpx.URL(internal), timeout=30).status_code == 403


def test_the_gateway_prints_the_addresses_clients_use(public_gateway: Gateway, stack: Stack):
    out = public_gateway.process.output()
    assert f"clients use {PUBLIC_API}/v3/graphql (ENGINESHED_PUBLIC_URL)" in out
    assert f"file links point at {public_endpoint(stack)} (S3_PUBLIC_ENDPOINT_URL)" in out


def test_without_the_setting_links_stay_on_the_internal_endpoint(org: Org, stack: Stack, digit_library: digits.Digits):
    entry = digit_library.train[1]
    entity_id = org.create_entity(org.create_library("digits"), entry.entity_name)
    identifier_id = org.add_identifier(entity_id, entry.data)
    url = org.client.query("query($id: ID!) { entityIdentifier(id: $id) { url } }", id=identifier_id).ok()[
        "entityIdentifier"
    ]["url"]
    assert urlsplit(url).netloc == urlsplit(stack.env["S3_ENDPOINT_URL"]).netloc
    assert fetch(url) == entry.data


async def test_the_store_reads_and_writes_through_the_internal_endpoint_whatever_the_public_one(stack: Stack):
    # A public host this machine cannot reach at all: only the links name it.
    async with connect_blobs(
        endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
        access_key=stack.env["AWS_ACCESS_KEY_ID"], secret_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        public_endpoint_url="https://s3.unreachable.invalid",
    ) as blobs:
        await blobs.put_bytes("tests/public-links/internal", b"kept inside", "text/plain")
        assert await blobs.get_bytes("tests/public-links/internal") == b"kept inside"
        link = await blobs.presign_get("tests/public-links/internal", 600)
    assert link.startswith(f"https://s3.unreachable.invalid/{stack.env['S3_BUCKET']}/tests/public-links/internal?")


async def test_links_are_signed_for_the_public_host_with_credentials_from_botocores_chain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, digit_library: digits.Digits
):
    # No static credentials in the settings: botocore finds them (here in the environment) and signs.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.env["AWS_SECRET_ACCESS_KEY"])
    public = public_endpoint(stack)
    async with connect_blobs(
        endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
        access_key=None, secret_key=None, public_endpoint_url=public,
    ) as blobs:
        assert blobs._signer is None  # botocore signs, not storage/sigv4.py
        data = digit_library.test_images[0]
        await blobs.put_bytes("tests/public-links/chain", data, "image/png")
        assert await blobs.get_bytes("tests/public-links/chain") == data
        link = await blobs.presign_get("tests/public-links/chain", 600)
    assert link.startswith(public + "/")
    assert fetch(link) == data


@pytest.mark.parametrize(
    "value", ["s3.example.com:8333", "ftp://s3.example.com", "http://s3.example.com:port", "http://s3.example.com/prefix",
              "http://key:secret@s3.example.com", "http://s3.example.com?region=x", "http://:8333"],
)
def test_an_s3_public_endpoint_that_is_not_scheme_host_port_is_refused_naming_its_variable(value: str):
    with pytest.raises(SettingsError, match="S3_PUBLIC_ENDPOINT_URL"):
        Settings.from_env({"S3_PUBLIC_ENDPOINT_URL": value})


@pytest.mark.parametrize("value", ["shed.example.org", "ws://shed.example.org", "https://shed.example.org:https"])
def test_a_public_url_that_is_not_an_http_url_is_refused_naming_its_variable(value: str):
    with pytest.raises(SettingsError, match="ENGINESHED_PUBLIC_URL"):
        Settings.from_env({"ENGINESHED_PUBLIC_URL": value})


def test_valid_public_addresses_are_kept():
    settings = Settings.from_env(
        {"S3_PUBLIC_ENDPOINT_URL": "https://s3.example.com:9000", "ENGINESHED_PUBLIC_URL": "https://shed.example.org/api"}
    )
    assert (settings.s3_public_endpoint_url, settings.public_url) == ("https://s3.example.com:9000", "https://shed.example.org/api")


def test_serve_refuses_to_start_on_a_bad_s3_public_endpoint_and_names_it(stack: Stack):
    env = dict(stack.env, S3_PUBLIC_ENDPOINT_URL="s3.example.com:8333")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", "1", "--workers", "1"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "S3_PUBLIC_ENDPOINT_URL" in done.stderr and "s3.example.com:8333" in done.stderr
