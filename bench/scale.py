"""`--only scale`: the gallery at N = 10k, 100k, 1M identities (up to ENGINESHED_BENCH_SCALE_MAX), one row each.

Per N, a library of N identities with 1024-d unit vectors written in bulk with binary COPY (entities of uneven
size: most of 1, the rest of 2–5, one in 2,000 of 100–150 rows; the identifiers' objects are never read), then

* full training from the stored vectors through the API (gallery engine, the registered model): seconds from the
  task's start to its completion, and the worker's peak RSS over it;
* the artifact's size in S3 and its form (one ONNX file, or the zip of model and external weights);
* recognize p50 with the trained artifact: single-image calls through the API (the gateway's session warm);
* similarIdentifiers filtered to a library holding 1 % of the model's vectors in the organization: p50 and
  recall@10 against the exact cosine ranking computed here (at 100k–1M vectors without training, and with the
  HNSW index built: ``python -m bench.similar_scale``, results in bench/results-similar-cpu-2core.json);
* whether training and artifact grew linearly: each N's seconds and bytes per vector over the smallest N's.

The machine is shared: figures move with whatever else runs (the results say so where the run is told).
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np

from bench.client import Client
from bench.images import make_image
from bench.memory import RssSampler
from bench.scenarios import train
from bench.stack import BenchError, Stack, create_token, log

DIM = 1024
SERIES = (10_000, 100_000, 1_000_000)
DEFAULT_MAX = 1_000_000
COPY_ROWS = 8192  # rows per binary COPY chunk
RECOGNIZE_CALLS = 30
SEARCH_QUERIES = 100
SEARCH_SHARE = 0.01
RECOGNIZE = 'query {{ recognize(libraryEngineModelId: "{m}", topK: 5) {{ matches {{ entityId score }} }} }}'
SIMILAR = ("query($l: ID, $v: [Float!], $m: String) { similarIdentifiers(libraryId: $l, vector: $v, modelId: $m, "
           "limit: 10) { score identifier { id } } }")
ARTIFACT = """query($id: ID!) { libraryEngineModel(id: $id) { contentType jsondata } }"""


def series(limit: int | None = None) -> list[int]:
    """The N of the series up to ENGINESHED_BENCH_SCALE_MAX (default 1,000,000), from ENGINESHED_BENCH_SCALE_MIN
    (default: the smallest; a larger one reruns the largest N alone)."""
    top = limit if limit is not None else int(os.environ.get("ENGINESHED_BENCH_SCALE_MAX", DEFAULT_MAX))
    bottom = int(os.environ.get("ENGINESHED_BENCH_SCALE_MIN", "0"))
    return [n for n in SERIES if bottom <= n <= top] or [min(SERIES[0], top)]


def entity_sizes(identities: int, rng: np.random.Generator) -> np.ndarray:
    """Rows per identity: 70 % one, the rest 2–5, one in 2,000 (at least two) 100–150."""
    sizes = np.where(rng.random(identities) < 0.7, 1, rng.integers(2, 6, identities))
    big = rng.choice(identities, max(2, identities // 2000), replace=False)
    sizes[big] = rng.integers(100, 151, big.size)
    return sizes.astype(np.int64)


class _Upload:
    def __init__(self, data: bytes, filename: str) -> None:
        self._body, self.filename = io.BytesIO(data), filename

    async def read(self, n: int = -1) -> bytes:
        return self._body.read(n)


async def _register(env: dict[str, str], org_id: uuid.UUID, name: str) -> str:
    """The organization's 1024-d embedding model (the sample conv net: a stand-in of fixed, small cost)."""
    from gateway.resources import open_resources
    from gateway.services.access.principal import Principal
    from gateway.services.models import registry as models
    from gateway.settings import Settings
    from sampledata.onnx_models import conv_net, normalised_manifest

    data = conv_net(dimension=DIM, seed=1)
    async with open_resources(Settings.from_env(env), role="bench", run_migrations=False, load_engines=False) as res:
        principal = Principal(org_id=org_id, scope="admin")
        await models.register(res, principal, name=name, application="embedding", manifest=normalised_manifest(),
                              file=_Upload(data, f"{name}.onnx"))
        deadline = time.monotonic() + 120
        while True:  # the bench worker runs the trial inference
            version = await models.get(res, principal, name, 1)
            if version.status == "ready":
                return version.ref
            if version.status == "failed" or time.monotonic() > deadline:
                raise BenchError(f"model {name} did not become ready: {version.status} {version.error}")
            await asyncio.sleep(0.2)


def _copy_header() -> bytes:
    return b"PGCOPY\n\xff\r\n\x00" + np.array([0, 0], ">i4").tobytes()


def _embedding_rows(ids: np.ndarray, version: uuid.UUID, org: uuid.UUID, library: uuid.UUID,
                    vectors: np.ndarray) -> bytes:
    """identifier_embeddings rows in PostgreSQL's binary COPY format (pgvector's vector_recv for the vector)."""
    n = len(ids)
    dtype = np.dtype([("fields", ">i2"), ("l1", ">i4"), ("id", "V16"), ("l2", ">i4"), ("mv", "V16"), ("l3", ">i4"),
                      ("org", "V16"), ("l4", ">i4"), ("lib", "V16"), ("l5", ">i4"), ("dim", ">i4"), ("l6", ">i4"),
                      ("vdim", ">i2"), ("vunused", ">i2"), ("vec", ">f4", (DIM,)), ("l7", ">i4"), ("src", "S8")])
    rows = np.zeros(n, dtype)
    rows["fields"] = 7
    for name, length in (("l1", 16), ("l2", 16), ("l3", 16), ("l4", 16), ("l5", 4), ("l6", 4 + 4 * DIM), ("l7", 8)):
        rows[name] = length
    rows["id"] = ids
    rows["mv"] = np.frombuffer(version.bytes, "V16")[0]
    rows["org"] = np.frombuffer(org.bytes, "V16")[0]
    rows["lib"] = np.frombuffer(library.bytes, "V16")[0]
    rows["dim"] = DIM
    rows["vdim"] = DIM
    rows["vec"] = vectors
    rows["src"] = b"inserted"
    return rows.tobytes()


async def bulk_library(pool: asyncpg.Pool, org: uuid.UUID, version: uuid.UUID, name: str, identities: int,
                       seed: int) -> tuple[uuid.UUID, int, float]:
    """A library of ``identities`` entities of uneven size with unit vectors, written with COPY; returns its id,
    its vector count and the seconds the writes took. No HNSW index is asked for (see ``scale``)."""
    rng = np.random.default_rng(seed)
    sizes = entity_sizes(identities, rng)
    rows = int(sizes.sum())
    library = uuid.uuid4()
    entity_ids = [uuid.uuid4() for _ in range(identities)]
    owner = np.repeat(np.arange(identities), sizes)
    ids = np.frombuffer(b"".join(uuid.uuid4().bytes for _ in range(rows)), "V16")
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO libraries (id, org_id, name, library_type_id) VALUES ($1, $2, $3, 'people')",
                           library, org, name)
        await conn.copy_records_to_table("entities", columns=["id", "org_id", "library_id", "name"],
                                         records=[(e, org, library, f"{name}-{i}") for i, e in enumerate(entity_ids)])
        await conn.copy_records_to_table(
            "entity_identifiers",
            columns=["id", "org_id", "library_id", "entity_id", "identifier_type_id", "storage_key", "content_type",
                     "unique_name"],
            records=[(uuid.UUID(bytes=ids[i].tobytes()), org, library, entity_ids[owner[i]], "face",
                      f"bench/none/{i}", "image/png", f"{name}-{i}.png") for i in range(rows)])

        async def chunks() -> AsyncIterator[bytes]:
            yield _copy_header()
            for start in range(0, rows, COPY_ROWS):
                end = min(rows, start + COPY_ROWS)
                centre = np.random.default_rng([seed, start]).standard_normal((end - start, DIM)).astype(np.float32)
                v = centre / np.linalg.norm(centre, axis=1, keepdims=True)
                yield _embedding_rows(ids[start:end], version, org, library, v)
            yield np.array([-1], ">i2").tobytes()

        await conn.copy_to_table("identifier_embeddings", source=chunks(), format="binary", columns=[
            "identifier_id", "model_version_id", "org_id", "library_id", "dimension", "embedding", "source"])
    return library, rows, time.perf_counter() - started


async def _library_vectors(pool: asyncpg.Pool, library: uuid.UUID) -> tuple[list[str], np.ndarray]:
    rows = await pool.fetch("SELECT identifier_id, vector_send(embedding) AS v FROM identifier_embeddings "
                            "WHERE library_id = $1 ORDER BY identifier_id", library)
    vectors = np.stack([np.frombuffer(r["v"], ">f4", offset=4).astype(np.float32) for r in rows])
    return [str(r["identifier_id"]) for r in rows], vectors


async def _search(client: Client, pool: asyncpg.Pool, library: uuid.UUID, model: str) -> dict[str, Any]:
    ids, vectors = await _library_vectors(pool, library)
    rng = np.random.default_rng(5)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = rng.choice(len(ids), min(SEARCH_QUERIES, len(ids)), replace=False)
    queries = unit[picks] + 0.02 * rng.standard_normal((picks.size, DIM)).astype(np.float32)
    latencies, recalls = [], []
    for q in queries:
        exact = {ids[i] for i in np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10]}
        t = time.perf_counter()
        hits = (await client.data(SIMILAR, l=str(library), v=q.tolist(), m=model))["similarIdentifiers"]
        latencies.append(time.perf_counter() - t)
        recalls.append(len({h["identifier"]["id"] for h in hits} & exact) / 10)
    lat = np.asarray(latencies) * 1000
    return {"library_vectors": len(ids), "queries": int(picks.size), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2), "recall_at_10": round(float(np.mean(recalls)), 4)}


async def _recognize_p50(client: Client, model_id: str) -> dict[str, Any]:
    query = RECOGNIZE.format(m=model_id)
    images = [make_image(77, i) for i in range(RECOGNIZE_CALLS + 3)]
    started = time.perf_counter()
    for data, content_type in images[:3]:  # the gateway reads the artifact and opens its session
        (await client.upload_form(query, data, content_type)).ok()
    first = time.perf_counter() - started
    latencies = []
    for data, content_type in images[3:]:
        t = time.perf_counter()
        (await client.upload_form(query, data, content_type)).ok()
        latencies.append(time.perf_counter() - t)
    lat = np.asarray(latencies) * 1000
    return {"calls": len(latencies), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2), "first_three_calls_s": round(first, 3)}


async def scale(stack: Stack, sampler: RssSampler, *, limit: int | None = None, timeout: float = 3600,
                note: str | None = None) -> dict[str, Any]:
    """The scale series (module docstring), in its own organization with its own copy of the embedding model.

    No HNSW index is asked for: the filtered search holds 1 % of the vectors, which the search scans exactly
    below ENGINESHED_SEARCH_EXACT_BELOW candidates (recall 1), and an index build would compete with the
    trainings measured here on the same cores."""
    token = await create_token(stack.database_url, f"bench-scale-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=8)
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    rows_out: list[dict[str, Any]] = []
    try:
        org = uuid.UUID((await client.data("query { me { organizationId } }"))["me"]["organizationId"])
        ref = await _register(stack.env, org, "bench-scale-1024")
        version = await pool.fetchval("SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id "
                                      "WHERE m.org_id = $1 AND m.name = 'bench-scale-1024'", org)
        for n in series(limit):
            log(f"scale: {n} identities, vectors written with COPY")
            library, vectors, copy_s = await bulk_library(pool, org, version, f"scale-{n}", n, seed=n)
            load_before = os.getloadavg()  # the machine is shared: the figures move with what else runs
            search_library, search_vectors, _ = await bulk_library(
                pool, org, version, f"scale-{n}-search", max(10, int(n * SEARCH_SHARE)), seed=n + 1)
            log(f"scale: training from {vectors} stored vectors")
            try:
                run = await train(client, str(library), timeout=timeout, sampler=sampler, config={"modelId": ref},
                                  poll_interval=0.5)
            except BenchError as exc:  # the row says why; larger N would fail the same way
                log(f"scale: training at {n} identities failed: {exc}")
                rows_out.append({"identities": n, "vectors": vectors, "error": str(exc)})
                break
            model = (await client.data(ARTIFACT, id=run["model_id"]))["libraryEngineModel"]
            artifact = (model["jsondata"] or {}).get("artifact") or {}
            size = artifact.get("bytes")
            log("scale: recognize with the artifact, then similarIdentifiers in the 1 % library")
            recognize = await _recognize_p50(client, run["model_id"])
            log(f"scale: {n} identities: training {run['task_start_to_complete_s']} s {run.get('timings')}, "
                f"recognize {recognize}")
            try:
                search = await _search(client, pool, search_library, ref)
            except BenchError as exc:  # the row keeps the training and recognition figures
                search = {"error": str(exc)[:300]}
            memory = run.get("memory") or {}
            rows_out.append({
                "identities": n, "vectors": vectors, "dimension": DIM, "copy_seconds": round(copy_s, 1),
                "training_seconds": run["task_start_to_complete_s"],
                "worker_peak_rss_mib": memory.get("peak_worker_rss_mib"),
                "worker_baseline_rss_mib": memory.get("baseline_worker_rss_mib"),
                "artifact_bytes": size, "artifact_mib": round(size / 2**20, 1) if size else None,
                "artifact_content_type": model["contentType"], "artifact_precision": artifact.get("precision"),
                "recognize": recognize,
                "similar_identifiers": {**search, "share_of_vectors": round(search_vectors / (vectors + search_vectors), 4)},
                "timings": run.get("timings"),
                "load_average_1m": {"before_training": round(load_before[0], 2),
                                    "after_recognize": round(os.getloadavg()[0], 2)},
            })
    finally:
        await pool.close()
        await client.aclose()
    _linearity(rows_out)
    return {"series": rows_out, "dimension": DIM, "note": note or "", "max_identities": series(limit)[-1]}


def _linearity(rows: list[dict[str, Any]]) -> None:
    """Per row: seconds and bytes per vector over the first row's (1.0 = linear; above: worse than linear)."""
    rows = [r for r in rows if "error" not in r]
    if not rows:
        return
    first = rows[0]
    for row in rows:
        row["training_per_vector_over_smallest"] = round(
            (row["training_seconds"] / row["vectors"]) / (first["training_seconds"] / first["vectors"]), 3)
        if row["artifact_bytes"] and first["artifact_bytes"]:
            row["artifact_per_vector_over_smallest"] = round(
                (row["artifact_bytes"] / row["vectors"]) / (first["artifact_bytes"] / first["vectors"]), 3)


def rows(r: dict[str, Any]) -> list[str]:
    """The scale table's lines."""
    out = [("| identities | vectors | training s | worker peak RSS MiB | artifact MiB | recognize p50 ms | "
           "similarIdentifiers p50 ms / recall@10 | training per vector / smallest |"),
           "|---|---|---|---|---|---|---|---|"]
    for x in r["series"]:
        if "error" in x:
            out.append(f"| {x['identities']} | {x['vectors']} | failed: {x['error'][:200]} | | | | | |")
            continue
        s = x["similar_identifiers"]
        if "error" in s:
            s = {"p50_ms": "failed", "recall_at_10": s["error"][:80], "library_vectors": "?"}
        out.append(f"| {x['identities']} | {x['vectors']} | {x['training_seconds']} | {x['worker_peak_rss_mib']} | "
                   f"{x['artifact_mib']} ({x['artifact_precision']}) | {x['recognize']['p50_ms']} | "
                   f"{s['p50_ms']} / {s['recall_at_10']} ({s['library_vectors']} vectors) | "
                   f"{x['training_per_vector_over_smallest']} |")
    return out

