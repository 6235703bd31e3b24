"""Our presigned GET and PUT URLs: identical to botocore's for the same instant, and accepted by SeaweedFS."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import botocore.auth
import botocore.session
import httpx
import pytest
from botocore.config import Config

from storage.blobs import BlobStore, connect_blobs
from storage.sigv4 import GetUrlSigner

MOMENT = datetime(2026, 11, 23, 21, 7, 5, tzinfo=timezone.utc)
KEYS = [
    "0f3c/identifiers/9b1e/4c2d8e0f",
    "with space/and+plus=equals&amp;%percent~tilde",
    "unicode/Zürich/東京/ü",
    "dots/../and//double/slashes/.",
    "semi;colon,comma!bang'quote(paren)*star@at$dollar",
]


def botocore_url(endpoint: str, bucket: str, key: str, expires: int, monkeypatch: pytest.MonkeyPatch, operation: str = "get_object") -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: MOMENT.replace(tzinfo=None))
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="eu-west-3", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    return client.generate_presigned_url(operation, Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8333", "https://s3.example.com", "https://s3.example.com:9000"])
@pytest.mark.parametrize("key", KEYS)
def test_the_url_is_the_one_botocore_signs_at_the_same_instant(endpoint, key, monkeypatch):
    ours = GetUrlSigner(endpoint, "my-bucket", "eu-west-3", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    mine = urlsplit(ours.get_url(key, 900, now=MOMENT))
    theirs = urlsplit(botocore_url(endpoint, "my-bucket", key, 900, monkeypatch))
    assert (mine.scheme, mine.netloc, mine.path) == (theirs.scheme, theirs.netloc, theirs.path)
    assert dict(parse_qsl(mine.query)) == dict(parse_qsl(theirs.query))  # the signature included


@pytest.mark.parametrize("key", KEYS)
def test_the_put_url_is_the_one_botocore_signs_at_the_same_instant(key, monkeypatch):
    ours = GetUrlSigner("https://s3.example.com:9000", "my-bucket", "eu-west-3", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    mine = urlsplit(ours.put_url(key, 900, now=MOMENT))
    theirs = urlsplit(botocore_url("https://s3.example.com:9000", "my-bucket", key, 900, monkeypatch, "put_object"))
    assert mine.path == theirs.path and dict(parse_qsl(mine.query)) == dict(parse_qsl(theirs.query))
    assert mine.query != urlsplit(ours.get_url(key, 900, now=MOMENT)).query  # the method is signed


def test_expiry_outside_what_s3_accepts_is_refused():
    signer = GetUrlSigner("http://127.0.0.1:1", "b", "us-east-1", "k", "s")
    for bad in (0, -1, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            signer.get_url("k", bad)


@pytest.fixture
async def blobs(stack):
    async with connect_blobs(
        endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
        access_key=stack.env["AWS_ACCESS_KEY_ID"], secret_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    ) as store:
        assert store._signer is not None  # static credentials: our signer is the one under test
        yield store


@pytest.mark.parametrize("key", KEYS[:3])
async def test_seaweedfs_serves_objects_through_our_urls(blobs: BlobStore, key: str):
    data = f"bytes of {key}".encode()
    full_key = "tests/sigv4/" + key
    await blobs.put_bytes(full_key, data, "text/plain")
    assert await blobs.get_bytes(full_key) == data
    async with httpx.AsyncClient() as http:
        reply = await http.get(httpx.URL(await blobs.presign_get(full_key, 600)))
    assert reply.status_code == 200 and reply.content == data


async def test_uploads_through_our_put_urls_keep_bytes_and_content_type(blobs: BlobStore):
    data = bytes(range(256)) * 40
    stored = await blobs.put_bytes("tests/sigv4/put/Zürich ü+x", data, "image/png")
    assert stored.size == len(data)
    assert await blobs.get_bytes("tests/sigv4/put/Zürich ü+x") == data
    head = await blobs._client.head_object(Bucket=blobs.bucket, Key="tests/sigv4/put/Zürich ü+x")
    assert head["ContentType"] == "image/png"


async def test_a_put_url_signed_with_the_wrong_secret_stores_nothing(blobs: BlobStore, stack):
    wrong = GetUrlSigner(stack.env["S3_ENDPOINT_URL"], stack.env["S3_BUCKET"], "us-east-1",
                         stack.env["AWS_ACCESS_KEY_ID"], "not-the-secret").put_url("tests/sigv4/forged", 600)
    async with httpx.AsyncClient() as http:
        reply = await http.put(wrong, content=b"forged", headers={"Content-Type": "text/plain"})
    assert reply.status_code == 403, reply.text[:200]
    assert not await blobs.exists("tests/sigv4/forged")


async def test_a_tampered_or_expired_url_is_refused_by_seaweedfs(blobs: BlobStore, stack):
    await blobs.put_bytes("tests/sigv4/guarded", b"secret", "text/plain")
    signer = GetUrlSigner(stack.env["S3_ENDPOINT_URL"], stack.env["S3_BUCKET"], "us-east-1",
                          stack.env["AWS_ACCESS_KEY_ID"], stack.env["AWS_SECRET_ACCESS_KEY"])
    good = signer.get_url("tests/sigv4/guarded", 600)
    other_key = good.replace("/guarded?", "/guarded2?")
    expired = signer.get_url("tests/sigv4/guarded", 60, now=datetime.now(timezone.utc) - timedelta(hours=1))
    wrong_secret = GetUrlSigner(stack.env["S3_ENDPOINT_URL"], stack.env["S3_BUCKET"], "us-east-1",
                                stack.env["AWS_ACCESS_KEY_ID"], "not-the-secret").get_url("tests/sigv4/guarded", 600)
    async with httpx.AsyncClient() as http:
        assert (await http.get(good)).content == b"secret"
        for url in (other_key, expired, wrong_secret):
            reply = await http.get(url)
            assert reply.status_code == 403, (url, reply.status_code, reply.text[:200])
