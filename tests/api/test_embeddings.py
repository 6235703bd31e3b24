"""Embeddings as data through the API: uniqueName, insertEmbeddings' rules, embeddingVectors, similarIdentifiers,
duplicates and tenancy. Vectors here are inserted by the client; ingest and training are in
tests/worker/test_embedding_ingest.py."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Org
from tests.engines import registered
from tests.engines.api_helpers import assert_error, create_library

DIM = 16

INSERT = """mutation($m: String!, $d: [Int!]!, $e: [EmbeddingRecord!]!, $l: ID) {
  insertEmbeddings(modelId: $m, vectorDimension: $d, embeddings: $e, libraryId: $l) { inserted } }"""
VECTORS = """query($n: [String!]!, $m: String, $l: ID) {
  embeddingVectors(uniqueNames: $n, modelId: $m, libraryId: $l) { uniqueName identifierId libraryId model dimension embeddings } }"""
SIMILAR = """query($l: ID, $i: ID, $v: [Float!], $m: String, $k: Int, $t: Float) {
  similarIdentifiers(libraryId: $l, identifierId: $i, vector: $v, modelId: $m, limit: $k, threshold: $t) {
    score identifier { id uniqueName } } }"""


def png(seed: int, side: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG")
    return out.getvalue()


def upload(org: Org, entity_id: str, data: bytes, filename: str, unique_name: str | None = None) -> Any:
    return org.client.upload_form(
        'mutation($e: ID!, $u: String) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image", '
        "uniqueName: $u}) { id uniqueName } }",
        data, "image/png", filename=filename, variables={"e": entity_id, "u": unique_name},
    )


def model_for(org: Org, name: str = "vec-net") -> str:
    registered.register_org_model(org, name, "embedding", conv_net(dimension=DIM, seed=3), normalised_manifest())
    return name


def library_with(org: Org, names: list[str], entities: int = 1) -> tuple[str, list[str], dict[str, str]]:
    library = create_library(org, "vectors")
    entity_ids = [org.create_entity(library, f"e{i}") for i in range(entities)]
    ids = {}
    for n, name in enumerate(names):
        ids[name] = upload(org, entity_ids[n % entities], png(n), name).ok()["createEntityIdentifier"]["id"]
    return library, entity_ids, ids


def records(names: list[str], vectors: np.ndarray) -> list[dict[str, Any]]:
    return [{"uniqueName": n, "embeddings": v.tolist()} for n, v in zip(names, vectors, strict=True)]


# -- uniqueName ------------------------------------------------------------------------------------


def test_unique_name_defaults_to_the_file_name_and_an_explicit_clash_is_invalid_input(org: Org) -> None:
    library = create_library(org, "names")
    entity = org.create_entity(library, "someone")
    first = upload(org, entity, png(1), "IMG_0001.jpg").ok()["createEntityIdentifier"]
    assert first["uniqueName"] == "IMG_0001.jpg"
    # A second photo with the same file name is not an error: its default is made unique with its id.
    second = upload(org, entity, png(2), "IMG_0001.jpg").ok()["createEntityIdentifier"]
    assert second["uniqueName"] == f"{second['id']}-IMG_0001.jpg"
    named = upload(org, entity, png(3), "x.png", unique_name="portrait").ok()["createEntityIdentifier"]
    assert named["uniqueName"] == "portrait"
    before = org.stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE library_id = $1::uuid", library)
    assert_error(upload(org, entity, png(4), "y.png", unique_name="IMG_0001.jpg"), "invalid_input", "IMG_0001.jpg", "already used")
    assert_error(upload(org, entity, png(5), "y.png", unique_name="bad\nname"), "invalid_input", "control characters")
    after = org.stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE library_id = $1::uuid", library)
    assert after == before
    # Unique within a library only: another library takes the same name.
    other = create_library(org, "names-2")
    elsewhere = upload(org, org.create_entity(other, "x"), png(6), "x.png", unique_name="portrait").ok()
    assert elsewhere["createEntityIdentifier"]["uniqueName"] == "portrait"


# -- insertEmbeddings ------------------------------------------------------------------------------


@pytest.fixture
def vec_org(org: Org) -> Org:
    model_for(org)
    return org


def test_insert_then_read_back_by_unique_name(vec_org: Org) -> None:
    names = ["a.png", "b.png", "c.png"]
    library, _, ids = library_with(vec_org, names)
    vectors = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    reply = vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names, vectors))
    assert reply.ok()["insertEmbeddings"] == {"inserted": 3}
    got = vec_org.client.query(VECTORS, n=["c.png", "a.png", "missing.png"], m="vec-net@1").ok()["embeddingVectors"]
    assert [g["uniqueName"] for g in got] == ["c.png", "a.png"]
    assert got[0]["identifierId"] == ids["c.png"] and got[0]["libraryId"] == library
    assert got[0]["model"] == "vec-net@1" and got[0]["dimension"] == DIM
    np.testing.assert_array_equal(np.float32(got[0]["embeddings"]), vectors[2])
    shown = vec_org.client.query(
        "query($i: ID!) { entityIdentifier(id: $i) { embeddings { model modelVersionId dimension createdDateTime source } } }",
        i=ids["a.png"],
    ).ok()["entityIdentifier"]["embeddings"]
    assert len(shown) == 1 and shown[0]["model"] == "vec-net@1" and shown[0]["dimension"] == DIM
    assert shown[0]["source"] == "inserted" and shown[0]["createdDateTime"]
    # Inserting again replaces the vector (one row per identifier and model version).
    again = vectors[::-1].copy()
    vec_org.client.query(INSERT, m="vec-net", d=DIM, e=records(names, again)).ok()
    got = vec_org.client.query(VECTORS, n=["a.png"], m="vec-net").ok()["embeddingVectors"]
    np.testing.assert_array_equal(np.float32(got[0]["embeddings"]), again[0])
    count = vec_org.stack.db.fetchval("SELECT count(*) FROM identifier_embeddings WHERE library_id = $1::uuid", library)
    assert count == 3


def test_a_batch_of_100_is_refused_naming_the_limit_and_99_is_taken(vec_org: Org) -> None:
    vectors = np.ones((100, DIM), np.float32)
    names = [f"n{i}" for i in range(100)]
    message = assert_error(vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names, vectors)), "invalid_input", "100")
    assert "fewer than 100" in message
    # 99 pass the size rule; none of these names exist, and every one of them is listed in one not_found.
    reply = vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names[:99], vectors[:99]))
    assert_error(reply, "not_found", "n0", "n98")
    assert reply.errors[0]["extensions"].get("data", reply.errors[0].get("data", {})) is not None


@pytest.mark.parametrize(
    ("dimension", "values", "fragments"),
    [
        ([8], np.ones(DIM), ["vectorDimension [8]", f"({DIM})"]),
        ([DIM, 2], np.ones(DIM), ["one positive number"]),
        ([0], np.ones(DIM), ["one positive number"]),
        ([DIM], np.ones(DIM - 1), [f"{DIM - 1} values", f"dimension is {DIM}"]),
        ([DIM], np.ones(DIM + 1), [f"{DIM + 1} values"]),
        ([DIM], np.zeros(DIM), ["all zeros"]),
        ([DIM], np.full(DIM, 1e300), ["float32 range"]),
    ],
)
def test_dimension_and_value_errors_store_nothing(vec_org: Org, dimension: list[int], values: np.ndarray, fragments: list[str]) -> None:
    library, _, _ = library_with(vec_org, ["good.png", "bad.png"])
    batch = [{"uniqueName": "good.png", "embeddings": [0.5] * DIM}, {"uniqueName": "bad.png", "embeddings": values.tolist()}]
    if dimension != [DIM]:
        batch[1]["embeddings"] = [0.5] * DIM
    assert_error(vec_org.client.query(INSERT, m="vec-net", d=dimension, e=batch), "invalid_input", *fragments)
    assert vec_org.stack.db.fetchval("SELECT count(*) FROM identifier_embeddings WHERE library_id = $1::uuid", library) == 0


def test_unknown_names_are_all_listed_and_nothing_is_stored(vec_org: Org) -> None:
    library, _, _ = library_with(vec_org, ["known.png"])
    batch = [{"uniqueName": n, "embeddings": [1.0] * DIM} for n in ("ghost-1", "known.png", "ghost-2")]
    reply = vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=batch)
    assert_error(reply, "not_found", "ghost-1", "ghost-2")
    assert "known.png" not in (reply.error_message or "")
    assert vec_org.stack.db.fetchval("SELECT count(*) FROM identifier_embeddings WHERE library_id = $1::uuid", library) == 0


def test_model_errors(vec_org: Org) -> None:
    library_with(vec_org, ["m.png"])
    batch = [{"uniqueName": "m.png", "embeddings": [1.0] * DIM}]
    assert_error(vec_org.client.query(INSERT, m="no-such-net", d=[DIM], e=batch), "not_found", "no-such-net")
    registered.register_org_model(
        vec_org, "tagger", "auto_tagging", conv_net(dimension=8, classes=3), {**normalised_manifest(), "labels": ["a", "b", "c"]})
    assert_error(vec_org.client.query(INSERT, m="tagger", d=[3], e=batch), "invalid_input", "not embedding")
    assert_error(vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=[]), "invalid_input", "empty")
    twice = batch + batch
    assert_error(vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=twice), "invalid_input", "more than once")


def test_a_name_in_two_libraries_needs_a_library_id(vec_org: Org) -> None:
    first, _, _ = library_with(vec_org, ["same.png"])
    second, _, ids = library_with(vec_org, ["same.png"])
    batch = [{"uniqueName": "same.png", "embeddings": [1.0] * DIM}]
    assert_error(vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=batch), "invalid_input", "libraryId")
    assert vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=batch, l=second).ok()["insertEmbeddings"]["inserted"] == 1
    got = vec_org.client.query(VECTORS, n=["same.png"], m="vec-net").ok()["embeddingVectors"]
    assert [g["identifierId"] for g in got] == [ids["same.png"]]


# -- search ----------------------------------------------------------------------------------------


def test_search_equals_the_exact_cosine_ranking(vec_org: Org) -> None:
    names = [f"s{i}.png" for i in range(40)]
    library, _, ids = library_with(vec_org, names, entities=4)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, DIM)).astype(np.float32)
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names, vectors)).ok()
    query = rng.normal(size=DIM).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = unit @ (query / np.linalg.norm(query))
    order = np.argsort(-exact)
    got = vec_org.client.query(SIMILAR, l=library, v=query.tolist(), m="vec-net", k=10).ok()["similarIdentifiers"]
    assert [g["identifier"]["uniqueName"] for g in got] == [names[i] for i in order[:10]]
    np.testing.assert_allclose([g["score"] for g in got], exact[order[:10]], atol=1e-5)
    # By identifier: itself left out, the rest in exact order; a threshold cuts the tail.
    me = int(order[0])
    by_id = vec_org.client.query(SIMILAR, i=ids[names[me]], m="vec-net", k=5).ok()["similarIdentifiers"]
    mine = unit @ unit[me]
    mine[me] = -np.inf
    assert [g["identifier"]["id"] for g in by_id] == [ids[names[i]] for i in np.argsort(-mine)[:5]]
    cut = float(exact[order[3]])
    above = vec_org.client.query(SIMILAR, l=library, v=query.tolist(), m="vec-net", k=40, t=cut - 1e-6).ok()["similarIdentifiers"]
    assert len(above) == 4


def test_search_input_errors(vec_org: Org) -> None:
    library, _, ids = library_with(vec_org, ["q.png"])
    v = [1.0] * DIM
    assert_error(vec_org.client.query(SIMILAR, l=library, m="vec-net"), "invalid_input", "exactly one")
    assert_error(vec_org.client.query(SIMILAR, i=ids["q.png"], v=v, m="vec-net"), "invalid_input", "exactly one")
    assert_error(vec_org.client.query(SIMILAR, v=v, m="vec-net", k=0), "invalid_input", "limit")
    assert_error(vec_org.client.query(SIMILAR, v=v, m="vec-net", k=101), "invalid_input", "limit")
    assert_error(vec_org.client.query(SIMILAR, v=v, m="vec-net", t=2.0), "invalid_input", "threshold")
    assert_error(vec_org.client.query(SIMILAR, v=[1.0] * 3, m="vec-net"), "invalid_input", "3 values")
    assert_error(vec_org.client.query(SIMILAR, i=ids["q.png"], m="vec-net"), "invalid_input", "no embedding")


def test_search_by_file_embeds_it_with_the_model(vec_org: Org) -> None:
    library, _, ids = library_with(vec_org, ["f0.png", "f1.png"])
    # Vectors for the two identifiers as the model itself would give, through generate-free insert: query by
    # the first image's own bytes must find it first with a cosine of 1.
    import asyncio

    from engines.embedding import embedder
    from engines.interface import EmbeddingModel

    data = conv_net(dimension=DIM, seed=3)
    version = vec_org.stack.db.fetch(
        "SELECT v.id, v.sha256, v.manifest FROM model_versions v JOIN models m ON m.id = v.model_id"
        " WHERE m.org_id = $1 AND m.name = 'vec-net'", vec_org.id)[0]

    async def embed_both() -> np.ndarray:
        emb = await embedder(EmbeddingModel("vec-net@1", str(version["id"]), data, dict(version["manifest"]), version["sha256"]), "cpu")
        decoded = await emb.decode([png(0), png(1)], None)
        return await emb.embed([d for d, _ in decoded])

    vectors = asyncio.run(embed_both())
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(["f0.png", "f1.png"], vectors)).ok()
    reply = vec_org.client.upload_form(
        'query($l: ID) { similarIdentifiers(libraryId: $l, modelId: "vec-net", limit: 2) { score identifier { id } } }',
        png(0), "image/png", filename="q.png", variables={"l": library},
    ).ok()["similarIdentifiers"]
    assert reply[0]["identifier"]["id"] == ids["f0.png"] and reply[0]["score"] == pytest.approx(1.0, abs=1e-4)
    bad = vec_org.client.upload_form(
        'query { similarIdentifiers(modelId: "vec-net") { score } }', b"not an image", "image/png", filename="q.png")
    assert_error(bad, "invalid_input", "cannot be read as an image")


# -- duplicates ------------------------------------------------------------------------------------


def test_duplicates_are_identical_bytes_or_near_identical_vectors_under_different_entities(vec_org: Org) -> None:
    library = create_library(vec_org, "dups")
    alice, bob = vec_org.create_entity(library, "alice"), vec_org.create_entity(library, "bob")
    a1 = upload(vec_org, alice, png(1), "a1.png").ok()["createEntityIdentifier"]["id"]
    b1 = upload(vec_org, bob, png(1), "b1.png").ok()["createEntityIdentifier"]["id"]  # the same bytes
    a2 = upload(vec_org, alice, png(2), "a2.png").ok()["createEntityIdentifier"]["id"]
    b2 = upload(vec_org, bob, png(3), "b2.png").ok()["createEntityIdentifier"]["id"]
    a3 = upload(vec_org, alice, png(4), "a3.png").ok()["createEntityIdentifier"]["id"]
    rng = np.random.default_rng(3)
    base = rng.normal(size=DIM)
    other = rng.normal(size=DIM)
    vectors = np.stack([rng.normal(size=DIM), rng.normal(size=DIM), base, base + 0.01 * rng.normal(size=DIM), base + 0.001]).astype(np.float32)
    vectors[4] = other  # a3: unrelated
    vectors[2], vectors[3] = base, base + 0.01 * rng.normal(size=DIM)  # a2 ≈ b2: near-identical, different entities
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(["a1.png", "b1.png", "a2.png", "b2.png", "a3.png"], vectors)).ok()
    found = vec_org.client.query(
        "query($l: ID!) { library(id: $l) { duplicateIdentifiers { score reason first { id } second { id } } } }", l=library,
    ).ok()["library"]["duplicateIdentifiers"]
    pairs = {frozenset((d["first"]["id"], d["second"]["id"])): d["reason"] for d in found}
    assert pairs == {frozenset((a1, b1)): "same-content", frozenset((a2, b2)): "near-identical"}, found
    assert a3 not in {i for p in pairs for i in p}


ISSUES = "query($l: ID!) { library(id: $l) { issues { hasError hasWarning reasons { kind severity identifierId detail } } } }"


def test_near_identical_images_under_two_entities_are_a_library_issue(vec_org: Org) -> None:
    library = create_library(vec_org, "near-dups")
    alice, bob = vec_org.create_entity(library, "alice"), vec_org.create_entity(library, "bob")
    original = png(40)
    touched = Image.open(io.BytesIO(original)).copy()
    touched.putpixel((0, 0), (0, 0, 0))  # one pixel apart: not byte-identical
    out = io.BytesIO()
    touched.save(out, "PNG")
    assert out.getvalue() != original
    names = ["n-a1.png", "n-a2.png", "n-b1.png", "n-b2.png"]
    datas = [original, png(41), out.getvalue(), png(42)]
    ids = [upload(vec_org, entity, data, name).ok()["createEntityIdentifier"]["id"]
           for entity, data, name in zip([alice, alice, bob, bob], datas, names, strict=True)]
    before = vec_org.client.query(ISSUES, l=library).ok()["library"]["issues"]
    assert before["hasWarning"] is False and before["reasons"] == [], before  # two per entity, nothing alike yet

    rng = np.random.default_rng(8)
    base = rng.normal(size=DIM)
    vectors = np.stack([base, rng.normal(size=DIM), base + 0.01 * rng.normal(size=DIM), rng.normal(size=DIM)])
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names, vectors.astype(np.float32)), l=library).ok()
    issues = vec_org.client.query(ISSUES, l=library).ok()["library"]["issues"]
    assert issues["hasWarning"] is True and issues["hasError"] is False
    duplicates = {r["identifierId"]: r for r in issues["reasons"] if r["kind"] == "duplicate"}
    assert set(duplicates) == {ids[0], ids[2]}, issues
    assert "near-identical" in duplicates[ids[0]]["detail"] and ids[2] in duplicates[ids[0]]["detail"]


def test_a_library_over_the_scan_limit_still_answers_its_issues_and_says_why(
    vec_org: Org, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.services.access.principal import Principal
    from gateway.services.embeddings import duplicates as embeddings
    from gateway.services.training import views as library_insights
    from tests.engines.registered import with_resources

    library = create_library(vec_org, "too-many")
    alice, bob = vec_org.create_entity(library, "alice"), vec_org.create_entity(library, "bob")
    names = ["t-a1.png", "t-a2.png", "t-b1.png", "t-b2.png"]
    ids = [upload(vec_org, entity, data, name).ok()["createEntityIdentifier"]["id"]
           for entity, data, name in zip([alice, alice, bob, bob], [png(50), png(51), png(50), png(52)], names, strict=True)]
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names, np.random.default_rng(9).normal(size=(4, DIM)).astype(np.float32)),
                         l=library).ok()
    monkeypatch.setattr(embeddings, "MAX_DUPLICATE_SCAN", 3)  # this process's services, below the library's 4 vectors
    principal = Principal(org_id=vec_org.id, scope="read")
    found = with_resources(vec_org.stack, lambda res: library_insights.insights(
        res, principal, [uuid.UUID(library)], near_duplicates=True))[uuid.UUID(library)]
    kinds = {(r["kind"], r["severity"], r["identifierId"]) for r in found.reasons}
    # The byte copy (a1 = b1) is still reported; the near-duplicate scan says it was skipped, and why.
    assert {("duplicate", "warning", ids[0]), ("duplicate", "warning", ids[2])} <= kinds
    (skipped,) = [r for r in found.reasons if r["kind"] == "duplicate-check-skipped"]
    assert skipped["severity"] == "info" and "at most 3 vectors" in skipped["message"] and "has more than that" in skipped["message"]
    assert found.has_warning is True


def test_unassigned_identifiers_in_counts_duplicates_and_issues(vec_org: Org) -> None:
    library = create_library(vec_org, "with-unassigned")
    alice, bob = vec_org.create_entity(library, "alice"), vec_org.create_entity(library, "bob")
    names = ["w-a1.png", "w-a2.png", "w-b1.png", "w-b2.png"]
    assigned = [upload(vec_org, entity, png(60 + n), name).ok()["createEntityIdentifier"]["id"]
                for n, (entity, name) in enumerate(zip([alice, alice, bob, bob], names, strict=True))]
    loose = [vec_org.client.upload_form(
        'mutation($l: ID!, $u: String) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "image", '
        "uniqueName: $u}) { id entityId } }", data, "image/png", filename=name, variables={"l": library, "u": name},
    ).ok()["createEntityIdentifier"] for data, name in [(png(60), "w-u1.png"), (png(70), "w-u2.png")]]
    assert [u["entityId"] for u in loose] == [None, None]
    rng = np.random.default_rng(12)
    vectors = rng.normal(size=(6, DIM))
    vectors[5] = vectors[2] + 0.001 * rng.normal(size=DIM)  # the second unassigned one looks just like b1
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names + ["w-u1.png", "w-u2.png"], vectors.astype(np.float32)),
                         l=library).ok()

    # No entity, no labelling error: neither the byte copy (u1 = a1) nor the near copy (u2 ≈ b1) is a pair.
    found = vec_org.client.query(
        "query($l: ID!) { library(id: $l) { duplicateIdentifiers { reason first { id } second { id } } } }", l=library,
    ).ok()["library"]["duplicateIdentifiers"]
    assert found == []
    shown = vec_org.client.query(
        "query($l: ID!) { library(id: $l) { counts { entities activeEntities identifiers usableIdentifiers } "
        "issues { hasWarning reasons { kind identifierId entityId } } } }", l=library,
    ).ok()["library"]
    # identifiers counts every one; usable ones are those a training would take (assigned, none skipped yet).
    assert shown["counts"] == {"entities": 2, "activeEntities": 2, "identifiers": 6, "usableIdentifiers": 4}
    # The same bytes twice in one library is still worth a look; the unassigned copy has no entity (not "None").
    copies = {r["identifierId"]: r["entityId"] for r in shown["issues"]["reasons"] if r["kind"] == "duplicate"}
    assert copies == {assigned[0]: alice, loose[0]["id"]: None}, shown["issues"]


# -- tenancy ---------------------------------------------------------------------------------------


def test_another_organization_sees_no_vector_by_name_or_by_search(vec_org: Org, other_org: Org) -> None:
    names = ["secret-1.png", "secret-2.png"]
    library, _, ids = library_with(vec_org, names)
    vectors = np.random.default_rng(1).normal(size=(2, DIM)).astype(np.float32)
    vec_org.client.query(INSERT, m="vec-net", d=[DIM], e=records(names, vectors)).ok()
    model_for(other_org)  # the same model name, its own
    other_library, _, _ = library_with(other_org, ["mine.png"])
    other_org.client.query(INSERT, m="vec-net", d=[DIM], e=[{"uniqueName": "mine.png", "embeddings": [1.0] * DIM}]).ok()
    assert other_org.client.query(VECTORS, n=names, m="vec-net").ok()["embeddingVectors"] == []
    hits = other_org.client.query(SIMILAR, v=vectors[0].tolist(), m="vec-net", k=100).ok()["similarIdentifiers"]
    assert ids["secret-1.png"] not in {h["identifier"]["id"] for h in hits} and len(hits) == 1
    # Another organization's names, identifiers and libraries answer like made-up ones.
    batch = [{"uniqueName": "secret-1.png", "embeddings": [1.0] * DIM}]
    assert_error(other_org.client.query(INSERT, m="vec-net", d=[DIM], e=batch), "not_found", "secret-1.png")
    foreign = other_org.client.query(SIMILAR, i=ids["secret-1.png"], m="vec-net")
    made_up = other_org.client.query(SIMILAR, i="00000000-0000-4000-8000-000000000000", m="vec-net")
    assert foreign.errors == made_up.errors and foreign.error_code == "not_found"
    foreign_lib = other_org.client.query(SIMILAR, l=library, v=[1.0] * DIM, m="vec-net")
    made_up_lib = other_org.client.query(SIMILAR, l="00000000-0000-4000-8000-000000000000", v=[1.0] * DIM, m="vec-net")
    assert foreign_lib.errors == made_up_lib.errors and foreign_lib.error_code == "not_found"
    got = vec_org.client.query(VECTORS, n=names, m="vec-net").ok()["embeddingVectors"]
    assert len(got) == 2 and other_library not in {g["libraryId"] for g in got}
