"""Auto-grouping reads the identifiers' stored vectors (identifier_embeddings) of its model: nothing is fetched from
S3 for identifiers that have one, and what it has to compute it stores, so the next grouping reads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import registered
from tests.support.waits import wait_job

DIM = 16
MODEL = "group-net"
UNASSIGNED = """mutation($l: ID!, $u: String) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "image",
  uniqueName: $u}) { id } }"""
INSERT = """mutation($m: String!, $d: [Int!]!, $e: [EmbeddingRecord!]!, $l: ID) {
  insertEmbeddings(modelId: $m, vectorDimension: $d, embeddings: $e, libraryId: $l) { inserted } }"""
GROUP = "mutation($l: ID!, $m: String) { autoGroup(input: {libraryId: $l, nClusters: 2, modelId: $m}) { id } }"
GROUPS = "query($j: ID!) { identifierGroups(jobId: $j) { records { members(limit: 100) { records { id } } } } }"


@pytest.fixture(scope="module")
def org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "labeling-vectors")
    registered.register_org_model(org, MODEL, "embedding", conv_net(dimension=DIM, seed=11), normalised_manifest())
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("labeling-vectors"), "labeling-vectors-worker")
    yield process
    process.stop()


def unassigned_library(org: Org, name: str, n: int, seed: int) -> tuple[str, list[str]]:
    library = org.create_library(name, "objects")
    ids = []
    for i in range(n):
        reply = org.client.upload_form(UNASSIGNED, api.png(32, seed + i), "image/png", filename=f"{name}-{i}.png",
                                       variables={"l": library, "u": f"{name}-{i}"})
        ids.append(reply.ok()["createEntityIdentifier"]["id"])
    return library, ids


def grouped(org: Org, worker: Process, library: str) -> tuple[dict[str, Any], set[frozenset[str]]]:
    job_id = org.client.query(GROUP, l=library, m=MODEL).ok()["autoGroup"]["id"]
    job = wait_job(org, job_id, worker=worker)
    assert job["status"] == "complete", (job, worker.output()[-3000:])
    groups = org.client.query(GROUPS, j=job_id).ok()["identifierGroups"]["records"]
    return job["tasks"]["records"][0]["output"], {frozenset(m["id"] for m in g["members"]["records"]) for g in groups}


def stored(org: Org, library: str) -> int:
    return org.stack.db.fetchval("SELECT count(*) FROM identifier_embeddings WHERE library_id = $1::uuid", library)


def test_grouping_reads_inserted_vectors_and_fetches_nothing(org: Org, worker: Process) -> None:
    # Noise images whose vectors (inserted by the client) say plainly which four belong together.
    library, ids = unassigned_library(org, "inserted", 8, seed=70_000)
    rng = np.random.default_rng(3)
    axes = np.eye(DIM, dtype=np.float32)
    vectors = [axes[0 if i < 4 else 1] + 0.05 * rng.standard_normal(DIM).astype(np.float32) for i in range(8)]
    records = [{"uniqueName": f"inserted-{i}", "embeddings": v.tolist()} for i, v in enumerate(vectors)]
    assert org.client.query(INSERT, m=MODEL, d=[DIM], e=records, l=library).ok()["insertEmbeddings"]["inserted"] == 8

    output, groups = grouped(org, worker, library)
    assert output["fetches"] == 0 and output["inferences"] == 0, output
    assert output["storedEmbeddings"] == 8 and output["grouped"] == 8
    assert groups == {frozenset(ids[:4]), frozenset(ids[4:])}


def test_grouping_stores_what_it_computes_and_the_next_one_reads_it(org: Org, worker: Process) -> None:
    library, ids = unassigned_library(org, "computed", 6, seed=80_000)
    assert stored(org, library) == 0
    first, first_groups = grouped(org, worker, library)
    assert first["fetches"] == 6 and first["storedEmbeddings"] == 0, first
    assert stored(org, library) == 6  # kept as the identifiers' own vectors of the model
    again, again_groups = grouped(org, worker, library)
    assert again["fetches"] == 0 and again["inferences"] == 0 and again["storedEmbeddings"] == 6, again
    assert again_groups == first_groups
    assert set().union(*again_groups) == set(ids)


def test_generate_embeddings_embeds_unassigned_identifiers_and_grouping_then_reads_them(org: Org, worker: Process) -> None:
    library, ids = unassigned_library(org, "generated", 5, seed=90_000)
    job_id = org.client.query(
        "mutation($l: ID, $m: String) { generateEmbeddings(libraryId: $l, modelId: $m) { id } }", l=library, m=MODEL,
    ).ok()["generateEmbeddings"]["id"]
    job = wait_job(org, job_id, worker=worker)
    assert job["status"] == "complete", (job, worker.output()[-3000:])
    output = job["tasks"]["records"][0]["output"]
    assert output["total"] == 5 and output["embedded"] == 5 and output["failed"] == 0, output  # no entity needed
    assert stored(org, library) == 5
    grouping, groups = grouped(org, worker, library)
    assert grouping["fetches"] == 0 and grouping["storedEmbeddings"] == 5, grouping
    assert set().union(*groups) == set(ids)
