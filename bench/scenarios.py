"""The stack helpers every measurement uses, through the public GraphQL API: libraries, uploads, training,
the training breakdown and the pulled models. The measurements themselves: latency.py, ceilings.py, processes.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.client import Client
from bench.images import make_image
from bench.memory import RssSampler
from bench.stack import BenchError
from bench.stats import ratio

ENGINE = "engineshed-gallery"
PER_ENTITY = 5  # identifiers per entity in the libraries the bench builds

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
    bench/pulled.py cpu_seconds_during_training); where that matters, poll slowly and read the task's own
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


def e2e_over_raw(e2e_per_s: float, raw_per_s: float) -> float | None:
    value = ratio(e2e_per_s, raw_per_s)
    return None if value is None else round(value, 5)


# --------------------------------------------------------------------------- pulled models


async def register_pulled(env: dict[str, str], cache_dir: Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Pull (or reuse the cached conversion of) each catalogue model and register it as a system model.

    Per model: what the pull took (download, convert, validate; 0 when cached) and what registration
    took (the registry's static checks, the bounded trial inference in its child process, the S3 store),
    with the trial's throughput at batch 32 and its provider.
    """
    from gateway.resources import open_resources
    from gateway.services.models.pull import conversion as pull_conversion
    from gateway.services.models.registry import register_system_model
    from gateway.settings import Settings

    settings = Settings.from_env(env)
    out: dict[str, Any] = {}
    async with open_resources(settings, role="worker", run_migrations=False, load_engines=False) as res:
        for entry in pull_conversion.select(names):
            pulled = await pull_conversion.prepare(entry, cache_dir)
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
    from gateway.services.models import registry as models
    from gateway.settings import Settings

    settings = Settings.from_env(env)
    async with open_resources(settings, role="worker", run_migrations=False, load_engines=False) as res:
        version = await models.resolve_model(res, None, name)
        return version.ref, await models.model_bytes(res, version), dict(version.manifest)


