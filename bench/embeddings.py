"""`--only embeddings`: stored vectors (pgvector) against the images they came from, all in one run.

* ingest: N identifiers uploaded while the worker embeds them in the background (a library engine model uses
  the registered model), identifiers/s from the first upload to the last vector stored, against the raw S3
  PUT rate of the same bytes and the model's raw ceiling on them, measured in the same run;
* full training at N from the stored vectors (no S3 GET, no inference) and from the images (a second model
  of the same architecture and cost, with no vector and no cache entry);
* incremental training (+1 %, embedded at ingest) over the full one from images, and over the full one from
  vectors;
* memory: the worker's peak RSS training from stored vectors at N and at ``memory_scale``×N (the larger
  library is written in bulk with COPY: identifiers whose vectors are stored need no image);
* search: similarIdentifiers by vector over ``search_n`` clustered vectors written in bulk, p50/p95 latency
  through the API and recall@10 against the exact cosine ranking computed here.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from typing import Any

import asyncpg
import numpy as np

from bench.client import Client
from bench.images import make_image
from bench.memory import RssSampler
from bench.ceilings import model_raw_ceiling
from bench.scenarios import CREATE_ENTITY, CREATE_LIBRARY, bounded, e2e_over_raw, train
from bench.stack import BenchError, Stack, create_token, log

DIM = 64
PER_ENTITY = 5
INCREMENTAL_ROUNDS = 3  # +1 % rounds, the median incremental training reported
SEARCH_QUERIES = 200
SIMILAR = "query($l: ID, $v: [Float!], $m: String) { similarIdentifiers(libraryId: $l, vector: $v, modelId: $m, limit: 10) { score identifier { id } } }"


class _Upload:
    def __init__(self, data: bytes, filename: str) -> None:
        self._body, self.filename = io.BytesIO(data), filename

    async def read(self, n: int = -1) -> bytes:
        return self._body.read(n)


async def _register(env: dict[str, str], org_id: uuid.UUID, name: str, seed: int) -> tuple[str, bytes, dict[str, Any]]:
    """An organization's embedding model (the sample conv net at DIM, a stand-in of fixed cost)."""
    from gateway.resources import open_resources
    from gateway.services.models import registry as models
    from gateway.services.access.principal import Principal
    from gateway.settings import Settings
    from sampledata.onnx_models import conv_net, normalised_manifest

    data = conv_net(dimension=DIM, seed=seed)
    async with open_resources(Settings.from_env(env), role="bench", run_migrations=False, load_engines=False) as res:
        principal = Principal(org_id=org_id, scope="admin")
        await models.register(res, principal, name=name, application="embedding", manifest=normalised_manifest(),
                              file=_Upload(data, f"{name}.onnx"))
        deadline = time.monotonic() + 120
        while True:  # the bench worker runs the trial inference
            version = await models.get(res, principal, name, 1)
            if version.status == "ready":
                return version.ref, data, dict(version.manifest)
            if version.status == "failed" or time.monotonic() > deadline:
                raise BenchError(f"model {name} did not become ready: {version.status} {version.error}")
            await asyncio.sleep(0.2)


async def _count_vectors(pool: asyncpg.Pool, library_id: str, model: str) -> int:
    # Of one model: once a training with model B has run, new uploads are embedded by A and by B.
    return await pool.fetchval(
        "SELECT count(*) FROM identifier_embeddings e JOIN model_versions v ON v.id = e.model_version_id "
        "JOIN models m ON m.id = v.model_id WHERE e.library_id = $1::uuid AND m.name || '@' || v.version = $2",
        library_id, model)


async def _wait_vectors(pool: asyncpg.Pool, library_id: str, model: str, wanted: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while (have := await _count_vectors(pool, library_id, model)) < wanted:
        if time.perf_counter() > deadline:
            raise BenchError(f"ingest: {have} of {wanted} vectors after {timeout:.0f} s")
        await asyncio.sleep(0.1)
    return time.perf_counter()


async def _s3_put_rate(env: dict[str, str], blobs: list[tuple[bytes, str]], concurrency: int) -> dict[str, Any]:
    """Bare presigned PUTs of the same bytes, same concurrency (signed beforehand, not timed)."""
    import aiohttp
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ) as s3:
        urls = [await s3.generate_presigned_url("put_object", Params={"Bucket": env["S3_BUCKET"], "Key": f"bench-emb-put/{i}",
                                                                      "ContentType": ct}, ExpiresIn=3600)
                for i, (_, ct) in enumerate(blobs)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * concurrency)) as http:
        async def put(i: int) -> None:
            data, content_type = blobs[i]
            async with http.put(urls[i], data=data, headers={"Content-Type": content_type}) as reply:
                reply.raise_for_status()
                await reply.read()

        started = time.perf_counter()
        await bounded(list(range(len(blobs))), concurrency, put)
        seconds = time.perf_counter() - started
    return {"puts": len(blobs), "seconds": round(seconds, 3), "puts_per_s": round(len(blobs) / seconds, 1)}


async def _bulk_library(pool: asyncpg.Pool, org_id: uuid.UUID, version_id: uuid.UUID, name: str, size: int,
                        seed: int) -> tuple[str, list[uuid.UUID], np.ndarray]:
    """A library of ``size`` identifiers (``PER_ENTITY`` per entity) with clustered vectors, written with COPY.

    The identifiers' objects are never read: every one has its vector, which is what this library measures.
    """
    rng = np.random.default_rng(seed)
    entities = max(1, size // PER_ENTITY)
    centres = rng.normal(size=(entities, DIM)).astype(np.float32)
    vectors = (np.repeat(centres, PER_ENTITY, axis=0)[:size] + 0.35 * rng.normal(size=(size, DIM))).astype(np.float32)
    library_id = uuid.uuid4()
    entity_ids = [uuid.uuid4() for _ in range(entities)]
    ids = [uuid.uuid4() for _ in range(size)]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO libraries (id, org_id, name, library_type_id) VALUES ($1, $2, $3, 'people')",
                           library_id, org_id, name)
        await conn.copy_records_to_table("entities", columns=["id", "org_id", "library_id", "name"],
                                         records=[(e, org_id, library_id, f"{name}-{i}") for i, e in enumerate(entity_ids)])
        await conn.copy_records_to_table(
            "entity_identifiers",
            columns=["id", "org_id", "library_id", "entity_id", "identifier_type_id", "storage_key", "content_type", "unique_name"],
            records=[(ids[i], org_id, library_id, entity_ids[i // PER_ENTITY], "face", f"bench/none/{ids[i]}", "image/png",
                      f"bulk-{i}.png") for i in range(size)])
        text = io.BytesIO()
        for i in range(size):
            values = ",".join(f"{x:.6g}" for x in vectors[i])
            text.write(f"{ids[i]}\t{version_id}\t{org_id}\t{library_id}\t{DIM}\t[{values}]\tinserted\n".encode())
        text.seek(0)
        await conn.copy_to_table("identifier_embeddings", source=text, columns=[
            "identifier_id", "model_version_id", "org_id", "library_id", "dimension", "embedding", "source"])
        from storage.queries.vectors import want_index

        await want_index(conn, org_id, version_id, DIM)
    return str(library_id), ids, vectors


async def create_bulk_token(database_url: str) -> str:
    return await create_token(database_url, f"bench-bulk-{uuid.uuid4().hex[:8]}")


async def embeddings(stack: Stack, client: Client, sampler: RssSampler, *, n: int, memory_scale: int, search_n: int,
                     concurrency: int, timeout: float) -> dict[str, Any]:
    org_id = uuid.UUID((await client.data("query { me { organizationId } }"))["me"]["organizationId"])
    ref_a, model_a, manifest_a = await _register(stack.env, org_id, "bench-emb-a", seed=1)
    ref_b, _, _ = await _register(stack.env, org_id, "bench-emb-b", seed=2)
    entities = max(2, n // PER_ENTITY)
    library_id = (await client.data(CREATE_LIBRARY, n="embeddings"))["createLibrary"]["id"]

    async def entity(i: int) -> str:
        return (await client.data(CREATE_ENTITY, l=library_id, n=f"emb-e{i:05d}"))["createEntity"]["id"]

    entity_ids = await bounded(list(range(entities)), concurrency, entity)
    seeds = [9_000_000 + i for i in range(entities)]
    work = [(e, k) for k in range(PER_ENTITY) for e in range(entities)][:n]
    blobs = [make_image(seeds[e], k) for e, k in work]

    async def upload(i: int) -> None:
        e, _ = work[i]
        data, content_type = blobs[i]
        (await client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_ids[e]}", identifierTypeId: "face"}}) {{ id }} }}',
            data, content_type, filename=f"emb-{i}.jpg" if content_type == "image/jpeg" else f"emb-{i}.png")).ok()

    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    try:
        # 1 % first, trained with model A: from then on the library's engine model uses A, so uploads are embedded.
        seed_count = max(2, n // 100)
        await bounded(list(range(seed_count)), concurrency, upload)
        await train(client, library_id, timeout=timeout, config={"modelId": ref_a})
        log(f"embeddings: ingest of {n - seed_count} identifiers (upload + embed)")
        t0 = time.perf_counter()
        await bounded(list(range(seed_count, n)), concurrency, upload)
        uploaded = time.perf_counter()
        done = await _wait_vectors(pool, library_id, ref_a, n, timeout)
        ingest_n = n - seed_count
        ingest = {"identifiers": ingest_n, "upload_seconds": round(uploaded - t0, 3), "upload_to_last_vector_seconds": round(done - t0, 3),
                  "identifiers_per_s": round(ingest_n / (done - t0), 1), "uploads_per_s": round(ingest_n / (uploaded - t0), 1)}
        sample = blobs[: min(len(blobs), 2000)]
        s3 = await _s3_put_rate(stack.env, sample, concurrency)
        raw = await asyncio.to_thread(model_raw_ceiling, [b for b, _ in sample], model_a, manifest_a, ref_a, None, 64)
        ingest.update(s3_put=s3, model_raw=raw,
                      over_s3_put=e2e_over_raw(ingest["identifiers_per_s"], s3["puts_per_s"]),
                      over_model_raw=e2e_over_raw(ingest["identifiers_per_s"], raw["identifiers_per_s"]))

        log("embeddings: full trainings from stored vectors and from images")
        from_vectors = await train(client, library_id, timeout=timeout, sampler=sampler, config={"modelId": ref_a})
        from_images = await train(client, library_id, timeout=timeout, config={"modelId": ref_b})

        # Three rounds of +1 % and a training, the median reported: a run of half a second moves with whatever
        # else the two cores do at that moment (an autovacuum, an index build), and one sample misled before.
        incrementals = []
        for round_ in range(INCREMENTAL_ROUNDS):
            log(f"embeddings: +1 % and an incremental training ({round_ + 1}/{INCREMENTAL_ROUNDS})")
            extra = [(e, PER_ENTITY + 1 + round_) for e in range(max(1, n // 100))]
            more = [make_image(seeds[e], k) for e, k in extra]
            first = len(work)
            work.extend(extra)
            blobs.extend(more)
            await bounded(list(range(first, first + len(extra))), concurrency, upload)
            await _wait_vectors(pool, library_id, ref_a, first + len(extra), timeout)
            incrementals.append(await train(client, library_id, timeout=timeout, config={"modelId": ref_a}))
        incremental = sorted(incrementals, key=lambda run: run["task_start_to_complete_s"])[len(incrementals) // 2]

        # The k×N library and the search corpus go to a second organization with its own copy of model A: bulk
        # loads come before that (version, organization)'s HNSW index exists, which a worker then builds
        # CONCURRENTLY (what a bulk import does; inserting 100,000 rows into a live HNSW index one by one is
        # several times slower on this machine).
        bulk_token = await create_bulk_token(stack.database_url)
        bulk = Client(stack.url, bulk_token, connections=16)
        try:
            bulk_org = uuid.UUID((await bulk.data("query { me { organizationId } }"))["me"]["organizationId"])
            ref_bulk, _, _ = await _register(stack.env, bulk_org, "bench-emb-a", seed=1)
            version_bulk = await pool.fetchval(
                "SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.org_id = $1 AND m.name = 'bench-emb-a'",
                bulk_org)
            big_n = memory_scale * n
            log(f"embeddings: {big_n} identifiers with vectors written in bulk; training at {memory_scale}×N")
            t = time.perf_counter()
            big_library, big_ids, big_vectors = await _bulk_library(pool, bulk_org, version_bulk, "emb-big", big_n, seed=11)
            bulk_seconds = time.perf_counter() - t
            at_scale = await train(bulk, big_library, timeout=timeout, sampler=sampler, config={"modelId": ref_bulk})
            if search_n == big_n:
                corpus_library, corpus_ids, corpus = big_library, big_ids, big_vectors
            else:
                log(f"embeddings: {search_n} search vectors written in bulk")
                corpus_library, corpus_ids, corpus = await _bulk_library(pool, bulk_org, version_bulk, "emb-search", search_n, seed=12)
            t = time.perf_counter()
            while not await pool.fetchval(
                    "SELECT built FROM embedding_indexes WHERE model_version_id = $1 AND org_id = $2", version_bulk, bulk_org):
                if time.perf_counter() - t > timeout:
                    raise BenchError("the HNSW index was not built in time")
                await asyncio.sleep(0.2)
            index_wait = time.perf_counter() - t
            search = await _search(bulk, corpus_library, corpus_ids, corpus, ref_bulk)
        finally:
            await bulk.aclose()
        search.update(vectors=len(corpus_ids), dimension=DIM, index_wait_seconds=round(index_wait, 1),
                      bulk_copy_seconds=round(bulk_seconds, 1))
    finally:
        await pool.close()

    def brief(run: dict[str, Any]) -> dict[str, Any]:
        keep = ("identifiers", "inferences", "client_create_to_complete_s", "task_start_to_complete_s", "train_seconds",
                "embeddings", "memory", "timings")
        return {k: run.get(k) for k in keep if run.get(k) is not None}

    full_images = from_images["task_start_to_complete_s"]
    full_vectors = from_vectors["task_start_to_complete_s"]
    inc = incremental["task_start_to_complete_s"]
    return {
        "n": n, "dimension": DIM, "model": ref_a, "ingest": ingest,
        "full_from_vectors": brief(from_vectors), "full_from_images": brief(from_images),
        "incremental": brief(incremental),
        "incremental_rounds_s": [run["task_start_to_complete_s"] for run in incrementals],
        "incremental_over_full_from_images": round(inc / full_images, 4),
        "incremental_over_full_from_vectors": round(inc / full_vectors, 4),
        "full_from_vectors_over_from_images": round(full_vectors / full_images, 4),
        "memory": {"n": n, "at_n": from_vectors.get("memory"), "scaled_n": big_n, "at_scaled_n": at_scale.get("memory"),
                   "scaled_training_seconds": at_scale["task_start_to_complete_s"]},
        "search": search,
    }


async def _search(client: Client, library_id: str, ids: list[uuid.UUID], corpus: np.ndarray, model: str) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    picks = rng.choice(len(ids), SEARCH_QUERIES, replace=False)
    queries = corpus[picks] + 0.2 * rng.normal(size=(SEARCH_QUERIES, corpus.shape[1])).astype(np.float32)
    latencies, recalls = [], []
    index = {str(i): n for n, i in enumerate(ids)}
    for q in queries:
        exact = set(np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10].tolist())
        t = time.perf_counter()
        hits = (await client.data(SIMILAR, l=library_id, v=q.tolist(), m=model))["similarIdentifiers"]
        latencies.append(time.perf_counter() - t)
        got = {index[h["identifier"]["id"]] for h in hits if h["identifier"]["id"] in index}
        recalls.append(len(got & exact) / 10)
    lat = np.sort(np.asarray(latencies)) * 1000
    return {"queries": SEARCH_QUERIES, "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2), "recall_at_10": round(float(np.mean(recalls)), 4)}


def rows(r: dict[str, Any]) -> list[str]:
    ing, mem, s = r["ingest"], r["memory"], r["search"]
    fv, fi, inc = r["full_from_vectors"], r["full_from_images"], r["incremental"]
    at_n = (mem["at_n"] or {}).get("peak_worker_rss_mib")
    at_big = (mem["at_scaled_n"] or {}).get("peak_worker_rss_mib")
    return [
        f"| E1 | ingest (upload + embed), N={ing['identifiers']} | {ing['identifiers_per_s']} identifiers/s "
        f"(uploads alone {ing['uploads_per_s']}/s) |",
        f"| E2 | raw S3 PUT, same bytes and concurrency | {ing['s3_put']['puts_per_s']}/s → ingest / PUT = {ing['over_s3_put']} |",
        f"| E3 | model raw ceiling ({ing['model_raw']['provider']}, batch {ing['model_raw']['batch_size']}) | "
        f"{ing['model_raw']['identifiers_per_s']}/s → ingest / raw = {ing['over_model_raw']} |",
        f"| E4 | full training at N={r['n']} from stored vectors | {fv['task_start_to_complete_s']} s "
        f"({fv.get('inferences')} inferences) |",
        f"| E5 | full training at N={r['n']} from images | {fi['task_start_to_complete_s']} s ({fi.get('inferences')} inferences) |",
        f"| E6 | incremental (+1 %) / full from images, median of {len(r['incremental_rounds_s'])} rounds | "
        f"{r['incremental_over_full_from_images']} ({inc['task_start_to_complete_s']} s of {r['incremental_rounds_s']}; "
        f"/ full from vectors {r['incremental_over_full_from_vectors']}) |",
        f"| E7 | worker peak RSS training from vectors: N={mem['n']} / {mem['scaled_n']} | {at_n} MiB / {at_big} MiB |",
        f"| E8 | similarIdentifiers at {s['vectors']} vectors (dim {s['dimension']}) | p50 {s['p50_ms']} ms, "
        f"p95 {s['p95_ms']} ms, recall@10 {s['recall_at_10']} |",
    ]
