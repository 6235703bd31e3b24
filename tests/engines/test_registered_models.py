"""Engines on registered models, through the public API: config.modelId, the system default, the
artifact with the model's preprocessing inside, recognize with an auto_tagging model, and bad input.

The models are real small conv nets built in code (sampledata/onnx_models.py): NCHW float input with
ImageNet mean/std, so the preprocessing baked into the backbone is exercised, not skipped.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from engines.model_backbone import compose_backbone, compose_model
from engines.model_trial import pixels_to_input
from gateway.services.models.packages import complete_manifest
from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import registered

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
TAG_LABELS = ["red", "green", "blue", "grey"]
TAG_QUERY = """query($m: String, $k: Int, $t: Float, $l: ID) {
  recognize(modelId: $m, libraryEngineModelId: $l, topK: $k, threshold: $t) {
    modelId libraryEngineModelId threshold matches { entityId } labels { label score } } }"""


def colour_png(colour: tuple[int, int, int], seed: int, side: int = 40) -> bytes:
    """A ``side``² RGB PNG: one colour plus noise, distinct per seed."""
    noise = np.random.default_rng(seed).integers(-40, 40, (side, side, 3))
    pixels = np.clip(np.asarray(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG")
    return out.getvalue()


def completed(onnx_bytes: bytes, manifest: dict[str, Any], application: str = "embedding") -> dict[str, Any]:
    return complete_manifest(onnx.load_from_string(onnx_bytes), manifest, application, None)[0]


def reference(onnx_bytes: bytes, manifest: dict[str, Any], pixels: np.ndarray, output: str | None = None) -> np.ndarray:
    """The model run the plain way: the manifest's preprocessing in numpy, then the original graph."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    spec = manifest["input"]
    x = pixels_to_input(pixels, spec, next(i.type for i in session.get_inputs() if i.name == spec["name"]))
    return session.run([output or manifest["output"]["name"]], {spec["name"]: x})[0].reshape(len(pixels), -1)


# -- the composed backbone, without the stack ----------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{}, {"color_order": "BGR"}, {"mean": None, "std": None, "range": [-1.0, 1.0]}],
    ids=["rgb-mean-std", "bgr", "range"],
)
def test_composed_backbone_applies_the_manifest_preprocessing(change: dict[str, Any]) -> None:
    model = conv_net(dimension=24)
    manifest = completed(model, normalised_manifest())
    spec = {k: v for k, v in {**manifest["input"], **change}.items() if v is not None}
    manifest = {**manifest, "input": spec}
    backbone = compose_backbone(model, manifest, name="net@1")
    pixels = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    ours = ort.InferenceSession(backbone.model, providers=["CPUExecutionProvider"]).run(None, {"images": pixels})[0]
    np.testing.assert_allclose(ours, reference(model, manifest, pixels), atol=1e-5)
    assert (backbone.input_size, backbone.channels, backbone.dim) == (32, 3, 24)
    assert onnx.load_from_string(backbone.model).ir_version == 10


def test_backbone_digest_follows_the_file_and_the_preprocessing() -> None:
    model = conv_net()
    manifest = completed(model, normalised_manifest())
    bgr = {**manifest, "input": {**manifest["input"], "color_order": "BGR"}}
    digests = {
        compose_backbone(model, manifest, name="a").digest,
        compose_backbone(model, bgr, name="a").digest,
        compose_backbone(conv_net(seed=1), manifest, name="a").digest,
    }
    assert len(digests) == 3
    assert compose_backbone(model, manifest, name="renamed").digest in digests


def test_unused_outputs_are_dropped_and_a_chosen_output_is_used() -> None:
    model = conv_net(classes=4)  # outputs logits; the features Gemm feeds them
    manifest = completed(model, {"input": normalised_manifest()["input"], "labels": TAG_LABELS}, "auto_tagging")
    composed = compose_model(model, manifest)
    assert [o.name for o in composed.graph.output] == ["embedding"]
    pixels = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ours = ort.InferenceSession(composed.SerializeToString()).run(None, {"images": pixels})[0]
    np.testing.assert_allclose(ours, reference(model, manifest, pixels), atol=1e-5)


def test_non_square_inputs_are_explained() -> None:
    model = conv_net()
    manifest = completed(model, normalised_manifest())
    wide = {**manifest, "input": {**manifest["input"], "width": 48}}
    with pytest.raises(ValueError, match="only square inputs"):
        compose_model(model, wide, name="wide@1")


# -- through the API -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "registered-models")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("registered-models"), "registered-models-worker")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def embedding_model(models_org: Org) -> Any:
    model = conv_net(dimension=32)
    return registered.register_org_model(models_org, "colour-net", "embedding", model, normalised_manifest()), model


@pytest.fixture(scope="module")
def colour_library(models_org: Org) -> dict[str, Any]:
    library_id = api.create_library(models_org, "colours")
    entities = [models_org.create_entity(library_id, f"colour-{i}") for i in range(len(COLOURS))]
    items = [(entities[i], colour_png(c, 100 * i + n)) for i, c in enumerate(COLOURS) for n in range(4)]
    api.add_identifiers(models_org, items)
    queries = [colour_png(c, 10_000 + i) for i, c in enumerate(COLOURS)]
    return {"library": library_id, "entities": entities, "queries": queries}


@pytest.mark.parametrize("engine_id", [api.GALLERY, api.CLASSIFIER])
def test_engine_trains_on_the_named_model_and_the_artifact_runs_standalone(
    models_org: Org, worker: Process, embedding_model: Any, colour_library: dict[str, Any], engine_id: str
) -> None:
    version, _ = embedding_model
    config = {"modelId": "colour-net@1"}
    if engine_id == api.CLASSIFIER:
        config["trainingFraction"] = 0.75
    model, _ = api.trained(models_org, engine_id, colour_library["library"], config, worker=worker)
    assert model["trainStatus"] == "complete", model
    extra = models_org.client.query(
        "query($id: ID!) { libraryEngineModel(id: $id) { modelVersionId embeddingModel } }", id=model["id"]
    ).ok()["libraryEngineModel"]
    assert extra == {"modelVersionId": str(version.id), "embeddingModel": "colour-net@1"}
    backbone = model["jsondata"]["backbone"]
    assert backbone["model"] == "colour-net@1" and backbone["sha256"] == version.sha256

    artifact = httpx.get(model["dataUrl"], timeout=30).content
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.type == "tensor(uint8)" and inp.shape[1:] == [32, 32, 3]
    plain_ids, plain_scores = api.run_artifact_plainly(artifact, colour_library["queries"])
    served = [api.recognize(models_org.client, model["id"], q).ok()["recognize"] for q in colour_library["queries"]]
    for ids, scores, reply in zip(plain_ids, plain_scores, served, strict=True):
        assert [m["entityId"] for m in reply["matches"]] == ids[: len(reply["matches"])]
        np.testing.assert_allclose([m["score"] for m in reply["matches"]], scores[: len(reply["matches"])], atol=1e-6)
    assert [ids[0] for ids in plain_ids] == colour_library["entities"]


def test_embedding_cache_is_per_model_version(
    models_org: Org, worker: Process, embedding_model: Any, colour_library: dict[str, Any]
) -> None:
    # The library was embedded by colour-net@1 above (or is now): a retrain on it computes nothing; the
    # built-in backbone on the same library computes everything again.
    first, _ = api.trained(models_org, api.GALLERY, colour_library["library"], {"modelId": "colour-net"}, worker=worker)
    again, _ = api.trained(models_org, api.GALLERY, colour_library["library"], {"modelId": "colour-net@default"}, worker=worker)
    assert again["jsondata"]["embeddings"] == {"cached": 12, "computed": 0}
    builtin, _ = api.trained(models_org, api.GALLERY, colour_library["library"], {"modelId": "pixel-projection"}, worker=worker)
    assert builtin["jsondata"]["embeddings"]["computed"] == 12
    assert builtin["jsondata"]["backbone"]["model"] == "pixel-projection"
    assert first["jsondata"]["backbone"]["digest"] != builtin["jsondata"]["backbone"]["digest"]


def _job_count(org: Org) -> int:
    return int(org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id))


@pytest.mark.parametrize(
    ("model_id", "code", "fragment"),
    [
        ("no-such-model", "not_found", "no-such-model"),
        ("colour-net@7", "not_found", "colour-net"),
        ("colour-net@nope", "not_found", "colour-net"),
        ("bad name!", "invalid_input", "name"),
        ("tagger", "invalid_input", "auto_tagging model, not embedding"),
        ("unchecked-net", "invalid_input", "only ready versions"),
    ],
)
def test_bad_model_ids_fail_create_job_before_anything_is_created(
    models_org: Org, embedding_model: Any, tagger: Any, unchecked: Any, colour_library: dict[str, Any],
    model_id: str, code: str, fragment: str,
) -> None:
    model = api.create_model(models_org, api.GALLERY, colour_library["library"])
    jobs = _job_count(models_org)
    payload = {"mode": "library-train", "libraryId": colour_library["library"], "libraryEngineModelId": model,
               "config": {"modelId": model_id}}
    reply = models_org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=api.GALLERY, p=payload,
    )
    api.assert_error(reply, code, fragment)
    assert _job_count(models_org) == jobs
    assert api.get_model(models_org, model)["trainStatus"] == "pending"


def test_another_organizations_model_is_not_found(other_org: Org, embedding_model: Any) -> None:
    library = api.create_library(other_org, "theirs")
    model = api.create_model(other_org, api.GALLERY, library)
    reply = other_org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=api.GALLERY,
        p={"mode": "library-train", "libraryId": library, "libraryEngineModelId": model, "config": {"modelId": "colour-net"}},
    )
    api.assert_error(reply, "not_found", "colour-net")


# -- auto_tagging: recognize without training ------------------------------------------------------------


@pytest.fixture(scope="module")
def tagger(models_org: Org) -> Any:
    model = conv_net(classes=len(TAG_LABELS), seed=3)
    manifest = {"input": normalised_manifest()["input"], "output": {"kind": "logits"}, "labels": TAG_LABELS}
    return registered.register_org_model(models_org, "tagger", "auto_tagging", model, manifest), model


def nan_net() -> bytes:
    """A conv net whose embedding is NaN: its trial inference fails, if a worker runs it before the test does."""
    model = onnx.load_from_string(conv_net(seed=5))
    bias = next(t for t in model.graph.initializer if t.name == "fc_b")
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(16, np.nan, np.float32), "fc_b"))
    return model.SerializeToString()


@pytest.fixture(scope="module")
def unchecked(models_org: Org) -> Any:
    """Not ready: validating until a trial runs, failed after."""
    return registered.register_org_model(models_org, "unchecked-net", "embedding", nan_net(), normalised_manifest(), ready=False)


def test_recognize_with_an_auto_tagging_model_answers_its_labels(models_org: Org, tagger: Any) -> None:
    version, model = tagger
    image = colour_png(COLOURS[0], 77)
    reply = models_org.client.upload_form(TAG_QUERY, image, "image/png", filename="q.png", variables={"m": "tagger", "k": 4})
    result = reply.ok()["recognize"]
    assert result["modelId"] == "tagger@1" and result["libraryEngineModelId"] is None and result["matches"] == []
    labels = result["labels"]
    assert sorted(x["label"] for x in labels) == sorted(TAG_LABELS)
    # The reference: decode as training does (40 px -> 32 px bilinear), the numpy preprocessing, softmax.
    pixels = np.asarray(Image.open(io.BytesIO(image)).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))[None]
    logits = reference(model, version.manifest, pixels)[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    expected = sorted(zip(TAG_LABELS, p), key=lambda x: -x[1])
    assert [x["label"] for x in labels] == [label for label, _ in expected]
    np.testing.assert_allclose([x["score"] for x in labels], [s for _, s in expected], atol=1e-5)
    assert abs(sum(x["score"] for x in labels) - 1.0) < 1e-5

    top = models_org.client.upload_form(TAG_QUERY, image, "image/png", variables={"m": "tagger@1", "k": 2}).ok()["recognize"]
    assert [x["label"] for x in top["labels"]] == [label for label, _ in expected[:2]]
    cut = models_org.client.upload_form(TAG_QUERY, image, "image/png", variables={"m": "tagger", "t": 0.999}).ok()["recognize"]
    assert all(x["score"] >= 0.999 for x in cut["labels"])


@pytest.mark.parametrize(
    ("variables", "code", "fragment"),
    [
        ({"m": "colour-net"}, "invalid_input", "embedding model"),
        ({"m": "nobody"}, "not_found", "nobody"),
        ({"m": "tagger", "l": "00000000-0000-0000-0000-000000000000"}, "invalid_input", "either"),
        ({}, "invalid_input", "either"),
        ({"m": "tagger", "t": -0.5}, "invalid_input", "confidence"),
        ({"m": "unchecked-net"}, "invalid_input", "only ready versions"),
    ],
)
def test_recognize_with_bad_model_ids(
    models_org: Org, tagger: Any, embedding_model: Any, unchecked: Any, variables: dict[str, Any], code: str, fragment: str
) -> None:
    reply = models_org.client.upload_form(TAG_QUERY, colour_png(COLOURS[1], 5), "image/png", variables=variables)
    api.assert_error(reply, code, fragment)


def test_recognize_with_a_tagger_refuses_an_unreadable_image(models_org: Org, tagger: Any) -> None:
    reply = models_org.client.upload_form(TAG_QUERY, b"not an image", "image/png", variables={"m": "tagger"})
    api.assert_error(reply, "invalid_input", "image 0")


# -- the system default --------------------------------------------------------------------------------


def test_without_model_id_a_face_library_uses_the_system_face_default(
    stack: Stack, models_org: Org, worker: Process
) -> None:
    library_id = models_org.create_library("people-default", "people")
    entities = [models_org.create_entity(library_id, f"person-{i}") for i in range(2)]
    for i, e in enumerate(entities):
        for n in range(3):
            models_org.add_identifier(e, colour_png(COLOURS[i], 500 + 10 * i + n), type_id="face")
    before, _ = api.trained(models_org, api.GALLERY, library_id, worker=worker)
    assert before["jsondata"]["backbone"]["model"] == "pixel-projection"

    net = conv_net(dimension=8, seed=9)
    version = registered.register_system(stack, "face-embedding", "embedding", net, normalised_manifest())
    try:
        after, _ = api.trained(models_org, api.GALLERY, library_id, worker=worker)
        assert after["jsondata"]["backbone"]["model"] == version.ref
        got = models_org.client.query("query($id: ID!) { libraryEngineModel(id: $id) { modelVersionId } }", id=after["id"]).ok()
        assert got["libraryEngineModel"]["modelVersionId"] == str(version.id)
    finally:
        registered.drop_system_default(stack, "face-embedding")


def test_another_organizations_tagger_is_not_found(other_org: Org, tagger: Any) -> None:
    reply = other_org.client.upload_form(TAG_QUERY, colour_png(COLOURS[2], 6), "image/png", variables={"m": "tagger"})
    api.assert_error(reply, "not_found", "tagger")


def test_a_job_trains_on_the_version_it_was_created_with_whatever_moves_later(models_org: Org) -> None:
    from engines.interface import EngineError
    from gateway.services.access.principal import Principal
    from gateway.services.models import backbones as engine_backbones
    from gateway.services.models import registry as models

    first = registered.register_org_model(models_org, "pinned-net", "embedding", conv_net(dimension=8, seed=21), normalised_manifest())
    library_id = api.create_library(models_org, "pinned")
    model_id = models_org.client.query(
        'mutation($l: ID!) { createLibraryEngineModel(input: {engineId: "engineshed-gallery", libraryId: $l}) { id } }', l=library_id,
    ).ok()["createLibraryEngineModel"]["id"]
    # A client-sent modelVersionId is never taken: the one createJob resolved from config.modelId is stored.
    payload = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id,
               "config": {"modelId": "pinned-net@default"}, "modelVersionId": "not-a-version"}
    job = models_org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id tasks { records { payload } } } }",
        t=[{"engineId": "engineshed-gallery", "payload": payload}],
    ).ok()["createJob"]
    models_org.client.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job["id"]).ok()
    assert job["tasks"]["records"][0]["payload"]["modelVersionId"] == str(first.id)

    second = registered.register_org_model(models_org, "pinned-net", "embedding", conv_net(dimension=8, seed=22), normalised_manifest())
    admin = Principal(org_id=models_org.id, scope="admin")

    async def after_moving_default(res: Any) -> tuple[Any, Any]:
        await models.set_alias(res, admin, "pinned-net", second.version, "default")
        config = {"modelId": "pinned-net@default"}
        pinned = await engine_backbones.embedding_model(res, models_org.id, config, ["face"], pinned=str(first.id))
        current = await engine_backbones.embedding_model(res, models_org.id, config, ["face"])
        return pinned, current

    pinned, current = registered.with_resources(models_org.stack, after_moving_default)
    assert (pinned.version_id, current.version_id) == (str(first.id), str(second.id))

    async def pinned_to(res: Any, version_id: str) -> Any:
        return await engine_backbones.embedding_model(res, models_org.id, {}, ["face"], pinned=version_id)

    for gone in (str(uuid.uuid4()), "junk"):
        with pytest.raises(EngineError, match="was deleted or is not ready"):
            registered.with_resources(models_org.stack, lambda res: pinned_to(res, gone))
