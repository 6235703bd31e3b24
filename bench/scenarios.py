"""The measurements, each against the running stack through the public GraphQL API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.client import Client
from bench.images import SIZE, make_image
from bench.memory import RssSampler
from bench.stack import BenchError
from bench.stats import ratio, summary_ms

ENGINE = "engineshed-gallery"
SEED_OPERATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "veritone-ops" / "038-get-identifiers-for-training.graphql"
SEED_LIBRARY_ID = "17a86304-9a82-4943-a06e-a2eb1c2506cc"

# The seed operation, as published (used when the shared data directory is not next to the checkout).
GET_IDENTIFIERS = """
query GetIdentifiers($identifierTypeId: ID, $offset: Int = 0, $limit: Int = 25) {
  library(id: "17a86304-9a82-4943-a06e-a2eb1c2506cc") {
    id
    name
    entities(identifierTypeId: $identifierTypeId, offset: $offset, limit: $limit) {
      count
      records{
        id
        name
        jsondata
        identifiers(identifierTypeId: $identifierTypeId, limit: $limit) {
          count
          records {
            id
            url
            jsondata
          }
        }
      }
    }
  }
}
"""

CREATE_LIBRARY = "mutation($n: String!) { createLibrary(input: {name: $n, libraryTypeId: \"people\"}) { id } }"
CREATE_ENTITY = "mutation($l: ID!, $n: String!) { createEntity(input: {libraryId: $l, name: $n}) { id } }"
CREATE_MODEL = "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }"
CREATE_JOB = "mutation($input: CreateJob) { createJob(input: $input) { id tasks { records { id } } } }"
TASK_STATUS = "query($id: ID!) { task(id: $id) { status } }"
TASK_FULL = """query($id: ID!) { task(id: $id) { status duration output failureReason failureMessage
  createdDateTime queuedDateTime startedDateTime completedDateTime } }"""
MODEL = "query($id: ID!) { libraryEngineModel(id: $id) { trainStatus jsondata } }"
FINAL = ("complete", "failed", "cancelled", "aborted")


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def bounded(items: Sequence[Any], concurrency: int, fn: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    """``fn`` over ``items`` with at most ``concurrency`` in flight; results in order."""
    results: list[Any] = [None] * len(items)
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < len(items):
            i = next_index
            next_index += 1
            results[i] = await fn(items[i])

    await asyncio.gather(*(lane() for _ in range(min(concurrency, len(items)) or 1)))
    return results


# --------------------------------------------------------------------------- libraries


@dataclass
class Library:
    id: str
    entity_ids: list[str]
    entity_seeds: list[int]
    identifiers: int = 0


async def create_library(client: Client, name: str, entities: int, seed_base: int, concurrency: int) -> Library:
    library_id = (await client.data(CREATE_LIBRARY, n=name))["createLibrary"]["id"]

    async def entity(i: int) -> str:
        return (await client.data(CREATE_ENTITY, l=library_id, n=f"{name}-e{i:05d}"))["createEntity"]["id"]

    ids = await bounded(list(range(entities)), concurrency, entity)
    return Library(library_id, ids, [seed_base + i for i in range(entities)])


async def upload_identifiers(
    client: Client, library: Library, per_entity: int, concurrency: int, *, first_seed: int = 0, entities: int | None = None,
    size: int = 64,
) -> dict[str, float]:
    """Upload ``per_entity`` new ``size``² images to each of the first ``entities`` entities; returns timing."""
    work = [(e, first_seed + k) for k in range(per_entity) for e in range(entities or len(library.entity_ids))]

    async def one(item: tuple[int, int]) -> None:
        entity, seed = item
        data, content_type = make_image(library.entity_seeds[entity], seed, size=size)
        reply = await client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{library.entity_ids[entity]}", '
            f'identifierTypeId: "face"}}) {{ id }} }}',
            data, content_type, filename="x.jpg" if content_type == "image/jpeg" else "x.png",
        )
        reply.ok()

    started = time.perf_counter()
    await bounded(work, concurrency, one)
    seconds = time.perf_counter() - started
    library.identifiers += len(work)
    return {"count": len(work), "seconds": round(seconds, 3), "per_second": round(len(work) / seconds, 1)}


# --------------------------------------------------------------------------- training


async def start_training(
    client: Client, library_id: str, config: dict[str, Any] | None = None, engine: str = ENGINE
) -> tuple[str, str, float]:
    """(model id, task id, perf_counter just before createJob was sent)."""
    model_id = (await client.data(CREATE_MODEL, e=engine, l=library_id))["createLibraryEngineModel"]["id"]
    payload: dict[str, Any] = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
    if config:
        payload["config"] = config
    t0 = time.perf_counter()
    job = (await client.data(CREATE_JOB, input={"tasks": [{"engineId": engine, "payload": payload}]}))["createJob"]
    return model_id, job["tasks"]["records"][0]["id"], t0


async def wait_task(client: Client, task_id: str, *, interval: float, timeout: float, until: tuple[str, ...] = FINAL) -> tuple[str, float]:
    """Poll until the task's status is in ``until``; (status, perf_counter when first seen)."""
    deadline = time.perf_counter() + timeout
    while True:
        status = (await client.data(TASK_STATUS, id=task_id))["task"]["status"]
        now = time.perf_counter()
        if status in until or status in FINAL:
            return status, now
        if now > deadline:
            raise BenchError(f"task {task_id} still {status} after {timeout:.0f}s")
        await asyncio.sleep(interval)


async def train(
    client: Client, library_id: str, *, timeout: float, sampler: RssSampler | None = None, config: dict[str, Any] | None = None,
    poll_interval: float = 0.05,
) -> dict[str, Any]:
    """Train the library end to end through the API; every figure the product and the client report.

    ``poll_interval``: how often the client asks for the task's status. Each poll costs the client, the
    gateway and PostgreSQL CPU on the machine the training runs on (at 0.05 s, about 1 core-second in 7 s:
    bench/run.py cpu_seconds_during_training); where that matters, poll slowly and read the task's own
    timestamps (``task_created_to_completed_s``), which do not depend on the polling."""
    if sampler is not None:
        baseline = sampler.sample()
        sampler.window()
    model_id, task_id, t0 = await start_training(client, library_id, config)
    status, t_done = await wait_task(client, task_id, interval=poll_interval, timeout=timeout)
    memory = sampler.result() if sampler is not None else None
    task = (await client.data(TASK_FULL, id=task_id))["task"]
    if status != "complete":
        raise BenchError(f"training task {task_id} ended {status}: {task.get('failureReason')} {task.get('failureMessage')}")
    model = (await client.data(MODEL, id=model_id))["libraryEngineModel"]
    jsondata = model["jsondata"] or {}
    created, started, completed = (parse_time(task[k]) for k in ("createdDateTime", "startedDateTime", "completedDateTime"))
    result = {
        "model_id": model_id,
        "task_id": task_id,
        "identifiers": task["output"].get("identifiers"),
        "inferences": task["output"].get("inferences"),
        "train_seconds": task["output"].get("trainSeconds"),
        "client_create_to_complete_s": round(t_done - t0, 3),
        "task_start_to_complete_s": round(float(task["duration"]), 3),
        "task_created_to_started_s": round((started - created).total_seconds(), 3) if created and started else None,
        "task_created_to_completed_s": round((completed - created).total_seconds(), 3) if created and completed else None,
        "timings": jsondata.get("timings") or {},
        "embeddings": jsondata.get("embeddings") or {},
        "provider": jsondata.get("provider"),
        "backbone": (jsondata.get("backbone") or {}).get("name"),
        "embedding_model": (jsondata.get("backbone") or {}).get("model"),
    }
    if memory is not None:
        own, children, count = baseline
        memory["baseline_worker_rss_mib"] = round(own / 2**20, 1)
        memory["baseline_children_rss_mib"] = round(children / 2**20, 1)
        result["memory"] = memory
    return result


def breakdown(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the training wall time goes, from the model's timings and the task's timestamps."""
    wall = run["task_start_to_complete_s"]
    timings = run["timings"]
    train_s = run["train_seconds"]
    embed_s = timings.get("total")
    rows: list[dict[str, Any]] = []

    def add(stage: str, seconds: float | None, note: str) -> None:
        rows.append({
            "stage": stage,
            "seconds": None if seconds is None else round(seconds, 3),
            "fraction_of_wall": None if seconds is None or not wall else round(seconds / wall, 4),
            "note": note,
        })

    add("dispatch (createJob → task started)", run["task_created_to_started_s"], "task timestamps (ms); outside the wall")
    add("wall: task started → complete", wall, "Task.duration")
    add("embedding pipeline (wall)", embed_s, "timings.total; the stages below overlap inside it")
    add("  fetch (S3 GET)", timings.get("fetch"), "timings.fetch: summed over fetchConcurrency concurrent fetches (busy time, can exceed wall)")
    add("  decode/preprocess", timings.get("decode"), "timings.decode: CPU seconds summed over decode processes (overlapping)")
    add("  inference (backbone)", timings.get("inference"), "timings.inference: wall of the batched runs")
    add("  paging, cache lookups/stores, queues", None, "not measured by the product")
    fit = timings.get("fit")
    if fit is not None:
        add("head training + artifact build", fit, "timings.fit: evaluation, calibration and artifact build (the product does not split them)")
        other = None if train_s is None or embed_s is None else max(0.0, train_s - embed_s - fit)
        add("engine setup (session, grouping)", other, "trainSeconds − timings.total − timings.fit")
    else:
        head = None if train_s is None or embed_s is None else max(0.0, train_s - embed_s)
        add("head training + artifact build", head, "trainSeconds − timings.total (this engine reports no timings.fit)")
    rest = None if train_s is None else max(0.0, wall - train_s)
    add("artifact upload + record (+ setup)", rest, "wall − trainSeconds; includes the pre-train library lookups, not measured separately")
    return rows


# --------------------------------------------------------------------------- raw ceiling


def raw_ceiling(blobs: list[bytes], provider: str | None, batch_size: int, image_size: int, repeats: int = 3) -> dict[str, Any]:
    """The same backbone, batch size and provider run directly on already-decoded uint8 tensors."""
    from engines.backbone import default_backbone
    from engines.decode import decode_one
    from engines.runtime import CUDA, get_runner

    spec = default_backbone(image_size, 1)
    setting = "cuda" if provider == CUDA else "cpu"
    runner = get_runner(spec.model, setting)
    t = time.perf_counter()
    arrays = [decode_one(blob, spec.input_size, spec.channels)[0] for blob in blobs]
    decode_seconds = time.perf_counter() - t
    tensor = np.ascontiguousarray(np.stack([a for a in arrays if a is not None]))
    n = len(tensor)
    runner.run(tensor[:batch_size])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, n, batch_size):
            runner.run(tensor[i : i + batch_size])
        times.append(time.perf_counter() - t)
    best = sorted(times)[len(times) // 2]
    return {
        "identifiers": n,
        "batch_size": batch_size,
        "backbone": spec.name,
        "provider": runner.provider,
        "median_seconds": round(best, 4),
        "identifiers_per_s": round(n / best, 1),
        "decode_single_process_per_s": round(len(blobs) / decode_seconds, 1),
    }


async def s3_get_ceiling(database_url: str, env: dict[str, str], library_id: str, concurrency: int, repeats: int = 3) -> dict[str, Any]:
    """The fetch limit: the library's objects read straight from S3 by the bench process, as fast as it can.

    URLs are presigned beforehand (not timed) and read by bare aiohttp GETs, ``concurrency`` at a time:
    the cost of S3 itself and a minimal client, which every identifier of a full training pays once.
    """
    import aiohttp
    import asyncpg

    from storage.blobs import connect_blobs

    conn = await asyncpg.connect(database_url)
    try:
        keys = [r["storage_key"] for r in await conn.fetch(
            "SELECT storage_key FROM entity_identifiers WHERE library_id = $1 AND storage_key IS NOT NULL", uuid.UUID(library_id)
        )]
    finally:
        await conn.close()
    async with connect_blobs(
        endpoint_url=env["S3_ENDPOINT_URL"], bucket=env["S3_BUCKET"], region=env.get("AWS_REGION", "us-east-1"),
        access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
    ) as blobs:
        urls = [await blobs.presign_get(key, 3600) for key in keys]
    times = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def get(url: str) -> int:
            async with http.get(url) as reply:
                reply.raise_for_status()
                return len(await reply.read())

        for _ in range(repeats):
            started = time.perf_counter()
            sizes = await bounded(urls, concurrency, get)
            times.append(time.perf_counter() - started)
    median = sorted(times)[len(times) // 2]
    return {
        "objects": len(urls),
        "bytes": sum(sizes),
        "concurrency": concurrency,
        "median_seconds": round(median, 4),
        "identifiers_per_s": round(len(urls) / median, 1),
    }


# --------------------------------------------------------------------------- reads


def seed_operation(library_id: str) -> str:
    text = SEED_OPERATION.read_text() if SEED_OPERATION.exists() else GET_IDENTIFIERS
    if SEED_LIBRARY_ID not in text:
        raise BenchError("the seed GetIdentifiers operation no longer names its library literally")
    return text.replace(SEED_LIBRARY_ID, library_id)


async def latency_run(
    requests: int, concurrency: int, call: Callable[[], Awaitable[Any]], warmup: int = 5
) -> dict[str, Any]:
    """``requests`` calls with ``concurrency`` clients in flight: latency percentiles and calls/s."""
    for _ in range(warmup):
        await call()
    latencies: list[float] = []

    async def one(_: int) -> None:
        t = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await bounded(list(range(requests)), concurrency, one)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {"concurrency": concurrency, **summary_ms(latencies)}
    result["per_second"] = round(requests / wall, 1)
    result["wall_s"] = round(wall, 3)
    return result


async def reads(client: Client, library_id: str, requests: int, levels: Sequence[int]) -> dict[str, Any]:
    operation = seed_operation(library_id)
    sql: dict[str, Any] = {}
    for limit in (5, 30):
        # The first request of a token also authenticates it (cached afterwards): count the second.
        first = await client.query(operation, identifierTypeId="face", limit=limit)
        first.ok()
        reply = await client.query(operation, identifierTypeId="face", limit=limit)
        data = reply.ok()
        entities = data["library"]["entities"]
        sql[str(limit)] = {
            "sql_statements": reply.sql_statements,
            "sql_statements_first_request": first.sql_statements,
            "entities": entities["count"],
            "identifiers": sum(e["identifiers"]["count"] for e in entities["records"]),
        }

    async def call() -> None:
        reply = await client.query(operation, identifierTypeId="face", limit=30)
        reply.ok()

    latency = {str(c): await latency_run(requests, c, call) for c in levels}
    return {"page_size_for_latency": 30, "latency": latency, "sql_per_request": sql}


async def answering_pids(url: str, wanted: int, timeout: float = 60.0) -> set[int]:
    """The gateway processes behind ``url`` (/healthz names its pid), over fresh concurrent connections."""
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as http:
        while len(seen) < wanted and time.monotonic() < deadline:
            replies = await asyncio.gather(*(http.get(url + "/healthz") for _ in range(4 * wanted)))
            seen.update(r.json()["pid"] for r in replies)
    return seen


async def reads_by_processes(
    gateways: dict[int, str], token: str, library_id: str, requests: int, concurrency: int = 32, rounds: int = 3
) -> dict[str, Any]:
    """GetIdentifiers pages with ``concurrency`` clients against gateways of 1 and N processes (same database
    and S3, same library), alternating ``rounds`` times so that a slow minute of the machine hits both."""
    import psutil

    operation = seed_operation(library_id)
    runs: dict[str, list[dict[str, Any]]] = {str(n): [] for n in gateways}
    pids: dict[str, set[int]] = {}
    for n, url in gateways.items():
        pids[str(n)] = await answering_pids(url, n)
    seen = {n: len(p) for n, p in pids.items()}
    me = psutil.Process()

    def cpu_seconds(processes: list[psutil.Process]) -> float:
        total = 0.0
        for proc in processes:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def machine_busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    for _ in range(rounds):
        for n, url in gateways.items():
            servers = [psutil.Process(pid) for pid in pids[str(n)]]
            client = Client(url, token, connections=max(64, concurrency))
            try:
                async def call(client: Client = client) -> None:
                    (await client.query(operation, identifierTypeId="face", limit=30)).ok()

                for _ in range(2 * n + 5):  # warm-up: every process parses and validates the query once
                    await call()
                before = (cpu_seconds(servers), cpu_seconds([me]), machine_busy())
                run = await latency_run(requests, concurrency, call, warmup=0)
                after = (cpu_seconds(servers), cpu_seconds([me]), machine_busy())
            finally:
                await client.aclose()
            # Where the cores went during the run: the gateway processes, the bench's own clients, everything.
            wall = run["wall_s"]
            run["gateway_busy_cores"] = round((after[0] - before[0]) / wall, 2)
            run["client_busy_cores"] = round((after[1] - before[1]) / wall, 2)
            run["machine_busy_cores"] = round((after[2] - before[2]) / wall, 2)
            run["per_gateway_core"] = round(run["per_second"] / run["gateway_busy_cores"], 1) if run["gateway_busy_cores"] else None
            runs[str(n)].append(run)
    levels = {}
    for n, level_runs in runs.items():
        rates = sorted(r["per_second"] for r in level_runs)
        levels[n] = {
            "processes": int(n),
            "processes_answering": seen[n],
            "per_second": rates[len(rates) // 2] if len(rates) % 2 else round(sum(rates) / len(rates), 1),
            "p50_ms": sorted(r["p50_ms"] for r in level_runs)[len(level_runs) // 2],
            "gateway_busy_cores": sorted(r["gateway_busy_cores"] for r in level_runs)[len(level_runs) // 2],
            "per_gateway_core": sorted(r["per_gateway_core"] or 0 for r in level_runs)[len(level_runs) // 2],
            "runs": level_runs,
        }
    one, many = min(gateways), max(gateways)
    return {
        "concurrency": concurrency,
        "requests_per_run": requests,
        "rounds": rounds,
        "page_size": 30,
        "levels": levels,
        "cpu_count": psutil.cpu_count(),
        "n_over_1": round(ratio(levels[str(many)]["per_second"], levels[str(one)]["per_second"]) or 0, 3),
    }


# --------------------------------------------------------------------------- recognize


async def recognize(client: Client, model_id: str, library: Library, calls: int, batch_calls: int, concurrency: int) -> dict[str, Any]:
    query = f'query {{ recognize(libraryEngineModelId: "{model_id}", topK: 1) {{ matches {{ entityId score }} }} }}'
    # Fresh images of known entities (never uploaded), so every call does the full work.
    images = [make_image(library.entity_seeds[i % len(library.entity_ids)], 10_000 + i) for i in range(max(calls, batch_calls) + 10)]
    counter = iter(range(10**9))
    hits = 0

    async def call() -> None:
        nonlocal hits
        data, content_type = images[next(counter) % len(images)]
        matches = (await client.upload_form(query, data, content_type)).ok()["recognize"]["matches"]
        hits += bool(matches)

    single = await latency_run(calls, 1, call, warmup=5)
    batch = await latency_run(batch_calls, concurrency, call, warmup=0)
    batch["images_per_s"] = batch.pop("per_second")
    return {"single": single, "batch": batch, "calls_with_a_match": hits}


# --------------------------------------------------------------------------- dispatch


async def dispatch(client: Client, library_id: str, jobs: int, poll_interval: float, timeout: float) -> dict[str, Any]:
    """createJob → task running, one job at a time on an idle worker."""
    observed: list[float] = []
    server: list[float] = []
    missed_running = 0
    for _ in range(jobs):
        await asyncio.sleep(0.05)  # the worker is back waiting for work
        _, task_id, t0 = await start_training(client, library_id)
        status, t_seen = await wait_task(client, task_id, interval=poll_interval, timeout=timeout, until=("running",))
        observed.append(t_seen - t0)
        if status != "running":
            missed_running += 1
        if status not in FINAL:
            status, _ = await wait_task(client, task_id, interval=0.01, timeout=timeout)
        task = (await client.data(TASK_FULL, id=task_id))["task"]
        if status != "complete":
            raise BenchError(f"dispatch job {task_id} ended {status}: {task.get('failureMessage')}")
        created, started = parse_time(task["createdDateTime"]), parse_time(task["startedDateTime"])
        if created and started:
            server.append((started - created).total_seconds())
    return {
        "jobs": jobs,
        "poll_interval_ms": poll_interval * 1000,
        "client_observed": summary_ms(observed),
        "server_timestamps": summary_ms(server),
        "already_past_running_when_seen": missed_running,
    }


def e2e_over_raw(e2e_per_s: float, raw_per_s: float) -> float | None:
    value = ratio(e2e_per_s, raw_per_s)
    return None if value is None else round(value, 5)


# --------------------------------------------------------------------------- uploads against S3 PUT


_BOUNDARY = "engineshed-bench-boundary-5c1e"


def _plain_form(query: str, data: bytes, content_type: str) -> bytes:
    name = "x.jpg" if content_type == "image/jpeg" else "x.png"
    return (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="query"\r\n\r\n{query}\r\n'
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode() + data + f"\r\n--{_BOUNDARY}--\r\n".encode()


async def upload_vs_s3_put(client: Client, library: Library, env: dict[str, str], per_entity: int, concurrency: int,
                           repeats: int = 3, gateway_pid: int | None = None, image_size: int = SIZE,
                           seed_offset: int = 50_000) -> dict[str, Any]:
    """createEntityIdentifier uploads through the API against bare S3 PUTs of the same bytes, same concurrency.

    The images are made beforehand (not timed), so both sides send ready bytes. The API side is the
    plain form curl users send (``query`` + ``file``); the S3 side PUTs the same bytes, with their content
    type, to presigned URLs (signed beforehand, not timed) with bare aiohttp: the object store's own
    speed for these objects, which every upload pays once. Each side runs ``repeats`` passes (fresh
    identifiers and fresh keys each time); the medians are compared.
    The gateway's own CPU time per upload (user + system, from the kernel's accounting) is reported too:
    unlike the rates, it hardly moves when other work shares the machine.
    ``image_size``: the side of the square images (PNG and JPEG alternating; at 512, 146 KB and 697 KB).
    """
    import aiohttp
    import psutil
    from aiobotocore.session import get_session

    gateway = psutil.Process(gateway_pid) if gateway_pid else None

    def cpu() -> float:
        if gateway is None:
            return 0.0
        times = gateway.cpu_times()
        return times.user + times.system

    work = [(e, k) for k in range(per_entity) for e in range(len(library.entity_ids))]
    blobs = [make_image(library.entity_seeds[e], seed_offset + k, size=image_size, jpeg=i % 2 == 1)
             for i, (e, k) in enumerate(work)]
    queries = [
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{library.entity_ids[e]}", identifierTypeId: "face"}}) {{ id }} }}'
        for e, _ in work
    ]

    # Both sides send ready bytes from the same bare client (aiohttp), so the comparison is of the two
    # servers: the multipart bodies are built here, as curl -F would build them, before the clock starts.
    forms = [_plain_form(queries[i], *blobs[i]) for i in range(len(work))]
    api_headers = {"Authorization": client.http.headers["Authorization"], "Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"}

    async def api_pass(http: Any) -> float:
        async def one(i: int) -> None:
            async with http.post(client.url, data=forms[i], headers=api_headers) as reply:
                body = await reply.json()
                if reply.status != 200 or body.get("errors"):
                    raise BenchError(f"upload failed (HTTP {reply.status}): {str(body)[:500]}")

        started = time.perf_counter()
        await bounded(list(range(len(work))), concurrency, one)
        return time.perf_counter() - started

    session = get_session()
    async with session.create_client(
        "s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ) as s3:
        signed = [
            [await s3.generate_presigned_url("put_object", Params={"Bucket": env["S3_BUCKET"], "Key": f"bench-put/{p}/{i}",
                                                                   "ContentType": blobs[i][1]}, ExpiresIn=3600)
             for i in range(len(work))]
            for p in range(repeats)
        ]

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * concurrency)) as http:

        async def s3_pass(urls: list[str]) -> float:
            async def put(i: int) -> None:
                data, content_type = blobs[i]
                async with http.put(urls[i], data=data, headers={"Content-Type": content_type}) as reply:
                    reply.raise_for_status()
                    await reply.read()

            started = time.perf_counter()
            await bounded(list(range(len(work))), concurrency, put)
            return time.perf_counter() - started

        # Alternate the two sides so that neither gets a quieter stretch of the machine.
        api_times, s3_times, api_cpu = [], [], []
        for p in range(repeats):
            before = cpu()
            api_times.append(await api_pass(http))
            api_cpu.append(cpu() - before)
            s3_times.append(await s3_pass(signed[p]))
    library.identifiers += len(work) * repeats
    api_s, s3_s = sorted(api_times)[repeats // 2], sorted(s3_times)[repeats // 2]
    api_rate, s3_rate = len(work) / api_s, len(work) / s3_s
    return {
        "uploads": len(work),
        "passes": repeats,
        "concurrency": concurrency,
        "image_size": image_size,
        "bytes": sum(len(b) for b, _ in blobs),
        "api_seconds": [round(t, 3) for t in api_times],
        "s3_put_seconds": [round(t, 3) for t in s3_times],
        "api_uploads_per_s": round(api_rate, 1),
        "s3_puts_per_s": round(s3_rate, 1),
        "api_over_s3_put": round(api_rate / s3_rate, 4),
        "gateway_cpu_ms_per_upload": round(sorted(api_cpu)[repeats // 2] / len(work) * 1000, 3) if gateway else None,
    }


# --------------------------------------------------------------------------- where the CPU goes


def _process_kind(p: Any) -> str:
    cmd = " ".join(p.info["cmdline"] or [])
    name = p.info["name"] or ""
    if "gateway.cli worker" in cmd:
        return "worker (fetch, pipeline, inference)"
    if "multiprocessing" in cmd and ("spawn_main" in cmd or "forkserver" in cmd):
        return "worker decode processes"
    if "gateway.cli serve" in cmd:
        return "gateways"
    if name == "weed" or "weed" in cmd.split(" ")[0]:
        return "S3 (weed)"
    if name.startswith("postgres") or "postgres" in cmd.split(" ")[0]:
        return "PostgreSQL"
    if "bench.run" in cmd:
        return "bench client"
    return "other"


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's CPU seconds (user + system) so far, by pid, with the kind it is."""
    import psutil

    out = {}
    for p in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = p.info["cpu_times"]
        if times is not None:
            out[p.pid] = (_process_kind(p), times.user + times.system)
    out[-1] = ("wall", time.perf_counter())
    return out


def cpu_spent_since(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by kind of process since ``before`` (processes that ended meanwhile are not counted;
    PostgreSQL backends live as long as their pooled connections, so they are)."""
    now = cpu_by_process()
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in now.items():
        if pid == -1:
            continue
        spent[kind] = spent.get(kind, 0.0) + seconds - (before[pid][1] if pid in before else 0.0)
    result = {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.005}
    result["wall_s"] = round(now[-1][1] - before[-1][1], 3)
    return result


# --------------------------------------------------------------------------- pulled models


async def register_pulled(env: dict[str, str], cache_dir: Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Pull (or reuse the cached conversion of) each catalogue model and register it as a system model.

    Per model: what the pull took (download, convert, validate; 0 when cached) and what registration
    took (the registry's static checks, the bounded trial inference in its child process, the S3 store),
    with the trial's throughput at batch 32 and its provider.
    """
    from gateway.resources import open_resources
    from gateway.services import model_pull
    from gateway.services.models import register_system_model
    from gateway.settings import Settings

    settings = Settings.from_env(env)
    out: dict[str, Any] = {}
    async with open_resources(settings, role="worker", run_migrations=False, load_engines=False) as res:
        for entry in model_pull.select(names):
            pulled = await model_pull.prepare(entry, cache_dir)
            t = time.perf_counter()
            version = await register_system_model(
                res, name=entry.name, application=entry.application, model_bytes=pulled.model_bytes,
                manifest=pulled.manifest, source=pulled.source, description=entry.description,
            )
            out[entry.name] = {
                "version": version.ref,
                "application": entry.application,
                "size_mib": round(len(pulled.model_bytes) / 2**20, 2),
                "pull_seconds": {k: round(v, 3) for k, v in pulled.seconds.items()},
                "register_and_validate_s": round(time.perf_counter() - t, 3),
                "trial_images_per_s": version.throughput,
                "trial_batch": version.throughput_batch,
                "trial_provider": version.provider,
            }
    return out


async def model_bytes_and_manifest(env: dict[str, str], name: str) -> tuple[str, bytes, dict[str, Any]]:
    """(ref, ONNX bytes, manifest) of a registered system model's default version."""
    from gateway.resources import open_resources
    from gateway.services import models
    from gateway.settings import Settings

    settings = Settings.from_env(env)
    async with open_resources(settings, role="worker", run_migrations=False, load_engines=False) as res:
        version = await models.resolve_model(res, None, name)
        return version.ref, await models.model_bytes(res, version), dict(version.manifest)


def model_raw_ceiling(
    blobs: list[bytes], model: bytes, manifest: dict[str, Any], ref: str, provider: str | None, batch_size: int,
    repeats: int = 2,
) -> dict[str, Any]:
    """The registered model's composed backbone (preprocessing inside, as training runs it) on decoded
    uint8 batches: the ceiling training with that model can reach on this machine.

    Both ways of running it are measured and the better one is the ceiling: one session using every core, a
    batch at a time, and the layout training uses on the CPU (runtime.throughput_runner: single-threaded runs,
    as many at once as there are cores)."""
    import concurrent.futures

    from engines.decode import decode_one
    from engines.model_backbone import compose_backbone
    from engines.runtime import CUDA, get_runner, throughput_runner

    spec = compose_backbone(model, manifest, name=ref)
    setting = "cuda" if provider == CUDA else "cpu"
    runner = get_runner(spec.model, setting)
    lanes_runner, lanes = throughput_runner(spec.model, setting)
    t = time.perf_counter()
    arrays = [decode_one(blob, spec.input_size, spec.channels)[0] for blob in blobs]
    decode_seconds = time.perf_counter() - t
    tensor = np.ascontiguousarray(np.stack([a for a in arrays if a is not None]))
    del arrays
    n = len(tensor)
    batches = [tensor[i : i + batch_size] for i in range(0, n, batch_size)]
    runner.run(tensor[: min(batch_size, 8)])  # warm-up
    lanes_runner.run(tensor[: min(batch_size, 8)])
    times, lane_times = [], []
    with concurrent.futures.ThreadPoolExecutor(lanes) as pool:
        for _ in range(repeats):
            t = time.perf_counter()
            for batch in batches:
                runner.run(batch)
            times.append(time.perf_counter() - t)
            if lanes > 1:
                t = time.perf_counter()
                list(pool.map(lanes_runner.run, batches))
                lane_times.append(time.perf_counter() - t)
    best = min(times + lane_times)
    return {
        "identifiers": n,
        "batch_size": batch_size,
        "backbone": spec.name,
        "provider": runner.provider,
        "seconds": round(best, 3),
        "runs_s": [round(x, 3) for x in times],
        "parallel": lanes,
        "parallel_runs_s": [round(x, 3) for x in lane_times],
        "identifiers_per_s": round(n / best, 2),
        "decode_single_process_per_s": round(len(blobs) / decode_seconds, 1),
    }
