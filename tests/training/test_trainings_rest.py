"""Seed 001's Training resource over REST (``/v1/trainings``) with the real gallery engine and a worker:
a training started over REST, followed to completion, compared with the seed's JSON example field by field,
listed, and deleted once finished."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from sampledata.digits import Digits
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.support.requirements import shared_file
from tests.support.waits import wait_for

SEED_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
# Attributes beyond the seed's example: the training's labels (seed 003's).
EXTRA_TOP = {"labels"}


def seed_example() -> dict[str, Any]:
    text = shared_file("seeds", "001-training-resource-rest.txt").read_text()
    return json.loads(text[text.index("{\n\"id\""):])


@pytest.fixture(scope="module")
def rest_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "rest-trainings")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("rest-trainings"), "rest-trainings-worker")
    yield process
    process.stop()


def _http(org: Org) -> httpx.Client:
    return httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=60)


def _same_shape(ours: Any, seed: Any, path: str) -> None:
    """Each of the seed's attributes is there, with the seed's JSON type (null in the seed: any type)."""
    if seed is None:
        return
    if isinstance(seed, bool):
        assert isinstance(ours, bool), (path, ours)
    elif isinstance(seed, (int, float)):
        assert isinstance(ours, (int, float)) and not isinstance(ours, bool), (path, ours)
    elif isinstance(seed, str):
        assert isinstance(ours, str), (path, ours)
        if SEED_TIME.fullmatch(seed):
            assert SEED_TIME.fullmatch(ours), (path, ours)
    elif isinstance(seed, list):
        assert isinstance(ours, list), (path, ours)
    elif isinstance(seed, dict):
        assert isinstance(ours, dict), (path, ours)


def test_a_rest_training_runs_to_completion_in_the_seeds_shape(rest_org: Org, worker: Process, digit_library: Digits) -> None:
    example = seed_example()  # read first: without the reference documents the test skips before training
    org = rest_org
    library_id = api.create_library(org, "Test")
    entities = [org.create_entity(library_id, f"digit-{d}") for d in (3, 4)]
    images = {d: [e.data for e in digit_library.train if e.entity_id == f"digit-{d}"][:6] for d in (3, 4)}
    api.add_identifiers(org, [(entities[i], x) for i, d in enumerate((3, 4)) for x in images[d]] + [(entities[0], images[3][0])])
    # One unassigned identifier (#14): an image of the dataset, not one a training uses.
    org.client.upload_form('mutation($l: ID!) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "image"}) { id } }',
                           api.png(28, 4242), "image/png", filename="u.png",
                           variables={"l": library_id}).ok()
    body = {"source_dataset_id": library_id, "output_model_name": "My Model",
            "output_model_description": "This is a model which training was started via Postman",
            "output_model_changelog": "initial training", "config": {"min_face_size": 80, "sharpness_threshold": 40}}
    with _http(org) as http:
        created = http.post("/v1/trainings/", json=body)
        assert created.status_code == 201, created.text
        training = created.json()
        assert training["state"] in ("waiting", "processing", "completed")
        assert training["time_created"] and SEED_TIME.fullmatch(training["time_created"])

        def finished() -> dict[str, Any] | None:
            reply = http.get(f"/v1/trainings/{training['id']}")
            assert reply.status_code == 200, reply.text
            return reply.json() if reply.json()["state"] in ("completed", "failed") else None

        done = wait_for(finished, timeout=180, interval=0.3, what="the REST training to finish")

        # Field by field against the seed's JSON example.
        assert set(done) == set(example) | EXTRA_TOP
        assert set(done["source_dataset"]) == set(example["source_dataset"])
        assert set(example["source_dataset"]["issues"]) <= set(done["source_dataset"]["issues"])  # + reasons, report
        for key, value in example.items():
            _same_shape(done[key], value, key)
        for key, value in example["source_dataset"].items():
            _same_shape(done["source_dataset"][key], value, f"source_dataset.{key}")

        assert done["id"] == training["id"] and done["type"] == "image"  # an objects library: the gallery, for images
        assert (done["state"], done["progress"], done["error"]) == ("completed", 1.0, "")
        started = datetime.strptime(done["time_started"], "%Y-%m-%d %H:%M:%S.%f")
        ended = datetime.strptime(done["time_completed"], "%Y-%m-%d %H:%M:%S.%f")
        assert done["duration"] == pytest.approx((ended - started).total_seconds(), abs=0.002) and done["duration"] > 0
        assert done["time_created"] <= done["time_started"] <= done["time_completed"]
        for key in ("output_model_name", "output_model_description", "output_model_changelog"):
            assert done[key] == body[key]
        # The gallery has a sharpness gate but detects no faces: only sharpness_threshold reaches it (as sharpnessThreshold).
        assert done["config"] == {"sharpness_threshold": 40}
        task = org.client.query('query($id: ID!) { job(id: $id) { tasks { records { payload } } } }', id=done["id"]).ok()
        assert task["job"]["tasks"]["records"][0]["payload"]["config"] == {"sharpnessThreshold": 40}
        dataset = done["source_dataset"]
        assert (dataset["id"], dataset["name"], dataset["type"], dataset["version"]) == (library_id, "Test", "image", 0.0)  # never published
        assert (dataset["number_of_classes"], dataset["number_of_active_classes"]) == (2, 2)
        # number_of_images counts every image, the unassigned one too; active ones are those trained on.
        assert (dataset["number_of_images"], dataset["number_of_active_images"]) == (14, 13)
        assert len(dataset["preview_images"]) == 5 and all(u.startswith("http") for u in dataset["preview_images"])
        assert (dataset["issues"]["has_error"], dataset["issues"]["has_warning"]) == (False, True)  # the duplicate
        assert dataset["issues"]["report"]["entitiesWithoutIdentifiersCount"] == 0
        assert dataset["evaluation_state"] == 1

        model = done["output_model"]
        graphql = api.get_model(org, model["id"])
        assert graphql["trainStatus"] == "complete" and graphql["trainJobId"] == done["id"]
        assert (model["name"], model["changelog"], model["is_default"], model["aliases"]) == ("My Model", "initial training", True, ["default"])
        assert model["description"] == done["output_model_description"]  # the same string, never null
        assert model["accuracy"] == graphql["accuracy"] == dataset["evaluation_result"]["top1"] == model["evaluation_result"]["top1"]
        assert dataset["evaluation_result"]["split_sizes"] == {"training": 13, "validation": 0, "test": 0}

        listed = http.get("/v1/trainings", params={"limit": 5}).json()
        assert listed["results"][0]["id"] == done["id"] and listed["total_count"] >= 1 and listed["limit"] == 5

        # A retraining over REST names its parent: the default it was retrained from.
        again = http.post("/v1/trainings/", json={"source_dataset_id": library_id}).json()
        retrained = wait_for(lambda: (lambda t: t if t["state"] == "completed" else None)(http.get(f"/v1/trainings/{again['id']}").json()),
                             timeout=180, interval=0.3, what="the retraining")
        assert retrained["output_model"]["parent_model_id"] == model["id"]

        gone = http.delete(f"/v1/trainings/{done['id']}")
        assert gone.status_code == 204, gone.text
        missing = http.get(f"/v1/trainings/{done['id']}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert api.get_model(org, model["id"])["trainStatus"] == "complete"  # the model outlives its training
