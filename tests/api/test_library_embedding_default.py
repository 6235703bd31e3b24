"""Where no embedding model is named, the library's type picks it: a people library's face identifiers are
embedded by face-embedding, so similarIdentifiers and duplicateIdentifiers (and the library's issues) search
those vectors, not the image model's. Vectors are inserted by the client; the photos are sampledata digits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from sampledata import digits
from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Org, Stack
from tests.engines import registered

FACE_DIM, IMAGE_DIM = 12, 20
INSERT = """mutation($m: String!, $d: [Int!]!, $e: [EmbeddingRecord!]!, $l: ID) {
  insertEmbeddings(modelId: $m, vectorDimension: $d, embeddings: $e, libraryId: $l) { inserted } }"""
SIMILAR = """query($l: ID, $v: [Float!], $k: Int) {
  similarIdentifiers(libraryId: $l, vector: $v, limit: $k) { score identifier { id uniqueName } } }"""
DUPLICATES = "query($l: ID!) { library(id: $l) { duplicateIdentifiers { score reason first { id } second { id } } } }"


@pytest.fixture
def system_defaults(stack: Stack) -> Iterator[None]:
    registered.register_system(stack, "face-embedding", "embedding", conv_net(dimension=FACE_DIM, seed=31), normalised_manifest())
    registered.register_system(stack, "image-embedding", "embedding", conv_net(dimension=IMAGE_DIM, seed=32), normalised_manifest())
    yield
    for name in ("face-embedding", "image-embedding"):  # later modules of the session expect no defaults
        registered.drop_system_default(stack, name)


def people_library(org: Org, photos: int) -> tuple[str, list[str], list[str]]:
    """A people library of two people and ``photos`` real photos (face identifiers), each with a unique name."""
    library = org.create_library("people-vectors", "people")
    people = [org.create_entity(library, name) for name in ("ada", "bo")]
    names, entries = [], digits.load().train[:photos]
    for n, entry in enumerate(entries):
        name = f"photo-{n}"
        org.client.upload_form(
            'mutation($e: ID!, $u: String) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "face", '
            "uniqueName: $u}) { id } }", entry.data, "image/png", filename=f"{name}.png",
            variables={"e": people[n % 2], "u": name},
        ).ok()
        names.append(name)
    return library, people, names


def insert(org: Org, library: str, model: str, names: list[str], vectors: np.ndarray) -> None:
    org.client.query(INSERT, m=model, d=[vectors.shape[1]], l=library,
                     e=[{"uniqueName": n, "embeddings": v.tolist()} for n, v in zip(names, vectors, strict=True)]).ok()


def test_similar_identifiers_without_a_model_searches_a_people_librarys_face_vectors(org: Org, system_defaults: Any) -> None:
    library, _, names = people_library(org, 4)
    faces = np.random.default_rng(1).normal(size=(4, FACE_DIM)).astype(np.float32)
    insert(org, library, "face-embedding", names, faces)
    query = faces[2] + 0.05 * np.random.default_rng(2).normal(size=FACE_DIM)
    got = org.client.query(SIMILAR, l=library, v=query.tolist(), k=2).ok()["similarIdentifiers"]
    assert got, "a people library searched without modelId found nothing"
    assert got[0]["identifier"]["uniqueName"] == "photo-2" and got[0]["score"] > 0.95


def test_duplicates_of_a_people_library_compare_its_face_vectors(org: Org, system_defaults: Any) -> None:
    library, _, names = people_library(org, 5)
    rng = np.random.default_rng(3)
    # The image model has vectors of every photo (no pair alike); the face model of four, two of them (under
    # different people) the same face.
    insert(org, library, "image-embedding", names, rng.normal(size=(5, IMAGE_DIM)).astype(np.float32))
    faces = rng.normal(size=(4, FACE_DIM)).astype(np.float32)
    faces[1] = faces[0] + 1e-3
    insert(org, library, "face-embedding", names[:4], faces)
    pairs = org.client.query(DUPLICATES, l=library).ok()["library"]["duplicateIdentifiers"]
    assert [p["reason"] for p in pairs] == ["near-identical"], pairs
    issues = org.client.query("query($l: ID!) { library(id: $l) { issues { reasons { kind } } } }", l=library).ok()
    assert [r["kind"] for r in issues["library"]["issues"]["reasons"]].count("duplicate") == 2
