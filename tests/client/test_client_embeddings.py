"""#13 through the client, with LayerNext's names (seed 002, 7.4 - 7.8).

NEEDS the `embeddings` branch (generateEmbeddings, insertEmbeddings, embeddingVectors, uniqueName): it passes once the
lead has merged it; before that the first embeddings call answers invalid_input (unknown field).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engineshed.client import Client, InvalidInputError, NotFoundError
from tests.client.future import EMBEDDER, EMBEDDING_DIMENSION, image_library, png, register_embedder
from tests.client.loopback import Flaky, flaky_server


@pytest.fixture
def client(org):
    with Client(org.gateway.url, org.token) as c:
        yield c


def test_generate_embeddings_for_collection_then_read_the_vectors_back(client, start_worker, tmp_path):
    start_worker()
    register_embedder(client, tmp_path)
    library, made = image_library(client, "shelf", 3)
    job = client.generate_embeddings_for_collection(library["id"], EMBEDDER, None, None, "aws")
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    vectors = client.get_embedding_vector(["000.png", "001.png", "002.png"], EMBEDDER)
    assert {v["uniqueName"] for v in vectors} == {"000.png", "001.png", "002.png"}
    assert {v["identifierId"] for v in vectors} == {i["id"] for i in made}
    for vector in vectors:
        assert vector["dimension"] == EMBEDDING_DIMENSION == len(vector["embeddings"])
        assert vector["model"].startswith(f"{EMBEDDER}@") and vector["libraryId"] == library["id"]
    # Different pictures, different embeddings.
    assert len({tuple(v["embeddings"]) for v in vectors}) == 3


def test_a_filter_that_matches_nothing_embeds_nothing(client, start_worker, tmp_path):
    start_worker()
    register_embedder(client, tmp_path)
    library, _ = image_library(client, "future", 2, seed=1)
    job = client.generate_embeddings_for_collection(library["id"], EMBEDDER, filter={"from_date": "2999-01-01"})
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    assert client.get_embedding_vector(["000.png", "001.png"], EMBEDDER, library_id=library["id"]) == []


def test_generate_embeddings_to_metalake_covers_every_image_library(client, start_worker, tmp_path):
    start_worker()
    register_embedder(client, tmp_path)
    first, _ = image_library(client, "first", 1, seed=2)
    second, _ = image_library(client, "second", 1, seed=3)
    job = client.generate_embeddings_to_metalake("image", EMBEDDER)
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    for library in (first, second):
        (vector,) = client.get_embedding_vector(["000.png"], EMBEDDER, library_id=library["id"])
        assert vector["libraryId"] == library["id"]


def test_insert_image_embeddings_sends_batches_under_100_and_they_read_back(client, org, start_worker, tmp_path):
    start_worker()
    register_embedder(client, tmp_path)
    library, _ = image_library(client, "inserted", 120, seed=4)
    rng = np.random.default_rng(0)
    records = [{"uniqueName": f"{n:03d}.png", "embeddings": rng.standard_normal(EMBEDDING_DIMENSION).tolist()} for n in range(120)]
    recorder = Flaky(org.gateway.url)
    with flaky_server(recorder) as url, Client(url, org.token) as through:
        assert through.insert_image_embeddings(records, EMBEDDER, [EMBEDDING_DIMENSION], library_id=library["id"]) == 120
    sizes = [len(json.loads(body)["variables"]["e"]) for body in recorder.requests]
    assert sizes == [99, 21]
    back = {v["uniqueName"]: v["embeddings"] for v in client.get_embedding_vector(["000.png", "119.png"], EMBEDDER, library_id=library["id"])}
    assert np.allclose(back["000.png"], records[0]["embeddings"], atol=1e-5)
    assert np.allclose(back["119.png"], records[119]["embeddings"], atol=1e-5)
    # One batch, the seed's way (session_id accepted and unused); a vector of the wrong size is refused by the server.
    assert client.insert_image_embeddings_batch(records[:2], EMBEDDER, [EMBEDDING_DIMENSION], "", library_id=library["id"]) == 2
    with pytest.raises(InvalidInputError):
        client.insert_image_embeddings_batch([{"uniqueName": "000.png", "embeddings": [0.5] * 3}], EMBEDDER, [EMBEDDING_DIMENSION],
                                             library_id=library["id"])


@pytest.mark.parametrize("records, dims, complaint", [
    ([{"uniqueName": "a.png", "embeddings": [float("nan")] * 4}], [4], "finite numbers"),
    ([{"uniqueName": "a.png", "embeddings": [1.0, float("inf"), 0, 0]}], [4], "finite numbers"),
    ([{"embeddings": [0.1] * 4}], [4], "needs a uniqueName"),
    ([{"uniqueName": "a.png", "embeddings": "abc"}], [4], "list of numbers"),
    ([{"uniqueName": "a.png", "embeddings": [0.1, "x", 0, 0]}], [4], "finite numbers"),
    ([{"uniqueName": "a.png", "embeddings": [0.1] * 4}, {"uniqueName": "a.png", "embeddings": [0.2] * 4}], [4], "more than once"),
    ("a.png", [4], "must be a list"),
    ([{"uniqueName": "a.png", "embeddings": [0.1] * 4}], "four", "vector_dimension"),
])
def test_malformed_embedding_records_are_refused_before_anything_is_sent(client, org, records, dims, complaint):
    recorder = Flaky(org.gateway.url)
    with flaky_server(recorder) as url, Client(url, org.token) as through:
        for call in (through.insert_image_embeddings, through.insert_image_embeddings_batch):
            with pytest.raises(InvalidInputError, match=complaint):
                call(records, EMBEDDER, dims)
    assert recorder.requests == []


def test_a_later_batch_refused_says_how_many_went_in(client, start_worker, tmp_path):
    start_worker()
    register_embedder(client, tmp_path)
    library, _ = image_library(client, "partly", 100, seed=5)
    rng = np.random.default_rng(1)
    records = [{"uniqueName": f"{n:03d}.png", "embeddings": rng.standard_normal(EMBEDDING_DIMENSION).astype(np.float32)}
               for n in range(100)]
    records.append({"uniqueName": "nobody.png", "embeddings": rng.standard_normal(EMBEDDING_DIMENSION).tolist()})
    with pytest.raises(NotFoundError) as refused:
        client.insert_image_embeddings(records, EMBEDDER, EMBEDDING_DIMENSION, library_id=library["id"])
    assert refused.value.data["inserted"] == 99 and refused.value.data["uniqueNames"] == ["nobody.png"]
    assert "the 99 records before them were stored" in str(refused.value)
    stored = client.get_embedding_vector([r["uniqueName"] for r in records], EMBEDDER, library_id=library["id"])
    assert sorted(v["uniqueName"] for v in stored) == [f"{n:03d}.png" for n in range(99)]
    # Fixed and sent again whole: every record is in, the stored ones replaced by the same vectors.
    assert client.insert_image_embeddings(records[:100], EMBEDDER, EMBEDDING_DIMENSION, library_id=library["id"]) == 100
    with pytest.raises(InvalidInputError, match="list of strings"):
        client.get_embedding_vector("000.png", EMBEDDER)
    # Past embeddingVectors' 1,000 names per call, the client asks in parts.
    many = [f"missing-{n}.png" for n in range(1400)] + [r["uniqueName"] for r in records[:100]]
    assert len(client.get_embedding_vector(many, EMBEDDER, library_id=library["id"])) == 100
    assert len(client.get_embedding_vector((name for name in many), EMBEDDER, library_id=library["id"])) == 100  # a generator
    assert client.insert_image_embeddings(records[:3], EMBEDDER, np.int64(EMBEDDING_DIMENSION), library_id=library["id"]) == 3


def test_the_seeds_query_narrows_what_is_embedded_and_model_default_means_the_default(client, start_worker, tmp_path):
    """Seed 7.4's example passes "annotation.label=Bird"; its model_id defaults to the literal 'default'."""
    start_worker()
    register_embedder(client, tmp_path)
    library = client.create_library("birds-and-fish", "objects")
    names = {}
    for k, label in enumerate(("Bird", "Fish")):
        entity = client.create_entity(library["id"], label)
        names[label] = [f"{label}-{n}.png" for n in range(2)]
        for n, name in enumerate(names[label]):
            client.create_entity_identifier(entity["id"], png(70_000 + 10 * k + n), filename=name, identifier_type_id="image")
    job = client.generate_embeddings_for_collection(library["id"], EMBEDDER, "annotation.label=Bird", None, "aws")
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    embedded = client.get_embedding_vector(names["Bird"] + names["Fish"], EMBEDDER, library_id=library["id"])
    assert sorted(v["uniqueName"] for v in embedded) == names["Bird"]
    # model_id="default" (the seed's default value) and model_name= (its signature's name) are understood.
    job = client.generate_embeddings_for_collection(library["id"], model_name=EMBEDDER, query='entity.name="Fish"')
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    assert len(client.get_embedding_vector(names["Fish"], EMBEDDER, library_id=library["id"])) == 2
    with pytest.raises(InvalidInputError, match="no modelId was given and no default embedding model"):
        client.generate_embeddings_for_collection(library["id"], "default")  # this stack has pulled no default
    with pytest.raises(InvalidInputError, match="only AND"):
        client.generate_embeddings_for_collection(library["id"], EMBEDDER, "annotation.label=Bird OR annotation.label=Fish")
    with pytest.raises(InvalidInputError, match="name different models"):
        client.generate_embeddings_for_collection(library["id"], EMBEDDER, model_name="other")
