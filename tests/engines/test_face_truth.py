"""The face engine tells the truth about what it trains on: crops are faces, the right face in a busy photo,
skip reasons that say what to change, a pinned faceBox, and no face where there is none.

Photos: sampledata/face_crops.py (92×112 dataset-style crops, busy scenes with a painted decoy, no-face
scenes) and sampledata/face_scenes.py, all made from package-shipped real faces; models: the pulled
``face-detector`` and ``face-embedding``, handed to the engine as the worker would.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from engines.face.engine import FaceEngine
from engines.interface import IdentifierRef, Recognition
from sampledata import face_crops, faces
from sampledata.face_scenes import SceneSet, iou
from sampledata.library import Entry
from tests.engines import face_fixtures
from tests.engines.memory_context import MemoryContext

ENGINE = FaceEngine()
CROP_FLOOR = 0.97  # top-1 on held-out crops


class PinnedContext(MemoryContext):
    """The worker's context as it pages identifiers with a faceBox in their jsondata."""

    def __init__(self, *args: Any, pins: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pins = pins

    def _ref(self, e: Entry) -> IdentifierRef:
        return IdentifierRef(e.identifier_id, e.entity_id, e.entity_name, e.identifier_type_id, "image/jpeg",
                             hashlib.sha256(e.data).hexdigest(), face_box=self.pins.get(e.identifier_id))


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


@pytest.fixture(scope="module")
def crop_set(cache: Path, models: dict[str, Any]) -> face_crops.CropSet:
    return face_crops.crops(faces.fetch_photos(cache), faces.Detector(models["face-detector"].model))


def entry(identifier: str, person: str, data: bytes) -> Entry:
    return Entry(identifier, f"entity-{person}", person, data, identifier_type_id="face")


async def train(entries: list[Entry], models: dict[str, Any], pool: Any, pins: dict[str, Any] | None = None) -> Any:
    ctx = PinnedContext(entries, config=ENGINE.info.validate_config({}), decode_pool=pool, pins=pins or {})
    ctx.detector_model, ctx.embedding_model = models["face-detector"], models["face-embedding"]
    return await ENGINE.train(ctx)


async def recognize(artifact: Any, photo: bytes, threshold: float | None = None) -> Recognition:
    (result,) = await ENGINE.recognize(artifact.data, [photo], top_k=3, threshold=threshold, execution_provider="cpu")
    return result


def corners(box: dict[str, float]) -> tuple[float, float, float, float]:
    return box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]


def partial_crop(photo: bytes) -> bytes:
    """A crop cut too tight (mouth and chin): crop-shaped, and the detector finds no face in it."""
    image = Image.open(io.BytesIO(photo))
    return faces.jpeg(image.crop((0, round(image.height * 0.6), image.width, image.height)).resize(image.size))


@pytest_asyncio.fixture(scope="module")
async def crops_trained(crop_set: face_crops.CropSet, models: dict[str, Any], decode_pool: Any) -> Any:
    entries = [entry(f"{p}-{i}", p, photo) for p, photos in crop_set.enrolled.items() for i, photo in enumerate(photos)]
    # Its own entity: among Biden's photos it would be left out as unlike his other faces (which it is).
    entries.append(entry("partial", "partial", partial_crop(crop_set.enrolled["biden"][0])))
    return await train(entries, models, decode_pool)


async def test_dataset_style_crops_with_face_boxes_under_80_px_are_all_trained_on(
    crops_trained: Any, crop_set: face_crops.CropSet
) -> None:
    report = crops_trained.jsondata
    assert report["skipped"] == [], report["skipped"]
    used = {f["identifierId"]: f for f in report["faces"]}
    assert len(used) == 3 * len(crop_set.enrolled) + 1
    boxes = [min(f["box"]["width"], f["box"]["height"]) for f in used.values() if f["source"] == "crop"]
    assert sum(side < 80 for side in boxes) >= len(boxes) // 2  # the detector's box is under minFaceSize...
    assert all(f["faceSize"] == 92 for f in used.values())  # ...but the face is the whole 92×112 crop
    assert report["settings"]["minFaceSize"] == 80 and report["settings"]["sharpnessThreshold"] == 40


async def test_a_crop_the_detector_finds_nothing_in_is_used_whole_and_says_so(crops_trained: Any) -> None:
    used = next(f for f in crops_trained.jsondata["faces"] if f["identifierId"] == "partial")
    assert used["source"] == "whole-crop" and used["facesFound"] == 0
    (warning,) = [w for w in crops_trained.jsondata["warnings"] if w["identifierId"] == "partial"]
    assert warning["reason"] == "whole-crop" and "used whole" in warning["detail"]


async def test_held_out_crops_are_recognised(crops_trained: Any, crop_set: face_crops.CropSet) -> None:
    right = 0
    for person, photo in crop_set.queries:
        result = await recognize(crops_trained, photo, threshold=-1.0)
        right += bool(result.matches) and result.matches[0].entity_name == person
    assert right / len(crop_set.queries) >= CROP_FLOOR, (right, len(crop_set.queries))


@pytest_asyncio.fixture(scope="module")
async def scenes_trained(scenes: SceneSet, models: dict[str, Any], decode_pool: Any) -> dict[str, Any]:
    rng = np.random.default_rng(31)
    busy = {f"busy-{p}-{i}": (p, face_crops.busy(scenes.heads[p], rng)) for p in scenes.heads for i in range(2)}
    entries = [entry(f"{p}-{i}", p, s.data) for p, pair in scenes.enrolled.items() for i, s in enumerate(pair)]
    entries += [entry(key, p, s.data) for key, (p, s) in busy.items()]
    entries += [entry("tiny", "group4-1", scenes.tiny.data), entry("pair", "group1-0", scenes.pair.data),
                entry("pinned-small", "group3-1", scenes.pair.data + b"\0"),  # other bytes: its own identifier
                entry("pinned-nothing", "region", scenes.enrolled["biden"][0].data + b"\0"),
                entry("bad-pin", "biden", scenes.enrolled["biden"][1].data + b"\0")]
    x1, y1, x2, y2 = scenes.pair.faces[1].box
    pins = {"pinned-small": [x1, y1, x2, y2], "pinned-nothing": [10, 10, 120, 130], "bad-pin": [10, 10, "x"]}
    artifact = await train(entries, models, decode_pool, pins)
    return {"artifact": artifact, "busy": busy}


async def test_in_a_busy_photo_the_real_face_is_used_not_the_larger_decoy(
    scenes_trained: dict[str, Any],
) -> None:
    used = {f["identifierId"]: f for f in scenes_trained["artifact"].jsondata["faces"]}
    several = [key for key in scenes_trained["busy"] if used.get(key, {}).get("facesFound", 0) > 1]
    assert len(several) >= 3, "the decoys must be detected in some busy photos for this to test anything"
    for key in several:
        _, scene = scenes_trained["busy"][key]
        assert iou(corners(used[key]["box"]), scene.faces[0].box) >= 0.5, (key, used[key])
    for warning in scenes_trained["artifact"].jsondata["warnings"]:  # a decoy scoring close to the face competes
        if warning["identifierId"] in several:
            _, scene = scenes_trained["busy"][warning["identifierId"]]
            assert iou(tuple(warning["boxes"][0]), scene.faces[0].box) >= 0.5  # the one used is listed first


async def test_two_real_faces_compete_and_the_warning_names_both_boxes_and_scores(
    scenes_trained: dict[str, Any], scenes: SceneSet
) -> None:
    (warning,) = [w for w in scenes_trained["artifact"].jsondata["warnings"] if w["identifierId"] == "pair"]
    assert warning["reason"] == "several-faces" and warning["entityId"] == "entity-group1-0"
    assert len(warning["boxes"]) == len(warning["scores"]) == 2
    for box, placed in zip(warning["boxes"], scenes.pair.faces, strict=True):  # the used one first: the larger
        assert iou(tuple(box), placed.box) >= 0.5
    assert "faceBox" in warning["detail"]


async def test_a_pinned_face_box_chooses_the_face_or_the_region(scenes_trained: dict[str, Any], scenes: SceneSet) -> None:
    report = scenes_trained["artifact"].jsondata
    used = {f["identifierId"]: f for f in report["faces"]}
    small = used["pinned-small"]
    assert small["source"] == "pinned" and iou(corners(small["box"]), scenes.pair.faces[1].box) >= 0.5
    region = used["pinned-nothing"]
    assert region["source"] == "pinned-region" and region["box"] == {"left": 10, "top": 10, "width": 110, "height": 120}
    (bad,) = [s for s in report["skipped"] if s["identifierId"] == "bad-pin"]
    assert bad["reason"] == "invalid-face-box" and "faceBox must be [x1, y1, x2, y2]" in bad["detail"]


async def test_a_face_too_small_is_skipped_with_what_to_change(scenes_trained: dict[str, Any]) -> None:
    (tiny,) = [s for s in scenes_trained["artifact"].jsondata["skipped"] if s["identifierId"] == "tiny"]
    assert tiny["reason"] == "too-small"
    assert "< minFaceSize 80: set minFaceSize to " in tiny["detail"] and "or upload larger photos" in tiny["detail"]


async def test_no_face_scenes_match_nobody_and_say_no_face(
    scenes_trained: dict[str, Any], scenes: SceneSet, crop_set: face_crops.CropSet
) -> None:
    artifact = scenes_trained["artifact"]
    rng = np.random.default_rng(41)
    empty = [face_crops.empty(rng).data for _ in range(20)] + [scenes.no_face.data]
    decoys = 0
    for photo in empty:
        result = await recognize(artifact, photo)
        decoys += bool(result.faces)
        assert result.matches == [] and all(f.matches == [] for f in result.faces)
    assert decoys >= 2, "some decoys must be detected for this to test anything"
    # A crop-shaped photo with no face is not taken for a face at recognition: no faces, not "nobody matched".
    nothing = await recognize(artifact, partial_crop(crop_set.enrolled["biden"][0]), threshold=-1.0)
    assert nothing.faces == () and nothing.matches == []
    # A stranger's face is a face that nobody matched.
    stranger = await recognize(artifact, crop_set.enrolled["obama"][0], threshold=1.0)
    assert len(stranger.faces) == 1 and stranger.faces[0].matches == [] and stranger.matches == []
