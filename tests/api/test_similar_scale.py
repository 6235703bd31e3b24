"""similarIdentifiers over a few thousand vectors: the HNSW path (a library above ENGINESHED_SEARCH_EXACT_BELOW)
answers like the exact path, filtered to the library, within the organization.

The vectors are written straight into PostgreSQL (thousands of uploads through the API would be the slow part of
the test, not the search under test); the searches go through a real gateway over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sampledata.onnx_models import conv_net, normalised_manifest
from storage.queries import vectors as vector_q
from tests.conftest import Gateway, Org, Stack, start_gateway
from tests.engines import registered
from tests.engines.api_helpers import assert_error
from tests.graphql_client import GraphQLClient

DIM = 256
CROWD = 2700  # the organization's other vectors
LIBRARY = 300  # the searched library: 10 % of the organization's vectors, above the lowered exact bound
CLUSTER = 20
EXACT_BELOW = "100"
SIMILAR = """query($l: ID, $i: ID, $v: [Float!], $k: Int, $t: Float) {
  similarIdentifiers(libraryId: $l, identifierId: $i, vector: $v, modelId: "scale-net", limit: $k, threshold: $t) {
    score identifier { id } } }"""


@dataclass
class Seeded:
    org: Org
    library: str
    ids: list[str]  # the library's identifiers, rows of ``vectors``
    vectors: np.ndarray
    all_ids: list[str]  # the organization's, rows of ``all_vectors``
    all_vectors: np.ndarray
    indexed: GraphQLClient  # a gateway that takes the index above EXACT_BELOW candidates


def _seed_library(org: Org, version_id: uuid.UUID, name: str, vectors: np.ndarray) -> tuple[str, list[str]]:
    """A library of one entity per vector, its identifiers and their vectors, in one transaction."""
    library = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(len(vectors))]
    texts = ["[" + ",".join(map(repr, row)) + "]" for row in vectors.astype(np.float32).tolist()]

    async def go() -> None:
        async with org.stack.db.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO libraries (id, org_id, name, library_type_id) VALUES ($1, $2, $3, 'people')",
                               library, org.id, name)
            await conn.execute(
                "INSERT INTO entities (id, org_id, library_id, name) SELECT i, $2, $3, $4 || '-' || n "
                "FROM unnest($1::uuid[]) WITH ORDINALITY AS u(i, n)", ids, org.id, library, name)
            await conn.execute(
                "INSERT INTO entity_identifiers (id, org_id, library_id, entity_id, identifier_type_id, storage_key, "
                "content_type, unique_name) SELECT i, $2, $3, i, 'face', 'test/none/' || i, 'image/png', $4 || '-' || n "
                "FROM unnest($1::uuid[]) WITH ORDINALITY AS u(i, n)", ids, org.id, library, name)
            await conn.execute(
                "INSERT INTO identifier_embeddings (identifier_id, model_version_id, org_id, library_id, dimension, "
                "embedding, source) SELECT i, $3, $4, $5, $6, v::vector, 'inserted' "
                "FROM unnest($1::uuid[], $2::text[]) AS u(i, v)", ids, texts, version_id, org.id, library, DIM)

    org.stack.db.run(go())
    return str(library), [str(i) for i in ids]


def _clustered(rng: np.random.Generator, count: int) -> np.ndarray:
    """Vectors in groups of CLUSTER around their own centre, as embeddings of the same person or object are.
    (Unstructured random vectors would make the tenth neighbour a tie with the thousandth: no index finds it.)"""
    centres = rng.normal(size=(count // CLUSTER, DIM))
    return (np.repeat(centres, CLUSTER, axis=0) + 0.4 * rng.normal(size=(count, DIM))).astype(np.float32)


def _build_index(org: Org, version_id: uuid.UUID) -> None:
    """The (version, organization) HNSW index, built by the worker's code, as the worker would."""

    async def go() -> None:
        async with org.stack.db.pool.acquire() as conn:
            await vector_q.want_index(conn, org.id, version_id, DIM)
            while not await vector_q.index_built(conn, org.id, version_id):
                await vector_q.build_next_index(conn)  # another wanted index may come first
            await conn.execute("ANALYZE identifier_embeddings")

    org.stack.db.run(go(), timeout=300)


@pytest.fixture(scope="module")
def seeded(stack: Stack, gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    from tests.conftest import make_org

    org = make_org(stack, gateway, "scale")
    version = registered.register_org_model(org, "scale-net", "embedding", conv_net(dimension=DIM, seed=5),
                                            normalised_manifest())
    rng = np.random.default_rng(11)
    crowd, mine = _clustered(rng, CROWD), _clustered(rng, LIBRARY)
    _, crowd_ids = _seed_library(org, version.id, "crowd", crowd)
    library, ids = _seed_library(org, version.id, "searched", mine)
    _build_index(org, version.id)
    gw = start_gateway(dict(stack.env, ENGINESHED_SEARCH_EXACT_BELOW=EXACT_BELOW), Path(tmp_path_factory.mktemp("idx")),
                       "index-gateway")
    indexed = GraphQLClient(gw.url, org.token)
    try:
        yield Seeded(org, library, ids, mine, crowd_ids + ids, np.concatenate([crowd, mine]), indexed)
    finally:
        indexed.close()
        gw.process.stop()
        org.close()


def _exact(ids: list[str], vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    order = np.argsort(-scores)[:k]
    return [ids[i] for i in order], scores[order]


def _queries(s: Seeded, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(s.vectors), count, replace=False)
    return (s.vectors[picks] + 0.05 * rng.normal(size=(count, DIM))).astype(np.float32)


def test_a_library_above_the_exact_bound_gets_the_exact_top_10_through_the_index(seeded: Seeded) -> None:
    recalls = []
    for query in _queries(seeded, 20, seed=1):
        want, _ = _exact(seeded.ids, seeded.vectors, query, 10)
        got = seeded.indexed.query(SIMILAR, l=seeded.library, v=query.tolist(), k=10).ok()["similarIdentifiers"]
        exact_path = seeded.org.client.query(SIMILAR, l=seeded.library, v=query.tolist(), k=10).ok()["similarIdentifiers"]
        assert [g["identifier"]["id"] for g in exact_path] == want  # 300 candidates: the default gateway scans
        got_ids = [g["identifier"]["id"] for g in got]
        assert len(got_ids) == 10 and set(got_ids) <= set(seeded.ids)  # the library's, nobody else's
        assert got_ids[0] == want[0]  # the vector the query was made from
        # Whatever the index returns carries its exact cosine, best first.
        by_id = dict(zip(seeded.ids, seeded.vectors, strict=True))
        exact_scores = [float(by_id[i] @ query / np.linalg.norm(by_id[i]) / np.linalg.norm(query)) for i in got_ids]
        np.testing.assert_allclose([g["score"] for g in got], exact_scores, atol=1e-5)
        assert exact_scores == sorted(exact_scores, reverse=True)
        recalls.append(len(set(got_ids) & set(want)) / 10)
    assert np.mean(recalls) >= 0.95, recalls


def test_the_index_path_keeps_the_threshold_and_the_identifier_query(seeded: Seeded) -> None:
    query = _queries(seeded, 1, seed=2)[0]
    want, scores = _exact(seeded.ids, seeded.vectors, query, 10)
    cut = float(scores[3])
    above = seeded.indexed.query(SIMILAR, l=seeded.library, v=query.tolist(), k=10, t=cut - 1e-6).ok()["similarIdentifiers"]
    assert [g["identifier"]["id"] for g in above] == want[:4]
    assert all(g["score"] >= cut - 1e-5 for g in above)
    me = seeded.ids[7]
    by_id = seeded.indexed.query(SIMILAR, l=seeded.library, i=me, k=5).ok()["similarIdentifiers"]
    got = [g["identifier"]["id"] for g in by_id]
    assert me not in got and len(got) == 5
    near, _ = _exact(seeded.ids, seeded.vectors, seeded.vectors[7], 6)
    assert got[0] == near[1]


def test_the_organization_wide_search_through_the_index_finds_the_exact_neighbours(seeded: Seeded) -> None:
    recalls = []
    for query in _queries(seeded, 10, seed=3):
        want, _ = _exact(seeded.all_ids, seeded.all_vectors, query, 10)
        got = seeded.indexed.query(SIMILAR, v=query.tolist(), k=10).ok()["similarIdentifiers"]
        recalls.append(len({g["identifier"]["id"] for g in got} & set(want)) / 10)
    assert np.mean(recalls) >= 0.95, recalls


def test_another_organization_sees_none_of_it(seeded: Seeded, other_org: Org) -> None:
    registered.register_org_model(other_org, "scale-net", "embedding", conv_net(dimension=DIM, seed=5),
                                  normalised_manifest())
    query = seeded.vectors[0]
    for client in (other_org.client, GraphQLClient(seeded.indexed.base_url, other_org.token)):  # both paths
        assert_error(client.query(SIMILAR, l=seeded.library, v=query.tolist(), k=10), "not_found")
        assert_error(client.query(SIMILAR, i=seeded.ids[0], k=10), "not_found")
        assert client.query(SIMILAR, v=query.tolist(), k=10).ok()["similarIdentifiers"] == []
    client.close()
