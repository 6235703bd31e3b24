"""Links served through the gateway: with ENGINESHED_PUBLIC_URL set and no S3_PUBLIC_ENDPOINT_URL, the links the
API hands out (identifier url, model dataUrl) name the gateway's public address, and GET /v3/files/{key} there
streams the object from S3, for as long as the link's signature and expiry hold.

Here the gateway listens on 127.0.0.1 and its public address is ``http://localhost:<port>``: every link is fetched
by that other name, and nothing in it names S3, which a client elsewhere could not reach."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import psutil
import pytest

from gateway.devstack import find_free_port
from gateway.errors import NotAllowed
from gateway.services import links
from gateway.settings import Settings, SettingsError
from sampledata import digits
from storage.blobs import connect_blobs
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.support.waits import wait_for

pytestmark = pytest.mark.timeout(180)

ARTIFACT = os.urandom(3 * 1024 * 1024 + 12345)  # several relay chunks, under the tests' upload limit


def start_public_gateway(stack: Stack, log_dir: Path, **extra: str) -> Gateway:
    """`engineshed serve` on 127.0.0.1, told that clients reach it as http://localhost:<port>."""
    port = find_free_port()
    env = dict(stack.env, ENGINESHED_PUBLIC_URL=f"http://localhost:{port}", **extra)
    process = Process([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "1"], env,
                      log_dir / "gateway.log")
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.alive(), process.output()[-4000:]
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=60, what="the gateway with a public URL to be ready")
    except BaseException:
        process.stop()
        raise
    return Gateway(url=url, process=process, env=env)


@pytest.fixture(scope="module")
def link_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_public_gateway(stack, tmp_path_factory.mktemp("gateway-links"))
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture
def link_org(stack: Stack, link_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, link_gateway, prefix="links")
    try:
        yield o
    finally:
        o.close()


@pytest.fixture
def link_other_org(stack: Stack, link_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, link_gateway, prefix="links-other")
    try:
        yield o
    finally:
        o.close()


def public_netloc(gw: Gateway) -> str:
    return urlsplit(gw.env["ENGINESHED_PUBLIC_URL"]).netloc


def identifier_url(o: Org, data: bytes) -> tuple[str, str]:
    """(identifier id, its url) for a new identifier holding ``data``."""
    entity_id = o.create_entity(o.create_library("digits"), "seven")
    identifier_id = o.add_identifier(entity_id, data)
    url = o.client.query("query($id: ID!) { entityIdentifier(id: $id) { url } }", id=identifier_id).ok()[
        "entityIdentifier"
    ]["url"]
    return identifier_id, url


def trained_model_data_url(o: Org, artifact: bytes) -> str:
    """A model of the test engine, completed with ``artifact`` as its trained data: its dataUrl."""
    library_id = o.create_library("digits")
    model_id = o.client.query(
        "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
        e="test-sleeper", l=library_id,
    ).ok()["createLibraryEngineModel"]["id"]
    return o.client.upload_form(
        f'mutation {{ updateLibraryEngineModel(input: {{id: "{model_id}", trainStatus: complete}}) {{ dataUrl }} }}',
        artifact, "application/octet-stream",
    ).ok()["updateLibraryEngineModel"]["dataUrl"]


def key_of(url: str) -> str:
    path = urlsplit(url).path
    assert path.startswith("/v3/files/"), url
    return unquote(path.removeprefix("/v3/files/"))


def link_for(base: str, key: str, expires: int, signature: str) -> str:
    return f"{base}/v3/files/{quote(key, safe='/')}?expires={expires}&signature={signature}"


def signed_with_stored_key(stack: Stack, base: str, key: str, expires: int) -> str:
    """A link signed as the gateway signs, with the newest stored key (what a holder of the secret could make)."""

    async def newest() -> bytes:
        return (await links.LinkKeys(stack.db.pool).current())[0][1]  # created here if no gateway made one yet

    secret = stack.db.run(newest())
    return link_for(base, key, expires, links.signature(secret, key, expires))


def refused(reply: httpx.Response, status: int = 403, code: str = "not_allowed") -> str:
    assert reply.status_code == status, (reply.status_code, reply.text[:300])
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def test_identifier_urls_and_model_data_urls_are_gateway_links_that_serve_the_bytes_at_the_public_address(
    link_org: Org, link_gateway: Gateway, stack: Stack, digit_library: digits.Digits
):
    entry = digit_library.train[0]
    _, url = identifier_url(link_org, entry.data)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", public_netloc(link_gateway)), url
    assert set(parse_qs(parts.query)) == {"expires", "signature"}, url
    assert urlsplit(stack.env["S3_ENDPOINT_URL"]).netloc not in url  # nothing of S3 reaches the client
    reply = httpx.get(url, timeout=30)  # no bearer token: the link is the capability
    assert reply.status_code == 200, reply.text[:300]
    assert reply.content == entry.data
    assert reply.headers["content-type"] == "image/png"
    assert int(reply.headers["content-length"]) == len(entry.data)

    data_url = trained_model_data_url(link_org, ARTIFACT)
    assert urlsplit(data_url).netloc == public_netloc(link_gateway), data_url
    reply = httpx.get(data_url, timeout=60)
    assert reply.status_code == 200, reply.text[:300]
    assert reply.content == ARTIFACT
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["etag"] and reply.headers["accept-ranges"] == "bytes"
    cache = reply.headers["cache-control"]
    assert cache.startswith("private, max-age=")
    expires = int(parse_qs(urlsplit(data_url).query)["expires"][0])
    assert 0 < int(cache.split("=")[1]) <= expires - time.time() + 2


def test_head_answers_the_size_and_etag_without_the_body(link_org: Org):
    data_url = trained_model_data_url(link_org, ARTIFACT)
    got = httpx.get(data_url, timeout=60)
    head = httpx.head(data_url, timeout=30)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(ARTIFACT)
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == "application/octet-stream"


def test_range_requests_resume_a_download(link_org: Org):
    data_url = trained_model_data_url(link_org, ARTIFACT)
    size = len(ARTIFACT)
    cases = {"bytes=100-199": (100, 199), f"bytes={size - 10}-": (size - 10, size - 1), "bytes=-5": (size - 5, size - 1)}
    for wanted, (first, last) in cases.items():
        reply = httpx.get(data_url, headers={"Range": wanted}, timeout=30)
        assert reply.status_code == 206, (wanted, reply.status_code, reply.text[:200])
        assert reply.headers["content-range"] == f"bytes {first}-{last}/{size}", wanted
        assert reply.content == ARTIFACT[first : last + 1], wanted
        assert int(reply.headers["content-length"]) == last - first + 1

    # A download that stopped half way asks for the rest and has the whole file.
    half = size // 2
    rest = httpx.get(data_url, headers={"Range": f"bytes={half}-"}, timeout=60)
    assert rest.status_code == 206
    assert ARTIFACT[:half] + rest.content == ARTIFACT

    past = httpx.get(data_url, headers={"Range": f"bytes={size + 10}-"}, timeout=30)
    refused(past, 416, "invalid_input")


def test_an_expired_link_is_refused(link_org: Org, link_gateway: Gateway, stack: Stack):
    data_url = trained_model_data_url(link_org, b"soon gone")
    base = link_gateway.env["ENGINESHED_PUBLIC_URL"]
    expired = signed_with_stored_key(stack, base, key_of(data_url), int(time.time()) - 1)
    assert "expired" in refused(httpx.get(expired, timeout=30))
    assert httpx.head(expired, timeout=30).status_code == 403
    # The same key signed the same way, valid a while longer, is served: only the expiry differed.
    assert httpx.get(signed_with_stored_key(stack, base, key_of(data_url), int(time.time()) + 60), timeout=30).content == (
        b"soon gone"
    )


def test_a_changed_expiry_key_or_signature_is_refused(link_org: Org, link_gateway: Gateway):
    data_url = trained_model_data_url(link_org, b"model bytes")
    base = link_gateway.env["ENGINESHED_PUBLIC_URL"]
    key = key_of(data_url)
    query = parse_qs(urlsplit(data_url).query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = {
        "later expiry": link_for(base, key, expires + 3600, signature),
        "other signature": link_for(base, key, expires, flipped),
        "other key": link_for(base, key + "x", expires, signature),
        "key's parent": link_for(base, key.rsplit("/", 1)[0], expires, signature),
        "no signature": f"{base}/v3/files/{quote(key)}?expires={expires}",
        "no expiry": f"{base}/v3/files/{quote(key)}?signature={signature}",
        "no key": f"{base}/v3/files/?expires={expires}&signature={signature}",
        "expiry not a number": link_for(base, key, expires, signature).replace(f"expires={expires}", "expires=1e12"),
        "signature too long": link_for(base, key, expires, signature + "A"),
        "path outside the bucket": f"{base}/v3/files/..%2F..%2Fetc%2Fpasswd?expires={expires}&signature={signature}",
    }
    for name, url in forged.items():
        reply = httpx.get(url, timeout=30)
        assert reply.status_code == 403, (name, reply.status_code, reply.text[:200])
        refused(reply)
        assert "model bytes" not in reply.text
    # A bearer token grants nothing here either: the signature is what counts.
    with_token = httpx.get(forged["other signature"], headers={"Authorization": f"Bearer {link_org.token}"}, timeout=30)
    refused(with_token)
    assert httpx.get(data_url, timeout=30).content == b"model bytes"


def test_another_organizations_object_cannot_be_fetched_with_a_link_for_ones_own(
    link_org: Org, link_other_org: Org, link_gateway: Gateway, digit_library: digits.Digits
):
    mine = trained_model_data_url(link_org, b"mine")
    _, theirs = identifier_url(link_other_org, digit_library.train[3].data)
    assert key_of(theirs).split("/")[0] == str(link_other_org.id)  # keys begin with their organization
    query = parse_qs(urlsplit(mine).query)
    base = link_gateway.env["ENGINESHED_PUBLIC_URL"]
    refused(httpx.get(link_for(base, key_of(theirs), int(query["expires"][0]), query["signature"][0]), timeout=30))
    # Another key under the other organization's prefix, with my link's tail, fares no better.
    own_tail = key_of(mine).split("/", 1)[1]
    refused(httpx.get(link_for(base, f"{link_other_org.id}/{own_tail}", int(query["expires"][0]), query["signature"][0]),
                      timeout=30))
    assert httpx.get(theirs, timeout=30).content == digit_library.train[3].data


def test_a_link_to_a_deleted_identifier_answers_404(link_org: Org, digit_library: digits.Digits):
    identifier_id, url = identifier_url(link_org, digit_library.train[5].data)
    assert httpx.get(url, timeout=30).status_code == 200
    link_org.client.query("mutation($id: ID!) { deleteEntityIdentifier(id: $id) { id } }", id=identifier_id).ok()
    refused(httpx.get(url, timeout=30), 404, "not_found")
    assert httpx.head(url, timeout=30).status_code == 404


def test_a_link_works_on_another_gateway_process_with_the_shared_key(link_org: Org, gateway: Gateway):
    # `gateway` is a separate `serve` process without ENGINESHED_PUBLIC_URL: it makes S3 links itself, yet serves
    # the links the first one signed, with the key both read from PostgreSQL.
    data_url = trained_model_data_url(link_org, ARTIFACT)
    parts = urlsplit(data_url)
    elsewhere = f"{gateway.url}{parts.path}?{parts.query}"
    reply = httpx.get(elsewhere, timeout=60)
    assert reply.status_code == 200, reply.text[:300]
    assert reply.content == ARTIFACT
    assert httpx.get(elsewhere, headers={"Range": "bytes=0-9"}, timeout=30).content == ARTIFACT[:10]


def test_keys_rotate_and_revoke_through_the_table(stack: Stack):
    # The service as every gateway runs it, on the stack's database: sign, rotate (a new row), revoke (delete).
    # The table is the whole session's: its rows are put back afterwards, so the gateways' links stay valid.
    async def scenario() -> None:
        keys = links.LinkKeys(stack.db.pool)
        make = links.GatewayLinks(keys, "https://shed.example.org/api/")
        old = await make("org/a/b c", 600)
        assert old.startswith("https://shed.example.org/api/v3/files/org/a/b%20c?expires=")
        old_query = parse_qs(urlsplit(old).query)
        old_args = ("org/a/b c", old_query["expires"][0], old_query["signature"][0])
        assert await links.check(keys, *old_args) == int(old_args[1])

        async with stack.db.pool.acquire() as conn:
            newest = await conn.fetchval("INSERT INTO link_signing_keys DEFAULT VALUES RETURNING id")
        await keys.current(max_age=0)
        new = await make("org/a/b c", 600)
        new_query = parse_qs(urlsplit(new).query)
        assert new_query["signature"] != old_query["signature"]  # the newest key signs
        assert await links.check(keys, *old_args)  # the old key still verifies until it is deleted

        async with stack.db.pool.acquire() as conn:
            await conn.execute("DELETE FROM link_signing_keys WHERE id <> $1", newest)
        await keys.current(max_age=0)
        with pytest.raises(NotAllowed):
            await links.check(keys, *old_args)
        assert await links.check(keys, "org/a/b c", new_query["expires"][0], new_query["signature"][0])

    async def restore(saved: list[tuple[int, bytes]]) -> None:
        async with stack.db.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM link_signing_keys")
            await conn.executemany("INSERT INTO link_signing_keys (id, secret) VALUES ($1, $2)", saved)

    saved = stack.db.run(links.LinkKeys(stack.db.pool).current())
    try:
        stack.db.run(scenario())
    finally:
        stack.db.run(restore(saved))


@pytest.mark.parametrize(
    ("env", "through"),
    [
        ({}, False),
        ({"ENGINESHED_PUBLIC_URL": "https://shed.example.org"}, True),
        ({"ENGINESHED_PUBLIC_URL": "https://shed.example.org", "S3_PUBLIC_ENDPOINT_URL": "https://s3.example.org"}, False),
        ({"ENGINESHED_PUBLIC_URL": "https://shed.example.org", "ENGINESHED_LINKS": "s3"}, False),
        ({"ENGINESHED_PUBLIC_URL": "https://shed.example.org", "S3_PUBLIC_ENDPOINT_URL": "https://s3.example.org",
          "ENGINESHED_LINKS": "gateway"}, True),
        ({"S3_PUBLIC_ENDPOINT_URL": "https://s3.example.org"}, False),
    ],
)
def test_who_serves_the_links(env: dict[str, str], through: bool):
    assert links.through_gateway(Settings.from_env(env)) is through


@pytest.mark.parametrize(
    "env", [{"ENGINESHED_LINKS": "gateway"}, {"ENGINESHED_LINKS": "cdn", "ENGINESHED_PUBLIC_URL": "https://x.org"}]
)
def test_a_links_setting_that_cannot_work_is_refused_naming_its_variable(env: dict[str, str]):
    with pytest.raises(SettingsError, match="ENGINESHED_LINKS"):
        Settings.from_env(env)


def test_the_gateway_says_where_file_links_are_served(link_gateway: Gateway):
    base = link_gateway.env["ENGINESHED_PUBLIC_URL"]
    assert f"file links are served through {base}/v3/files/ (ENGINESHED_PUBLIC_URL)" in link_gateway.process.output()


BIG = 96 * 1024 * 1024


def test_a_large_object_is_relayed_without_being_held_whole_and_a_client_may_stop_early(
    link_gateway: Gateway, link_org: Org, stack: Stack
):
    key = f"{link_org.id}/tests/big-{os.urandom(4).hex()}"
    block = os.urandom(1024 * 1024)

    async def put() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(BIG // len(block)):
                yield block

        async with connect_blobs(
            endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
            access_key=stack.env["AWS_ACCESS_KEY_ID"], secret_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        ) as blobs:
            await blobs.put_stream(key, chunks(), "application/octet-stream")

    stack.db.run(put(), timeout=120)
    url = signed_with_stored_key(stack, link_gateway.env["ENGINESHED_PUBLIC_URL"], key, int(time.time()) + 600)
    gateway_process = psutil.Process(link_gateway.process.pid)
    assert httpx.get(url, headers={"Range": "bytes=0-0"}, timeout=30).status_code == 206  # warm: S3 connection made
    before = gateway_process.memory_info().rss
    peak = before
    received = 0
    with httpx.stream("GET", url, timeout=60) as reply:
        assert reply.status_code == 200
        assert int(reply.headers["content-length"]) == BIG
        for chunk in reply.iter_bytes(1024 * 1024):
            received += len(chunk)
            peak = max(peak, gateway_process.memory_info().rss)
    assert received == BIG
    assert peak - before < BIG // 4, f"the gateway grew by {(peak - before) >> 20} MiB relaying {BIG >> 20} MiB"

    # A client that stops after the first MiB: the gateway lets go of it and serves the next request at once.
    with httpx.stream("GET", url, timeout=60) as reply:
        next(reply.iter_bytes(1024 * 1024))
    reply = httpx.get(url, headers={"Range": f"bytes={BIG - 4}-"}, timeout=30)
    assert (reply.status_code, reply.content) == (206, block[-4:])


async def test_the_store_relays_ranges_and_heads_with_credentials_from_botocores_chain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    # Without static credentials botocore signs the S3 requests the relay makes (HEAD included).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.env["AWS_SECRET_ACCESS_KEY"])
    async with connect_blobs(
        endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
        access_key=None, secret_key=None,
    ) as blobs:
        await blobs.put_bytes("tests/gateway-links/chain", b"0123456789", "text/plain")
        async with blobs.open_read("tests/gateway-links/chain", range_header="bytes=2-4") as reply:
            assert (reply.status, await reply.read()) == (206, b"234")
            assert reply.headers["Content-Range"] == "bytes 2-4/10"
        async with blobs.open_read("tests/gateway-links/chain", head=True) as reply:
            assert (reply.status, reply.headers["Content-Length"]) == (200, "10")
        async with blobs.open_read("tests/gateway-links/none") as reply:
            assert reply.status == 404


def test_writable_urls_are_refused_where_clients_cannot_reach_storage(link_org: Org):
    """With the gateway serving the file links, S3 is not reachable by clients: a URL to PUT to would not work,
    so asking for one is refused with the way that does (a multipart upload), and nothing is recorded."""
    before = link_org.stack.db.fetchval("SELECT count(*) FROM direct_uploads WHERE org_id = $1", link_org.id)
    for query in ('query { getSignedWritableUrl(key: "a.png") { url } }', "query { getSignedWritableUrls(number: 3) { url } }"):
        reply = link_org.client.query(query)
        assert reply.error_code == "not_allowed", reply.body
        assert "multipart" in reply.errors[0]["message"]
    assert link_org.stack.db.fetchval("SELECT count(*) FROM direct_uploads WHERE org_id = $1", link_org.id) == before
