"""The labeling loop measured on real labeled images (scikit-learn's digits), end to end over HTTP with a worker.

The 1,437 training digits are a 10-entity library and the classifier is trained on them; the 360 held-out
digits are then uploaded into the same library as unassigned identifiers (no entity): the model never saw
them, and their true digit is known only to the test. Measured here:

* pre-labeling (autoTag at the default threshold 0.5): the share of accepted suggestions that are right;
* active learning (findHardExamples, scope 0.10-0.90): how often the hard examples' best guess is wrong,
  against how often the confident rest's is;
* auto-grouping the held-out digits into 10 groups: purity with a registered embedding model, and with the
  built-in pixel projection for comparison;
* a job cancelled mid-run writes no suggestion.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from sampledata.digits import Digits
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import registered
from tests.graphql_client import GraphQLClient
from tests.support.waits import wait_for, wait_job

PRECISION_FLOOR = 0.97
PURITY_FLOOR = 0.8

CREATE_UNASSIGNED = """mutation($l: ID!, $t: String) {
  createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "image", title: $t}) { id entityId annotationType } }"""
SUGGESTIONS = """query($j: ID!, $o: Int) { suggestions(jobId: $j, offset: $o, limit: 1000) {
  totalCount records { id identifierId entityId label confidence modelVersion status } } }"""


@pytest.fixture(scope="module")
def lab(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "labeling-digits")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(
        stack, tmp_path_factory.mktemp("labeling-digits"), "labeling-digits-worker",
        ENGINESHED_MAX_UPLOAD_BYTES=str(100 * 1024 * 1024),
    )
    yield process
    process.stop()


def upload_unassigned(client: GraphQLClient, library_id: str, images: list[bytes], titles: list[str]) -> list[str]:
    def one(item: tuple[bytes, str]) -> str:
        reply = client.upload_form(CREATE_UNASSIGNED, item[0], "image/png", filename="d.png",
                                   variables={"l": library_id, "t": item[1]})
        created = reply.ok()["createEntityIdentifier"]
        assert created["entityId"] is None and created["annotationType"] == "raw"
        return created["id"]

    with ThreadPoolExecutor(api.UPLOAD_THREADS) as pool:
        return list(pool.map(one, zip(images, titles, strict=True)))


@dataclass(frozen=True)
class Lab:
    library_id: str
    model_id: str
    entity_ids: dict[str, str]  # "digit-3" -> entity id
    truth: dict[str, str]  # unassigned identifier id -> its true entity id


@pytest.fixture(scope="module")
def digits_lab(lab: Org, worker: Process, digit_library: Digits) -> Lab:
    library_id = api.create_library(lab, "digits")
    entity_ids = {f"digit-{d}": lab.create_entity(library_id, f"digit-{d}") for d in range(10)}
    api.add_identifiers(lab, [(entity_ids[e.entity_id], e.data) for e in digit_library.train])
    model, task = api.trained(lab, api.CLASSIFIER, library_id, worker=worker, timeout=240)
    assert model["trainStatus"] == "complete", model["jsondata"]
    held_out = upload_unassigned(lab.client, library_id, digit_library.test_images,
                                 [f"held-out-{i}" for i in range(len(digit_library.test_images))])
    truth = {i: entity_ids[name] for i, name in zip(held_out, digit_library.test_entity_ids, strict=True)}
    return Lab(library_id, model["id"], entity_ids, truth)


def all_suggestions(org: Org, job_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = org.client.query(SUGGESTIONS, j=job_id, o=len(found)).ok()["suggestions"]
        found += page["records"]
        if len(found) >= page["totalCount"] or not page["records"]:
            return found


def test_hard_examples_are_wrong_far_more_often_than_the_rest(
    lab: Org, worker: Process, digits_lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    job = lab.client.query(
        """mutation($l: ID!, $m: ID) { findHardExamples(input: {libraryId: $l, libraryEngineModelId: $m,
             collectKeySample: true}) { id status } }""", l=digits_lab.library_id, m=digits_lab.model_id,
    ).ok()["findHardExamples"]
    done = wait_job(lab, job["id"], worker=worker, timeout=240)
    assert done["status"] == "complete", done
    output = done["tasks"]["records"][0]["output"]
    assert output["scored"] == len(digits_lab.truth)  # only the unassigned ones, every one of them

    hard_page = lab.client.query(
        """query($l: ID!) { unassignedIdentifiers(libraryId: $l, hard: true, limit: 1000) {
             totalCount records { id hard hardCoefficient annotationType } } }""", l=digits_lab.library_id,
    ).ok()["unassignedIdentifiers"]
    hard = {r["id"]: r for r in hard_page["records"]}
    assert hard_page["totalCount"] == output["hard"] > 0
    assert all(r["hard"] and 0.0 <= r["hardCoefficient"] <= 1.0 for r in hard.values())
    coefficients = [r["hardCoefficient"] for r in hard_page["records"]]
    assert coefficients == sorted(coefficients, reverse=True)  # least margin (hardest) first

    guesses = {s["identifierId"]: s for s in all_suggestions(lab, job["id"])}
    assert set(hard) <= set(guesses)  # collectKeySample: each hard example carries the model's guess
    wrong = {i: guesses[i]["entityId"] != digits_lab.truth[i] for i in guesses}
    hard_wrong = np.mean([wrong[i] for i in hard])
    rest = [i for i in guesses if i not in hard]
    rest_wrong = np.mean([wrong[i] for i in rest])
    api.say(capsys, f"\nactive learning: {len(hard)} hard of {len(digits_lab.truth)}; wrong: hard {hard_wrong:.3f}, "
                    f"confident rest {rest_wrong:.3f} ({len(rest)})")
    assert hard_wrong >= 5 * max(rest_wrong, 0.01)
    unflagged = lab.client.query(
        "query($l: ID!) { unassignedIdentifiers(libraryId: $l, hard: false, limit: 1) { totalCount } }", l=digits_lab.library_id
    ).ok()["unassignedIdentifiers"]["totalCount"]
    assert unflagged == len(digits_lab.truth) - len(hard)


def test_a_job_cancelled_mid_run_leaves_no_suggestions(lab: Org, worker: Process, digits_lab: Lab, stack: Stack) -> None:
    # The worker is held inside its results transaction by a lock on one identifier it writes, so the cancel
    # lands after everything is scored and before anything is committed, however fast the scoring was.
    from tests.reliability.conftest import HeldLock

    in_write = "identifiers before their suggestions, in id order"  # storage/queries/labeling.py LOCK
    lock = HeldLock(stack.db, "SELECT 1 FROM entity_identifiers WHERE id = $1 FOR NO KEY UPDATE",
                    uuid.UUID(next(iter(digits_lab.truth))))
    try:
        job_id = lab.client.query(
            "mutation($l: ID!, $m: ID) { autoTag(input: {libraryId: $l, libraryEngineModelId: $m, confidenceThreshold: 0}) { id } }",
            l=digits_lab.library_id, m=digits_lab.model_id,
        ).ok()["autoTag"]["id"]
        wait_for(lambda: lock.waiters(in_write) >= 1, timeout=180, interval=0.05, what="the auto-tag job to be in its write")
        lab.client.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job_id).ok()
        # The cancel interrupts the blocked write (its statement is cancelled, its transaction rolled back).
        wait_for(lambda: lock.waiters(in_write) == 0, timeout=60, interval=0.05, what="the cancel to stop the write")
    finally:
        lock.release()
    done = wait_job(lab, job_id, worker=worker, timeout=240)
    assert done["status"] == "cancelled", done
    page = lab.client.query(SUGGESTIONS, j=job_id, o=0).ok()["suggestions"]
    assert page["totalCount"] == 0


def test_pre_label_suggestions_accepted_at_the_default_threshold_are_right(
    lab: Org, worker: Process, digits_lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = lab.client.query(
        """mutation($l: ID!, $m: ID) { autoTag(input: {libraryId: $l, libraryEngineModelId: $m,
             filter: {annotationTypes: [raw, machine]}}) { id } }""", l=digits_lab.library_id, m=digits_lab.model_id,
    ).ok()["autoTag"]["id"]
    done = wait_job(lab, job_id, worker=worker, timeout=240)
    assert done["status"] == "complete", done
    suggestions = all_suggestions(lab, job_id)
    assert suggestions and all(s["confidence"] >= 0.5 and s["status"] == "pending" for s in suggestions)
    assert {s["identifierId"] for s in suggestions} <= set(digits_lab.truth)  # the filter kept the labeled ones out
    assert all(s["modelVersion"] and s["entityId"] in digits_lab.entity_ids.values() for s in suggestions)

    for start in range(0, len(suggestions), 1000):
        accepted = lab.client.query(
            "mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id status } }",
            ids=[s["id"] for s in suggestions[start : start + 1000]],
        ).ok()["acceptSuggestions"]
        assert all(a["status"] == "accepted" for a in accepted)
    # What a user checks: where the accepted identifiers are now.
    placed = {}
    for s in suggestions[:200]:
        row = lab.client.query("query($id: ID!) { entityIdentifier(id: $id) { entityId annotationType } }", id=s["identifierId"]).ok()
        placed[s["identifierId"]] = row["entityIdentifier"]
    assert all(p["annotationType"] == "human" and p["entityId"] is not None for p in placed.values())
    correct = np.mean([s["entityId"] == digits_lab.truth[s["identifierId"]] for s in suggestions])
    coverage = len(suggestions) / len(digits_lab.truth)
    api.say(capsys, f"\npre-labeling at 0.5: {len(suggestions)} suggestions ({coverage:.3f} of the held-out), "
                    f"accepted correct {correct:.4f}")
    assert correct >= PRECISION_FLOOR


# -- auto-grouping ----------------------------------------------------------------------------------------------


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32).ravel() / 255.0


def digits_embedding_model(train: Digits) -> bytes:
    """An embedding model learnt from the labeled digits (the training 4/5 only): linear discriminant axes over
    the pixels, as a registered ONNX file (NCHW RGB in 0..1 -> 9 values)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = np.array([pixels(e.data) for e in train.train])
    y = np.array([e.entity_id for e in train.train])
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x, y)
    w = lda.scalings_[:, :9].astype(np.float32)
    weights = np.vstack([w / 3.0] * 3)  # grey digits: R = G = B
    bias = -(x.mean(axis=0) @ w).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "w", "b"], ["embedding"])],
        "digits-lda",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 9])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def purity(groups: list[list[str]], truth: dict[str, str]) -> float:
    return sum(Counter(truth[m] for m in g).most_common(1)[0][1] for g in groups if g) / sum(len(g) for g in groups)


def group_members(org: Org, job_id: str) -> list[dict[str, Any]]:
    page = org.client.query(
        """query($j: ID!) { identifierGroups(jobId: $j, limit: 100) { totalCount records { id size
             representative { id } members(limit: 1000) { totalCount records { id } } } } }""", j=job_id,
    ).ok()["identifierGroups"]
    return page["records"]


def test_auto_grouping_held_out_digits_into_ten_groups(
    lab: Org, worker: Process, digit_library: Digits, capsys: pytest.CaptureFixture[str]
) -> None:
    library_id = api.create_library(lab, "digits-unlabeled")
    ids = upload_unassigned(lab.client, library_id, digit_library.test_images, [""] * len(digit_library.test_images))
    truth = dict(zip(ids, digit_library.test_entity_ids, strict=True))
    registered.register_org_model(lab, "digits-lda", "embedding", digits_embedding_model(digit_library), {"input": {"range": [0, 1]}})
    # The module's worker may have taken the trial inference itself: wait for it either way.
    wait_for(lambda: lab.client.query('{ model(name: "digits-lda") { status } }').ok()["model"]["status"] == "ready",
             timeout=120, interval=0.3, what="digits-lda to be ready")

    results = {}
    for model in ("digits-lda", None):
        job_id = lab.client.query(
            "mutation($l: ID!, $m: String) { autoGroup(input: {libraryId: $l, nClusters: 10, modelId: $m}) { id } }",
            l=library_id, m=model,
        ).ok()["autoGroup"]["id"]
        done = wait_job(lab, job_id, worker=worker, timeout=240)
        assert done["status"] == "complete", done
        groups = group_members(lab, job_id)
        assert len(groups) == 10
        members = [[m["id"] for m in g["members"]["records"]] for g in groups]
        assert sorted(i for g in members for i in g) == sorted(ids)  # every held-out digit in exactly one group
        assert all(g["representative"]["id"] in m for g, m in zip(groups, members, strict=True))
        assert [g["size"] for g in groups] == sorted((g["size"] for g in groups), reverse=True)
        results[model or "pixel-projection"] = (purity(members, truth), job_id, groups)
    api.say(capsys, "\nauto-grouping 360 held-out digits into 10: purity "
                    + ", ".join(f"{k} {v[0]:.3f}" for k, v in results.items()))
    assert results["digits-lda"][0] >= PURITY_FLOOR

    # Naming the largest group makes it an entity holding exactly its members.
    _, job_id, groups = results["digits-lda"]
    largest = groups[0]
    entity = lab.client.query(
        "mutation($g: ID!) { createEntityFromGroup(groupId: $g, name: \"first group\") { id libraryId name } }", g=largest["id"]
    ).ok()["createEntityFromGroup"]
    assert entity["libraryId"] == library_id
    held = lab.client.query(
        "query($e: ID!) { entity(id: $e) { identifiers(limit: 1000) { totalCount records { id annotationType } } } }", e=entity["id"]
    ).ok()["entity"]["identifiers"]
    assert sorted(r["id"] for r in held["records"]) == sorted(m["id"] for m in largest["members"]["records"])
    assert all(r["annotationType"] == "human" for r in held["records"])
    left = lab.client.query("query($l: ID!) { unassignedIdentifiers(libraryId: $l) { totalCount } }", l=library_id).ok()
    assert left["unassignedIdentifiers"]["totalCount"] == len(ids) - largest["size"]
    # The second group merges into that entity; the first, now empty of unassigned members, cannot move again.
    merged = lab.client.query(
        "mutation($g: ID!, $e: ID!) { mergeGroupIntoEntity(groupId: $g, entityId: $e) { id } }", g=groups[1]["id"], e=entity["id"]
    ).ok()["mergeGroupIntoEntity"]
    assert merged["id"] == entity["id"]
    again = lab.client.query(
        "mutation($g: ID!, $e: ID!) { mergeGroupIntoEntity(groupId: $g, entityId: $e) { id } }", g=largest["id"], e=entity["id"]
    )
    api.assert_error(again, "invalid_input", "assigned")
