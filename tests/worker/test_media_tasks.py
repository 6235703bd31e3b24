"""Library-run tasks on video, through the real stack: a worker process runs the test media engine
(tests/support/media_engine.py: one face segment per media second, at a pace the video asks for), the
media comes by URL from a loopback server (the upstream createJob flow) or as an upload through the
recognizeMedia service, and the stored segments are read back through the segments service."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InvalidInput, NotAllowed, NotFound, PayloadTooLarge
from gateway.services.access.principal import Principal
from gateway.services.recognition import media
from gateway.services.recognition import recognize as recognition
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines.api_helpers import start_worker_process
from tests.reliability.conftest import png
from tests.support import media_stack as ms
from tests.support.media_engine import expected_labels, video
from tests.support.waits import wait_for, wait_task_row, wait_worker_ready


@pytest.fixture(scope="module")
def worker_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker's temporary directory (TMPDIR), where it keeps the media while a task runs."""
    return tmp_path_factory.mktemp("media-worker-tmp")


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory, worker_tmp: Path) -> Iterator[Process]:
    process = start_worker_process(stack, tmp_path_factory.mktemp("media-worker"), "media-worker", **ms.WORKER_ENV,
                                   TMPDIR=str(worker_tmp))
    wait_worker_ready(process)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def files() -> Iterator[ms.FileServer]:
    with ms.file_server() as server:
        yield server


@pytest.fixture(scope="module")
def org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, gateway, "media")
    yield o
    o.close()


@pytest.fixture(scope="module")
def trained(org: Org, worker: Process) -> dict[str, Any]:
    library_id, entities = ms.people_library(org)
    return {"library": library_id, "entities": entities, "model": ms.train_media_model(org, library_id),
            "ids": sorted(entities.values())}


def payload(trained: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"mode": "library-run", "libraryId": trained["library"], "libraryEngineModelId": trained["model"], **extra}


def test_a_library_run_job_on_a_video_url_stores_time_coded_segments_and_completes(org, other_org, stack, files, trained, worker):
    url = files.add(f"/clip-{uuid.uuid4().hex}.mp4", video(12))
    job = ms.run_job(org, payload(trained, url=url, frameInterval=1.0))
    task = ms.finished(org, job["id"])
    assert task["status"] == "complete", (task, worker.output()[-3000:])
    ada, bob = trained["entities"]["ada"], trained["entities"]["bob"]
    out = task["output"]
    assert out["libraryId"] == trained["library"] and out["libraryEngineModelId"] == trained["model"]
    assert out["media"] == {"kind": "video", "duration": 12.0, "frameInterval": 1.0, "framesSampled": 12, "width": 32,
                            "height": 32}
    assert (out["segments"], out["unknown"]) == (12, 4)
    assert sorted((e["entityName"], e["seconds"]) for e in out["entities"]) == [("ada", 4.0), ("bob", 4.0)]
    assert {e["entityId"] for e in out["entities"]} == {ada, bob}

    rows, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), job_id=job["id"], limit=100))
    assert total == 12
    assert [r.label for r in rows] == expected_labels(trained["ids"], 12)
    assert [r.start_s for r in rows] == [float(i) for i in range(12)]
    first = rows[0]
    assert (first.kind, first.end_s, first.best_s, first.has_thumbnail) == ("face", 1.0, 0.5, True)
    assert first.boxes == [{"t": 0.5, "left": 1.0, "top": 2.0, "width": 2.0, "height": 4.0}]
    assert first.matches == [{"entityId": first.entity_id, "entityName": first.entity_name, "entityIdentifierId": None,
                              "score": 0.9}]
    unknown = rows[2]
    assert (unknown.label, unknown.entity_id, unknown.matches) == ("unknown-face-1", None, [])

    task_id = task["id"]
    page, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), task_id=task_id, offset=5, limit=3))
    assert ([r.start_s for r in page], total) == ([5.0, 6.0, 7.0], 12)
    window, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), job_id=job["id"], start=3.5, stop=6))
    assert ([r.start_s for r in window], total) == ([3.0, 4.0, 5.0], 3)
    mine, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), job_id=job["id"], entity_id=ada))
    assert total == 4 and {r.entity_name for r in mine} == {"ada"}
    assert ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), job_id=job["id"], kind="speaker")) == ([], 0)
    thumb = ms.call(stack.env, lambda res: media.thumbnail(res, ms.admin(org), task_id, 3))
    assert thumb == b"\xff\xd8\xff" + bytes([3]) * 8
    assert ms.call(stack.env, lambda res: media.thumbnail(res, ms.admin(org), task_id, 999)) is None

    # Another organization sees none of it: not found, as for a bad ID.
    for work in (lambda res: media.segments(res, ms.admin(other_org), job_id=job["id"]),
                 lambda res: media.segments(res, ms.admin(other_org), task_id=task_id),
                 lambda res: media.thumbnail(res, ms.admin(other_org), task_id, 0)):
        with pytest.raises(NotFound):
            ms.call(stack.env, work)


def test_an_upload_through_the_service_is_streamed_to_the_organizations_prefix_and_run(org, stack, trained, worker):
    upload = ms.Upload(video(6))
    job = ms.call(stack.env, lambda res: media.start(res, ms.admin(org), model_id=trained["model"], upload=upload,
                                                     frame_interval=0.5, top_k=3))
    assert job.org_id == org.id and str(job.library_id) == trained["library"]
    task = ms.finished(org, str(job.id))
    assert task["status"] == "complete", (task, worker.output()[-3000:])
    key = task["payload"]["mediaKey"]
    assert key.startswith(f"{org.id}/media/") and "url" not in task["payload"]
    assert (task["payload"]["frameInterval"], task["payload"]["topK"]) == (0.5, 3)
    assert task["output"]["media"]["framesSampled"] == 12 and task["output"]["segments"] == 6
    # Kept for a retry, then swept: its deletion is scheduled about a week out.
    days = stack.db.fetchval(
        "SELECT extract(epoch FROM not_before - now()) / 86400 FROM blob_deletions WHERE storage_key = $1", key)
    assert days is not None and 6.9 < days <= 7.0
    rows, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), task_id=task["id"]))
    assert total == 6 and [r.label for r in rows] == expected_labels(trained["ids"], 6)

    # The library's default model answers when only the library is named.
    by_library = ms.call(stack.env, lambda res: media.start(res, ms.admin(org), library_id=trained["library"],
                                                            upload=ms.Upload(video(2))))
    assert ms.finished(org, str(by_library.id))["output"]["segments"] == 2


def _media_keys(org: Org) -> set[str]:
    from tests.reliability.conftest import Bucket

    bucket = Bucket(org.stack)
    try:
        return bucket.keys(f"{org.id}/media/")
    finally:
        bucket.close()


def test_bad_media_requests_are_refused_and_leave_nothing_in_s3_or_the_queue(org, other_org, stack, trained, worker):
    clip = video(4)
    model = trained["model"]
    before = (_media_keys(org), stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id))

    def start(principal: Principal | None = None, extra: dict[str, str] | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("model_id", model)
        kwargs.setdefault("upload", ms.Upload(clip))
        return ms.call(stack.env, lambda res: media.start(res, principal or ms.admin(org), **kwargs), **(extra or {}))

    with pytest.raises(PayloadTooLarge, match="larger than the limit of 1000 bytes"):
        start(extra={"ENGINESHED_MAX_MEDIA_BYTES": "1000"})
    with pytest.raises(ms.ClientGone):  # the client went away halfway
        start(upload=ms.Upload(clip, cut_at=len(clip) // 2))
    with pytest.raises(InvalidInput, match="still image"):
        start(upload=ms.Upload(png(1), "image/png"))
    with pytest.raises(InvalidInput, match="empty"):
        start(upload=ms.Upload(b""))
    for option, value, message in (("frame_interval", 0.01, "frameInterval"), ("frame_interval", 61.0, "frameInterval"),
                                   ("frame_interval", math.nan, "frameInterval"), ("speakers", 0, "speakers"),
                                   ("speakers", 51, "speakers"), ("top_k", 0, "topK"), ("top_k", 101, "topK"),
                                   ("threshold", 1.5, "threshold")):
        with pytest.raises(InvalidInput, match=message):
            start(**{option: value})
    with pytest.raises(InvalidInput, match="not both"):
        start(url="http://127.0.0.1/x.mp4")  # and the upload
    with pytest.raises(InvalidInput, match="as a file"):
        start(upload=None)
    with pytest.raises(InvalidInput, match="exactly one"):
        start(library_id=trained["library"])
    with pytest.raises(InvalidInput, match="non-public"):  # a gateway that may not fetch private addresses
        start(upload=None, url="http://127.0.0.1:9/clip.mp4", extra={"ENGINESHED_FETCH_ALLOWED_HOSTS": ""})
    with pytest.raises(InvalidInput, match="only http and https"):
        start(upload=None, url="file:///etc/passwd")
    with pytest.raises(NotFound):
        start(principal=ms.admin(other_org))
    with pytest.raises(NotAllowed):
        start(principal=Principal(org_id=org.id, scope="read"))
    sleeper = ms.train_media_model(org, trained["library"], engine_id="test-sleeper")
    with pytest.raises(InvalidInput, match="engine test-sleeper does not recognize video"):
        start(model_id=sleeper)
    assert (_media_keys(org), stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id) - 1) == before


def test_progress_shows_while_a_video_runs_and_cancel_stops_it_with_no_segments_left(org, stack, files, trained, worker, worker_tmp):
    url = files.add(f"/slow-{uuid.uuid4().hex}.mp4", video(60, pace=0.25))  # 15 s of work
    job = ms.run_job(org, payload(trained, url=url))
    task_id = job["tasks"]["records"][0]["id"]
    running = wait_task_row(stack.db, task_id, lambda r: r["status"] == "running" and 0.1 <= r["progress"] < 0.6,
                            "the video to be partly done", timeout=60)
    assert len(list(worker_tmp.glob("engineshed-media-*/media"))) == 1, "the media should be on the worker's disk"
    assert running["progress_message"].endswith("of 60 s"), dict(running)
    # What the running attempt has stored so far is listed; the job is not complete.
    live = wait_for(lambda: ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), task_id=task_id))[1],
                    timeout=20, what="stored segments while running")
    assert 0 < live < 60
    org.client.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job["id"]).ok()
    done = wait_task_row(stack.db, task_id, lambda r: r["status"] != "running", "the task to stop", timeout=8)
    assert done["status"] == "cancelled" and done["progress"] < 0.9, dict(done)
    assert ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), task_id=task_id)) == ([], 0)
    assert ms.segment_rows(stack.db, task_id) == []
    assert not list(worker_tmp.glob("engineshed-media-*")), "the worker left its temporary media behind"


def test_a_photo_url_keeps_the_one_shot_result(org, files, trained, worker):
    url = files.add(f"/photo-{uuid.uuid4().hex}.png", png(3), "image/png")
    task = ms.finished(org, ms.run_job(org, payload(trained, url=url))["id"])
    assert task["status"] == "complete", task
    assert task["output"]["results"] == [{"url": url, "matches": [], "faces": []}]
    assert "segments" not in task["output"]


def test_a_video_given_as_the_only_entry_of_urls_runs_as_media(org, files, trained, worker):
    url = files.add(f"/one-{uuid.uuid4().hex}.mp4", video(3))
    task = ms.finished(org, ms.run_job(org, payload(trained, urls=[url]))["id"])
    assert task["status"] == "complete", task
    assert task["output"]["segments"] == 3 and task["output"]["media"]["kind"] == "video"


def test_a_task_fails_cleanly_on_bad_options_a_foreign_media_key_and_unreadable_media(org, other_org, files, trained, worker):
    url = files.add(f"/clip-{uuid.uuid4().hex}.mp4", video(2))
    bad = ms.finished(org, ms.run_job(org, payload(trained, url=url, frameInterval=0))["id"])
    assert (bad["status"], bad["failureReason"]) == ("failed", "invalid_data")
    assert "frameInterval" in bad["failureMessage"]
    # A payload naming another organization's upload is never read.
    foreign = ms.finished(org, ms.run_job(org, payload(trained, url=url, mediaKey=f"{other_org.id}/media/abc"))["id"])
    assert foreign["status"] == "failed" and "not name a media file of this organization" in foreign["failureMessage"]
    missing = ms.finished(org, ms.run_job(org, payload(trained, url=url, mediaKey=f"{org.id}/media/gone"))["id"])
    assert missing["status"] == "failed" and "no longer stored" in missing["failureMessage"]
    gone = ms.finished(org, ms.run_job(org, payload(trained, url=files.base_url + "/nothing-here.mp4"))["id"])
    assert gone["status"] == "failed" and "404" in gone["failureMessage"]


def test_the_synchronous_recognize_sends_a_video_to_recognize_media(org, stack, trained):
    with pytest.raises(InvalidInput, match="use recognizeMedia") as refused:
        ms.call(stack.env, lambda res: recognition.recognize(
            res, ms.admin(org), trained["model"], upload=ms.Upload(video(3)), url=None, top_k=None, threshold=None))
    assert refused.value.data == {"reason": "use-recognizeMedia"}
    # A photo still answers at once.
    outcome = ms.call(stack.env, lambda res: recognition.recognize(
        res, ms.admin(org), trained["model"], upload=ms.Upload(png(2), "image/png"), url=None, top_k=None, threshold=None))
    assert outcome.matches == []


# ---- the face engine itself, trained through the API on real photos, on a video it has never seen ----

FACE = "engineshed-face"
PEOPLE = ("obama", "biden", "group1-0", "group2-0")
FACE_INTERVAL = 0.5
# Obama (a photo never enrolled) for 4 s, cut to Biden at the same place; a person not in the library meanwhile.
FACE_SCRIPT = (("obama-other", 0.0, 4.0, (90, 120, 100), (160, 120, 85)), ("biden-made", 4.0, 8.0, (160, 120, 95), None),
               ("group3-1", 1.0, 3.0, (265, 60, 62), None))


@pytest.fixture(scope="module")
def face_setup(stack: Stack, gateway: Gateway, request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An organization with a face library of composited real photos, its face model trained by a worker
    through the API, and that worker (it fetches from loopback and stores the 12 MB artifact)."""
    import numpy as np

    from sampledata import face_scenes, faces
    from sampledata.video import heads as video_heads
    from tests.engines import face_fixtures, registered
    from tests.engines.api_helpers import trained as api_trained

    cache = face_fixtures.package_cache(request, tmp_path_factory)
    pulled = {name: face_fixtures.pulled(cache, name) for name in ("face-detector", "face-embedding")}
    for model in pulled.values():
        registered.register_pulled(stack, model)
    process = start_worker_process(stack, tmp_path_factory.mktemp("face-media"), "face-media-worker",
                                   ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024),
                                   ENGINESHED_FETCH_ALLOWED_HOSTS="127.0.0.1/32")
    org = make_org(stack, gateway, "face-media")
    try:
        heads = video_heads(faces.fetch_photos(cache), faces.Detector(pulled["face-detector"].model_bytes))
        library_id = org.create_library("face-media", "people")
        rng = np.random.default_rng(3)
        entities = {}
        for person in PEOPLE:
            entities[person] = org.create_entity(library_id, person)
            for _ in range(2):
                photo = face_scenes.compose([heads[person]], rng, size=(640, 480), face_px=(100, 180)).data
                org.add_identifier(entities[person], photo, "image/jpeg")
        model, task = api_trained(org, FACE, library_id, worker=process, timeout=600)
        assert model["trainStatus"] == "complete", (model, task)
        yield {"org": org, "library": library_id, "model": model["id"], "entities": entities, "heads": heads,
               "worker": process}
    finally:
        process.stop()
        org.close()
        for name in pulled:
            registered.drop_system_default(stack, name)


def test_the_face_engine_on_a_video_url_stores_who_appears_when(face_setup, stack, files, tmp_path):
    from sampledata.video import Shot, write_video

    org = face_setup["org"]
    shots = [Shot(*shot) for shot in FACE_SCRIPT]
    clip = write_video(tmp_path / "people.mp4", face_setup["heads"], shots, duration=8.5, fps=5)
    url = files.add(f"/people-{uuid.uuid4().hex}.mp4", clip.path.read_bytes())
    job = ms.run_job(org, {"mode": "library-run", "libraryId": face_setup["library"],
                           "libraryEngineModelId": face_setup["model"], "url": url, "frameInterval": FACE_INTERVAL,
                           "threshold": 0.6}, engine_id=FACE)
    task = ms.finished(org, job["id"], timeout=300)
    assert task["status"] == "complete", (task, face_setup["worker"].output()[-3000:])
    out = task["output"]
    assert out["media"]["kind"] == "video" and out["media"]["frameInterval"] == FACE_INTERVAL
    assert abs(out["media"]["duration"] - 8.5) < 0.3
    rows, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), job_id=job["id"], limit=100))
    assert total == out["segments"] == len(rows) and total >= 3
    obama, biden = face_setup["entities"]["obama"], face_setup["entities"]["biden"]
    by_entity = {r.entity_id: r for r in rows if r.entity_id}
    assert {obama, biden} <= set(by_entity), [(r.label, r.start_s, r.end_s) for r in rows]
    # Boundaries within one sampling interval of the script's.
    for entity, (start, end) in ((obama, (0.0, 4.0)), (biden, (4.0, 8.0))):
        seen = [r for r in rows if r.entity_id == entity]
        assert abs(min(r.start_s for r in seen) - start) <= FACE_INTERVAL + 1e-6, seen
        assert abs(max(r.end_s for r in seen) - end) <= FACE_INTERVAL + 1e-6, seen
    unknown = [r for r in rows if r.entity_id is None]
    assert unknown and all(r.label.startswith("unknown-face-") for r in unknown)
    assert out["unknown"] == len({r.label for r in unknown})
    assert all(r.boxes and r.best_s is not None for r in rows)
    thumbs = [r for r in rows if r.has_thumbnail]
    if thumbs:
        jpeg = ms.call(stack.env, lambda res: media.thumbnail(res, ms.admin(org), task["id"], thumbs[0].seq))
        assert jpeg[:3] == b"\xff\xd8\xff"


# ---- the speaker engine: who speaks when in a video's audio track, uploaded through the service ----

SPEAKER = "test-speaker"
SPEAKER_ENGINES = f"{ms.WORKER_ENV['ENGINESHED_EXTRA_ENGINES']},sampledata.speaker_engine:TestSpeakerEngine"


@pytest.fixture(scope="module")
def speaker_setup(stack: Stack, gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A people library of espeak-ng voices, its speaker model trained by a worker through the API."""
    from gateway.services.models.pull.catalogue import PullError
    from sampledata.conversation import training_recordings
    from sampledata.speaker import encoder_bytes
    from sampledata.speech import ESPEAK
    from tests.engines.api_helpers import trained as api_trained
    from tests.support.requirements import need

    if ESPEAK is None:
        need("espeak-ng", "espeak-ng is not installed (apt-get install -y espeak-ng)")
    try:
        encoder_bytes()  # fills the cache the worker reads
    except PullError as exc:
        need("registry", f"the speaker model is not cached and the registry is unreachable: {exc}")
    process = start_worker_process(stack, tmp_path_factory.mktemp("speaker-media"), "speaker-media-worker",
                                   ENGINESHED_EXTRA_ENGINES=SPEAKER_ENGINES,
                                   ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024))
    org = make_org(stack, gateway, "speaker-media")
    try:
        wait_worker_ready(process)
        library_id = org.create_library("voices", "people")
        entities = {}
        for name, recordings in training_recordings(["Ada", "Dmitri", "Chloe"]).items():
            entities[name] = org.create_entity(library_id, name)
            for data in recordings:
                org.client.upload_form(
                    'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "audio-recording"}) { id } }',
                    data, "audio/wav", filename="voice", variables={"e": entities[name]},
                ).ok()
        model, task = api_trained(org, SPEAKER, library_id, worker=process, timeout=300)
        assert model["trainStatus"] == "complete", (model, task)
        yield {"org": org, "model": model["id"], "entities": entities, "worker": process}
    finally:
        process.stop()
        org.close()


def test_the_speaker_engine_on_a_videos_audio_track_stores_who_speaks_when(speaker_setup, stack):
    from sampledata.conversation import build

    org = speaker_setup["org"]
    talk = build()
    job = ms.call(stack.env, lambda res: media.start(res, ms.admin(org), model_id=speaker_setup["model"],
                                                     upload=ms.Upload(talk.mp4())),
                  ENGINESHED_EXTRA_ENGINES=SPEAKER_ENGINES)
    task = ms.finished(org, str(job.id), timeout=300)
    assert task["status"] == "complete", (task, speaker_setup["worker"].output()[-3000:])
    out = task["output"]
    assert out["media"]["kind"] == "video" and (out["media"]["frameInterval"], out["media"]["framesSampled"]) == (None, None)
    assert abs(out["media"]["duration"] - talk.seconds) < 0.5
    rows, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), task_id=task["id"], limit=200))
    assert total == out["segments"] == len(rows) > 0
    assert {r.kind for r in rows} == {"speaker"}
    assert all(0 <= r.start_s < r.end_s <= talk.seconds + 0.5 for r in rows)
    heard = {e["entityId"]: e["seconds"] for e in out["entities"]}
    assert set(speaker_setup["entities"].values()) <= set(heard), (out, [(r.label, r.start_s, r.end_s) for r in rows])
    # Most known turns are attributed to their speaker where they are spoken.
    known = [t for t in talk.turns if t.speaker in speaker_setup["entities"]]
    right = sum(any(r.entity_id == speaker_setup["entities"][t.speaker] and r.start_s <= (t.start + t.end) / 2 <= r.end_s
                    for r in rows) for t in known)
    assert right >= len(known) - 2, (right, len(known), [(r.label, r.start_s, r.end_s) for r in rows])
