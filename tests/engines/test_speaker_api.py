"""The speaker engine end to end: audio-recording identifiers in a people library, training by a worker process,
``recognize`` with a recording as a file and as a URL, through real HTTP, PostgreSQL and S3."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sampledata.speech import ESPEAK, VOICES, encode, sentence, speak, wav_bytes
from tests.conftest import (
    TEST_ENGINES,
    Gateway,
    Org,
    Process,
    Stack,
    make_org,
    start_gateway,
)
from tests.engines import api_helpers as api
from tests.support.requirements import need

if ESPEAK is None:
    need("espeak-ng", "espeak-ng is not installed (apt-get install -y espeak-ng)")

ENGINE = "test-speaker"
SPEAKERS = list(VOICES)[:4]
TRAIN = 3


@pytest.fixture(scope="module")
def speaker_env(stack: Stack) -> dict[str, str]:
    from gateway.services.models.pull.catalogue import PullError
    from sampledata.speaker import encoder_bytes

    try:
        encoder_bytes()  # fills the cache the subprocesses read
    except PullError as exc:
        need("registry", f"the speaker model is not cached and the registry is unreachable: {exc}")
    env = dict(stack.env)
    # The GE2E artifact (~19 MB) is over the suite's 4 MiB upload limit, which also caps stored artifacts.
    # recognize(url:) fetches the held-out recording from a test server on loopback (tests/reliability/
    # test_url_fetch.py checks that private addresses are refused without this).
    env.update(ENGINESHED_EXTRA_ENGINES=f"{TEST_ENGINES},sampledata.speaker_engine:TestSpeakerEngine",
               ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024), ENGINESHED_FETCH_ALLOWED_HOSTS="127.0.0.1/32")
    return env


@pytest.fixture(scope="module")
def speaker_gateway(speaker_env, tmp_path_factory) -> Iterator[Gateway]:
    gw = start_gateway(speaker_env, tmp_path_factory.mktemp("speaker-gw"), "speaker-gateway")
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def speaker_worker(speaker_env, tmp_path_factory) -> Iterator[Process]:
    process = api.start_worker_process(_Env(speaker_env), tmp_path_factory.mktemp("speaker-wk"), "speaker-worker")
    yield process
    process.stop()


class _Env:  # start_worker_process reads only .env
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env


@pytest.fixture(scope="module")
def org(stack: Stack, speaker_gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, speaker_gateway, "speaker")
    yield org
    org.close()


def add_recording(org: Org, entity_id: str, data: bytes, content_type: str = "audio/wav") -> str:
    return org.client.upload_form(
        'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "audio-recording"}) { id } }',
        data, content_type, filename="voice", variables={"e": entity_id},
    ).ok()["createEntityIdentifier"]["id"]


def test_a_people_library_trains_the_speaker_engine_and_recognizes_recordings(org, speaker_worker, capsys):
    library = org.create_library("voices", "people")
    entities = {name: org.create_entity(library, name) for name in SPEAKERS}
    for s, name in enumerate(SPEAKERS):
        for k in range(TRAIN):
            samples, rate = speak(name, sentence(1000 * s + k), seed=1000 * s + k)
            add_recording(org, entities[name], wav_bytes(samples, rate))
    add_recording(org, entities[SPEAKERS[0]], b"this is not audio" * 30)  # skipped, with its reason
    model, task = api.trained(org, ENGINE, library, worker=speaker_worker, timeout=300)
    assert model["trainStatus"] == "complete", model.get("jsondata")
    report = model["jsondata"]
    assert [s["reason"] for s in report["skipped"]] == ["corrupt"]
    assert report["identifiers"] == len(SPEAKERS) * TRAIN
    right = 0
    for s, name in enumerate(SPEAKERS):
        samples, rate = speak(name, sentence(5000 + s), seed=5000 + s)
        reply = org.client.upload_form(
            """query($m: ID!) { recognize(libraryEngineModelId: $m, topK: 3, threshold: null) {
               threshold matches { entityId entityName score } windows { startSeconds endSeconds } } }""",
            encode(samples, rate, "mp3"), "audio/mpeg", filename="q.mp3", variables={"m": model["id"]},
        ).ok()["recognize"]
        assert reply["threshold"] == pytest.approx(report["threshold"])
        assert reply["windows"] and all(w["startSeconds"] < w["endSeconds"] for w in reply["windows"])
        right += bool(reply["matches"]) and reply["matches"][0]["entityId"] == entities[name]
    with capsys.disabled():
        print(f"\nspeaker via the API: LOO top-1 {report['evaluation']['top1']}, threshold {report['threshold']:.4f}, "
              f"held-out mp3 top-1 {right}/{len(SPEAKERS)}")
    assert right >= len(SPEAKERS) - 1
    samples, rate = speak(SPEAKERS[1], sentence(6000), seed=6000)
    served = encode(samples, rate, "flac")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "audio/flac")
            self.send_header("Content-Length", str(len(served)))
            self.end_headers()
            self.wfile.write(served)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        by_url = org.client.query(
            """query($m: ID!, $u: String) { recognize(libraryEngineModelId: $m, url: $u, topK: 1) {
               matches { entityId } windows { startSeconds endSeconds } } }""",
            m=model["id"], u=f"http://127.0.0.1:{httpd.server_address[1]}/voice.flac",
        ).ok()["recognize"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert by_url["matches"][0]["entityId"] == entities[SPEAKERS[1]] and by_url["windows"]
    bad = org.client.upload_form(
        "query($m: ID!) { recognize(libraryEngineModelId: $m) { threshold } }", b"", "audio/wav", filename="e.wav",
        variables={"m": model["id"]},
    )
    api.assert_error(bad, "invalid_input", "empty")
