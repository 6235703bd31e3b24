"""The face engine on real faces composited onto cluttered photos, engine level (tests/api has the HTTP side).

Photos: sampledata/face_scenes.py (faces from public packages, pasted at random positions and scales
onto generated clutter). Models: the pulled ``face-detector`` and ``face-embedding``, converted by the
project's own code, handed to the engine as the worker would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio
from PIL import Image, ImageOps

from engines.face.align import load_photo
from engines.face.engine import FaceEngine
from engines.interface import EngineConfigError, EngineError, Recognition
from sampledata.face_scenes import SceneSet, iou
from sampledata.library import Entry
from tests.engines import face_fixtures
from tests.engines.memory_context import MemoryContext

ENGINE = FaceEngine()
BOX_IOU = 0.5  # a found face counts as the pasted one when their boxes overlap this much


@pytest.fixture(scope="module")
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return face_fixtures.package_cache(request, tmp_path_factory)


@pytest.fixture(scope="module")
def models(cache: Path) -> dict[str, Any]:
    return {name: face_fixtures.as_engine_model(face_fixtures.pulled(cache, name), name)
            for name in ("face-detector", "face-embedding")}


@pytest.fixture(scope="module")
def scenes(cache: Path, models: dict[str, Any]) -> SceneSet:
    return face_fixtures.scenes(cache, models["face-detector"].model)


def context(entries: list[Entry], models: dict[str, Any], decode_pool: Any, **config: Any) -> MemoryContext:
    ctx = MemoryContext(entries, config=ENGINE.info.validate_config(config), decode_pool=decode_pool)
    ctx.detector_model = models["face-detector"]  # type: ignore[attr-defined]
    ctx.embedding_model = models["face-embedding"]  # type: ignore[attr-defined]
    return ctx


@pytest_asyncio.fixture(scope="module")
async def trained(scenes: SceneSet, models: dict[str, Any], decode_pool: Any) -> Any:
    entries = [
        Entry(f"{person}-{i}", f"entity-{person}", person, scene.data, identifier_type_id="face")
        for person, pair in scenes.enrolled.items() for i, scene in enumerate(pair)
    ]
    entries += [
        Entry("no-face", "entity-obama", "obama", scenes.no_face.data, identifier_type_id="face"),
        Entry("tiny", "entity-group4-1", "group4-1", scenes.tiny.data, identifier_type_id="face"),
        Entry("blurred", "entity-group5-1", "group5-1", scenes.blurred.data, identifier_type_id="face"),
        Entry("pair", "entity-group1-0", "group1-0", scenes.pair.data, identifier_type_id="face"),
        Entry("corrupt", "entity-biden", "biden", b"\xff\xd8 not a jpeg", identifier_type_id="face"),
    ]
    return await ENGINE.train(context(entries, models, decode_pool))


async def one(artifact: Any, photo: bytes, *, threshold: float | None = None, top_k: int = 5) -> Recognition:
    (result,) = await ENGINE.recognize(artifact.data, [photo], top_k=top_k, threshold=threshold, execution_provider="cpu")
    return result


def corners(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return box[0], box[1], box[0] + box[2], box[1] + box[3]


async def test_training_skips_photos_without_a_usable_face_and_says_why(trained: Any, scenes: SceneSet) -> None:
    report = trained.jsondata
    reasons = {s["identifierId"]: s["reason"] for s in report["skipped"]}
    assert reasons == {"no-face": "no-face", "tiny": "too-small", "blurred": "blurry", "corrupt": "corrupt"}, report["skipped"]
    for item in report["skipped"]:
        assert item["entityId"] and item["detail"], item
    tiny = next(s for s in report["skipped"] if s["identifierId"] == "tiny")
    assert "minFaceSize 80" in tiny["detail"] and iou(corners(tuple(tiny["box"].values())), scenes.tiny.faces[0].box) >= BOX_IOU
    blurred = next(s for s in report["skipped"] if s["identifierId"] == "blurred")
    assert "sharpnessThreshold 40" in blurred["detail"]
    assert report["issues"]["hasWarning"] is True
    assert report["identifiers"] == 2 * len(scenes.enrolled) + 1  # the pair photo is used


async def test_a_photo_with_two_faces_trains_on_the_larger_and_warns(trained: Any, scenes: SceneSet) -> None:
    report = trained.jsondata
    (warning,) = report["warnings"]
    assert warning["identifierId"] == "pair" and warning["entityId"] == "entity-group1-0"
    assert warning["reason"] == "several-faces" and warning["detail"].startswith("2 faces found")
    used = next(f for f in report["faces"] if f["identifierId"] == "pair")
    assert used["facesFound"] == 2
    assert iou(corners(tuple(used["box"].values())), scenes.pair.faces[0].box) >= BOX_IOU  # the larger face


async def test_each_identifier_shows_the_face_box_it_was_trained_on(trained: Any, scenes: SceneSet) -> None:
    faces = {f["identifierId"]: f for f in trained.jsondata["faces"]}
    for person, pair in scenes.enrolled.items():
        for i, scene in enumerate(pair):
            face = faces[f"{person}-{i}"]
            assert iou(corners(tuple(face["box"].values())), scene.faces[0].box) >= BOX_IOU, (person, face)
            assert len(face["landmarks"]) == 6 and face["detectionScore"] >= 0.6 and face["sharpness"] >= 40


async def test_a_face_anywhere_at_any_scale_grey_or_rotated_is_recognised(trained: Any, scenes: SceneSet) -> None:
    # Closed-set identification (every query is an enrolled person): top-1 without a threshold. The
    # calibrated threshold is checked apart: whatever passes it must be right.
    right: dict[str, list[bool]] = {"colour": [], "grey": [], "rotated": []}
    threshold = trained.jsondata["threshold"]
    for n, (person, scene) in enumerate(scenes.queries.items()):
        result = await one(trained, scene.data, threshold=-1.0)
        assert len(result.faces) == 1, (person, result.faces)
        face = result.faces[0]
        assert iou(corners(face.box), scene.faces[0].box) >= BOX_IOU, (person, face.box, scene.faces[0].box)
        kind = ("colour", "grey", "rotated")[n % 3]
        right[kind].append(bool(face.matches) and face.matches[0].entity_name == person)
        assert result.matches == face.matches  # one face: the photo's matches are its matches
        assert all(m.entity_name == person for m in face.matches if m.score >= threshold), (person, face.matches)
    accuracy = {k: sum(v) / len(v) for k, v in right.items()}
    assert min(accuracy.values()) >= 0.9, accuracy


async def test_a_group_photo_gives_each_face_with_its_own_entity(trained: Any, scenes: SceneSet) -> None:
    result = await one(trained, scenes.group.data, threshold=-1.0)
    assert len(result.faces) == 3
    for placed in scenes.group.faces:
        face = max(result.faces, key=lambda f: iou(corners(f.box), placed.box))
        assert iou(corners(face.box), placed.box) >= BOX_IOU
        assert face.matches and face.matches[0].entity_name == placed.person, (placed.person, face.matches)
        assert face.matches[0].entity_identifier_id.startswith(placed.person)
        eyes = face.landmarks[:2]
        assert all(placed.box[0] <= x <= placed.box[2] and placed.box[1] <= y <= placed.box[3] for x, y in eyes)
    assert {m.entity_name for m in result.matches} >= {p.person for p in scenes.group.faces}


async def test_a_photo_without_a_face_gives_no_faces_and_no_matches(trained: Any, scenes: SceneSet) -> None:
    result = await one(trained, scenes.no_face.data, threshold=-1.0)
    assert result.faces == () and result.matches == []


async def test_held_out_real_photos_are_recognised(trained: Any, scenes: SceneSet) -> None:
    for person, photo in scenes.held_out:
        result = await one(trained, photo, threshold=-1.0)
        assert result.faces and result.faces[0].matches[0].entity_name == person


async def test_a_photo_that_is_not_an_image_is_refused_by_position(trained: Any, scenes: SceneSet) -> None:
    with pytest.raises(EngineError, match="image 1 cannot be used"):
        await ENGINE.recognize(trained.data, [scenes.no_face.data, b"GIF89a garbage"], top_k=1, threshold=None,
                               execution_provider="cpu")


async def test_the_downloaded_artifact_alone_gives_the_same_answers(trained: Any, scenes: SceneSet) -> None:
    # Only onnxruntime, numpy and Pillow: the file's metadata says how to read it (engines/face/artifact.py).
    session = ort.InferenceSession(trained.data, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["engineshed.labels"])
    threshold = float(meta["engineshed.threshold"])
    max_side = int(meta["engineshed.face.maxSide"])
    group = Image.open(io.BytesIO(scenes.group.data))
    large = io.BytesIO()  # over twice maxSide: decoded at a reduced JPEG scale, then shrunk
    group.resize((group.width * 2, group.height * 2), Image.Resampling.BICUBIC).save(large, "JPEG", quality=90)
    for photo in (scenes.group.data, scenes.queries["biden"].data, scenes.no_face.data, large.getvalue()):
        opened = Image.open(io.BytesIO(photo))
        full = max(opened.size)
        opened.draft("RGB", (max_side, max_side))
        image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        scale = full / max(image.size)
        pixels = np.asarray(image, np.uint8)
        assert np.array_equal(pixels, load_photo(photo)[0])
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": pixels}), strict=True))
        standalone = sorted(
            (round(float(b[0]) * scale, 2), [labels[int(i)]["entityName"] for s, i in zip(sc, ix, strict=True) if s >= threshold])
            for b, sc, ix in zip(out["boxes"], out["scores"], out["indices"], strict=True)
        )
        result = await one(trained, photo, top_k=len(labels))
        gateway = sorted((f.box[0], [m.entity_name for m in f.matches]) for f in result.faces)
        assert standalone == gateway
    # the large photo's boxes come back in its own pixels
    result = await one(trained, large.getvalue(), threshold=-1.0)
    for placed in scenes.group.faces:
        doubled = tuple(2 * v for v in placed.box)
        face = max(result.faces, key=lambda f: iou(corners(f.box), doubled))
        assert iou(corners(face.box), doubled) >= BOX_IOU and face.matches[0].entity_name == placed.person


async def test_the_configuration_is_checked() -> None:
    assert ENGINE.info.validate_config({})["minFaceSize"] == 80
    assert ENGINE.info.validate_config({})["sharpnessThreshold"] == 40
    for bad in ({"minDetectionConfidence": 0.2}, {"minFaceSize": -1}, {"sharpnessThreshold": "high"}, {"imageSize": 64}):
        with pytest.raises(EngineConfigError):
            ENGINE.info.validate_config(bad)


async def test_training_without_a_registered_detector_fails_with_what_to_do(models: dict[str, Any], decode_pool: Any) -> None:
    ctx = context([], models, decode_pool)
    ctx.detector_model = None  # type: ignore[attr-defined]
    with pytest.raises(EngineError, match="engineshed models pull face-detector"):
        await ENGINE.train(ctx)


def test_the_face_entry_point_loads_the_engine() -> None:
    from engines.registry import discover_engines

    engine = discover_engines()["engineshed-face"]
    assert isinstance(engine, FaceEngine) and engine.info.identifier_type_ids == ("face",)
    assert engine.info.library_type_ids == ("people",)
