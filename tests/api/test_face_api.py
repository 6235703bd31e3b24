"""The face engine through the API over HTTP, on the real stack: train, recognize, library-run by URL.

A people library of ``face`` identifiers made of real faces composited onto cluttered photos
(sampledata/face_scenes.py), plus a photo with no face, one with a face too small, one blurred and
one with two people. The pulled ``face-detector`` and ``face-embedding`` are registered as system
models, as ``engineshed models pull`` does; the worker is a separate process.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sampledata.face_scenes import SceneSet, iou
from tests.api.conftest import FileServer
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import face_fixtures, registered
from tests.support.requirements import shared_file
from tests.support.waits import wait_job, wait_task

FACE = "engineshed-face"
FLOOR = 0.9  # top-1 the face engine must reach on the query photos
MARGIN = 0.5  # and by how much it must beat the gallery engine on the built-in backbone
MATCH = "entityId entityName entityIdentifierId score"
RECOGNIZE = f"""query($m: ID!, $k: Int, $t: Float) {{
  recognize(libraryEngineModelId: $m, topK: $k, threshold: $t) {{
    engineId threshold matches {{ {MATCH} }}
    faces {{ box {{ left top width height }} landmarks {{ x y }} detectionScore matches {{ {MATCH} }} }}
  }}
}}"""


@pytest.fixture(scope="module")
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return face_fixtures.package_cache(request, tmp_path_factory)


@pytest.fixture(scope="module")
def system_models(stack: Stack, cache: Path) -> Iterator[dict[str, Any]]:
    pulled = {name: face_fixtures.pulled(cache, name) for name in ("face-detector", "face-embedding")}
    versions = {name: registered.register_pulled(stack, model) for name, model in pulled.items()}
    yield {"versions": versions, "detector": pulled["face-detector"].model_bytes}
    for name in versions:  # later modules of the session expect no face defaults
        registered.drop_system_default(stack, name)


@pytest.fixture(scope="module")
def scenes(cache: Path, system_models: dict[str, Any]) -> SceneSet:
    return face_fixtures.scenes(cache, system_models["detector"])


@pytest.fixture(scope="module")
def org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "face-api")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    # The artifact holds the 12 MB face model (over the suite's 4 MiB upload limit, which caps artifacts too);
    # library-run jobs fetch from the loopback file server.
    process = api.start_worker_process(
        stack, tmp_path_factory.mktemp("face-api"), "face-api-worker",
        ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024), ENGINESHED_FETCH_ALLOW_PRIVATE="1",
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def library(org: Org, scenes: SceneSet) -> dict[str, Any]:
    library_id = org.create_library("face-api", "people")
    entity = {person: org.create_entity(library_id, person) for person in scenes.enrolled}
    items = [(entity[person], scene.data) for person, pair in scenes.enrolled.items() for scene in pair]
    with ThreadPoolExecutor(api.UPLOAD_THREADS) as pool:  # face identifiers (api.add_identifiers makes image ones)
        list(pool.map(lambda item: org.add_identifier(item[0], item[1], "image/jpeg"), items))
    special = {
        "no-face": org.add_identifier(entity["obama"], scenes.no_face.data, "image/jpeg"),
        "tiny": org.add_identifier(entity["group4-1"], scenes.tiny.data, "image/jpeg"),
        "blurred": org.add_identifier(entity["group5-1"], scenes.blurred.data, "image/jpeg"),
        "pair": org.add_identifier(entity["group1-0"], scenes.pair.data, "image/jpeg"),
    }
    return {"id": library_id, "entity": entity, "special": special}


@pytest.fixture(scope="module")
def face_model(org: Org, library: dict[str, Any], worker: Process, system_models: dict[str, Any]) -> dict[str, Any]:
    model, task = api.trained(org, FACE, library["id"], worker=worker, timeout=300)
    assert model["trainStatus"] == "complete", (model, task)
    return model


def recognize(org: Org, model_id: str, photo: bytes, threshold: float | None = None) -> dict[str, Any]:
    reply = org.client.upload_form(RECOGNIZE, photo, "image/jpeg", filename="photo.jpg",
                                   variables={"m": model_id, "k": 5, "t": threshold})
    return reply.ok()["recognize"]


def corners(box: dict[str, float]) -> tuple[float, float, float, float]:
    return box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]


def test_training_reports_the_face_used_and_every_identifier_it_skipped_or_warned_about(
    face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet, system_models: dict[str, Any]
) -> None:
    report = face_model["jsondata"]
    special, entity = library["special"], library["entity"]
    skipped = {s["identifierId"]: s for s in report["skipped"]}
    assert {i: s["reason"] for i, s in skipped.items()} == {
        special["no-face"]: "no-face", special["tiny"]: "too-small", special["blurred"]: "blurry"}
    assert skipped[special["tiny"]]["entityId"] == entity["group4-1"]
    (warning,) = report["warnings"]
    assert warning == {**warning, "identifierId": special["pair"], "entityId": entity["group1-0"], "reason": "several-faces"}
    faces = {f["identifierId"]: f for f in report["faces"]}
    assert len(faces) == report["identifiers"] == 2 * len(scenes.enrolled) + 1
    assert iou(corners(faces[special["pair"]]["box"]), scenes.pair.faces[0].box) >= 0.5
    assert report["detector"]["model"] == system_models["versions"]["face-detector"].ref
    assert report["backbone"]["model"] == system_models["versions"]["face-embedding"].ref
    assert report["settings"] == {"minFaceSize": 80, "sharpnessThreshold": 40.0, "minDetectionConfidence": 0.6}


def test_recognize_returns_each_face_of_a_group_photo_with_its_entity(
    org: Org, face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet
) -> None:
    result = recognize(org, face_model["id"], scenes.group.data, threshold=-1.0)
    assert result["engineId"] == FACE and len(result["faces"]) == 3
    for placed in scenes.group.faces:
        face = max(result["faces"], key=lambda f: iou(corners(f["box"]), placed.box))
        assert iou(corners(face["box"]), placed.box) >= 0.5
        assert face["matches"][0]["entityId"] == library["entity"][placed.person]
        assert len(face["landmarks"]) == 6 and 0.6 <= face["detectionScore"] <= 1.0
    areas = [f["box"]["width"] * f["box"]["height"] for f in result["faces"]]
    assert areas == sorted(areas, reverse=True)


def test_recognize_on_a_photo_without_a_face_answers_no_faces(org: Org, face_model: dict[str, Any], scenes: SceneSet) -> None:
    result = recognize(org, face_model["id"], scenes.no_face.data, threshold=-1.0)
    assert result["faces"] == [] and result["matches"] == []


def test_a_file_that_is_not_a_photo_is_invalid_input(org: Org, face_model: dict[str, Any]) -> None:
    reply = org.client.upload_form(RECOGNIZE, b"not an image at all", "image/jpeg", variables={"m": face_model["id"]})
    api.assert_error(reply, "invalid_input", "image 0 cannot be used")


def test_the_face_engine_beats_the_gallery_on_the_built_in_backbone(
    org: Org, face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet, worker: Process,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gallery, _ = api.trained(org, api.GALLERY, library["id"], {"modelId": "pixel-projection"}, worker=worker, timeout=300)
    assert gallery["trainStatus"] == "complete", gallery
    queries = [(library["entity"][p], s.data) for p, s in scenes.queries.items()]
    queries += [(library["entity"][p], photo) for p, photo in scenes.held_out]

    def top1(model_id: str) -> float:
        right = 0
        for entity_id, photo in queries:
            matches = recognize(org, model_id, photo, threshold=-1.0)["matches"]
            right += bool(matches) and matches[0]["entityId"] == entity_id
        return right / len(queries)

    face, builtin = top1(face_model["id"]), top1(gallery["id"])
    api.say(capsys, f"\nface engine top-1 {face:.3f} vs gallery on the built-in backbone {builtin:.3f} "
                    f"({len(queries)} query photos of {len(scenes.enrolled)} enrolled people)")
    assert face >= FLOOR and face - builtin >= MARGIN, (face, builtin)


def test_a_library_run_job_on_a_url_answers_every_face(
    org: Org, face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet, file_server: FileServer
) -> None:
    url = file_server.add("/photos/group.jpg", scenes.group.data, "image/jpeg")
    payload = {"mode": "library-run", "libraryId": library["id"], "libraryEngineModelId": face_model["id"], "url": url,
               "threshold": -1.0}
    job = org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=FACE, p=payload,
    ).ok()["createJob"]
    task = wait_task(org, job["id"], timeout=120)
    assert task["status"] == "complete", task
    (result,) = task["output"]["results"]
    assert result["url"] == url and len(result["faces"]) == 3
    for placed in scenes.group.faces:
        face = max(result["faces"], key=lambda f: iou(corners(f["box"]), placed.box))
        assert iou(corners(face["box"]), placed.box) >= 0.5
        assert face["matches"][0]["entityId"] == library["entity"][placed.person]


def test_the_upstream_tutorials_library_run_job_runs_as_written(
    org: Org, face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet, file_server: FileServer
) -> None:
    """Operation 046 verbatim (only its IDs and the photo's URL ours): the media rides on upstream's Webstream
    Adapter task, and the library-run task names none."""
    url = file_server.add("/photos/grammys.jpg", scenes.group.data, "image/jpeg")
    text = shared_file("data", "veritone-ops", "046-tutorial-library-run-job.graphql").read_text()
    text = (text.replace("https://www.morrisonhotelgallery.com/images/big/R-361_J_Y_Friends_Grammys1975_Gruen.jpg", url)
                .replace("dcef5300-5cc1-4fe3-bd8f-5c4d3a09b281", FACE)
                .replace("b370ecab-88c0-4e2b-ae9c-7739a7ed16c7", library["id"])
                .replace("2c3a1855-7a29-457b-b8cc-3e4a869a130e", face_model["id"]))
    job_id = org.client.query(text).ok()["createJob"]["id"]
    job = wait_job(org, job_id, fields="status tasks { records { engineId status output } }")
    adapter, run = job["tasks"]["records"]
    assert job["status"] == "complete", job
    assert adapter == {"engineId": "9e611ad7-2d3b-48f6-a51b-0a1ba40feab4", "status": "complete", "output": {"url": url}}
    (result,) = run["output"]["results"]
    assert result["url"] == url and len(result["faces"]) == 3


def test_an_unknown_detector_model_is_refused_before_the_job_exists(org: Org, library: dict[str, Any]) -> None:
    model_id = api.create_model(org, FACE, library["id"])
    reply = org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=FACE, p={"mode": "library-train", "libraryId": library["id"], "libraryEngineModelId": model_id,
                   "config": {"detectorModelId": "no-such-detector"}},
    )
    api.assert_error(reply, "not_found", "no model")
    reply = org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=FACE, p={"mode": "library-train", "libraryId": library["id"], "libraryEngineModelId": model_id,
                   "config": {"detectorModelId": "face-embedding"}},
    )
    api.assert_error(reply, "invalid_input", "detectorModelId", "not auto_annotation")


def test_a_detector_without_keypoints_is_refused_before_the_job_exists(
    org: Org, library: dict[str, Any], system_models: dict[str, Any]
) -> None:
    # The real BlazeFace graph registered by the organization with a manifest that names no keypoints output.
    manifest = {"input": {"name": "input", "layout": "NHWC", "height": 256, "width": 256, "channels": 3,
                          "color_order": "RGB", "range": [-1, 1]},
                "output": {"boxes": "boxes", "scores": "scores"}, "labels": ["face"]}
    version = registered.register_org_model(org, "boxes-only", "auto_annotation", system_models["detector"], manifest)
    assert version.status == "ready", version
    model_id = api.create_model(org, FACE, library["id"])
    reply = org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=FACE, p={"mode": "library-train", "libraryId": library["id"], "libraryEngineModelId": model_id,
                   "config": {"detectorModelId": "boxes-only"}},
    )
    api.assert_error(reply, "invalid_input", "boxes-only@1 gives no keypoints")


def test_the_downloaded_artifact_run_standalone_answers_as_the_gateway(
    org: Org, face_model: dict[str, Any], scenes: SceneSet
) -> None:
    import io
    import json

    import httpx
    import numpy as np
    import onnxruntime as ort
    from PIL import Image, ImageOps

    assert face_model["contentType"] == "application/onnx"
    data = httpx.get(face_model["dataUrl"], timeout=60).content
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels, cut = json.loads(meta["engineshed.labels"]), float(meta["engineshed.threshold"])
    side = int(meta["engineshed.face.maxSide"])
    image = Image.open(io.BytesIO(scenes.group.data))  # 1200×700: shrunk to maxSide as the README says
    full = max(image.size)
    image.draft("RGB", (side, side))
    photo = ImageOps.exif_transpose(image).convert("RGB")
    photo.thumbnail((side, side), Image.Resampling.BILINEAR)
    scale = full / max(photo.size)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": np.asarray(photo)}), strict=True))
    standalone = sorted(
        (round(float(box[0]) * scale, 2), [labels[int(i)]["entityId"] for s, i in zip(scores, idx, strict=True) if s >= cut])
        for box, scores, idx in zip(out["boxes"], out["scores"], out["indices"], strict=True)
    )
    gateway = sorted((f["box"]["left"], [m["entityId"] for m in f["matches"]])
                     for f in recognize(org, face_model["id"], scenes.group.data)["faces"])
    assert standalone == gateway and len(gateway) == 3


def test_the_client_and_the_cli_answer_every_face_of_a_group_photo(
    org: Org, face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet, tmp_path: Path
) -> None:
    from engineshed.client import Client
    from tests.client.helpers import cli, cli_json

    photo = tmp_path / "group.jpg"
    photo.write_bytes(scenes.group.data)
    with Client(org.gateway.url, org.token) as client:
        result = client.recognize(photo, library_engine_model_id=face_model["id"], threshold=-1.0)
    assert len(result["faces"]) == 3
    for placed in scenes.group.faces:
        face = max(result["faces"], key=lambda f: iou(corners(f["box"]), placed.box))
        assert iou(corners(face["box"]), placed.box) >= 0.5
        assert face["matches"][0]["entityId"] == library["entity"][placed.person]
        assert len(face["landmarks"]) == 6 and 0.6 <= face["detectionScore"] <= 1.0
    answered = cli_json(org, "recognize", str(photo), "--model", face_model["id"], "--threshold=-1")
    assert [f["matches"][0]["entityId"] for f in answered["faces"]] == [f["matches"][0]["entityId"] for f in result["faces"]]
    table = cli(org, "recognize", str(photo), "--model", face_model["id"], "--threshold=-1")
    assert table.returncode == 0, table.stderr
    # One row per face, largest first: its box and its best match.
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 3, table.stdout
    for row, face in zip(rows, result["faces"], strict=True):
        box = face["box"]
        assert f"{box['left']:.0f},{box['top']:.0f} {box['width']:.0f}x{box['height']:.0f}" in row
        assert face["matches"][0]["entityName"] in row and face["matches"][0]["entityId"] in row


def test_auto_tag_with_the_face_model_finds_a_face_small_in_a_large_photo(
    org: Org, face_model: dict[str, Any], library: dict[str, Any], scenes: SceneSet, worker: Process
) -> None:
    import numpy as np

    from sampledata.face_scenes import compose

    person = sorted(scenes.enrolled)[0]
    # 4000x3000 with a face of about 175 px: the face engine shrinks the photo to 1024 px itself (a face of about
    # 45 px), where autoTag's default inputResolution (300 px) would leave it about 13 px.
    large = compose([scenes.heads[person]], np.random.default_rng(21), size=(4000, 3000), face_px=(170, 180))
    reply = org.client.upload_form(
        'mutation($l: ID!) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "face"}) { id } }',
        large.data, "image/jpeg", filename="large.jpg", variables={"l": library["id"]},
    )
    identifier = reply.ok()["createEntityIdentifier"]["id"]
    # inputResolution (default 300x300) is for whole-image models; a face engine gets the photo as stored, so even
    # a 64x64 inputResolution, which would leave the face 3 px wide, must not lose it.
    for resolution in (None, [64, 64]):
        job_id = org.client.query(
            'mutation($l: ID!, $m: ID, $r: [Int!]) { autoTag(input: {libraryId: $l, libraryEngineModelId: $m, '
            'confidenceThreshold: 0, inputResolution: $r, filter: {annotationTypes: [raw, machine]}}) { id } }',
            l=library["id"], m=face_model["id"], r=resolution,
        ).ok()["autoTag"]["id"]
        task = wait_task(org, job_id, timeout=180)
        assert task["status"] == "complete", task
        suggestions = org.client.query(
            "query($j: ID!) { suggestions(jobId: $j, limit: 100) { records { identifierId entityId } } }", j=job_id,
        ).ok()["suggestions"]["records"]
        assert [s["entityId"] for s in suggestions if s["identifierId"] == identifier] == [library["entity"][person]], resolution
