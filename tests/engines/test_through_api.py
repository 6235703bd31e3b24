"""The built-in engines end to end through the public API: real HTTP, PostgreSQL, S3 and a worker process.

One module-scoped organization and worker serve every test; the 1,797 handwritten digits are uploaded
once as a 10-entity ``objects`` library (4/5 of each digit trained on, 1/5 held out) and trained once
per built-in engine. The other tests use small libraries of their own in the same organization.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from engines.runtime import CPU, CUDA, cuda_usable
from sampledata.digits import Digits
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.support.waits import wait_model, wait_task

ACCURACY_FLOOR = 0.95
ENGINES = [api.GALLERY, api.CLASSIFIER]
# The built-in backbone, named: with no model named, an image training also compares the registered system
# embedding models (engines.backbone_choice), and other tests of the session register some.
BUILT_IN = {"modelId": "pixel-projection"}


# -- module fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "engines-api")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    # The suite's 4 MiB upload limit also caps the artifact a worker stores (the gallery of 1,437 digits is
    # bigger): give this worker the production-sized limit.
    process = api.start_worker_process(
        stack, tmp_path_factory.mktemp("engines-api"), "engines-api-worker", ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024)
    )
    yield process
    process.stop()


@dataclass(frozen=True)
class DigitsLibrary:
    library_id: str
    entity_ids: dict[str, str]  # "digit-3" -> entity UUID
    identifier_entity: dict[str, str]  # identifier UUID -> entity UUID
    test_images: list[bytes]
    expected: list[str]  # entity UUID of each held-out image


@dataclass(frozen=True)
class Trained:
    model: dict[str, Any]
    task: dict[str, Any]


@pytest.fixture(scope="module")
def digits(api_org: Org, digit_library: Digits) -> DigitsLibrary:
    """The 1,437 training digits uploaded as identifiers of entities digit-0..digit-9."""
    library_id = api.create_library(api_org, "digits")
    entity_ids = {f"digit-{d}": api_org.create_entity(library_id, f"digit-{d}") for d in range(10)}
    items = [(entity_ids[entry.entity_id], entry.data) for entry in digit_library.train]
    identifier_ids = api.add_identifiers(api_org, items)
    return DigitsLibrary(
        library_id,
        entity_ids,
        {identifier: entity for identifier, (entity, _) in zip(identifier_ids, items, strict=True)},
        digit_library.test_images,
        [entity_ids[name] for name in digit_library.test_entity_ids],
    )


@pytest.fixture(scope="module")
def digits_trained(stack: Stack, api_org: Org, worker: Process, digits: DigitsLibrary) -> dict[str, Trained]:
    """Each built-in engine trained on the digits, one after the other, each from a cold embedding cache.

    Both engines share the built-in backbone and the cache is per organization, so the second would
    otherwise embed nothing; its cache rows are cleared in between to measure both cold. The backbone is named
    (BUILT_IN), so what other tests of the session register as system models changes nothing here.
    """
    trained: dict[str, Trained] = {}
    for engine_id in ENGINES:
        stack.db.execute("DELETE FROM embeddings WHERE org_id = $1", api_org.id)
        model, task = api.trained(api_org, engine_id, digits.library_id, BUILT_IN, worker=worker, timeout=180)
        assert model["trainStatus"] == "complete", model["jsondata"]
        assert task["status"] == "complete", task
        trained[engine_id] = Trained(model, task)
    return trained


# -- 1. accuracy over HTTP, and the downloaded artifact agrees ---------------------------------------


@pytest.mark.parametrize("engine_id", ENGINES)
def test_a_trained_engine_recognizes_held_out_digits_over_http_and_its_downloaded_artifact_agrees(
    engine_id: str, api_org: Org, digits: DigitsLibrary, digits_trained: dict[str, Trained], capsys: pytest.CaptureFixture[str]
) -> None:
    model = digits_trained[engine_id].model
    results = api.recognize_all(api_org.client, model["id"], digits.test_images, top_k=5, threshold=-1.0)

    accuracy = api.top1(results, digits.expected)
    api.say(capsys, f"\n{engine_id}: held-out top-1 over HTTP {accuracy:.4f} ({len(results)} images)")
    assert accuracy >= ACCURACY_FLOOR
    for result in results:
        assert result["libraryEngineModelId"] == model["id"]
        assert result["libraryId"] == digits.library_id
        assert result["engineId"] == engine_id
        assert result["threshold"] == -1.0
        assert len(result["matches"]) == 5
        for match in result["matches"]:
            assert match["libraryId"] == digits.library_id
            if engine_id == api.GALLERY:  # the gallery names the identifier that matched best
                assert digits.identifier_entity[match["entityIdentifierId"]] == match["entityId"]
            else:
                assert match["entityIdentifierId"] is None

    # Without a threshold the model's calibrated one applies, and no weaker match comes back.
    calibrated = api.recognize(api_org.client, model["id"], digits.test_images[0], threshold=None).ok()["recognize"]
    assert calibrated["threshold"] == model["jsondata"]["threshold"]
    assert all(m["score"] >= calibrated["threshold"] for m in calibrated["matches"])

    download = httpx.get(model["dataUrl"], timeout=60)
    assert download.status_code == 200
    api.say(capsys, f"{engine_id}: artifact {len(download.content) / 1e6:.2f} MB")
    assert model["contentType"] == "application/onnx"
    ids, scores = api.run_artifact_plainly(download.content, digits.test_images)
    assert ids == [[m["entityId"] for m in r["matches"]] for r in results]
    api_scores = np.array([[m["score"] for m in r["matches"]] for r in results])
    np.testing.assert_allclose(scores, api_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("engine_id", ENGINES)
def test_a_trained_model_reports_its_evaluation_threshold_provider_and_accuracy(
    engine_id: str, digits: DigitsLibrary, digits_trained: dict[str, Trained]
) -> None:
    trained = digits_trained[engine_id]
    jsondata = trained.model["jsondata"]
    assert jsondata["engine"] == engine_id
    assert jsondata["identifiers"] == len(digits.identifier_entity) == 1437
    assert jsondata["entities"] == 10
    assert jsondata["skipped"] == []
    assert "issues" not in jsondata
    assert jsondata["contentType"] == "application/onnx"
    assert jsondata["provider"] == (CUDA if cuda_usable() else CPU)
    evaluation = jsondata["evaluation"]
    assert evaluation["top1"] >= ACCURACY_FLOOR
    assert set(evaluation["perEntity"]) == set(digits.entity_ids.values())
    assert isinstance(jsondata["threshold"], float)
    assert trained.model["accuracy"] == pytest.approx(evaluation["top1"])
    output = trained.task["output"]
    assert output["identifiers"] == 1437
    assert output["libraryEngineModelId"] == trained.model["id"]
    assert output["inferences"] == 1437  # the cache was cold: every digit went through the backbone


def test_training_throughput_through_the_api_is_measured(digits_trained: dict[str, Trained], capsys: pytest.CaptureFixture[str]) -> None:
    for engine_id, trained in digits_trained.items():
        seconds = api.task_seconds(trained.task)
        identifiers = trained.task["output"]["identifiers"]
        api.say(
            capsys,
            f"\n{engine_id}: trained on {identifiers} identifiers in {seconds:.2f} s (task started→completed), "
            f"{identifiers / seconds:.0f} identifiers/s; engine trainSeconds {trained.task['output']['trainSeconds']}, "
            f"inferences {trained.task['output']['inferences']}, stage timings {trained.model['jsondata']['timings']}",
        )
        # The measurement holds together: every identifier counted, the engine's training inside the task's
        # span, the embedding pass and the fit (wall-clock spans) inside the training, and the stages (summed
        # over concurrent fetches and decodes, so not bounded by the span) all timed; rounding to 1 ms allowed.
        train_seconds = trained.task["output"]["trainSeconds"]
        timings = trained.model["jsondata"]["timings"]
        assert identifiers == 1437
        assert 0 < train_seconds <= seconds + 0.001, (train_seconds, seconds)
        assert {"total", "fetch", "decode", "inference", "fit"} <= set(timings), timings
        assert 0 < timings["total"] <= train_seconds + 0.001 and 0 < timings["fit"] <= train_seconds + 0.001, timings
        assert timings["decode"] > 0 and timings["inference"] > 0 and timings["fetch"] >= 0, timings


# -- 2. the embedding cache across retrains ----------------------------------------------------------------


def test_retraining_an_unchanged_library_embeds_nothing_and_new_identifiers_are_embedded_once(api_org: Org, worker: Process) -> None:
    library_id, entity_ids = api.small_library(api_org, "retrain", entities=2, per_entity=10, seed=1)

    _, first = api.trained(api_org, api.GALLERY, library_id, BUILT_IN, worker=worker)
    assert first["output"]["inferences"] == 20
    model, again = api.trained(api_org, api.GALLERY, library_id, BUILT_IN, worker=worker)
    assert model["trainStatus"] == "complete"
    assert again["output"]["inferences"] == 0
    assert model["jsondata"]["embeddings"] == {"cached": 20, "computed": 0}

    api.add_identifiers(api_org, [(entity_ids[n % 2], api.png(32, 990_000 + n)) for n in range(10)])
    model, grown = api.trained(api_org, api.GALLERY, library_id, BUILT_IN, worker=worker)
    assert grown["output"]["inferences"] == 10
    assert grown["output"]["identifiers"] == 30
    assert model["jsondata"]["embeddings"] == {"cached": 20, "computed": 10}


# -- 3. bad data ----------------------------------------------------------------------------------------------------


def test_a_corrupt_file_is_refused_at_upload_and_a_too_small_or_too_large_one_is_skipped_with_its_reason(
    api_org: Org, worker: Process,
) -> None:
    library_id, entity_ids = api.small_library(api_org, "bad-data", seed=2)
    cut = api.png(32, 2_000_002)[:60]  # the signature is right; the pixels never end
    refused = api_org.client.upload_form(
        'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image"}) { id } }',
        cut, "image/png", filename="x.png", variables={"e": entity_ids[0]},
    )
    api.assert_error(refused, "invalid_input", "does not decode whole")
    tiny = api.add_identifier(api_org.client, entity_ids[1], api.png(8, 2_000_001))
    out = io.BytesIO()
    Image.new("L", (9000, 8000)).save(out, "PNG")  # whole, but past the decoders' pixel cap
    huge = api.add_identifier(api_org.client, entity_ids[0], out.getvalue())

    model, task = api.trained(api_org, api.GALLERY, library_id, {"minSize": 16}, worker=worker)

    assert model["trainStatus"] == "complete", model["jsondata"]
    assert task["status"] == "complete"
    jsondata = model["jsondata"]
    skipped = {s["identifierId"]: s for s in jsondata["skipped"]}
    assert set(skipped) == {huge, tiny}
    assert skipped[huge]["reason"] == "too-large" and skipped[huge]["detail"]
    assert skipped[tiny]["reason"] == "too-small"
    assert "minSize 16" in skipped[tiny]["detail"]
    assert jsondata["issues"]["hasWarning"] is True
    assert jsondata["identifiers"] == 10
    assert task["output"]["identifiers"] == 10


def test_a_library_where_every_identifier_fails_the_quality_gates_ends_failed_with_a_clear_error(api_org: Org, worker: Process) -> None:
    library_id = api.create_library(api_org, "all-tiny")
    entity_id = api_org.create_entity(library_id, "tiny")
    api.add_identifiers(api_org, [(entity_id, api.png(8, 3_000_000 + n)) for n in range(3)])

    model, task = api.trained(api_org, api.GALLERY, library_id, {"minSize": 16}, worker=worker)

    assert model["trainStatus"] == "failed"
    assert model["jsondata"]["error"] == (
        "no identifier passed the quality gates (3 skipped): 3 too-small (e.g. shorter side 8 px is under minSize 16)"
    )
    assert task["status"] == "failed"
    assert task["failureReason"] == "invalid_data"
    assert model["dataUrl"] is None


def test_an_identifier_stored_by_reference_to_a_private_address_is_skipped_as_fetch_failed(
    api_org: Org, worker: Process, gateway: Gateway
) -> None:
    library_id, entity_ids = api.small_library(api_org, "by-reference", seed=4)
    port = httpx.URL(gateway.url).port
    reference = api.add_reference_identifier(api_org, entity_ids[0], f"http://127.0.0.1:{port}/x.png")

    model, _ = api.trained(api_org, api.GALLERY, library_id, worker=worker)

    assert model["trainStatus"] == "complete", model["jsondata"]
    jsondata = model["jsondata"]
    assert [s["identifierId"] for s in jsondata["skipped"]] == [reference]
    skip = jsondata["skipped"][0]
    assert skip["reason"] == "fetch-failed"
    assert skip["detail"] == "the URL's host '127.0.0.1' resolves to a non-public address, which is not allowed"
    assert jsondata["issues"]["hasWarning"] is True
    assert jsondata["identifiers"] == 10


def test_an_unknown_config_key_is_refused_when_the_job_is_created_naming_the_key(api_org: Org, worker: Process) -> None:
    library_id, _ = api.small_library(api_org, "bad-config", entities=1, per_entity=2, seed=5)
    model_id = api.create_model(api_org, api.CLASSIFIER, library_id)
    jobs_before = api_org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", api_org.id)

    reply = api_org.client.query(
        """mutation($e: ID!, $l: ID!, $m: ID!) { createJob(input: {tasks: [{engineId: $e,
            payload: {mode: "library-train", libraryId: $l, libraryEngineModelId: $m, config: {minSize: 16, learningRat: 0.1}}}]}) { id } }""",
        e=api.CLASSIFIER, l=library_id, m=model_id,
    )

    assert reply.error_code == "invalid_input"
    assert "learningRat" in reply.error_message
    assert api_org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", api_org.id) == jobs_before
    assert api.get_model(api_org, model_id)["trainStatus"] == "pending"


# -- 4. and 5. cancellation and engine errors -------------------------------------------------------------------------


def test_cancelling_a_running_gallery_training_ends_the_task_cancelled_and_the_model_failed(api_org: Org, worker: Process) -> None:
    # fetchRate 1/s over 20 identifiers keeps the built-in gallery busy for about 20 s: long enough to cancel.
    library_id, _ = api.small_library(api_org, "cancel", entities=2, per_entity=10, seed=6)
    model_id, job_id = api.train(api_org, api.GALLERY, library_id, {"fetchRate": 1.0, "fetchConcurrency": 1, "pageSize": 5})
    wait_task(api_org, job_id, ("running",), timeout=60)
    wait_model(api_org, model_id, ("running",), timeout=30)

    reply = api_org.client.query("mutation($id: ID!) { cancelJob(id: $id) { id message } }", id=job_id).ok()
    assert reply["cancelJob"]["id"] == job_id

    task = wait_task(api_org, job_id, timeout=30)
    assert task["status"] == "cancelled", task
    model = wait_model(api_org, model_id, timeout=30, worker=worker)
    assert model["trainStatus"] == "failed"
    assert model["jsondata"]["error"] == "the training job was cancelled"
    assert model["dataUrl"] is None
    job = api_org.client.query("query($id: ID!) { job(id: $id) { status } }", id=job_id).ok()["job"]
    assert job["status"] == "cancelled"


def test_an_engine_that_raises_ends_the_model_failed_with_its_message(api_org: Org, worker: Process) -> None:
    library_id, _ = api.small_library(api_org, "raises", entities=1, per_entity=2, seed=7)

    model, task = api.trained(api_org, api.SLEEPER, library_id, {"fail": "engine"}, worker=worker)

    assert model["trainStatus"] == "failed"
    assert model["jsondata"]["error"] == "the sleeper was asked to fail"
    assert task["status"] == "failed"
    assert task["failureMessage"] == "the sleeper was asked to fail"


# -- 6. recognize errors ------------------------------------------------------------------------------------------------


def test_recognize_refuses_unknown_foreign_and_untrained_models_corrupt_images_and_a_bad_top_k(
    stack: Stack, gateway: Gateway, api_org: Org, digits: DigitsLibrary, digits_trained: dict[str, Trained]
) -> None:
    image = digits.test_images[0]
    model_id = digits_trained[api.GALLERY].model["id"]

    api.assert_error(api.recognize(api_org.client, str(uuid.uuid4()), image), "not_found")

    other = make_org(stack, gateway, "engines-api-other")
    try:
        api.assert_error(api.recognize(other.client, model_id, image), "not_found")
    finally:
        other.close()

    pending = api.create_model(api_org, api.GALLERY, digits.library_id)
    api.assert_error(api.recognize(api_org.client, pending, image), "invalid_input", "pending", "not complete")

    message = api.assert_error(api.recognize(api_org.client, model_id, b"\x89PNG but not really"), "invalid_input", "corrupt")
    assert message.startswith("image 0 cannot be used (corrupt)"), message

    for top_k in (0, 101, -3):
        api.assert_error(api.recognize(api_org.client, model_id, image, top_k=top_k), "invalid_input", "topK")

    both = api_org.client.upload_form(api.RECOGNIZE, image, "image/png", filename="q.png",
                                      variables={"m": model_id, "u": "https://example.com/other.png"})
    api.assert_error(both, "invalid_input", "not both")

    # The same model still answers afterwards.
    assert api.recognize(api_org.client, model_id, image).ok()["recognize"]["matches"]
