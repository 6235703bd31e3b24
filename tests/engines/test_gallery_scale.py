"""The flat gallery artifact: exact answers without padding, int8 with re-scoring, the archive form for galleries
past one protobuf's 2 GB, old padded artifacts still read, and the writer's memory bounded by its batch."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from engines.artifact import (
    ArtifactMeta,
    Label,
    build_gallery_artifact,
    build_padded_gallery_artifact,
    recognize_with_artifact,
)
from engines.backbone import default_backbone
from engines.evaluation import CHUNK_ELEMENTS, MAX_QUERIES
from engines.gallery import GalleryEngine, GalleryFit, package_gallery
from engines.gallery_archive import ARCHIVE_CONTENT_TYPE, is_archive
from engines.gallery_index import FLOAT32, INT8, GalleryWriter
from engines.gallery_stream import evaluate, read_stream
from engines.interface import EmbeddingModel, EngineError, FetchError, IdentifierRef
from engines.model_backbone import model_backbone
from engines.runtime import get_runner
from sampledata import onnx_models
from storage.queries import training_vectors
from tests.conftest import Gateway, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import registered

SPEC = default_backbone(32, 1)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _meta(counts: np.ndarray, top_k: int = 5) -> ArtifactMeta:
    labels = tuple(Label(e, f"entity-{e}", f"name {e}", tuple(f"id-{e}-{j}" for j in range(int(c))))
                   for e, c in enumerate(counts))
    return ArtifactMeta("engineshed-gallery", "1", SPEC.name, SPEC.digest, "lib", SPEC.input_size, SPEC.channels,
                        top_k, -1.0, "cosine", labels)


def _library(seed: int = 0, queries: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images, their embeddings, and a gallery of uneven entities (most 1–5 rows, two of 100+) in which each
    query's embedding has a noisy copy, among random rows."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (queries, SPEC.input_size, SPEC.input_size, SPEC.channels), dtype=np.uint8)
    emb = _unit(get_runner(SPEC.model, "cpu").run(images))
    counts = np.concatenate([rng.integers(1, 6, 400), [120, 160]])
    labels = np.repeat(np.arange(counts.size), counts)
    vectors = _unit(rng.standard_normal((labels.size, SPEC.dim)))
    rows = rng.choice(labels.size, queries, replace=False)
    vectors[rows] = _unit(emb + 0.02 * rng.standard_normal(emb.shape))
    return images, emb, vectors, labels


def _exact(emb: np.ndarray, vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best entity and its score per query, by exact float32 search."""
    scores = emb @ vectors.T
    best = np.full((emb.shape[0], labels.max() + 1), -np.inf, np.float32)
    for q in range(emb.shape[0]):
        np.maximum.at(best[q], labels, scores[q])
    return best.argmax(axis=1), best.max(axis=1)


@pytest.mark.parametrize("precision", [FLOAT32, INT8])
def test_top1_is_that_of_exact_float32_search(precision: str) -> None:
    images, emb, vectors, labels = _library()
    counts = np.bincount(labels)
    artifact = build_gallery_artifact(SPEC, vectors, labels, _meta(counts), precision=precision)
    scores, indices, best = get_runner(artifact, "cpu").run_all(images)
    entity, score = _exact(emb, vectors, labels)
    assert (indices[:, 0] == entity).all()
    tolerance = 1e-5 if precision == FLOAT32 else 2e-3  # fp16 rows re-scored in float32
    np.testing.assert_allclose(scores[:, 0], score, atol=tolerance)
    # best_identifier names the row that matched: its score is the entity's score
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    matched_rows = starts[indices[:, 0]] + best[:, 0]
    np.testing.assert_allclose(np.sum(emb * vectors[matched_rows], axis=1), score, atol=tolerance)
    # the other answers are distinct entities, best first
    assert all(len(set(row)) == row.size for row in indices)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_old_padded_artifacts_still_recognize_with_the_same_answers() -> None:
    images, _, vectors, labels = _library(seed=1, queries=8)
    meta = _meta(np.bincount(labels))
    old = recognize_with_artifact(build_padded_gallery_artifact(SPEC, vectors, labels, meta), images, 5, None, "cpu")
    new = recognize_with_artifact(build_gallery_artifact(SPEC, vectors, labels, meta), images, 5, None, "cpu")
    assert [[(m.entity_id, m.entity_identifier_id) for m in r.matches] for r in old] == \
        [[(m.entity_id, m.entity_identifier_id) for m in r.matches] for r in new]
    assert all(len(r.matches) == 5 for r in new)


def test_one_large_entity_does_not_pad_the_gallery() -> None:
    rng = np.random.default_rng(2)
    counts = np.array([500] + [1] * 1000)
    labels = np.repeat(np.arange(counts.size), counts)
    vectors = _unit(rng.standard_normal((labels.size, SPEC.dim)))
    artifact = build_gallery_artifact(SPEC, vectors, labels, _meta(counts), precision=FLOAT32)
    head = len(artifact) - len(SPEC.model)
    rows_bytes = labels.size * SPEC.dim * 4
    # rows × dim × 4 plus 16 bytes a row of index and the labels; padded it was 1001 × 500 × dim × 4 (1 GB)
    assert rows_bytes < head < rows_bytes * 1.2
    int8 = build_gallery_artifact(SPEC, vectors, labels, _meta(counts), precision=INT8)
    assert len(int8) - len(SPEC.model) < labels.size * SPEC.dim * 3 * 1.2


def test_archive_runs_standalone_with_plain_onnxruntime(tmp_path: Path) -> None:
    images, emb, vectors, labels = _library(seed=3, queries=6)
    meta = _meta(np.bincount(labels))
    fit = GalleryFit(vectors, labels, [], meta, {}, None)
    data, content_type = package_gallery(SPEC, fit, archive_above=0)  # as a gallery past 2 GB would be
    assert content_type == ARCHIVE_CONTENT_TYPE and is_archive(data)
    downloaded = bytes(data)
    # What a user does with the download: unzip, open model.onnx (its weights beside it), run.
    zipfile.ZipFile(io.BytesIO(downloaded)).extractall(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "weights.bin"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    scores, indices, _ = session.run(None, {session.get_inputs()[0].name: images})
    entity, score = _exact(emb, vectors, labels)
    assert (indices[:, 0] == entity).all()
    np.testing.assert_allclose(scores[:, 0], score, atol=1e-5)
    assert "engineshed.labels" in session.get_modelmeta().custom_metadata_map
    # and the gateway's recognition reads the same bytes to the same answers
    single = build_gallery_artifact(SPEC, vectors, labels, meta)
    ours = recognize_with_artifact(downloaded, images, 3, None, "cpu")
    assert [[m.entity_id for m in r.matches] for r in ours] == \
        [[m.entity_id for m in r.matches] for r in recognize_with_artifact(single, images, 3, None, "cpu")]


def test_a_damaged_archive_is_refused_with_a_reason() -> None:
    _, _, vectors, labels = _library(seed=4, queries=2)
    data, _ = package_gallery(SPEC, GalleryFit(vectors, labels, [], _meta(np.bincount(labels)), {}, None), 0)
    images = np.zeros((1, SPEC.input_size, SPEC.input_size, 1), np.uint8)
    with pytest.raises(EngineError, match="archive"):
        recognize_with_artifact(bytes(data)[: len(data) // 2], images, 1, None, "cpu")


def test_the_writer_holds_a_batch_not_the_gallery(tmp_path: Path) -> None:
    rows, dim, batch = 200_000, 64, 4096
    whole = rows * dim * 4  # 51 MB as float32
    rng = np.random.default_rng(5)
    tracemalloc.start()
    try:
        with GalleryWriter(rows, dim, INT8, tmp_path, block_bytes=2 * 1024 * 1024) as writer:
            for start in range(0, rows, batch):
                n = min(batch, rows - start)
                v = _unit(rng.standard_normal((n, dim)))
                writer.add(v, np.arange(start, start + n) // 3, (np.arange(start, start + n) % 3))
            weights = writer.finish()
            _, peak = tracemalloc.get_traced_memory()
            # int8 rows, a scale, an entity and a slot per row: nothing more (no second copy of the rows).
            assert rows * (dim + 20) <= weights.nbytes <= rows * (dim + 20) + 5 * 4096
    finally:
        tracemalloc.stop()
    assert peak < whole / 4, f"peak {peak} bytes for a {whole}-byte gallery"


def test_the_writer_refuses_rows_that_do_not_fit(tmp_path: Path) -> None:
    with GalleryWriter(4, 8, FLOAT32, tmp_path) as writer:
        with pytest.raises(ValueError, match="dimension"):
            writer.add(np.zeros((2, 7), np.float32), np.zeros(2), np.zeros(2))
        writer.add(_unit(np.ones((3, 8))), np.zeros(3), np.arange(3))
        with pytest.raises(ValueError, match="more rows"):
            writer.add(_unit(np.ones((2, 8))), np.zeros(2), np.arange(2))
        with pytest.raises(ValueError, match="3 rows written of the 4"):
            writer.finish()
    with pytest.raises(ValueError, match="precision"):
        GalleryWriter(4, 8, "float64", tmp_path)


# ------------------------------------------------------------------ training streamed from stored vectors


def _registered(dim: int) -> EmbeddingModel:
    data = onnx_models.conv_net(dimension=dim)
    manifest = {"input": {"name": "pixels", "layout": "NCHW", "height": 32, "width": 32, "channels": 3,
                          "color_order": "RGB", "mean": onnx_models.MEAN, "std": onnx_models.STD},
                "output": {"name": "embedding", "dimension": dim}}
    return EmbeddingModel(f"net{dim}@1", str(uuid.UUID(int=dim)), data, manifest, hashlib.sha256(data).hexdigest())


class VectorContext:
    """A TrainingContext whose every identifier has a stored vector, made page by page (nothing held here)."""

    def __init__(self, model: EmbeddingModel, sizes: np.ndarray, vector: Callable[[int], np.ndarray],
                 missing: int | None = None, **config: Any) -> None:
        self.config = GalleryEngine.info.validate_config(config)
        self.embedding_model, self.candidate_models, self.detector_model = model, (), None
        self.stored = _Stored(model_backbone(model).digest, vector, missing)
        self.cache = None
        self.library_id, self.library_version, self.model_id = "library-1", 1, "model-1"
        self.execution_provider, self.decode_pool = "cpu", None
        self.owner = np.repeat(np.arange(sizes.size), sizes)
        self.total_identifiers = int(self.owner.size)
        self.fetched = 0

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        for start in range(0, self.owner.size, page_size):
            yield [IdentifierRef(f"{i:036d}", f"e{self.owner[i]:035d}", f"name {self.owner[i] % 97}", "face",
                                 "image/png", f"{(i * 7919) % 100003:064x}")
                   for i in range(start, min(self.owner.size, start + page_size))]

    async def fetch(self, ref: IdentifierRef) -> bytes:
        self.fetched += 1
        raise FetchError("no bytes here")

    async def progress(self, fraction: float, message: str | None = None) -> None:
        assert 0.0 <= fraction <= 1.0

    def count_inference(self, n: int) -> None:
        raise AssertionError("a streamed training embeds nothing")


class _Stored:
    def __init__(self, digest: str, vector: Callable[[int], np.ndarray], missing: int | None) -> None:
        self.digest, self.vector, self.missing = digest, vector, missing

    def take(self, ref: IdentifierRef) -> np.ndarray | None:
        i = int(ref.identifier_id)
        return None if i == self.missing else self.vector(i)

    async def store(self, vectors: Any) -> None:
        pass


async def test_training_from_stored_vectors_streams_and_answers_as_exact_search() -> None:
    model = _registered(64)
    spec = model_backbone(model)
    rng = np.random.default_rng(7)
    sizes = np.concatenate([rng.integers(1, 4, 300), [40, 60]])
    # flat colours with a little noise: the pooled conv net tells colours apart, not noise patterns
    colours = rng.integers(0, 256, (10, 1, 1, 3))
    images = np.clip(colours + rng.integers(-8, 9, (10, 32, 32, 3)), 0, 255).astype(np.uint8)
    emb = _unit(get_runner(spec.model, "cpu").run(images))
    assert (emb @ emb.T)[~np.eye(10, dtype=bool)].max() < 0.999
    table = _unit(rng.standard_normal((int(sizes.sum()), 64)))
    planted = rng.choice(table.shape[0], images.shape[0], replace=False)
    table[planted] = _unit(emb + 0.01 * rng.standard_normal(emb.shape))
    ctx = VectorContext(model, sizes, lambda i: table[i] * 3.0, modelId="net64@1")  # stored vectors need not be unit
    artifact = await GalleryEngine().train(ctx)
    report = artifact.jsondata
    assert report["streamed"] is True and ctx.fetched == 0
    assert report["identifiers"] == table.shape[0] and report["entities"] == sizes.size
    assert report["embeddings"] == {"cached": table.shape[0], "computed": 0}  # stored vectors count as cached
    assert report["artifact"]["precision"] == FLOAT32 and artifact.content_type == "application/onnx"
    answers = recognize_with_artifact(artifact.data, images, 1, -1.0, "cpu")
    owner = np.repeat(np.arange(sizes.size), sizes)
    assert [a.matches[0].entity_id for a in answers] == [f"e{owner[r]:035d}" for r in planted]
    assert [a.matches[0].entity_identifier_id for a in answers] == [f"{r:036d}" for r in planted]


async def test_a_missing_stored_vector_falls_back_to_the_usual_training() -> None:
    model = _registered(64)
    sizes = np.array([2, 2, 2])
    rng = np.random.default_rng(8)
    table = _unit(rng.standard_normal((6, 64)))
    ctx = VectorContext(model, sizes, lambda i: table[i], missing=3, modelId="net64@1")
    artifact = await GalleryEngine().train(ctx)  # the usual pipeline: identifier 3 has no bytes to embed
    assert "streamed" not in artifact.jsondata
    assert artifact.jsondata["identifiers"] == 5 and ctx.fetched == 1


def test_streamed_reading_holds_a_page_not_the_library(tmp_path: Path) -> None:
    # At 1024 dimensions (a face model's) a row's vector is 4 KB and its IDs about 0.3 KB; the evaluation holds
    # its sampled queries (at most 4,096 rows) and a block of scores.
    model = _registered(1024)
    rows, dim = 30_000, 1024
    sizes = np.ones(rows, np.int64)
    sizes[::10] = 2
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), rows) + 1]
    base = _unit(np.random.default_rng(9).standard_normal((64, dim)))
    ctx = VectorContext(model, sizes, lambda i: base[i % 64], modelId="net1024@1")
    whole = int(sizes.sum()) * dim * 4
    tracemalloc.start()
    try:
        gallery = asyncio.run(read_stream(ctx, model_backbone(model).digest, 2000, 1000, tmp_path))
        evaluate(gallery, 0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert gallery.rows == int(sizes.sum())
    # the sampled queries, a few blocks of scores and ~600 bytes of IDs a row: no [rows, dim] array
    bound = MAX_QUERIES * dim * 4 + 4 * CHUNK_ELEMENTS * 4 + gallery.rows * 600
    assert peak < min(bound, whole / 2), f"peak {peak} bytes for {whole} bytes of vectors"


# ------------------------------------------------------------------ stored vectors read in bulk


def _copy_stream(ids: np.ndarray, entities: np.ndarray, shas: list[bytes], vectors: np.ndarray) -> bytes:
    dtype = training_vectors.row_dtype(4 + 4 * vectors.shape[1])
    rows = np.zeros(len(ids), dtype)
    rows["fields"], rows["length"], rows["dimension"] = 4, 4 + 4 * vectors.shape[1], vectors.shape[1]
    rows["identifier_id"], rows["entity_id"], rows["content_sha256"], rows["vector"] = ids, entities, shas, vectors
    raw = bytearray(rows.tobytes())
    for n in range(len(ids)):  # the length words a binary COPY puts before each field
        base = n * dtype.itemsize
        raw[base + 2:base + 6] = (16).to_bytes(4, "big")
        raw[base + 22:base + 26] = (16).to_bytes(4, "big")
        raw[base + 42:base + 46] = (64).to_bytes(4, "big")
    return b"PGCOPY\n\xff\r\n\x00" + bytes(8) + bytes(raw) + b"\xff\xff"


def test_the_copy_stream_is_cut_into_whole_rows_whatever_the_chunks() -> None:
    rng = np.random.default_rng(3)
    n, dim = 1000, 24
    ids = np.frombuffer(rng.bytes(16 * n), "V16")
    entities = np.frombuffer(rng.bytes(16 * n), "V16")
    shas = [f"{i:064x}".encode() for i in range(n)]
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    stream = _copy_stream(ids, entities, shas, vectors)
    got: list[np.ndarray] = []

    async def sink(block: np.ndarray) -> None:
        got.append(block.copy())

    async def feed(data: bytes, chunk: int) -> None:
        rows = training_vectors._Rows(sink, block_rows=64)
        for start in range(0, len(data), chunk):
            await rows.feed(data[start:start + chunk])
        await rows.finish()

    asyncio.run(feed(stream, 777))
    blocks = np.concatenate(got)
    assert blocks.size == n and max(b.size for b in got) < 128
    assert (blocks["identifier_id"] == ids).all() and (blocks["entity_id"] == entities).all()
    assert blocks["content_sha256"].tolist() == shas
    np.testing.assert_array_equal(np.asarray(blocks["vector"], np.float32), vectors)
    with pytest.raises(ValueError, match="ended inside a row"):
        asyncio.run(feed(stream[:-100], 4096))
    with pytest.raises(ValueError, match="not a binary COPY"):
        asyncio.run(feed(b"X" * 4096, 4096))


def test_stored_vectors_train_in_bulk_with_the_answers_of_the_usual_training(
        stack: Stack, gateway: Gateway, start_worker: Callable[..., Process]) -> None:
    org = make_org(stack, gateway, "bulk-vectors")
    try:
        registered.register_org_model(org, "bulk-net", "embedding", onnx_models.conv_net(dimension=16, seed=7),
                                      onnx_models.normalised_manifest())
        worker = start_worker("bulk-vectors-worker")
        library = api.create_library(org, "bulk")
        # Names out of creation order, one past ASCII, upper case: both trainings rank entities by code point.
        entity_ids = [org.create_entity(library, name) for name in ("b", "a", "ab", "ä", "Z")]
        items = [(e, api.png(32, 40_000 + i * 100 + n)) for i, e in enumerate(entity_ids) for n in range(3)]
        identifier_ids = api.add_identifiers(org, items)
        usual, _ = api.trained(org, api.GALLERY, library, {"modelId": "bulk-net"}, worker=worker)
        bulk, _ = api.trained(org, api.GALLERY, library, {"modelId": "bulk-net"}, worker=worker)
        assert usual["trainStatus"] == bulk["trainStatus"] == "complete", (usual, bulk)
        assert "streamed" not in usual["jsondata"]  # no stored vector yet: the images were embedded, then stored
        report = bulk["jsondata"]
        assert report["streamed"] is True and report["storedEmbeddings"] == len(items) == report["identifiers"]
        assert report["entities"] == len(entity_ids) and report["threshold"] == pytest.approx(usual["jsondata"]["threshold"])
        for n, (entity, image) in enumerate(items):
            expected = api.recognize(org.client, usual["id"], image, top_k=5).ok()["recognize"]["matches"]
            got = api.recognize(org.client, bulk["id"], image, top_k=5).ok()["recognize"]["matches"]
            assert got[0]["entityId"] == entity and got[0]["entityIdentifierId"] == identifier_ids[n]
            assert [(m["entityId"], m["entityIdentifierId"]) for m in got] == [
                (m["entityId"], m["entityIdentifierId"]) for m in expected]
            np.testing.assert_allclose([m["score"] for m in got], [m["score"] for m in expected], atol=1e-4)
    finally:
        org.close()
