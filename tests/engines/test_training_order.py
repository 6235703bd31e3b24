"""A library's rows reach the heads in an order set by its content, not by its random IDs: two copies of one
library, uploaded separately (new UUIDs, other paging order), give the same rows, labels and vectors."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np

from engines.backbone import default_backbone
from engines.embedded import EmbeddedLibrary
from engines.interface import IdentifierRef
from engines.runtime import get_runner
from engines.training import group


def _copy_of_library(rng_seed: int) -> EmbeddedLibrary:
    """Three entities × four images, with fresh UUIDs, in the paging order those UUIDs give."""
    content = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    entity_ids = {name: str(uuid.UUID(int=int(np.random.default_rng(rng_seed + n).integers(2**62)))) for n, name in
                  enumerate(("ada", "bea", "cy"))}
    rows = []
    for n in range(12):
        name = ("ada", "bea", "cy")[n % 3]
        ref = IdentifierRef(identifier_id=str(uuid.uuid4()), entity_id=entity_ids[name], entity_name=name,
                            identifier_type_id="face", content_type="image/png",
                            content_sha256=hashlib.sha256(content[n].tobytes()).hexdigest())
        rows.append((ref, content[n]))
    rows.sort(key=lambda r: (r[0].entity_id, r[0].identifier_id))  # the worker's paging order
    return EmbeddedLibrary(np.stack([v for _, v in rows]), [r for r, _ in rows], [], {}, 0, 12)


def test_two_copies_of_a_library_are_trained_on_identically():
    spec = default_backbone(16, 1)
    runner = get_runner(spec.model, "cpu")
    first, second = (group(spec, runner, None, _copy_of_library(seed)) for seed in (1, 100))
    assert first.entity_names == second.entity_names == ["ada", "bea", "cy"]
    assert [r.content_sha256 for r in first.embedded.refs] == [r.content_sha256 for r in second.embedded.refs]
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, rtol=1e-5)
    # each row keeps its own vector: the ref's content digest is the digest of the row it came with
    original = _copy_of_library(1)
    by_sha = {r.content_sha256: v / np.linalg.norm(v) for r, v in zip(original.refs, original.embeddings, strict=True)}
    for ref, vector in zip(first.embedded.refs, first.vectors, strict=True):
        np.testing.assert_allclose(vector, by_sha[ref.content_sha256], rtol=1e-5)
