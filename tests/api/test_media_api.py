"""Recognition over time through the API: recognizeMedia (upload and URL), segments, Task/Job.segments,
engineResults in the upstream shape, and the timeline page, on the real stack with a worker process.

The engine is the test media engine (tests/support/media_engine.py): one face segment per media second, the
library's entities in turn and every third second an unknown person, so every page and every record is known
exactly. The timeline's drawing is also checked on hand-made segment rows (no stack needed).
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.rest import timeline as tl
from gateway.schema.media import SEGMENTS_PER_RESULT, series_item
from storage.rows import SegmentRow
from tests.api.conftest import Bucket
from tests.conftest import Gateway, Org, Process, Stack, make_org, start_gateway
from tests.engines.api_helpers import start_worker_process
from tests.reliability.conftest import assert_clean, png, train
from tests.support.media_engine import ENGINE_ID, expected_labels, video
from tests.support.media_stack import (
    WORKER_ENV,
    file_server,
    people_library,
    train_media_model,
)
from tests.support.waits import wait_job, wait_worker_ready

SEGMENT = "kind startSeconds endSeconds label entityId entityName confidence bestFrameSeconds hasThumbnail " \
          "entity { id name } matches { entityId score } boxes { seconds left top width height }"
START = """mutation($m: ID, $l: ID, $f: Upload, $u: String, $fi: Float, $s: Int, $k: Int) {
  recognizeMedia(libraryEngineModelId: $m, libraryId: $l, file: $f, url: $u, frameInterval: $fi, speakers: $s, topK: $k)
  { id status tasks { records { id engineId payload } } } }"""
PAGE = f"""query($j: ID, $t: ID, $k: MediaSegmentKind, $e: ID, $a: Float, $b: Float, $o: Int, $l: Int) {{
  segments(jobId: $j, taskId: $t, kind: $k, entityId: $e, startSeconds: $a, stopSeconds: $b, offset: $o, limit: $l)
  {{ offset limit count totalCount records {{ {SEGMENT} }} }} }}"""
RESULTS = """query($j: ID, $o: Int, $l: Int, $a: Int, $b: Int) {
  engineResults(jobId: $j, offset: $o, limit: $l, startOffsetMs: $a, stopOffsetMs: $b)
  { offset limit count totalCount records { jobId taskId engineId startOffsetMs stopOffsetMs jsondata } } }"""
EVIL = '<script>alert("x")</script> & Ada'


def row(seq: int, start: float, end: float, *, entity: str | None = None, name: str | None = None,
        kind: str = "face", label: str | None = None, confidence: float = 0.8, thumb: bool = True) -> SegmentRow:
    task = uuid.UUID(int=7)
    return SegmentRow(task_id=task, job_id=uuid.UUID(int=8), seq=seq, kind=kind, start_s=start, end_s=end,
                      label=label or entity or "unknown-face-0", entity_id=entity, entity_name=name, identifier_id=None,
                      confidence=confidence, best_s=start + 0.1 if kind == "face" else None, matches=[],
                      boxes=[{"t": start + 0.1, "left": 10.0, "top": 20.0, "width": 30.0, "height": 40.0}] if kind == "face" else [],
                      has_thumbnail=thumb and kind == "face")


# ---- the drawing, on hand-made rows -------------------------------------------------------------------------------


def test_lanes_put_recognized_people_first_and_each_unknown_in_its_own_lane():
    rows = [row(0, 0, 2, label="unknown-face-1"), row(1, 1, 3, entity="e2", name="bea"),
            row(2, 4, 5, entity="e1", name="Ada", confidence=0.7), row(3, 6, 9, entity="e1", name="Ada", confidence=0.9),
            row(4, 2, 8, kind="speaker", label="unknown-speaker-0"), row(5, 0, 1, kind="speaker", entity="e1", name="Ada")]
    lanes = tl.lanes_of(rows)
    assert [(lane.name, lane.kind, lane.recognized) for lane in lanes] == [
        ("Ada", "face", True), ("bea", "face", True), ("Ada", "speaker", True),
        ("unknown face 1", "face", False), ("unknown speaker 0", "speaker", False)]
    assert [s.seq for s in lanes[0].segments] == [2, 3] and lanes[0].best.seq == 3  # the most confident thumbnail
    assert lanes[0].seconds == pytest.approx(4.0)
    assert lanes[2].best is None  # voices have no thumbnail


def test_the_svg_escapes_names_is_well_formed_xml_and_draws_a_bar_per_segment_with_its_times():
    rows = [row(0, 1.5, 4.0, entity="e1", name=EVIL), row(1, 65, 70, entity="e2", name="bell\x07 \"quote\" 'apos'"),
            row(2, 10, 12, kind="speaker", label="unknown-speaker-3")]
    image = tl.svg(tl.lanes_of(rows), (0.0, 80.0), {0: b"\xff\xd8\xffjpeg"}, title="job <1>")
    assert "<script" not in image and "&lt;script&gt;" in image and "&amp; Ada" in image
    assert "\x07" not in image
    tree = ET.fromstring(image)  # well-formed: a control character or a raw < would fail here
    ns = {"s": "http://www.w3.org/2000/svg"}
    bars = [r for r in tree.iter("{http://www.w3.org/2000/svg}rect") if r.find("s:title", ns) is not None]
    tips = [r.find("s:title", ns).text for r in bars]
    assert len(bars) == 3
    assert f"{EVIL} (face): 0:01.5\u20130:04.0, confidence 0.80" in tips
    assert any("unknown speaker 3 (voice): 0:10.0\u20130:12.0" in t for t in tips)
    images = list(tree.iter("{http://www.w3.org/2000/svg}image"))
    assert len(images) == 1 and images[0].get("href").startswith("data:image/jpeg;base64,")
    ticks = [t.text for t in tree.iter("{http://www.w3.org/2000/svg}text") if t.text and re.fullmatch(r"\d+:\d\d\.\d", t.text)]
    assert ticks[0] == "0:00.0" and "1:00.0" in ticks and len(ticks) <= 13
    # Bars sit where their times are: 65-70 s of an 80 s axis is right of 1.5-4 s.
    xs = {t: float(r.get("x")) for r, t in zip(bars, tips, strict=True)}
    assert xs[next(t for t in tips if "1:05.0" in t)] > xs[next(t for t in tips if "0:01.5" in t)]


def test_an_axis_far_out_or_tiny_still_draws_a_bounded_number_of_ticks():
    # Found by the route's fuzzing: at 1e300 seconds a float step no longer moves a tick forward.
    for window in ((1e300, 1e300 + 1), (0.0, 1e300), (2.0**53, 2.0**53 + 1), (5.0, 5.0), (0.0, 0.25)):
        image = tl.svg([], window, {}, title="t")
        assert 1 <= image.count("<line") <= 13, window
        ET.fromstring(image)


def test_the_page_is_self_contained_and_says_nothing_of_the_outside_world():
    lanes = tl.lanes_of([row(0, 0, 1, entity="e1", name=EVIL)])
    html = tl.page("t", ["status complete"], ["Showing the first 1 of 9 segments"], tl.svg(lanes, (0, 1), {}, title="t"), lanes)
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # no external script, font or image
    assert "@import" not in html and "url(" not in html
    assert "Showing the first 1 of 9 segments" in html


def test_a_segment_in_the_upstream_series_shape():
    face = series_item(row(0, 1.25, 3.5, entity="e1", name="Ada", confidence=0.75), "lib", (100.0, 200.0))
    assert face == {"startTimeMs": 1250, "stopTimeMs": 3500, "object": {
        "type": "face", "entityId": "e1", "libraryId": "lib", "label": "Ada", "confidence": 0.75,
        "boundingPoly": [{"x": 0.1, "y": 0.1}, {"x": 0.4, "y": 0.1}, {"x": 0.4, "y": 0.3}, {"x": 0.1, "y": 0.3}]}}
    voice = series_item(row(1, 0, 2, kind="speaker", label="unknown-speaker-2", confidence=0.3), "lib", None)
    assert voice == {"startTimeMs": 0, "stopTimeMs": 2000, "speakerId": "unknown-speaker-2", "object": {
        "type": "speaker", "entityId": None, "libraryId": "lib", "label": "unknown-speaker-2", "confidence": 0.3}}
    assert "boundingPoly" not in series_item(row(2, 0, 1, entity="e1", name="Ada"), "lib", None)["object"]


# ---- through the stack --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_env(stack: Stack) -> dict[str, str]:
    return {**stack.env, **WORKER_ENV}


@pytest.fixture(scope="module")
def media_gateway(media_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(media_env, tmp_path_factory.mktemp("media-gw"), "media-gateway")
    yield gw
    gw.process.stop()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start_worker_process(stack, tmp_path_factory.mktemp("media-wk"), "media-api-worker", **WORKER_ENV)
    wait_worker_ready(process)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def org(stack: Stack, media_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, media_gateway, "media-api")
    yield o
    o.close()


@pytest.fixture(scope="module")
def other(stack: Stack, media_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, media_gateway, "media-other")
    yield o
    o.close()


@pytest.fixture(scope="module")
def trained(org: Org, worker: Process) -> dict[str, Any]:
    library_id, entities = people_library(org, ("ada", "bob"))
    org.client.query('mutation($id: ID!, $n: String) { updateEntity(input: {id: $id, name: $n}) { id } }',
                     id=entities["bob"], n=EVIL).ok()
    model_id = train_media_model(org, library_id)
    return {"library": library_id, "entities": entities, "model": model_id, "names": {entities["ada"]: "ada", entities["bob"]: EVIL}}


def upload(org: Org, data: bytes, *, filename: str = "clip.mp4", content_type: str = "video/mp4", **variables: Any) -> Any:
    """recognizeMedia with the file as the spec's multipart ``$f`` part."""
    operations = json.dumps({"query": START, "variables": {**variables, "f": None}})
    files = {"0": (filename, data, content_type)}
    response = org.client.http.post(org.client.url, data={"operations": operations, "map": json.dumps({"0": ["variables.f"]})},
                                    files=files)
    return org.client._reply(response)


def labels_of(records: list[dict[str, Any]]) -> list[str]:
    """Each segment's entity id, or its unknown label: what expected_labels lists."""
    return [r["entityId"] if r["entityId"] else r["label"] for r in records]


def test_recognize_media_by_upload_completes_and_its_segments_page_in_time_order(org, trained, worker):
    seconds = 7
    job = upload(org, video(seconds), m=trained["model"], fi=0.5).ok()["recognizeMedia"]
    assert job["status"] == "queued"
    (task,) = job["tasks"]["records"]
    assert task["engineId"] == ENGINE_ID and task["payload"]["frameInterval"] == 0.5 and "mediaKey" in task["payload"]
    done = wait_job(org, job["id"], worker=worker)
    assert done["status"] == "complete", done
    expected = expected_labels(sorted(trained["entities"].values()), seconds)
    seen, offset = [], 0
    while True:  # pages of 3: 3 + 3 + 1
        page = org.client.query(PAGE, j=job["id"], o=offset, l=3).ok()["segments"]
        assert page["totalCount"] == seconds and page["offset"] == offset and page["count"] == len(page["records"])
        seen += page["records"]
        offset += 3
        if page["count"] < 3:
            break
    assert [s["startSeconds"] for s in seen] == [float(i) for i in range(seconds)]
    assert [s["endSeconds"] for s in seen] == [float(i + 1) for i in range(seconds)]
    assert labels_of(seen) == expected
    for s in seen:
        assert s["kind"] == "face" and s["hasThumbnail"] and s["bestFrameSeconds"] == s["startSeconds"] + 0.5
        assert s["boxes"] and s["boxes"][0]["seconds"] == s["startSeconds"] + 0.5
        if s["entityId"]:
            assert s["entity"] == {"id": s["entityId"], "name": trained["names"][s["entityId"]]} == {
                "id": s["entityId"], "name": s["entityName"]}
            assert s["matches"][0]["entityId"] == s["entityId"]
        else:
            assert s["entity"] is None and s["label"].startswith("unknown-face-") and s["matches"] == []
    bob = trained["entities"]["bob"]
    only_bob = org.client.query(PAGE, j=job["id"], e=bob, l=100).ok()["segments"]
    assert [s["entityId"] for s in only_bob["records"]] == [bob] * expected.count(bob) and only_bob["totalCount"] == expected.count(bob)
    window = org.client.query(PAGE, t=task["id"], a=2.5, b=4.5, l=100).ok()["segments"]
    assert [s["startSeconds"] for s in window["records"]] == [2.0, 3.0, 4.0]
    assert org.client.query(PAGE, j=job["id"], k="speaker").ok()["segments"]["totalCount"] == 0
    # The same pages hang off the task and the job.
    nested = org.client.query(
        f'query($id: ID!) {{ job(id: $id) {{ segments(offset: 5, limit: 5) {{ totalCount records {{ startSeconds }} }} '
        f'tasks {{ records {{ segments(limit: 2) {{ count totalCount records {{ {SEGMENT} thumbnail }} }} }} }} }} }}',
        id=job["id"]).ok()["job"]
    assert nested["segments"] == {"totalCount": seconds, "records": [{"startSeconds": 5.0}, {"startSeconds": 6.0}]}
    first = nested["tasks"]["records"][0]["segments"]
    assert first["count"] == 2 and first["totalCount"] == seconds
    assert first["records"][0]["thumbnail"].startswith("data:image/jpeg;base64,/9j/")
    bad = org.client.query(PAGE, j=job["id"], l=100_000)
    assert bad.error_code == "invalid_input", bad.body


def test_recognize_media_by_url_answers_engine_results_a_record_per_page_of_segments(org, trained, worker):
    seconds = SEGMENTS_PER_RESULT + 30
    with file_server() as files:
        url = files.add("/long.mp4", video(seconds, fps=1, side=16))
        job = org.client.query(START, l=trained["library"], u=url).ok()["recognizeMedia"]
        done = wait_job(org, job["id"], worker=worker, timeout=180)
    assert done["status"] == "complete", done
    task_id = done["tasks"]["records"][0]["id"]
    results = org.client.query(RESULTS, j=job["id"]).ok()["engineResults"]
    assert results["totalCount"] == results["count"] == 2
    first, second = results["records"]
    assert (first["startOffsetMs"], first["stopOffsetMs"]) == (0, SEGMENTS_PER_RESULT * 1000)
    assert (second["startOffsetMs"], second["stopOffsetMs"]) == (SEGMENTS_PER_RESULT * 1000, seconds * 1000)
    assert first["taskId"] == second["taskId"] == task_id and first["engineId"] == ENGINE_ID
    series = first["jsondata"]["series"] + second["jsondata"]["series"]
    assert [s["startTimeMs"] for s in series] == [1000 * i for i in range(seconds)]
    expected = expected_labels(sorted(trained["entities"].values()), seconds)
    for item, label in zip(series, expected, strict=True):
        obj = item["object"]
        assert item["stopTimeMs"] - item["startTimeMs"] == 1000 and obj["type"] == "face"
        assert obj["libraryId"] == trained["library"]
        if label.startswith("unknown-"):
            assert obj["entityId"] is None and obj["label"] == label and obj["confidence"] == pytest.approx(0.2)
        else:
            assert obj["entityId"] == label and obj["label"] == trained["names"][label]
    # Paged records, and offsets that narrow what a record holds.
    assert org.client.query(RESULTS, j=job["id"], o=1, l=1).ok()["engineResults"]["records"][0]["startOffsetMs"] == 100_000
    late = org.client.query(RESULTS, j=job["id"], a=(seconds - 5) * 1000).ok()["engineResults"]
    assert late["totalCount"] == 1 and [s["startTimeMs"] for s in late["records"][0]["jsondata"]["series"]] == [
        1000 * i for i in range(seconds - 5, seconds)]


def test_engine_results_of_a_training_job_are_unchanged(org, trained, worker):
    job_id, task_id, _ = train(org.client, trained["library"], engine_id=ENGINE_ID)
    wait_job(org, job_id, worker=worker)
    records = org.client.query(RESULTS, j=job_id).ok()["engineResults"]["records"]
    assert len(records) == 1 and records[0]["taskId"] == task_id
    assert records[0]["startOffsetMs"] is None and records[0]["stopOffsetMs"] is None
    assert "series" not in (records[0]["jsondata"] or {})


def test_the_timeline_page_and_image_of_a_job(org, other, trained, worker):
    # Started the way curl users send files: a plain form whose query names no file (-F query=... -F file=@...).
    job = org.client.upload_form('mutation($m: ID) { recognizeMedia(libraryEngineModelId: $m) { id } }', video(4),
                                 "video/mp4", filename="clip.mp4", variables={"m": trained["model"]}).ok()["recognizeMedia"]
    assert wait_job(org, job["id"], worker=worker)["status"] == "complete"
    url = f"{org.gateway.url}/v3/jobs/{job['id']}/timeline"
    with httpx.Client(headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        page = http.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        text = page.text
        assert "<script" not in text.lower() and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Ada" in text
        assert "ada" in text and "unknown face 1" in text and "data:image/jpeg;base64," in text
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
        image = http.get(url, params={"format": "svg"})
        assert image.status_code == 200 and image.headers["content-type"].startswith("image/svg+xml")
        tree = ET.fromstring(image.content)
        bars = [r for r in tree.iter("{http://www.w3.org/2000/svg}rect") if len(r)]
        assert len(bars) == 4  # one per segment
        only = ET.fromstring(http.get(url, params={"format": "svg", "start": "2", "stop": "4"}).content)
        assert len([r for r in only.iter("{http://www.w3.org/2000/svg}rect") if len(r)]) == 2
        for params, message in (({"format": "pdf"}, "format"), ({"kind": "hands"}, "kind"), ({"start": "x"}, "start"),
                                ({"start": "5", "stop": "1"}, "stop"), ({"stop": "-1"}, "stop")):
            refused = http.get(url, params=params)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input", (params, refused.text)
            assert message in refused.json()["error"]["message"]
        for job_id in (str(uuid.uuid4()), "not-a-uuid"):
            missing = http.get(f"{org.gateway.url}/v3/jobs/{job_id}/timeline")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert http.post(url).status_code == 405
    with httpx.Client(headers={"Authorization": f"Bearer {other.token}"}, timeout=30) as http:
        theirs, made_up = http.get(url), http.get(f"{org.gateway.url}/v3/jobs/{uuid.uuid4()}/timeline")
        assert theirs.status_code == made_up.status_code == 404 and theirs.json() == made_up.json()
    assert httpx.get(url, timeout=30).status_code == 401


def test_bad_media_input_is_refused_and_leaves_nothing(org, other, trained, worker, stack, bucket: Bucket):
    jobs_before = stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id)
    keys_before = set(bucket.keys(f"{org.id}/media/"))
    model = trained["model"]
    cases = {
        "no media": org.client.query(START, m=model),
        "both file and url": upload(org, video(1), m=model, u="http://127.0.0.1:9/x.mp4"),
        "frameInterval 0": upload(org, video(1), m=model, fi=0.0),
        "frameInterval negative": org.client.query(START, m=model, u="http://127.0.0.1:9/x.mp4", fi=-1.0),
        "speakers 0": upload(org, video(1), m=model, s=0),
        "topK 0": upload(org, video(1), m=model, k=0),
        "no model": upload(org, video(1)),
        "a still image": upload(org, png(3), m=model, filename="p.png", content_type="image/png"),
        "an empty file": upload(org, b"", m=model),
    }
    for name, reply in cases.items():
        assert reply.error_code == "invalid_input", (name, reply.body)
        assert_clean(reply.body)
    assert "image" in cases["a still image"].error_message and "url" in cases["both file and url"].error_message
    # A model of an engine that recognizes single images only.
    _, _, sleeper_model = train(org.client, trained["library"])
    wait_job(org, org.client.query('query($id: ID!) { libraryEngineModel(id: $id) { trainJobId } }', id=sleeper_model)
             .ok()["libraryEngineModel"]["trainJobId"], worker=worker)
    refused = upload(org, video(1), m=sleeper_model)
    assert refused.error_code == "invalid_input" and "over time" in refused.error_message, refused.body
    # Another organization's model and job are not found, exactly like made-up ones.
    theirs = upload(other, video(1), m=model)
    made_up = upload(other, video(1), m=str(uuid.uuid4()))
    assert theirs.error_code == made_up.error_code == "not_found" and theirs.error_message == made_up.error_message
    assert stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id) == jobs_before + 1  # the sleeper's training
    assert set(bucket.keys(f"{org.id}/media/")) == keys_before
    assert not bucket.keys(f"{other.id}/media/")
    # A file that is no video is taken (its bytes are the worker's to read) and its job fails saying why.
    job = upload(org, b"\x00\x01 this is not a video at all " * 50, m=model).ok()["recognizeMedia"]
    failed = wait_job(org, job["id"], worker=worker)
    task = failed["tasks"]["records"][0]
    assert failed["status"] == "failed" and "neither a video nor a recording" in (task["failureMessage"] or ""), task
    for query in (PAGE,):
        mine = org.client.query(query, j=job["id"]).ok()["segments"]
        assert mine["totalCount"] == 0
        assert other.client.query(query, j=job["id"]).error_code == "not_found"
        assert other.client.query(query, t=task["id"]).error_code == "not_found"
    assert org.client.query(PAGE).error_code == "invalid_input"  # neither jobId nor taskId


def test_a_read_token_reads_segments_but_cannot_start_a_media_job(org, trained):
    reader = org.client_for("read")
    refused = reader.query(START, m=trained["model"], u="http://127.0.0.1:9/x.mp4")
    assert refused.error_code == "not_allowed" and not (refused.data or {}).get("recognizeMedia")
