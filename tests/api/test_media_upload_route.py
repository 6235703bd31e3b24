"""``POST /v3/media``: a video as the raw request body, held to the media limit rather than GraphQL's multipart one.

A dedicated gateway runs with a small multipart limit (64 KiB, so GraphQL takes at most 1 MiB + 64 KiB), a JSON
body limit of 256 KiB and a media limit of 3 MiB: a 1.5 MiB video is refused by recognizeMedia's multipart upload and accepted here, and its
job completes with the test media engine's segments. Bad input is refused with the route's JSON errors and
leaves nothing in S3 or PostgreSQL. The client sends a file the same way, sync and async.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from engineshed.cli.media import CountedUpload
from engineshed.client import AsyncClient, Client, Upload
from engineshed.client.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
)
from tests.api.conftest import Bucket
from tests.conftest import Gateway, Org, Process, Stack, make_org, start_gateway
from tests.engines.api_helpers import start_worker_process
from tests.reliability.conftest import assert_clean, png
from tests.support.media_engine import expected_labels, video
from tests.support.media_stack import WORKER_ENV, people_library, train_media_model
from tests.support.requirements import need
from tests.support.waits import wait_job, wait_worker_ready

MiB = 1024 * 1024
UPLOAD_LIMIT = 64 * 1024
BODY_LIMIT = 256 * 1024  # JSON bodies: the media route is not held to it
MEDIA_LIMIT = 3 * MiB
SECONDS = 8


def noisy_video(seconds: int, side: int = 512, fps: int = 2) -> bytes:
    """An MP4 of random frames (they do not compress: 1.5 MiB for 8 s at 512 px) the test engine reads as
    ``seconds`` long."""
    import av

    out = io.BytesIO()
    rng = np.random.default_rng(7)
    with av.open(out, "w", format="mp4") as container:
        container.metadata["comment"] = "pace=0.0"
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        for _ in range(seconds * fps):
            frame = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
def big_video() -> bytes:
    data = noisy_video(SECONDS)
    assert max(UPLOAD_LIMIT + MiB, BODY_LIMIT) < len(data) < MEDIA_LIMIT, len(data)
    return data


@pytest.fixture(scope="module")
def small_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = {**stack.env, **WORKER_ENV, "ENGINESHED_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
           "ENGINESHED_MAX_BODY_BYTES": str(BODY_LIMIT), "ENGINESHED_MAX_MEDIA_BYTES": str(MEDIA_LIMIT)}
    gw = start_gateway(env, tmp_path_factory.mktemp("media-route-gw"), "media-route-gateway")
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start_worker_process(stack, tmp_path_factory.mktemp("media-route-wk"), "media-route-worker", **WORKER_ENV)
    wait_worker_ready(process)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def org(stack: Stack, small_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, small_gateway, "media-route")
    yield o
    o.close()


@pytest.fixture(scope="module")
def other(stack: Stack, small_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, small_gateway, "media-route-other")
    yield o
    o.close()


@pytest.fixture(scope="module")
def trained(org: Org, worker: Process) -> dict[str, Any]:
    library_id, entities = people_library(org, ("ada", "bob"))
    return {"library": library_id, "entities": entities, "model": train_media_model(org, library_id)}


def post(org: Org, data: Any, token: str | None = "owner", **params: Any) -> httpx.Response:
    headers = {"Content-Type": "video/mp4"}
    if token is not None:
        headers["Authorization"] = f"Bearer {org.token if token == 'owner' else token}"
    with httpx.Client(timeout=60) as http:
        return http.post(f"{org.gateway.url}/v3/media", params=params, content=data, headers=headers)


def refused(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, response.text
    for word in words:
        assert word in error["message"], (word, response.text)
    assert_clean(response.text)


def test_a_video_over_the_multipart_limit_is_accepted_as_a_raw_body_and_recognized(org, trained, worker, big_video):
    # The same file through GraphQL's multipart upload is over that mount's limit.
    operations = json.dumps({"query": "mutation($l: ID, $f: Upload) { recognizeMedia(libraryId: $l, file: $f) { id } }",
                             "variables": {"l": trained["library"], "f": None}})
    multipart = org.client.http.post(org.client.url, data={"operations": operations, "map": '{"0": ["variables.f"]}'},
                                     files={"0": ("clip.mp4", big_video, "video/mp4")})
    assert multipart.status_code == 413, multipart.text
    response = post(org, big_video, libraryId=trained["library"], frameInterval="0.5", topK="3")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["libraryId"] == trained["library"]
    done = wait_job(org, body["jobId"], worker=worker)
    assert done["status"] == "complete", done
    (task,) = done["tasks"]["records"]
    payload = org.client.query('query($id: ID!) { task(id: $id) { payload } }', id=task["id"]).ok()["task"]["payload"]
    assert payload["frameInterval"] == 0.5 and payload["topK"] == 3 and payload["libraryEngineModelId"] == trained["model"]
    page = org.client.query('query($j: ID) { segments(jobId: $j, limit: 100) { totalCount records { startSeconds entityId label } } }',
                            j=body["jobId"]).ok()["segments"]
    assert page["totalCount"] == SECONDS
    assert [s["startSeconds"] for s in page["records"]] == [float(i) for i in range(SECONDS)]
    assert [s["entityId"] or s["label"] for s in page["records"]] == expected_labels(sorted(trained["entities"].values()), SECONDS)


def test_a_body_over_the_media_limit_is_413_and_leaves_nothing(org, trained, stack, bucket: Bucket):
    keys_before = set(bucket.keys(f"{org.id}/media/"))
    jobs_before = stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id)
    too_big = b"\x00\x00\x00\x18ftypmp42" + os.urandom(MEDIA_LIMIT + 100_000)
    # Declared: refused before the route runs. Chunked (no length): refused as the stream passes the limit, after
    # the first megabytes went to S3, which are removed.
    refused(post(org, too_big, libraryId=trained["library"]), 413, "invalid_input", str(MEDIA_LIMIT))

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(too_big), 200_000):
            yield too_big[start:start + 200_000]

    refused(post(org, pieces(), libraryId=trained["library"]), 413, "invalid_input", str(MEDIA_LIMIT))
    assert set(bucket.keys(f"{org.id}/media/")) == keys_before
    assert stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id) == jobs_before


def test_bad_input_is_400_naming_what_is_wrong_and_leaves_nothing(org, trained, stack, bucket: Bucket):
    keys_before = set(bucket.keys(f"{org.id}/media/"))
    jobs_before = stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id)
    lib = trained["library"]
    clip = video(1)
    refused(post(org, b"", libraryId=lib), 400, "invalid_input", "empty")
    refused(post(org, png(3), libraryId=lib), 400, "invalid_input", "image")
    refused(post(org, clip, libraryId=lib, colour="red"), 400, "invalid_input", "colour")
    refused(post(org, clip, libraryId=lib, frameInterval="fast"), 400, "invalid_input", "frameInterval")
    refused(post(org, clip, libraryId=lib, frameInterval="nan"), 400, "invalid_input", "frameInterval")
    refused(post(org, clip, libraryId=lib, frameInterval="0"), 400, "invalid_input", "frameInterval")
    refused(post(org, clip, libraryId=lib, speakers="1.5"), 400, "invalid_input", "speakers")
    refused(post(org, clip, libraryId=lib, topK="x"), 400, "invalid_input", "topK")
    refused(post(org, clip, libraryId=lib, threshold="2"), 400, "invalid_input", "threshold")
    refused(post(org, clip, libraryId=[lib, lib]), 400, "invalid_input", "libraryId")
    refused(post(org, clip), 400, "invalid_input", "libraryId")
    refused(post(org, clip, libraryId=lib, libraryEngineModelId=trained["model"]), 400, "invalid_input")
    assert set(bucket.keys(f"{org.id}/media/")) == keys_before
    assert stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id) == jobs_before


def test_auth_tenancy_and_methods(org, other, trained, stack, bucket: Bucket):
    keys_before = set(bucket.keys(f"{org.id}/media/"))
    jobs_before = stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id)
    clip = video(1)
    lib = trained["library"]
    refused(post(org, clip, token=None, libraryId=lib), 401, "authentication_error")
    refused(post(org, clip, token="es_not-a-real-token", libraryId=lib), 401, "authentication_error")
    refused(post(org, clip, token=org.token_for("read"), libraryId=lib), 403, "not_allowed")
    theirs = post(org, clip, token=other.token, libraryId=lib)
    made_up = post(org, clip, token=other.token, libraryId=str(uuid.uuid4()))
    refused(theirs, 404, "not_found")
    assert theirs.json() == made_up.json()
    refused(post(org, clip, token=other.token, libraryEngineModelId=trained["model"]), 404, "not_found")
    with httpx.Client(headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        got = http.get(f"{org.gateway.url}/v3/media")
        assert got.status_code == 405 and got.headers["allow"] == "POST" and got.json()["error"]["code"] == "not_allowed"
    assert set(bucket.keys(f"{org.id}/media/")) == keys_before
    assert stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id) == jobs_before


def test_the_client_sends_a_file_as_the_raw_body_with_progress(org, trained, worker, big_video, tmp_path: Path):
    path = tmp_path / "meeting.mp4"
    path.write_bytes(big_video)
    seen: list[int] = []
    base = Upload.of(path)
    counted = CountedUpload(base.source, base.filename, base.content_type, seen.append)
    with Client(org.gateway.url, token=org.token) as client:
        job = client.recognize_media(counted, library_id=trained["library"], frame_interval=1.0)
        # The job as job() reads it just after: the worker may have claimed it already.
        assert job["status"] in ("queued", "running", "complete") and job["libraryId"] == trained["library"]
        assert job["tasks"]["records"][0]["engineId"] == "test-media"
        assert seen and seen[-1] == len(big_video) and seen == sorted(seen)  # the upload bar reaches the end
        assert wait_job(org, job["id"], worker=worker)["status"] == "complete"
        assert len(client.segments(job["id"])) == SECONDS
        with pytest.raises(InvalidInputError, match="image"):
            client.recognize_media(png(2), library_id=trained["library"])
        with pytest.raises(NotFoundError):
            client.recognize_media(path, library_id=str(uuid.uuid4()))
        too_big = tmp_path / "too-big.mp4"
        too_big.write_bytes(big_video + os.urandom(MEDIA_LIMIT))
        with pytest.raises(InvalidInputError, match=str(MEDIA_LIMIT)) as caught:
            client.recognize_media(too_big, library_id=trained["library"])
        assert caught.value.status == 413
    with Client(org.gateway.url, token="") as anonymous, pytest.raises(AuthenticationError):
        anonymous.recognize_media(path, library_id=trained["library"])

    async def go() -> dict[str, Any]:
        async with AsyncClient(org.gateway.url, token=org.token) as client:
            with pytest.raises(InvalidInputError, match="empty"):
                await client.recognize_media(b"", library_id=trained["library"])
            return await client.recognize_media(path, library_id=trained["library"], top_k=2)

    job = asyncio.run(go())
    assert job["status"] in ("queued", "running", "complete") and job["libraryId"] == trained["library"]
    assert wait_job(org, job["id"], worker=worker)["status"] == "complete"


def test_the_documented_curl_command(org, trained, worker, big_video, tmp_path: Path):
    # curl sends a body over 1 MiB only after the server's 100 Continue: a refusal comes without it, an upload with.
    curl = shutil.which("curl")
    if curl is None:
        need("curl", "curl is not installed: the documented command cannot be run")
    path = tmp_path / "meeting.mp4"
    path.write_bytes(big_video)

    def run(*params: str) -> tuple[int, dict[str, Any]]:
        url = f"{org.gateway.url}/v3/media?" + "&".join(params)
        done = subprocess.run([curl, "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {org.token}",
                               "--data-binary", f"@{path}", url], capture_output=True, text=True, timeout=60, check=True)
        body, status = done.stdout.rsplit("\n", 1)
        return int(status), json.loads(body)

    status, body = run(f"libraryId={trained['library']}", "frameInterval=0.5")
    assert status == 202 and body["status"] == "queued", body
    assert wait_job(org, body["jobId"], worker=worker)["status"] == "complete"
    status, body = run(f"libraryId={uuid.uuid4()}")
    assert (status, body["error"]["code"]) == (404, "not_found"), body
    status, body = run(f"libraryId={trained['library']}", "speakers=two")
    assert (status, body["error"]["code"]) == (400, "invalid_input") and "speakers" in body["error"]["message"], body
