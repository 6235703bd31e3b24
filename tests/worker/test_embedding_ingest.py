"""Embeddings made by workers: at ingest (batched, once per identifier and model version), by generateEmbeddings
jobs with progress, and read back by training, which then fetches nothing from S3 for an unchanged library."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import registered
from tests.support.waits import wait_for, wait_job

DIM = 16
GENERATE = """mutation($l: ID, $t: ID, $m: String, $f: IdentifierFilter) {
  generateEmbeddings(libraryId: $l, identifierTypeId: $t, modelId: $m, filter: $f) { id status } }"""


@pytest.fixture(scope="module")
def ingest_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "embedding-ingest")
    registered.register_org_model(org, "ingest-net", "embedding", conv_net(dimension=DIM, seed=5), normalised_manifest())
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(
        stack, tmp_path_factory.mktemp("embedding-ingest"), "embedding-ingest-worker", ENGINESHED_EMBED_BATCH_SIZE="16")
    yield process
    process.stop()


def vectors_of(org: Org, library_id: str) -> list[Any]:
    return org.stack.db.fetch(
        "SELECT identifier_id, model_version_id, source FROM identifier_embeddings WHERE library_id = $1::uuid", library_id)


def queued(org: Org, library_id: str) -> int:
    return org.stack.db.fetchval("SELECT count(*) FROM embedding_queue WHERE library_id = $1::uuid", library_id)


def test_ingest_embeds_each_new_identifier_once_per_model_and_training_then_fetches_nothing(
    ingest_org: Org, worker: Process,
) -> None:
    library, entities = api.small_library(ingest_org, "ingest", entities=2, per_entity=3, seed=1)
    # Before any engine model uses a registered model, uploads queue nothing (no default image model here).
    assert queued(ingest_org, library) == 0
    first, task = api.trained(ingest_org, api.GALLERY, library, {"modelId": "ingest-net"}, worker=worker)
    assert first["trainStatus"] == "complete", first
    assert task["output"]["fetches"] == 6  # the first training fetched and embedded everything ...
    stored = vectors_of(ingest_org, library)
    assert len(stored) == 6 and {r["source"] for r in stored} == {"computed"}  # ... and kept the vectors

    # Now the library's engine model uses ingest-net: new identifiers are embedded in the background.
    added = api.add_identifiers(ingest_org, [(entities[n % 2], api.png(32, 50_000 + n)) for n in range(20)])
    wait_for(lambda: len(vectors_of(ingest_org, library)) == 26 and queued(ingest_org, library) == 0, timeout=60,
             what="the 20 new identifiers to be embedded")
    rows = vectors_of(ingest_org, library)
    assert len({(r["identifier_id"], r["model_version_id"]) for r in rows}) == len(rows) == 26
    assert {str(r["identifier_id"]) for r in rows} >= set(added)
    # Batched: uploads arriving one by one are gathered (ENGINESHED_EMBED_LINGER_SECONDS), not one claim each.
    assert worker.output().count("embedded ") < 20

    shown = ingest_org.client.query(
        "query($i: ID!) { entityIdentifier(id: $i) { embeddings { model dimension createdDateTime } } }", i=added[0],
    ).ok()["entityIdentifier"]["embeddings"]
    assert [(e["model"], e["dimension"]) for e in shown] == [("ingest-net@1", DIM)]

    # Retraining reads every vector from PostgreSQL: no S3 GET and no inference.
    again, task = api.trained(ingest_org, api.GALLERY, library, {"modelId": "ingest-net"}, worker=worker)
    assert task["output"]["fetches"] == 0 and task["output"]["inferences"] == 0
    assert task["output"]["storedEmbeddings"] == 26
    assert again["jsondata"]["embeddings"] == {"cached": 26, "computed": 0}
    assert again["jsondata"]["identifiers"] == 26


def test_generate_embeddings_for_a_library_reports_progress_and_fills_the_gaps(ingest_org: Org, worker: Process) -> None:
    library, _ = api.small_library(ingest_org, "generate", entities=2, per_entity=5, seed=2)
    assert vectors_of(ingest_org, library) == []
    job_id = ingest_org.client.query(GENERATE, l=library, m="ingest-net").ok()["generateEmbeddings"]["id"]
    job = wait_job(ingest_org, job_id)
    (task,) = job["tasks"]["records"]
    assert job["status"] == "complete" and task["progress"] == 1.0, job
    assert task["output"]["total"] == 10 and task["output"]["embedded"] == 10 and task["output"]["failed"] == 0
    assert task["output"]["model"] == "ingest-net@1"
    assert len(vectors_of(ingest_org, library)) == 10
    # One claim embedded the whole selection (batch size 16): one backbone call, not ten.
    assert "embedded 10 identifiers with ingest-net@1" in worker.output()  # named as users name it
    # Again: nothing left to embed, and nothing is embedded twice.
    again = wait_job(ingest_org, ingest_org.client.query(GENERATE, l=library, m="ingest-net").ok()["generateEmbeddings"]["id"])
    assert again["tasks"]["records"][0]["output"]["embedded"] == 10
    assert len(vectors_of(ingest_org, library)) == 10


def test_generate_embeddings_takes_the_filter_and_every_library_of_a_type(ingest_org: Org, worker: Process) -> None:
    library, _ = api.small_library(ingest_org, "filtered", entities=1, per_entity=4, seed=3)
    future = int(time.time()) + 3600
    job = wait_job(ingest_org, ingest_org.client.query(
        GENERATE, l=library, m="ingest-net", f={"fromDateTime": future}).ok()["generateEmbeddings"]["id"])
    assert job["tasks"]["records"][0]["output"]["total"] == 0 and vectors_of(ingest_org, library) == []
    job = wait_job(ingest_org, ingest_org.client.query(
        GENERATE, l=library, m="ingest-net", f={"annotationTypes": ["human"]}).ok()["generateEmbeddings"]["id"])
    assert job["tasks"]["records"][0]["output"]["embedded"] == 4
    # identifierTypeId alone: every library of the organization holding images.
    job = wait_job(ingest_org, ingest_org.client.query(GENERATE, t="image", m="ingest-net").ok()["generateEmbeddings"]["id"])
    output = job["tasks"]["records"][0]["output"]
    images = ingest_org.stack.db.fetchval(
        "SELECT count(*) FROM entity_identifiers WHERE org_id = $1 AND identifier_type_id = 'image'", ingest_org.id)
    assert output["total"] == images and output["embedded"] == images


@pytest.mark.parametrize(
    ("variables", "code", "fragment"),
    [
        ({}, "invalid_input", "exactly one"),
        ({"t": "audio-recording", "m": "ingest-net"}, "invalid_input", "embedding models read images"),
        ({"t": "no-such-type", "m": "ingest-net"}, "not_found", "no-such-type"),
        ({"m": "no-such-net", "t": "image"}, "not_found", "no-such-net"),
        ({"t": "image", "m": "ingest-net", "f": {"annotationTypes": []}}, "invalid_input", "annotationTypes"),
    ],
)
def test_generate_embeddings_input_errors_create_no_job(ingest_org: Org, variables: dict[str, Any], code: str, fragment: str) -> None:
    before = ingest_org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", ingest_org.id)
    api.assert_error(ingest_org.client.query(GENERATE, **variables), code, fragment)
    assert ingest_org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", ingest_org.id) == before


def test_an_identifier_the_backbone_cannot_read_fails_alone_with_its_reason(ingest_org: Org, worker: Process) -> None:
    # A cut or corrupt file is refused at upload; a whole image past the decoder's pixel cap is stored (uploads
    # check that an image decodes, not how large it is) and fails at embedding with its own reason.
    library = api.create_library(ingest_org, "broken")
    entity = ingest_org.create_entity(library, "e")
    good = api.add_identifier(ingest_org.client, entity, api.png(32, 77))
    out = io.BytesIO()
    Image.new("L", (9000, 8000)).save(out, "PNG")  # 72 megapixels in a few kilobytes
    bad = api.add_identifier(ingest_org.client, entity, out.getvalue())
    job = wait_job(ingest_org, ingest_org.client.query(GENERATE, l=library, m="ingest-net").ok()["generateEmbeddings"]["id"])
    output = job["tasks"]["records"][0]["output"]
    assert (output["embedded"], output["failed"]) == (1, 1)
    assert [str(r["identifier_id"]) for r in vectors_of(ingest_org, library)] == [good]
    failure = ingest_org.stack.db.fetchval("SELECT failure FROM embedding_queue WHERE identifier_id = $1::uuid", bad)
    assert failure.startswith("too-large") and "72000000 pixels" in failure


def test_a_hand_made_task_cannot_embed_with_another_organizations_model(
    ingest_org: Org, worker: Process, stack: Stack, gateway: Gateway,
) -> None:
    owner = make_org(stack, gateway, "model-owner")
    private = registered.register_org_model(owner, "private-net", "embedding", conv_net(dimension=DIM, seed=8), normalised_manifest())
    library, _ = api.small_library(ingest_org, "hand-made", entities=1, per_entity=2, seed=4)
    payload = {"mode": "batch", "modelVersionId": str(private.id), "libraryIds": [library], "identifierTypeIds": ["image"]}
    job_id = ingest_org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }",
        t=[{"engineId": "engineshed-embeddings", "payload": payload}],
    ).ok()["createJob"]["id"]
    done = wait_for(lambda: (lambda j: j if j["status"] in ("complete", "failed") else None)(ingest_org.client.query(
        "query($id: ID!) { job(id: $id) { status tasks { records { failureMessage } } } }", id=job_id).ok()["job"]),
        timeout=60, what="the hand-made task to finish")
    # createJob never takes a client's modelVersionId (it is dropped), so the task has no model to embed with;
    # the worker also refuses a version that is not the organization's or a system one.
    assert done["status"] == "failed" and "not a generateEmbeddings payload" in done["tasks"]["records"][0]["failureMessage"]
    assert vectors_of(ingest_org, library) == [] and queued(ingest_org, library) == 0
    owner.close()


def test_the_hnsw_index_answers_like_the_exact_ranking_on_small_data(
    ingest_org: Org, worker: Process, stack: Stack, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A gateway told to use the index from the first vector (ENGINESHED_SEARCH_EXACT_BELOW=0): the worker builds
    the organization's HNSW index for the model, and its answers on 60 vectors equal the exact cosine ranking."""
    import numpy as np

    from tests.conftest import start_gateway
    from tests.graphql_client import GraphQLClient

    names = [f"hnsw-{i}.png" for i in range(60)]
    library = api.create_library(ingest_org, "hnsw")
    entity = ingest_org.create_entity(library, "e")
    for n, name in enumerate(names):
        ingest_org.client.upload_form(
            'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image"}) { id } }',
            api.png(16, 70_000 + n), "image/png", filename=name, variables={"e": entity}).ok()
    vectors = np.random.default_rng(4).normal(size=(60, DIM)).astype(np.float32)
    ingest_org.client.query(
        "mutation($e: [EmbeddingRecord!]!) { insertEmbeddings(modelId: \"ingest-net\", vectorDimension: [16], embeddings: $e) { inserted } }",
        e=[{"uniqueName": n, "embeddings": v.tolist()} for n, v in zip(names, vectors, strict=True)]).ok()
    wait_for(lambda: ingest_org.stack.db.fetchval(
        "SELECT built FROM embedding_indexes WHERE org_id = $1", ingest_org.id), timeout=60, what="the HNSW index")
    gw = start_gateway(dict(stack.env, ENGINESHED_SEARCH_EXACT_BELOW="0"), tmp_path_factory.mktemp("hnsw"), "hnsw-gateway")
    try:
        client = GraphQLClient(gw.url, ingest_org.token)
        query = np.random.default_rng(5).normal(size=DIM).astype(np.float32)
        got = client.query(
            'query($l: ID, $v: [Float!]) { similarIdentifiers(libraryId: $l, vector: $v, modelId: "ingest-net", limit: 10) '
            "{ score identifier { uniqueName } } }", l=library, v=query.tolist()).ok()["similarIdentifiers"]
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        exact = unit @ (query / np.linalg.norm(query))
        assert [g["identifier"]["uniqueName"] for g in got] == [names[i] for i in np.argsort(-exact)[:10]]
        np.testing.assert_allclose([g["score"] for g in got], np.sort(exact)[::-1][:10], atol=1e-5)
        client.close()
    finally:
        gw.process.stop()


def test_a_small_library_among_many_vectors_is_searched_whole_through_the_index(
    ingest_org: Org, worker: Process, stack: Stack, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """pgvector filters by library after the index scan: a library holding a few percent of the organization's
    vectors gets fewer than `limit` of them at the first ef_search. The search widens ef_search, and past its
    ceiling scans the library exactly: either way the answer is the library's exact ranking."""
    import numpy as np

    from tests.conftest import start_gateway
    from tests.graphql_client import GraphQLClient

    rng = np.random.default_rng(21)
    sizes = {"crowd": 300, "twelve": 12, "four": 4}
    libraries, vectors = {}, {}
    for name, size in sizes.items():
        library = api.create_library(ingest_org, f"share-{name}")
        entity = ingest_org.create_entity(library, "e")
        names = [f"share-{name}-{i}.png" for i in range(size)]
        for n, unique in enumerate(names):
            ingest_org.client.upload_form(
                'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image"}) { id } }',
                api.png(16, 80_000 + 1000 * len(libraries) + n), "image/png", filename=unique, variables={"e": entity}).ok()
        vectors[name] = rng.normal(size=(size, DIM)).astype(np.float32)
        for start in range(0, size, 90):  # fewer than 100 per call
            ingest_org.client.query(
                "mutation($e: [EmbeddingRecord!]!) { insertEmbeddings(modelId: \"ingest-net\", vectorDimension: [16], "
                "embeddings: $e) { inserted } }",
                e=[{"uniqueName": u, "embeddings": v.tolist()}
                   for u, v in zip(names[start:start + 90], vectors[name][start:start + 90], strict=True)]).ok()
        libraries[name] = (library, names)
    wait_for(lambda: ingest_org.stack.db.fetchval(
        "SELECT built FROM embedding_indexes WHERE org_id = $1", ingest_org.id), timeout=60, what="the HNSW index")
    gw = start_gateway(dict(stack.env, ENGINESHED_SEARCH_EXACT_BELOW="0"), tmp_path_factory.mktemp("share"), "share-gateway")
    try:
        client = GraphQLClient(gw.url, ingest_org.token)
        query = rng.normal(size=DIM).astype(np.float32)
        for name, limit in (("twelve", 5), ("four", 10)):
            library, names = libraries[name]
            got = client.query(
                'query($l: ID, $v: [Float!], $k: Int) { similarIdentifiers(libraryId: $l, vector: $v, modelId: "ingest-net", '
                "limit: $k) { score identifier { uniqueName } } }", l=library, v=query.tolist(), k=limit).ok()["similarIdentifiers"]
            unit = vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True)
            exact = unit @ (query / np.linalg.norm(query))
            want = [names[i] for i in np.argsort(-exact)[:limit]]
            assert [g["identifier"]["uniqueName"] for g in got] == want, name
        client.close()
    finally:
        gw.process.stop()


def test_a_filter_split_holds_when_training_reads_stored_vectors(ingest_org: Org, worker: Process) -> None:
    """Training with a registered model reads the library through the stored-vector cursor; the identifiers'
    jsondata[splitKey] marks reach the split there as they do on the plain path."""
    library = api.create_library(ingest_org, "split-vectors")
    entities = [ingest_org.create_entity(library, f"s{e}") for e in range(2)]
    for e, entity in enumerate(entities):
        for n in range(5):
            ingest_org.client.upload_form(
                'mutation($e: ID!, $j: JSONData) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image", '
                "jsondata: $j}) { id } }", api.png(32, 90_000 + 10 * e + n), "image/png", filename="s.png",
                variables={"e": entity, "j": {"split": "test" if n == 0 else "train"}}).ok()
    for _ in range(2):  # the first training computes and stores the vectors, the second reads them all
        model, task = api.trained(ingest_org, api.GALLERY, library, {"modelId": "ingest-net", "splitKey": "split"},
                                  worker=worker)
        assert model["trainStatus"] == "complete", (model, task)
        evaluation = model["jsondata"]["evaluation"]
        assert evaluation["splits"]["training"] == 8 and evaluation["splits"]["test"] == 2, evaluation
        assert evaluation["method"].startswith("held-out test split") and evaluation["evaluated"] == 2
    assert task["output"]["fetches"] == 0 and task["output"]["storedEmbeddings"] == 10
