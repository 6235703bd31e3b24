"""Helpers for the API tests: the bucket as S3 sees it, a local file server, a gateway that may fetch it."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest

from tests.conftest import Gateway, Stack, start_gateway


class Bucket:
    """The test bucket read directly over S3, not through the gateway."""

    def __init__(self, stack: Stack) -> None:
        s3 = stack.s3
        self.name = s3.bucket
        self._client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name="us-east-1",
        )

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            found.extend(obj["Key"] for obj in page.get("Contents", []))
        return found

    def read(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def close(self) -> None:
        self._client.close()


@pytest.fixture(scope="session")
def bucket(stack: Stack) -> Iterator[Bucket]:
    b = Bucket(stack)
    yield b
    b.close()


def org_keys(bucket: Bucket, org: Any) -> list[str]:
    return bucket.keys(f"{org.id}/")


def identifier_rows(stack: Stack, org: Any) -> list[Any]:
    return stack.db.fetch("SELECT * FROM entity_identifiers WHERE org_id = $1", org.id)


@dataclass
class FileServer:
    """Files served over HTTP on 127.0.0.1, as a customer's image host would."""

    base_url: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, path: str, data: bytes, content_type: str) -> str:
        self.files[path] = (data, content_type)
        return self.base_url + path


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    server_state: dict[str, FileServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state = server_state["s"]
            state.requests.append(self.path)
            entry = state.files.get(self.path)
            if entry is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, content_type = entry
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state["s"] = FileServer(base_url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state["s"]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def private_fetch_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A second gateway on the same stack that may fetch loopback URLs (ENGINESHED_FETCH_ALLOW_PRIVATE=1)."""
    env = dict(stack.env)
    env["ENGINESHED_FETCH_ALLOW_PRIVATE"] = "1"
    gw = start_gateway(env, tmp_path_factory.mktemp("private-gateway-logs"), name="gateway-private")
    try:
        yield gw
    finally:
        gw.process.stop()




def random_bytes(size: int = 2048) -> bytes:
    """``size`` bytes the API takes as an image, different each call, for tests that store and move files: a
    small PNG of random pixels (uploads must decode whole), padded with random bytes after its end, which
    decoders ignore. Under the smallest such PNG's size, the PNG cut short: an image the API refuses."""
    from PIL import Image

    out = io.BytesIO()
    Image.frombytes("RGB", (2, 2), os.urandom(12)).save(out, "PNG", compress_level=0)
    image = out.getvalue()
    return image[:size] if size < len(image) else image + os.urandom(size - len(image))


def tagged_png(tag: bytes) -> bytes:
    """A small real PNG with ``tag`` after its end (decoders stop at IEND): equal tags, equal bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (2, 2), 128).save(out, "PNG")
    return out.getvalue() + tag


def assert_clean_error_text(body: Any) -> None:
    """No stack trace or server path leaks into a reply."""
    text = repr(body)
    assert "Traceback" not in text
    assert "/work/" not in text and ".py" not in text and "site-packages" not in text, text
