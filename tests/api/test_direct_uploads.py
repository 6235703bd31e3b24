"""Direct uploads: getSignedWritableUrl(s), a real PUT to S3 with the presigned URL, then createEntityIdentifier
with that URL, which takes the object in place. Refused objects leave nothing in S3 or PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from gateway.resources import open_resources
from gateway.services.ingest import direct
from gateway.settings import Settings
from tests.api.conftest import Bucket, assert_clean_error_text, random_bytes
from tests.api.test_truncated_uploads import cut, photo
from tests.conftest import TEST_UPLOAD_LIMIT, Stack, start_gateway
from tests.graphql_client import GraphQLClient
from tests.support.waits import wait_for

URL_FIELDS = "bucket key expiresInSeconds expiresAtDateTime url getUrl unsignedUrl"
ONE = f"query($k: String) {{ getSignedWritableUrl(key: $k) {{ {URL_FIELDS} }} }}"
MANY = f"query($n: Int!) {{ getSignedWritableUrls(number: $n) {{ {URL_FIELDS} }} }}"
CREATE = """mutation($e: ID!, $u: String!, $t: ID!) {
  createEntityIdentifier(input: {entityId: $e, identifierTypeId: $t, url: $u}) {
    id entityId contentType contentLength contentSha256 uniqueName url } }"""
UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def writable(org: Any, key: str | None = None) -> dict[str, Any]:
    return org.client.query(ONE, k=key).ok()["getSignedWritableUrl"]


def put(url: str, data: bytes, content_type: str = "image/png") -> httpx.Response:
    return httpx.put(url, content=data, headers={"Content-Type": content_type}, timeout=30)


def create(org: Any, entity_id: str, url: str, type_id: str = "face") -> Any:
    return org.client.query(CREATE, e=entity_id, u=url, t=type_id)


def records(stack: Stack, org: Any) -> list[Any]:
    return stack.db.fetch("SELECT * FROM direct_uploads WHERE org_id = $1", org.id)


def identifiers(stack: Stack, org: Any) -> list[Any]:
    return stack.db.fetch("SELECT * FROM entity_identifiers WHERE org_id = $1", org.id)


def upload_keys(bucket: Bucket, org: Any) -> list[str]:
    return bucket.keys(f"uploads/{org.id}/")


@pytest.fixture
def entity(org: Any) -> str:
    return org.create_entity(org.create_library(), "ada")


def test_the_whole_flow_takes_the_object_in_place(org, entity, stack, bucket):
    info = writable(org, "holiday photo.png")
    assert info["bucket"] == bucket.name
    assert re.fullmatch(rf"uploads/{org.id}/holiday_photo-{UUID_RE}\.png", info["key"]), info["key"]
    assert 0 < info["expiresInSeconds"] <= 900
    assert info["unsignedUrl"] == info["url"].split("?")[0] and info["unsignedUrl"].endswith(info["key"])
    image = random_bytes(3000)
    assert put(info["url"], image).status_code == 200

    made = create(org, entity, info["url"]).ok()["createEntityIdentifier"]
    assert made["entityId"] == entity and made["contentType"] == "image/png" and made["contentLength"] == 3000
    assert made["uniqueName"] == "holiday photo.png"  # the name the client gave, as a file part's name would be
    [row] = identifiers(stack, org)
    assert row["storage_key"] == info["key"]  # the very object: nothing copied
    assert upload_keys(bucket, org) == [info["key"]] and bucket.keys(f"{org.id}/") == []
    assert httpx.get(made["url"], timeout=30).content == image
    assert httpx.get(info["getUrl"], timeout=30).content == image
    # embedding on ingest is queued as for a multipart upload of the same type
    other = org.add_identifier(entity, random_bytes(2100))
    queued = "SELECT count(*) FROM embedding_queue WHERE identifier_id = $1"
    assert stack.db.fetchval(queued, row["id"]) == stack.db.fetchval(queued, uuid.UUID(other))

    # the same object is one identifier: a second create with it is refused, and the object stays
    again = create(org, entity, info["unsignedUrl"])
    assert again.error_code == "invalid_input" and "already" in again.error_message
    assert upload_keys(bucket, org) == [info["key"]] and len(identifiers(stack, org)) == 2  # with the multipart one


@pytest.mark.parametrize("form", ["unsignedUrl", "key"])
def test_the_unsigned_url_or_the_key_name_the_upload_too(org, entity, stack, form):
    info = writable(org)
    assert re.fullmatch(rf"uploads/{org.id}/{UUID_RE}", info["key"])  # no name: a UUID
    assert put(info["url"], random_bytes(2000)).status_code == 200
    made = create(org, entity, info[form]).ok()["createEntityIdentifier"]
    assert identifiers(stack, org)[0]["storage_key"] == info["key"] and made["contentLength"] == 2000


@pytest.mark.parametrize(("given", "pattern"), [
    ("scan.final.jpeg", rf"scan\.final-{UUID_RE}\.jpeg"),
    ("../../etc/passwd", rf"passwd-{UUID_RE}"),
    ("README", rf"README-{UUID_RE}"),
    ("ünï cødé.PNG", rf"n__c_d_-{UUID_RE}\.PNG"),
    ("...", UUID_RE),
])
def test_key_naming_keeps_the_extension_and_inserts_a_uuid(org, given, pattern):
    first, second = writable(org, given)["key"], writable(org, given)["key"]
    prefix = f"uploads/{org.id}/"
    assert first.startswith(prefix) and re.fullmatch(pattern, first[len(prefix):]), first
    assert first != second


def test_bulk_urls_and_aliases_make_several_identifiers_in_one_request(org, entity, stack, bucket):
    infos = org.client.query(MANY, n=5).ok()["getSignedWritableUrls"]
    assert len({i["key"] for i in infos}) == 5
    images = [random_bytes(2000 + i) for i in range(5)]
    for info, image in zip(infos, images):
        assert put(info["url"], image).status_code == 200
    fields = " ".join(
        f'a{i}: createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "face", url: "{info["url"]}"}}) {{ id contentLength }}'
        for i, info in enumerate(infos)
    )
    reply = org.client.query(f"mutation {{ {fields} }}")
    data = reply.ok()
    assert [data[f"a{i}"]["contentLength"] for i in range(5)] == [len(b) for b in images]
    stored = {r["storage_key"]: bucket.read(r["storage_key"]) for r in identifiers(stack, org)}
    assert stored == {info["key"]: image for info, image in zip(infos, images)}
    # each alias: its checks and the object's read, then one insert (no per-alias statement that could be batched
    # beyond those two)
    assert reply.sql_statements is None or reply.sql_statements <= 2 * 5 + 2


@pytest.mark.parametrize("number", [0, -1, 1001])
def test_number_out_of_range_is_invalid_input(org, stack, number):
    reply = org.client.query(MANY, n=number)
    assert reply.error_code == "invalid_input" and "1 to 1000" in reply.error_message
    assert records(stack, org) == []


def test_a_thousand_urls_in_one_call(org, stack):
    infos = org.client.query(MANY, n=1000).ok()["getSignedWritableUrls"]
    assert len({i["key"] for i in infos}) == 1000 and len(records(stack, org)) == 1000


def test_another_organizations_key_is_not_found(org, other_org, entity, stack, bucket):
    info = writable(other_org, "theirs.png")
    assert put(info["url"], random_bytes(2000)).status_code == 200
    for form in ("url", "unsignedUrl", "key"):
        reply = create(org, entity, info[form])
        assert reply.error_code == "not_found", reply.errors
    assert identifiers(stack, org) == [] and upload_keys(bucket, other_org) == [info["key"]]
    # a key of our own prefix that was never issued is not found either
    made_up = f"uploads/{org.id}/{uuid.uuid4()}.png"
    assert create(org, entity, made_up).error_code == "not_found"


def test_missing_object_is_invalid_input_and_the_url_stays_usable(org, entity, stack):
    info = writable(org, "later.png")
    reply = create(org, entity, info["url"])
    assert reply.error_code == "invalid_input" and "nothing was uploaded" in reply.error_message
    assert_clean_error_text(reply.errors)
    assert put(info["url"], random_bytes(2000)).status_code == 200
    assert create(org, entity, info["url"]).ok()["createEntityIdentifier"]["contentLength"] == 2000


def assert_refused_and_gone(reply: Any, org: Any, stack: Stack, bucket: Bucket, words: str) -> None:
    assert reply.error_code == "invalid_input", reply.errors
    assert words in reply.error_message
    assert_clean_error_text(reply.errors)
    assert upload_keys(bucket, org) == [] and records(stack, org) == [] and identifiers(stack, org) == []


def test_oversize_object_is_refused_and_deleted(org, entity, stack, bucket):
    info = writable(org, "big.png")
    assert put(info["url"], random_bytes(TEST_UPLOAD_LIMIT + 1)).status_code == 200  # S3 cannot bound a PUT
    assert_refused_and_gone(create(org, entity, info["url"]), org, stack, bucket, "larger than the limit")


def test_bytes_that_are_not_an_image_are_refused_for_an_image_type(org, entity, stack, bucket):
    info = writable(org, "photo.jpg")
    assert put(info["url"], b"<html>not a photo</html>", "image/jpeg").status_code == 200
    assert_refused_and_gone(create(org, entity, info["url"]), org, stack, bucket, "not an image")


def test_an_image_cut_short_is_refused(org, entity, stack, bucket):
    info = writable(org, "cut.png")
    assert put(info["url"], cut(photo("PNG"))).status_code == 200
    assert_refused_and_gone(create(org, entity, info["url"]), org, stack, bucket, "does not decode whole")


def test_an_empty_object_is_refused(org, entity, stack, bucket):
    info = writable(org, "empty.png")
    assert put(info["url"], b"").status_code == 200
    assert_refused_and_gone(create(org, entity, info["url"]), org, stack, bucket, "empty")


def test_a_read_token_gets_no_writable_url(org, stack):
    reply = org.client_for("read").query(ONE, k="x.png")
    assert reply.error_code == "not_allowed" and records(stack, org) == []


def test_a_closed_registration_window_is_not_found(org, entity, stack, bucket):
    info = writable(org, "late.png")
    assert put(info["url"], random_bytes(2000)).status_code == 200
    stack.db.execute("UPDATE direct_uploads SET register_until = now() - interval '1 second' WHERE storage_key = $1", info["key"])
    assert create(org, entity, info["url"]).error_code == "not_found"
    assert identifiers(stack, org) == []


@pytest.fixture(scope="module")
def short_lived(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A gateway on the same stack whose writable URLs last one second."""
    env = dict(stack.env, ENGINESHED_DIRECT_UPLOAD_TTL_SECONDS="1")
    gw = start_gateway(env, tmp_path_factory.mktemp("short-lived-gateway"), name="gateway-short-lived")
    try:
        yield gw
    finally:
        gw.process.stop()


def test_an_expired_url_takes_no_upload(org, stack, short_lived):
    client = GraphQLClient(short_lived.url, org.token)
    try:
        info = client.query(ONE, k="slow.png").ok()["getSignedWritableUrl"]
    finally:
        client.close()
    assert info["expiresInSeconds"] == 1
    # S3 refuses the PUT once the signature's lifetime has passed (403 AccessDenied)
    wait_for(lambda: put(info["url"], random_bytes(2000)).status_code == 403, timeout=30, what="the URL to expire")


def test_housekeeping_deletes_unregistered_objects_after_their_window(org, entity, stack, bucket):
    kept, dropped, refused = writable(org, "kept.png"), writable(org, "dropped.png"), writable(org, "never-put.png")
    for info in (kept, dropped):
        assert put(info["url"], random_bytes(2000)).status_code == 200
    create(org, entity, kept["url"]).ok()
    stack.db.execute(
        "UPDATE direct_uploads SET register_until = now() - make_interval(secs => $2) WHERE org_id = $1",
        org.id, float(direct.SWEEP_MARGIN_SECONDS + 1),
    )

    async def sweep_twice() -> list[int]:
        settings = Settings.from_env(stack.env)
        async with open_resources(settings, role="test", run_migrations=False, load_engines=False) as res:
            # two processes at once: each record is taken by one of them
            return list(await asyncio.gather(direct.sweep(res), direct.sweep(res)))

    deleted = asyncio.run(sweep_twice())
    # dropped.png and never-put.png (no object to delete) go, kept.png is an identifier and stays. The gateway's own
    # housekeeping runs the same sweep every few seconds and may take some of them first (it holds them locked
    # until their objects are gone): each record is taken once, whoever takes it.
    assert sum(deleted) <= 2
    wait_for(lambda: upload_keys(bucket, org) == [kept["key"]] and records(stack, org) == [], timeout=30,
             what="the unregistered objects and every expired record to go")
    assert [r["storage_key"] for r in identifiers(stack, org)] == [kept["key"]]
    assert create(org, entity, refused["url"]).error_code == "not_found"


def test_the_importer_and_the_client_take_the_direct_path_by_default(org, stack, bucket, tmp_path):
    from engineshed.cli.importer import Importer, scan
    from engineshed.client import Client

    for person in ("ada", "bob"):
        (tmp_path / "faces" / person).mkdir(parents=True)
        for n in range(3):
            (tmp_path / "faces" / person / f"{n}.png").write_bytes(random_bytes(2000 + n))
    items, refused = scan(tmp_path / "faces", entity_per_folder=True)
    assert refused == []
    with Client(org.gateway.url, org.token) as client:
        library = client.create_library("imported", "people")
        direct_run = Importer(client, library["id"], "face", concurrency=4).run(items)
        assert direct_run.uploaded == 6 and direct_run.failed == []
        rows = identifiers(stack, org)
        assert len(rows) == 6 and all(r["storage_key"].startswith(f"uploads/{org.id}/") for r in rows)
        assert sorted(r["unique_name"] for r in rows) == sorted(i.relative for i in items)
        assert bucket.keys(f"{org.id}/") == []  # nothing went through the gateway's own upload path

        other = client.create_library("multipart", "people")
        multipart_run = Importer(client, other["id"], "face", concurrency=4, direct=False).run(items)
        assert multipart_run.uploaded == 6
        assert len(bucket.keys(f"{org.id}/")) == 6

        entity = client.create_entity(library["id"], "carol")["id"]
        files = [{"file": random_bytes(2100), "filename": "a.png", "entityId": entity, "identifierTypeId": "face"},
                 {"file": b"not an image", "filename": "b.png", "entityId": entity, "identifierTypeId": "face"}]
        made, bad = client.upload_identifiers(files)
        assert made["contentLength"] == 2100 and bad.code == "invalid_input"
        [through_gateway] = client.upload_identifiers([{**files[0], "filename": "c.png"}], direct=False)
        assert through_gateway["contentLength"] == 2100
    direct_row, gateway_row = stack.db.fetch("SELECT * FROM entity_identifiers WHERE entity_id = $1 ORDER BY unique_name",
                                             uuid.UUID(entity))
    assert direct_row["storage_key"].startswith(f"uploads/{org.id}/a-") and direct_row["unique_name"] == "a.png"
    assert gateway_row["storage_key"].startswith(f"{org.id}/") and gateway_row["unique_name"] == "c.png"
    assert len(upload_keys(bucket, org)) == 7  # the refused one was deleted


def test_the_async_client_uploads_concurrently_by_the_direct_path(org, stack, bucket):
    from engineshed.client import AsyncClient

    entity = org.create_entity(org.create_library(), "dora")
    files = [{"file": random_bytes(2000 + i), "filename": f"{i}.png", "entityId": entity, "identifierTypeId": "face"}
             for i in range(35)]  # two batches

    async def go() -> list[Any]:
        async with AsyncClient(org.gateway.url, org.token) as client:
            return await client.upload_identifiers(files, concurrency=4)

    made = asyncio.run(go())
    assert [m["contentLength"] for m in made] == [2000 + i for i in range(35)]
    rows = identifiers(stack, org)
    assert sorted(r["unique_name"] for r in rows) == sorted(f"{i}.png" for i in range(35))
    assert all(r["storage_key"].startswith(f"uploads/{org.id}/") for r in rows)
