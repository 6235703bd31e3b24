"""``engineshed recognize clip.mp4 --library people`` as a new user runs it: the real face engine, trained through
the API on real photos, a video it has never seen (two library people in turn, one person not in the library),
and what the user reads: the table, ``--json``, the saved timeline, and the same job through GraphQL
(``segments``, ``engineResults`` in the upstream shape)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client.helpers import cli, cli_json
from tests.conftest import Gateway, Stack, make_org
from tests.engines.api_helpers import start_worker_process

FACE = "engineshed-face"
PEOPLE = ("obama", "biden", "group1-0", "group2-0")
INTERVAL = 0.5
DURATION = 10.0
# Obama moving and shrinking for 4 s, then a cut to Biden at the same place until 8 s (both from their enrolled
# sittings, mirrored and darker); meanwhile a person not in the library on the right from 1 to 3 s; nobody in the
# last 2 s.
SCRIPT = (("obama-made", 0.0, 4.0, (90, 120, 100), (160, 120, 85)), ("biden-made", 4.0, 8.0, (160, 120, 95), None),
          ("group3-1", 1.0, 3.0, (265, 60, 62), None))


@pytest.fixture(scope="module")
def faces(stack: Stack, gateway: Gateway, request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An organization with a people library of composited real photos, its face model trained by a worker through
    the API, and the test video (sampledata/video.py)."""
    import numpy as np

    from sampledata import face_scenes
    from sampledata import faces as face_photos
    from sampledata.video import Shot, write_video
    from sampledata.video import heads as video_heads
    from tests.engines import face_fixtures, registered
    from tests.engines.api_helpers import trained

    cache = face_fixtures.package_cache(request, tmp_path_factory)
    pulled = {name: face_fixtures.pulled(cache, name) for name in ("face-detector", "face-embedding")}
    for model in pulled.values():
        registered.register_pulled(stack, model)
    process = start_worker_process(stack, tmp_path_factory.mktemp("cli-faces-wk"), "cli-faces-worker",
                                   ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024))
    org = make_org(stack, gateway, "cli-faces")
    try:
        heads = video_heads(face_photos.fetch_photos(cache), face_photos.Detector(pulled["face-detector"].model_bytes))
        library_id = org.create_library("people", "people")
        rng = np.random.default_rng(3)
        entities = {}
        for person in PEOPLE:
            entities[person] = org.create_entity(library_id, person)
            for _ in range(2):
                photo = face_scenes.compose([heads[person]], rng, size=(640, 480), face_px=(100, 180)).data
                org.add_identifier(entities[person], photo, "image/jpeg")
        model, task = trained(org, FACE, library_id, worker=process, timeout=600)
        assert model["trainStatus"] == "complete", (model, task)
        folder = tmp_path_factory.mktemp("cli-faces-video")
        clip = write_video(folder / "clip.mp4", heads, [Shot(*s) for s in SCRIPT], duration=DURATION, fps=5)
        yield {"org": org, "library": library_id, "entities": entities, "clip": clip.path, "worker": process}
    finally:
        process.stop()
        org.close()
        for name in pulled:
            registered.drop_system_default(stack, name)


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of the segment table's body rows (rich's box-drawn table)."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 5 and re.fullmatch(r"\d+:\d\d\.\d\d", cells[0]):
            rows.append(cells)
    return rows


def seconds(text: str) -> float:
    minutes, secs = text.split(":")
    return int(minutes) * 60 + float(secs)


def test_the_table_names_who_appears_when(faces, tmp_path):
    org, clip = faces["org"], faces["clip"]
    page = tmp_path / "out.html"
    done = cli(org, "recognize", str(clip), "--library", "people", "--timeline", str(page))
    assert done.returncode == 0, (done.stdout, done.stderr, faces["worker"].output()[-3000:])
    assert "recognizing clip.mp4" in done.stderr and "100%" in done.stderr, done.stderr
    size = clip.stat().st_size / 1000  # the upload's bar, before the job exists: all of the file sent
    assert re.search(rf"uploading clip\.mp4 .* {size:.1f}/{size:.1f} kB", done.stderr), done.stderr
    rows = table_rows(done.stdout)
    count = re.search(r"clip\.mp4: (\d+) segment\(s\), job (\S+)", done.stdout)
    assert count and int(count.group(1)) == len(rows), done.stdout
    # In start order; the library's people by name, in the order they appear, near the script's times.
    assert [seconds(r[0]) for r in rows] == sorted(seconds(r[0]) for r in rows), done.stdout
    known = [r for r in rows if not r[2].startswith("(")]
    assert [r[2] for r in known] == ["obama", "biden"], done.stdout
    for row, (start, end) in zip(known, ((0.0, 4.0), (4.0, 8.0)), strict=True):
        assert abs(seconds(row[0]) - start) <= INTERVAL + 1e-6 and abs(seconds(row[1]) - end) <= INTERVAL + 1e-6, row
        assert 0 < float(row[3]) <= 1 and row[4] == "face", row
    # The person not in the library: one unknown, numbered from 1, seen around 1-3 s.
    unknown = [r for r in rows if r[2].startswith("(")]
    assert [r[2] for r in unknown] == ["(unknown-face-1)"], done.stdout
    assert abs(seconds(unknown[0][0]) - 1.0) <= INTERVAL + 1e-6 and abs(seconds(unknown[0][1]) - 3.0) <= INTERVAL + 1e-6
    assert "best score any library person reached" in done.stderr  # what an unknown's confidence means
    # The saved page draws them, offline: names, inline thumbnails, nothing fetched from anywhere.
    text = page.read_text(encoding="utf-8")
    assert f"timeline saved to {page}" in done.stderr
    assert "<svg" in text and "obama" in text and "biden" in text and "unknown face 1" in text
    assert "data:image/jpeg;base64," in text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text), "the page refers to something outside"
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", text) and "<script" not in text
    assert count.group(2) in text


def test_json_and_the_same_job_through_graphql(faces):
    org, clip, entities = faces["org"], faces["clip"], faces["entities"]
    answer = cli_json(org, "recognize", str(clip), "--library", "people", "--frame-interval", str(INTERVAL))
    job = answer["job"]
    assert job["status"] == "complete" and answer["exitStatus"] == 0
    segments = answer["segments"]
    named = [s for s in segments if s["entityId"]]
    assert [(s["entityName"], s["entityId"]) for s in named] == [("obama", entities["obama"]),
                                                                 ("biden", entities["biden"])]
    assert [s["label"] for s in segments if not s["entityId"]] == ["unknown-face-1"]
    for s in segments:
        assert s["kind"] == "face" and 0 <= s["startSeconds"] < s["endSeconds"] <= DURATION + 0.01, s
        assert s["boxes"] and s["startSeconds"] <= s["bestFrameSeconds"] <= s["endSeconds"], s
        assert all(0 <= b["left"] and b["left"] + b["width"] <= 320.01 and 0 <= b["top"]
                   and b["top"] + b["height"] <= 240.01 for b in s["boxes"]), s
    assert all(s["hasThumbnail"] for s in named)

    # GraphQL segments: the same list, thumbnails as data: URIs, one entity's segments by its ID.
    listed = org.client.query(
        "query($j: ID!) { segments(jobId: $j, limit: 100) { totalCount records { startSeconds endSeconds label "
        "entity { id name } thumbnail } } }", j=job["id"]).ok()["segments"]
    assert listed["totalCount"] == len(segments)
    assert [(r["startSeconds"], r["endSeconds"], r["label"]) for r in listed["records"]] == \
        [(s["startSeconds"], s["endSeconds"], s["label"]) for s in segments]
    assert all(r["thumbnail"].startswith("data:image/jpeg;base64,") for r in listed["records"] if r["entity"])
    biden = org.client.query("query($j: ID!, $e: ID!) { segments(jobId: $j, entityId: $e) { records { entity { name } } } }",
                             j=job["id"], e=entities["biden"]).ok()["segments"]["records"]
    assert biden == [{"entity": {"name": "biden"}}]

    # engineResults in the upstream shape: a series of face objects, boxes relative to the frame.
    results = org.client.query(
        "query($j: ID!) { engineResults(jobId: $j) { records { engineId startOffsetMs stopOffsetMs jsondata } } }",
        j=job["id"]).ok()["engineResults"]["records"]
    assert len(results) == 1 and results[0]["engineId"] == FACE
    series = results[0]["jsondata"]["series"]
    assert [(i["startTimeMs"], i["stopTimeMs"]) for i in series] == \
        [(round(s["startSeconds"] * 1000), round(s["endSeconds"] * 1000)) for s in segments]
    assert results[0]["startOffsetMs"] == series[0]["startTimeMs"]
    assert results[0]["stopOffsetMs"] == max(i["stopTimeMs"] for i in series)
    for item, segment in zip(series, segments, strict=True):
        obj = item["object"]
        assert obj["type"] == "face" and obj["entityId"] == segment["entityId"], item
        assert obj["libraryId"] == faces["library"]
        assert obj["label"] == (segment["entityName"] or segment["label"])
        poly = obj["boundingPoly"]
        assert len(poly) == 4 and all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in poly), item
        assert poly[0]["x"] < poly[1]["x"] and poly[1]["y"] < poly[2]["y"]
    # The unknown is on the right of the frame, Obama on the left at first.
    by_label = {i["object"]["label"]: i["object"]["boundingPoly"] for i in series}
    assert by_label["unknown-face-1"][0]["x"] > 0.6 and by_label["obama"][1]["x"] < 0.7


# ---- voices: ``engineshed recognize meeting.wav --library voices`` with the speaker engine ----

SPEAKER = "test-speaker"


@pytest.fixture(scope="module")
def voices(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A gateway and a worker that know the speaker engine, a people library of espeak-ng voices, its model trained
    through the API, and a recorded conversation (sampledata/conversation.py)."""
    from gateway.services.models.pull.catalogue import PullError
    from sampledata.conversation import build, training_recordings
    from sampledata.speaker import encoder_bytes
    from sampledata.speech import ESPEAK
    from tests.conftest import TEST_ENGINES, start_gateway
    from tests.engines.api_helpers import trained
    from tests.support.requirements import need
    from tests.support.waits import wait_worker_ready

    if ESPEAK is None:
        need("espeak-ng", "espeak-ng is not installed (apt-get install -y espeak-ng)")
    try:
        encoder_bytes()  # fills the cache the gateway and worker read
    except PullError as exc:
        need("registry", f"the speaker model is not cached and the registry is unreachable: {exc}")
    engines = {"ENGINESHED_EXTRA_ENGINES": f"{TEST_ENGINES},sampledata.speaker_engine:TestSpeakerEngine"}
    gw = start_gateway({**stack.env, **engines}, tmp_path_factory.mktemp("cli-voices-gw"), "cli-voices-gateway")
    process = start_worker_process(stack, tmp_path_factory.mktemp("cli-voices-wk"), "cli-voices-worker", **engines)
    org = make_org(stack, gw, "cli-voices")
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
        model, task = trained(org, SPEAKER, library_id, worker=process, timeout=300)
        assert model["trainStatus"] == "complete", (model, task)
        yield {"org": org, "entities": entities, "talk": build(), "worker": process}
    finally:
        process.stop()
        org.close()
        gw.process.stop()


def test_who_speaks_when_in_a_recorded_meeting(voices, tmp_path):
    org, talk = voices["org"], voices["talk"]
    meeting = tmp_path / "meeting.wav"
    meeting.write_bytes(talk.wav())  # over a minute: recognized over time, without --media
    page = tmp_path / "meeting.html"
    done = cli(org, "recognize", str(meeting), "--library", "voices", "--timeline", str(page))
    assert done.returncode == 0, (done.stdout, done.stderr, voices["worker"].output()[-3000:])
    assert "recognizing meeting.wav" in done.stderr and "100%" in done.stderr, done.stderr
    rows = table_rows(done.stdout)
    assert rows and all(r[4] == "voice" for r in rows), done.stdout
    assert [seconds(r[0]) for r in rows] == sorted(seconds(r[0]) for r in rows), done.stdout
    assert all(0 <= seconds(r[0]) < seconds(r[1]) <= talk.seconds + 0.5 for r in rows), done.stdout
    assert {"Ada", "Dmitri", "Chloe"} <= {r[2] for r in rows}, done.stdout
    # The first voice heard is Ada's, where her first turn starts.
    first = talk.turns[0]
    assert rows[0][2] == "Ada" and abs(seconds(rows[0][0]) - first.start) <= 1.0, (done.stdout, first)
    assert all(r[2].startswith("(unknown-speaker-") for r in rows if r[2] not in voices["entities"]), done.stdout
    text = page.read_text(encoding="utf-8")
    assert all(f"{name} <tspan" in text for name in ("Ada", "Dmitri", "Chloe")) and "(voice)" in text
    # engineResults: speaker items with the voice's label, no face box.
    job_id = re.search(r"meeting\.wav: \d+ segment\(s\), job (\S+)", done.stdout).group(1)
    records = org.client.query("query($j: ID!) { engineResults(jobId: $j) { records { jsondata } } }",
                               j=job_id).ok()["engineResults"]["records"]
    series = [item for record in records for item in record["jsondata"]["series"]]
    assert len(series) == len(rows)
    for item, row in zip(series, rows, strict=True):
        assert abs(item["startTimeMs"] / 1000 - seconds(row[0])) <= 0.006, (item, row)  # the table shows 1/100 s
        assert abs(item["stopTimeMs"] / 1000 - seconds(row[1])) <= 0.006, (item, row)
        obj = item["object"]
        assert obj["type"] == "speaker" and "boundingPoly" not in obj, item
        assert (obj["entityId"] == voices["entities"].get(row[2])) and item["speakerId"], (item, row)


def test_media_the_library_cannot_use_says_why_and_nobody_found_says_so(faces, voices, tmp_path):
    # A face video without sound given to a speaker library: the job fails with the reason, in plain words.
    silent = tmp_path / "silent.mp4"
    silent.write_bytes(faces["clip"].read_bytes())
    done = cli(voices["org"], "recognize", str(silent), "--library", "voices")
    assert done.returncode == 1 and "failed: no audio stream" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and ": other:" not in done.stderr
    # A recording given to a face library, likewise.
    meeting = tmp_path / "meeting.wav"
    meeting.write_bytes(voices["talk"].wav())
    done = cli(faces["org"], "recognize", str(meeting), "--library", "people")
    assert done.returncode == 1 and "faces need a video" in done.stderr, done.stderr
    # A video in which nobody appears: said in a line, not an empty table.
    from sampledata.video import write_video

    empty = write_video(tmp_path / "empty.mp4", {}, [], duration=4.0).path
    done = cli(faces["org"], "recognize", str(empty), "--library", "people")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("empty.mp4: no one seen or heard, job ") and "┃" not in done.stdout, done.stdout
