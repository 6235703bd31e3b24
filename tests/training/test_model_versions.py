"""Model versions through the public API with the real gallery engine (issue #15): the default model moves
only to a completed model that scores at least as well (or with autoPromote), both accuracies are recorded,
setDefaultModel rolls back and recognize(libraryId) answers with the chosen model; names, changelogs, labels,
aliases and the typed evaluation result; a library's counts, previews and issues from its last training."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sampledata.digits import Digits
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.support.waits import wait_model

GALLERY = api.GALLERY
VERSION_FIELDS = """id trainStatus accuracy isDefault aliases parentModelId name description changelog labels autoPromote
promotion jsondata evaluationResult { method top1 evaluated splitSizes { training validation test }
perEntity { entityId count correct } calibration { method threshold genuine impostor } }"""
BY_LIBRARY = """query($l: ID, $e: ID) { recognize(libraryId: $l, engineId: $e, topK: 3, threshold: -1) {
  libraryEngineModelId engineId matches { entityId } } }"""


@pytest.fixture(scope="module")
def versions_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "versions")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("versions"), "versions-worker")
    yield process
    process.stop()


def _digits(library: Digits, digit: int, count: int, skip: int = 0) -> list[bytes]:
    return [e.data for e in library.train if e.entity_id == f"digit-{digit}"][skip : skip + count]


def _model(org: Org, model_id: str) -> dict[str, Any]:
    return org.client.query(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {VERSION_FIELDS} }} }}", id=model_id).ok()[
        "libraryEngineModel"]


def _train(org: Org, library_id: str, worker: Process, **payload: Any) -> dict[str, Any]:
    model_id = api.create_model(org, GALLERY, library_id)
    body = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id, **payload}
    org.client.query("mutation($p: JSONData) { createJob(input: {tasks: [{engineId: \"engineshed-gallery\", payload: $p}]}) { id } }",
                     p=body).ok()
    wait_model(org, model_id, worker=worker, timeout=180)
    return _model(org, model_id)


def _by_library(org: Org, library_id: str, image: bytes, engine_id: str | None = None) -> str:
    reply = org.client.upload_form(BY_LIBRARY, image, "image/png", filename="q.png", variables={"l": library_id, "e": engine_id})
    return reply.ok()["recognize"]["libraryEngineModelId"]


def test_promotion_rollback_and_recognize_with_the_default(versions_org: Org, worker: Process, digit_library: Digits) -> None:
    org = versions_org
    library_id = api.create_library(org, "versions")
    entities = {d: org.create_entity(library_id, f"digit-{d}") for d in (0, 1, 2)}
    api.add_identifiers(org, [(entities[d], image) for d in (0, 1, 2) for image in _digits(digit_library, d, 8)])
    probe = _digits(digit_library, 2, 1, skip=20)[0]

    first = _train(org, library_id, worker)
    assert first["trainStatus"] == "complete", first["jsondata"]
    assert first["isDefault"] is True and first["aliases"] == ["default"] and first["parentModelId"] is None
    assert first["promotion"]["promoted"] is True and first["promotion"]["previousAccuracy"] is None
    evaluation = first["evaluationResult"]
    assert evaluation["top1"] == first["accuracy"] == first["jsondata"]["evaluation"]["top1"]
    assert evaluation["splitSizes"] == {"training": 24, "validation": 0, "test": 0}
    assert {e["entityId"] for e in evaluation["perEntity"]} == set(entities.values())
    assert sum(e["count"] for e in evaluation["perEntity"]) == evaluation["evaluated"] == 24
    assert evaluation["calibration"]["threshold"] == first["jsondata"]["threshold"]
    assert _by_library(org, library_id, probe) == first["id"]

    # Mislabelled identifiers make the next version worse: it completes but does not become the default.
    api.add_identifiers(org, [(entities[0], image) for image in _digits(digit_library, 1, 8, skip=8)])
    worse = _train(org, library_id, worker)
    assert worse["trainStatus"] == "complete"
    assert worse["accuracy"] < first["accuracy"], (worse["accuracy"], first["accuracy"])
    assert worse["isDefault"] is False and worse["aliases"] == [] and worse["parentModelId"] == first["id"]
    promotion = worse["promotion"]
    assert promotion["promoted"] is False and promotion["autoPromote"] is False
    assert (promotion["accuracy"], promotion["previousAccuracy"]) == (worse["accuracy"], first["accuracy"])
    assert promotion["previousModelId"] == first["id"]
    assert _model(org, first["id"])["isDefault"] is True
    assert _by_library(org, library_id, probe) == first["id"]

    # setDefaultModel: forward to the worse one, then back.
    chosen = org.client.query("mutation($m: ID!) { setDefaultModel(libraryEngineModelId: $m) { id isDefault aliases } }",
                              m=worse["id"]).ok()["setDefaultModel"]
    assert chosen == {"id": worse["id"], "isDefault": True, "aliases": ["default"]}
    assert _model(org, first["id"])["isDefault"] is False
    assert _by_library(org, library_id, probe) == worse["id"]
    assert _by_library(org, library_id, probe, GALLERY) == worse["id"]
    # A library-run job that names no model runs the default too.
    run = org.client.query(
        'mutation($p: JSONData) { createJob(input: {tasks: [{engineId: "engineshed-gallery", payload: $p}]}) { id tasks { records { payload } } } }',
        p={"mode": "library-run", "libraryId": library_id, "url": "http://192.0.2.1/x.png"}).ok()["createJob"]
    assert run["tasks"]["records"][0]["payload"]["libraryEngineModelId"] == worse["id"]
    assert org.client.query("query($j: ID!) { job(id: $j, waitSeconds: 60) { done } }", j=run["id"]).ok()["job"]["done"]
    org.client.query("mutation($m: ID!) { setDefaultModel(libraryEngineModelId: $m) { id } }", m=first["id"]).ok()
    assert _by_library(org, library_id, probe) == first["id"]

    # autoPromote: a worse model becomes the default anyway, and says why.
    forced = _train(org, library_id, worker, autoPromote=True)
    assert forced["accuracy"] < first["accuracy"]
    assert forced["isDefault"] is True and forced["autoPromote"] is True
    assert forced["promotion"]["promoted"] is True and "autoPromote" in forced["promotion"]["reason"]
    assert forced["promotion"]["previousAccuracy"] == first["accuracy"]
    assert _by_library(org, library_id, probe) == forced["id"]

    # Only a complete model can be the default; bad input is refused and changes nothing.
    pending = api.create_model(org, GALLERY, library_id)
    reply = org.client.query("mutation($m: ID!) { setDefaultModel(libraryEngineModelId: $m) { id } }", m=pending)
    assert reply.error_code == "invalid_input" and "complete" in reply.error_message
    other = org.client.query("mutation($m: ID!) { setDefaultModel(libraryEngineModelId: $m) { id } }",
                             m="00000000-0000-4000-8000-000000000001")
    assert other.error_code == "not_found"
    assert _by_library(org, library_id, probe) == forced["id"]
    bad = org.client.query("query($l: ID, $e: ID) { recognize(libraryId: $l, engineId: $e, url: \"http://192.0.2.1/x.png\") { engineId } }",
                           l=library_id, e="test-sleeper")
    assert bad.error_code == "invalid_input" and "no default model" in bad.error_message
    both = org.client.query("query($l: ID, $m: ID) { recognize(libraryId: $l, libraryEngineModelId: $m, url: \"http://192.0.2.1/x.png\") { engineId } }",
                            l=library_id, m=first["id"])
    assert both.error_code == "invalid_input" and "exactly one" in both.error_message

    # Deleting the default hands it to the newest complete model, so recognize by library keeps answering.
    org.client.query("mutation($m: ID!) { deleteLibraryEngineModel(id: $m) { id } }", m=forced["id"]).ok()
    assert _model(org, worse["id"])["isDefault"] is True
    assert _by_library(org, library_id, probe) == worse["id"]


UPDATE = """mutation($i: UpdateLibraryEngineModel!) { updateLibraryEngineModel(input: $i) {
  id name description changelog labels aliases autoPromote trainStatus } }"""


def test_version_fields_aliases_and_their_rules(versions_org: Org) -> None:
    org = versions_org
    library_id = api.create_library(org, "aliases")
    a = api.create_model(org, GALLERY, library_id)
    b = api.create_model(org, GALLERY, library_id)
    updated = org.client.query(UPDATE, i={"id": a, "name": "digits", "description": "first cut", "changelog": "initial training",
                                          "labels": {"team": "vision"}, "aliases": ["stable", "v1"], "autoPromote": True}).ok()
    assert updated["updateLibraryEngineModel"] == {
        "id": a, "name": "digits", "description": "first cut", "changelog": "initial training", "labels": {"team": "vision"},
        "aliases": ["stable", "v1"], "autoPromote": True, "trainStatus": "pending"}
    # An alias names one model of a library and engine: setting it elsewhere moves it.
    org.client.query(UPDATE, i={"id": b, "aliases": ["stable"]}).ok()
    assert _model(org, a)["aliases"] == ["v1"] and _model(org, b)["aliases"] == ["stable"]
    for bad, fragment in (({"aliases": ["Stable"]}, "'Stable'"), ({"aliases": ["default"]}, "setDefaultModel"),
                          ({"aliases": ["x"]}, "'x'"), ({"labels": {"Team": "x"}}, "'Team'"),
                          ({"name": "n" * 129}, "at most 128")):
        reply = org.client.query(UPDATE, i={"id": a, **bad})
        assert reply.error_code == "invalid_input" and fragment in reply.error_message, (bad, reply.body)
    assert _model(org, a)["aliases"] == ["v1"] and _model(org, a)["labels"] == {"team": "vision"}


INSIGHT = """query($l: ID!) { library(id: $l) { counts { entities activeEntities identifiers usableIdentifiers }
  previewIdentifiers { id entityId url } issues { hasError hasWarning reasons { kind severity message identifierId entityId detail } } } }"""


def test_library_counts_previews_and_issues_from_the_last_training(versions_org: Org, worker: Process, digit_library: Digits) -> None:
    org = versions_org
    library_id = api.create_library(org, "issues")
    zero, one = org.create_entity(library_id, "zero"), org.create_entity(library_id, "one")
    lonely, empty = org.create_entity(library_id, "lonely"), org.create_entity(library_id, "empty")
    twice = _digits(digit_library, 1, 1)[0]
    ids = api.add_identifiers(org, [(zero, x) for x in _digits(digit_library, 0, 4)] + [(one, x) for x in _digits(digit_library, 1, 3, skip=1)]
                              + [(one, twice), (one, twice), (lonely, _digits(digit_library, 2, 1)[0])])
    tiny = api.add_identifier(org.client, zero, api.png(4, 1))

    before = org.client.query(INSIGHT, l=library_id).ok()["library"]
    assert before["counts"] == {"entities": 4, "activeEntities": 3, "identifiers": 11, "usableIdentifiers": 11}
    assert before["issues"]["hasError"] is False and before["issues"]["hasWarning"] is True
    kinds = sorted((r["kind"], r["entityId"] or "", r["identifierId"] or "") for r in before["issues"]["reasons"])
    assert kinds == sorted([("too-few-identifiers", lonely, ""), ("too-few-identifiers", empty, ""),
                            ("duplicate", one, ids[7]), ("duplicate", one, ids[8])])
    previews = before["previewIdentifiers"]
    assert len(previews) == 5 and {p["id"] for p in previews} <= set(ids) | {tiny} and all(p["url"] for p in previews)

    model_id = api.create_model(org, GALLERY, library_id)
    api.create_train_job(org, GALLERY, library_id, model_id, {"minSize": 8})
    assert wait_model(org, model_id, worker=worker, timeout=180)["trainStatus"] == "complete"
    after = org.client.query(INSIGHT, l=library_id).ok()["library"]
    assert after["counts"]["usableIdentifiers"] == 10
    skipped = [r for r in after["issues"]["reasons"] if r["identifierId"] == tiny]
    assert [(r["kind"], r["severity"]) for r in skipped] == [("too-small", "warning")] and skipped[0]["detail"]
    assert after["issues"]["hasError"] is False

    # Issues come from the library's default engine's last training (a publish trains every compatible engine
    # at once): another engine's failure is not the library's error...
    other = api.create_model(org, "test-sleeper", library_id)
    api.create_train_job(org, "test-sleeper", library_id, other, {"fail": "engine"})
    assert wait_model(org, other, worker=worker, timeout=180)["trainStatus"] == "failed"
    assert org.client.query(INSIGHT, l=library_id).ok()["library"]["issues"]["hasError"] is False
    # ...the default engine's is: a split key no identifier carries leaves nothing to train on.
    failing = api.create_model(org, GALLERY, library_id)
    api.create_train_job(org, GALLERY, library_id, failing, {"splitKey": "no-such-key"})
    assert wait_model(org, failing, worker=worker, timeout=180)["trainStatus"] == "failed"
    failed = org.client.query(INSIGHT, l=library_id).ok()["library"]["issues"]
    assert failed["hasError"] is True
    [error] = [r for r in failed["reasons"] if r["severity"] == "error"]
    assert error["kind"] == "training-failed" and "marks no usable identifier" in error["message"]


def test_splits_through_the_api(versions_org: Org, worker: Process, digit_library: Digits) -> None:
    """A filter split by identifier jsondata, and a fraction split, measured on their test rows; a bad split is
    refused when the job is created, with nothing written."""
    org = versions_org
    library_id = api.create_library(org, "splits")
    entities = {d: org.create_entity(library_id, f"digit-{d}") for d in (5, 6)}
    for d in (5, 6):
        for i, image in enumerate(_digits(digit_library, d, 8)):
            org.client.upload_form(
                'mutation($e: ID!, $j: JSONData) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image", '
                'jsondata: $j}) { id } }', image, "image/png", filename="x.png",
                variables={"e": entities[d], "j": {"split": "test" if i < 2 else "train" if i < 7 else "other"}},
            ).ok()
    filtered = _train(org, library_id, worker, config={"splitKey": "split"})
    result = filtered["evaluationResult"]
    assert filtered["trainStatus"] == "complete", filtered["jsondata"]
    assert result["splitSizes"] == {"training": 10, "validation": 0, "test": 4}
    assert result["evaluated"] == 4 and result["method"].startswith("held-out test split")
    assert sum(e["count"] for e in result["perEntity"]) == 4 and result["top1"] == filtered["accuracy"]

    fractions = _train(org, library_id, worker, config={"testFraction": 0.25, "seed": 4})
    assert fractions["evaluationResult"]["splitSizes"] == {"training": 12, "validation": 0, "test": 4}
    assert fractions["jsondata"]["evaluation"]["splits"]["seed"] == 4

    before = org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id)
    model_id = api.create_model(org, GALLERY, library_id)
    reply = org.client.query(
        'mutation($p: JSONData) { createJob(input: {tasks: [{engineId: "engineshed-gallery", payload: $p}]}) { id } }',
        p={"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id,
           "config": {"trainingFraction": 0.9, "testFraction": 0.2}})
    assert reply.error_code == "invalid_input" and "sum to at most 1" in reply.error_message
    assert org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id) == before


def test_a_refused_version_field_leaves_the_models_other_fields_unchanged(versions_org: Org) -> None:
    org = versions_org
    library_id = api.create_library(org, "atomic")
    model_id = api.create_model(org, GALLERY, library_id)
    reply = org.client.query(UPDATE, i={"id": model_id, "trainStatus": "failed", "labels": {"Bad": "x"}})
    assert reply.error_code == "invalid_input" and "'Bad'" in reply.error_message
    assert _model(org, model_id)["trainStatus"] == "pending"
    both = org.client.query(UPDATE, i={"id": model_id, "trainStatus": "failed", "name": "v2"}).ok()["updateLibraryEngineModel"]
    assert (both["trainStatus"], both["name"]) == ("failed", "v2")
