"""similarIdentifiers at scale: N 1024-d vectors of one model version in one organization, 1 % in one library.

    python -m bench.similar_scale [--n 100000 1000000] [--index-max 100000] [--out bench/results-similar-cpu-2core.json]

Per N: the vectors are written with binary COPY (99 % in a "rest" library, 1 % in the searched one, one entity
per identifier), then ANALYZE; then

* the exact path (the library holds fewer than ENGINESHED_SEARCH_EXACT_BELOW candidates): p50/p95 of
  ``similarIdentifiers(libraryId, vector, limit: 10)`` through the GraphQL API and recall@10 against the exact
  cosine ranking computed here with numpy, plus the plan (EXPLAIN ANALYZE, BUFFERS) of one such search;
* up to ``--index-max`` vectors: the (version, organization) HNSW index built as the worker builds it, its
  seconds, then the same library search through a second gateway with ENGINESHED_SEARCH_EXACT_BELOW=1 (the
  index path, with its exact fallback), and the organization-wide search (no libraryId) through the index.

Queries are library vectors plus a little noise (the nearest neighbour is known; the other nine are the hard
part on random unit vectors, which have no cluster structure: the worst case for an HNSW graph).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from bench import scale
from bench.client import Client
from bench.stack import Stack, bench_stack, create_token, log, start_gateway

DIM = scale.DIM
SHARE = 0.01
QUERIES = 100
WARMUP = 5
SIMILAR = ("query($l: ID, $v: [Float!], $m: String) { similarIdentifiers(libraryId: $l, vector: $v, modelId: $m, "
           "limit: 10) { score identifier { id } } }")


async def load(pool: asyncpg.Pool, org: uuid.UUID, version: uuid.UUID, name: str, rows: int,
               seed: int) -> tuple[uuid.UUID, float]:
    """A library of ``rows`` identifiers (one entity each) with unit vectors, written with binary COPY."""
    library = uuid.uuid4()
    ids = np.frombuffer(b"".join(uuid.uuid4().bytes for _ in range(rows)), "V16")
    uids = [uuid.UUID(bytes=ids[i].tobytes()) for i in range(rows)]
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO libraries (id, org_id, name, library_type_id) VALUES ($1, $2, $3, 'people')",
                           library, org, name)
        await conn.copy_records_to_table("entities", columns=["id", "org_id", "library_id", "name"],
                                         records=((u, org, library, f"{name}-{i}") for i, u in enumerate(uids)))
        await conn.copy_records_to_table(
            "entity_identifiers",
            columns=["id", "org_id", "library_id", "entity_id", "identifier_type_id", "storage_key", "content_type",
                     "unique_name"],
            records=((u, org, library, u, "face", f"bench/none/{i}", "image/png", f"{name}-{i}.png")
                     for i, u in enumerate(uids)))

        async def chunks() -> AsyncIterator[bytes]:
            yield scale._copy_header()
            for start in range(0, rows, scale.COPY_ROWS):
                end = min(rows, start + scale.COPY_ROWS)
                v = np.random.default_rng([seed, start]).standard_normal((end - start, DIM)).astype(np.float32)
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                yield scale._embedding_rows(ids[start:end], version, org, library, v)
            yield np.array([-1], ">i2").tobytes()

        await conn.copy_to_table("identifier_embeddings", source=chunks(), format="binary", columns=[
            "identifier_id", "model_version_id", "org_id", "library_id", "dimension", "embedding", "source"])
    return library, time.perf_counter() - started


async def vectors_of(pool: asyncpg.Pool, where: str, arg: uuid.UUID) -> tuple[list[str], np.ndarray]:
    rows = await pool.fetch(f"SELECT identifier_id, vector_send(embedding) AS v FROM identifier_embeddings WHERE {where}",
                            arg)
    return [str(r["identifier_id"]) for r in rows], np.stack(
        [np.frombuffer(r["v"], ">f4", offset=4).astype(np.float32) for r in rows])


def queries_from(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(vectors), min(count, len(vectors)), replace=False)
    return (vectors[picks] + 0.02 * rng.standard_normal((picks.size, DIM))).astype(np.float32)


async def measure(client: Client, model: str, library: uuid.UUID | None, ids: list[str], unit: np.ndarray,
                  queries: np.ndarray) -> dict[str, Any]:
    """p50/p95 through GraphQL and recall@10 against numpy's exact ranking of ``unit`` (rows of ``ids``)."""
    lib = str(library) if library else None
    for q in queries[:WARMUP]:
        await client.data(SIMILAR, l=lib, v=q.tolist(), m=model)
    latencies, recalls = [], []
    for q in queries:
        exact = {ids[i] for i in np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10]}
        t = time.perf_counter()
        hits = (await client.data(SIMILAR, l=lib, v=q.tolist(), m=model))["similarIdentifiers"]
        latencies.append(time.perf_counter() - t)
        recalls.append(len({h["identifier"]["id"] for h in hits} & exact) / 10)
    lat = np.asarray(latencies) * 1000
    return {"queries": len(latencies), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2), "recall_at_10": round(float(np.mean(recalls)), 4),
            "min_recall_at_10": min(recalls)}


async def explain_exact(pool: asyncpg.Pool, org: uuid.UUID, version: uuid.UUID, library: uuid.UUID,
                        query: np.ndarray) -> list[str]:
    """The plan of one exact library search, as the gateway sends it (storage.queries.vectors.EXACT_SEARCH)."""
    from storage.queries import vectors as q

    async with pool.acquire() as conn:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + q.EXACT_SEARCH, org, version, library,
                                query.tolist(), None, 10)
    return [r[0] for r in rows]


async def build_index(pool: asyncpg.Pool, org: uuid.UUID, version: uuid.UUID) -> float:
    """The (version, organization) HNSW index, built by the worker's own code path; its seconds."""
    from storage.queries import vectors as q

    async with pool.acquire() as conn:
        await q.want_index(conn, org, version, DIM)
        started = time.perf_counter()
        while not await q.index_built(conn, org, version):  # the bench worker may have taken it first
            await q.build_next_index(conn)
            await asyncio.sleep(0.5)
        return time.perf_counter() - started


async def one_n(stack: Stack, pool: asyncpg.Pool, n: int, index_max: int) -> dict[str, Any]:
    token = await create_token(stack.database_url, f"bench-similar-{n}-{uuid.uuid4().hex[:6]}")
    client = Client(stack.url, token, connections=4)
    try:
        org = uuid.UUID((await client.data("query { me { organizationId } }"))["me"]["organizationId"])
        model = await scale._register(stack.env, org, "bench-similar-1024")
        version = await pool.fetchval("SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id "
                                      "WHERE m.org_id = $1 AND m.name = 'bench-similar-1024'", org)
        small = max(10, int(n * SHARE))
        log(f"similar: {n} vectors ({small} in the searched library), COPY")
        _, rest_s = await load(pool, org, version, f"rest-{n}", n - small, seed=n)
        library, lib_s = await load(pool, org, version, f"lib-{n}", small, seed=n + 1)
        t = time.perf_counter()
        await pool.execute("ANALYZE identifier_embeddings")
        row: dict[str, Any] = {"vectors": n, "library_vectors": small, "dimension": DIM,
                               "copy_seconds": round(rest_s + lib_s, 1), "analyze_seconds": round(time.perf_counter() - t, 1)}
        ids, vectors = await vectors_of(pool, "library_id = $1", library)
        queries = queries_from(vectors, QUERIES, seed=n)
        log("similar: the library search, exact path")
        row["library_exact"] = await measure(client, model, library, ids, vectors, queries)
        row["library_exact_plan"] = await explain_exact(pool, org, version, library, queries[0])
        log(f"similar: {row['library_exact']}")
        if n <= index_max:
            log("similar: building the HNSW index")
            row["index_build_seconds"] = round(await build_index(pool, org, version), 1)
            log(f"similar: index built in {row['index_build_seconds']} s")
            url, _ = start_gateway(stack, 1, f"gateway-index-{n}", {"ENGINESHED_SEARCH_EXACT_BELOW": "1"})
            indexed = Client(url, token, connections=4)
            try:
                row["library_index_path"] = await measure(indexed, model, library, ids, vectors, queries)
                log(f"similar: index path {row['library_index_path']}")
                all_ids, all_vectors = await vectors_of(pool, "org_id = $1", org)
                row["organization_index"] = await measure(client, model, None, all_ids, all_vectors, queries[:50])
                log(f"similar: organization-wide {row['organization_index']}")
            finally:
                await indexed.aclose()
        return row
    finally:
        await client.aclose()


async def run(stack: Stack, sizes: list[int], index_max: int) -> dict[str, Any]:
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    try:
        version = await pool.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        rows = []
        for n in sizes:
            rows.append(await one_n(stack, pool, n, index_max))
        return {"pgvector": version, "series": rows, "index_max": index_max}
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[100_000])
    p.add_argument("--index-max", type=int, default=100_000, help="build the HNSW index up to this many vectors")
    p.add_argument("--out", type=Path, default=Path("bench/results-similar-cpu-2core.json"))
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    started = time.perf_counter()
    # SIGTERM cleans up like Ctrl-C: the stack's processes and its temporary directory go with it.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with bench_stack() as stack:
        results = asyncio.run(run(stack, args.n, args.index_max))
    report = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "note": args.note,
              "similar": results, "total_seconds": round(time.perf_counter() - started, 1)}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items()}, indent=1)[:6000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
