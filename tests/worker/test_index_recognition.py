"""A gallery trained with ``recognizeFrom: "index"`` recognizes from its library's stored vectors (pgvector): on an
unchanged library it answers exactly as the artifact does, it sees an identifier added after training (which the
artifact cannot), and it answers from its own library and organization only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Gateway, Org, Process, Stack, make_org, start_gateway
from tests.engines import api_helpers as api
from tests.engines import registered
from tests.graphql_client import GraphQLClient
from tests.support.waits import wait_for

DIM = 16
MODEL = "index-net"
INDEX = {"modelId": MODEL, "recognizeFrom": "index"}


@pytest.fixture(scope="module")
def index_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "index-recognition")
    registered.register_org_model(org, MODEL, "embedding", conv_net(dimension=DIM, seed=7), normalised_manifest())
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("index-recognition"), "index-recognition-worker")
    yield process
    process.stop()


def matches(client: GraphQLClient, model_id: str, image: bytes, **kwargs: Any) -> list[dict[str, Any]]:
    return api.recognize(client, model_id, image, **kwargs).ok()["recognize"]["matches"]


def assert_same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(m["entityId"], m["entityIdentifierId"]) for m in got] == [
        (m["entityId"], m["entityIdentifierId"]) for m in expected]
    np.testing.assert_allclose([m["score"] for m in got], [m["score"] for m in expected], atol=1e-4)


def has_vector(org: Org, identifier_id: str) -> bool:
    return bool(org.stack.db.fetchval(
        "SELECT count(*) FROM identifier_embeddings WHERE identifier_id = $1::uuid", identifier_id))


@pytest.fixture(scope="module")
def trained_pair(index_org: Org, worker: Process) -> dict[str, Any]:
    """One library, trained twice on the same model: answering from the artifact and from the index."""
    library, entities = api.small_library(index_org, "index", entities=4, per_entity=4, seed=3)
    artifact, _ = api.trained(index_org, api.GALLERY, library, {"modelId": MODEL}, worker=worker)
    index, _ = api.trained(index_org, api.GALLERY, library, INDEX, worker=worker)
    assert artifact["trainStatus"] == index["trainStatus"] == "complete", (artifact, index)
    assert index["jsondata"]["recognizeFrom"] == "index" and artifact["jsondata"]["recognizeFrom"] == "artifact"
    assert index["jsondata"]["threshold"] == pytest.approx(artifact["jsondata"]["threshold"])
    return {"library": library, "entities": entities, "artifact": artifact["id"], "index": index["id"]}


def test_an_unchanged_library_gets_the_artifacts_answers(index_org: Org, trained_pair: dict[str, Any]) -> None:
    # Library members (seeds as api.small_library makes them) and images it has never seen.
    probes = [api.png(32, 30_000 + e * 100 + n) for e in range(4) for n in (0, 3)]
    probes += [api.png(32, 123_456 + n) for n in range(4)]
    for image in probes:
        expected = matches(index_org.client, trained_pair["artifact"], image, top_k=3, threshold=-1.0)
        assert len(expected) == 3
        assert_same(matches(index_org.client, trained_pair["index"], image, top_k=3, threshold=-1.0), expected)
    # The calibrated threshold (no threshold given) and the trained topK bound apply alike.
    for image in probes:
        expected = matches(index_org.client, trained_pair["artifact"], image, top_k=10, threshold=None)
        assert_same(matches(index_org.client, trained_pair["index"], image, top_k=10, threshold=None), expected)
    member = matches(index_org.client, trained_pair["index"], probes[0], top_k=1, threshold=None)
    assert member[0]["entityId"] == trained_pair["entities"][0] and member[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_an_identifier_added_after_training_is_recognized_from_the_index_only(
    index_org: Org, trained_pair: dict[str, Any],
) -> None:
    newcomer = index_org.create_entity(trained_pair["library"], "index-newcomer")
    image = api.png(32, 987_654)
    (identifier,) = api.add_identifiers(index_org, [(newcomer, image)])
    # The library's engine models use index-net, so the upload is embedded in the background.
    wait_for(lambda: has_vector(index_org, identifier), timeout=60, what="the new identifier's vector")
    fresh = matches(index_org.client, trained_pair["index"], image, top_k=3, threshold=None)
    assert fresh[0]["entityId"] == newcomer and fresh[0]["entityIdentifierId"] == identifier
    assert fresh[0]["entityName"] == "index-newcomer" and fresh[0]["score"] == pytest.approx(1.0, abs=1e-4)
    stale = matches(index_org.client, trained_pair["artifact"], image, top_k=5, threshold=-1.0)
    assert stale and newcomer not in {m["entityId"] for m in stale}


def test_the_hnsw_index_path_gives_the_same_answers(
    index_org: Org, trained_pair: dict[str, Any], stack: Stack, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A gateway that searches the index from the first vector (ENGINESHED_SEARCH_EXACT_BELOW=0) answers as the
    exact path does on this small library, once the worker has built the (model version, organization) index."""
    wait_for(lambda: index_org.stack.db.fetchval(
        "SELECT bool_and(built) FROM embedding_indexes WHERE org_id = $1", index_org.id), timeout=60,
        what="the HNSW index")
    gw = start_gateway(dict(stack.env, ENGINESHED_SEARCH_EXACT_BELOW="0"), tmp_path_factory.mktemp("hnsw-rec"),
                       "hnsw-recognition-gateway")
    client = GraphQLClient(gw.url, index_org.token)
    try:
        for seed in (30_000, 30_101, 30_302, 555):
            image = api.png(32, seed)
            assert_same(matches(client, trained_pair["index"], image, top_k=3, threshold=-1.0),
                        matches(index_org.client, trained_pair["index"], image, top_k=3, threshold=-1.0))
    finally:
        client.close()
        gw.process.stop()


def test_only_the_models_library_and_organization_answer(
    index_org: Org, trained_pair: dict[str, Any], stack: Stack, gateway: Gateway,
) -> None:
    probe = api.png(32, 30_000)  # entity 0's first identifier
    before = matches(index_org.client, trained_pair["index"], probe, top_k=1, threshold=-1.0)
    # Another library of the organization holds the very same vector: the model never answers with it.
    other = api.create_library(index_org, "index-other")
    stranger = index_org.create_entity(other, "stranger")
    index_org.client.upload_form(
        'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image", uniqueName: "twin"}) '
        "{ id } }", api.png(16, 4242), "image/png", filename="twin.png", variables={"e": stranger}).ok()
    twin = index_org.stack.db.fetchval(
        "SELECT embedding::text FROM identifier_embeddings WHERE identifier_id = $1::uuid", before[0]["entityIdentifierId"])
    index_org.client.query(
        'mutation($e: [EmbeddingRecord!]!, $l: ID) { insertEmbeddings(modelId: "index-net", vectorDimension: [16], '
        "embeddings: $e, libraryId: $l) { inserted } }",
        e=[{"uniqueName": "twin", "embeddings": [float(x) for x in twin.strip("[]").split(",")]}], l=other).ok()
    after = matches(index_org.client, trained_pair["index"], probe, top_k=5, threshold=-1.0)
    assert stranger not in {m["entityId"] for m in after}
    assert_same(after[:1], before)

    # Another organization: the model is not found, exactly like a made-up id.
    outsider = make_org(stack, gateway, "index-outsider")
    try:
        theirs = api.recognize(outsider.client, trained_pair["index"], probe)
        made_up = api.recognize(outsider.client, "00000000-0000-4000-8000-000000000000", probe)
        api.assert_error(theirs, "not_found")
        assert theirs.errors[0]["message"] == made_up.errors[0]["message"]
    finally:
        outsider.close()


def test_index_without_a_registered_model_fails_the_training_saying_why(index_org: Org, worker: Process) -> None:
    library, _ = api.small_library(index_org, "index-builtin", entities=2, per_entity=2, seed=9)
    model, task = api.trained(index_org, api.GALLERY, library, {"recognizeFrom": "index"}, worker=worker)
    assert model["trainStatus"] == "failed" and task["status"] == "failed"
    assert "config.modelId" in task["failureMessage"]
    model_id = api.create_model(index_org, api.GALLERY, library)
    payload = {"mode": "library-train", "libraryId": library, "libraryEngineModelId": model_id,
               "config": {"modelId": MODEL, "recognizeFrom": "memory"}}
    refused = index_org.client.query(
        "mutation($e: ID!, $p: JSONData) { createJob(input: {tasks: [{engineId: $e, payload: $p}]}) { id } }",
        e=api.GALLERY, p=payload)
    api.assert_error(refused, "invalid_input", "recognizeFrom", "'artifact', 'index'")
