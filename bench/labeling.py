"""Scenario 11: the labeling loop. Auto-tag images/s through the API against the model's raw ceiling, and
auto-grouping time at 10,000 items.

* Auto-tag: the classifier is trained on the 1,437 training digits (scikit-learn's, as 32×32 PNGs), then
  every one of the 1,797 digits is uploaded again as an unassigned identifier and an autoTag job scores them
  (filter annotationTypes [raw], threshold 0.5). The raw ceiling is the same trained artifact recognising the
  same PNG bytes in the bench's process, in batches of 64 as the worker sends them (decode + model, no S3, no
  database): the work the job cannot avoid.
* Grouping: ``--group-n`` (default 10,000) unassigned 64×64 images of bench/images.py (50 base colours, noise)
  grouped into 50 with the built-in pixel projection; the task's time from start to complete, and, beside it,
  the clustering alone (engines.clustering on the same number of 512-d vectors) in the bench's process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np

from bench.client import Client
from bench.images import make_image
from bench.scenarios import TASK_FULL, bounded, e2e_over_raw, start_training, wait_task
from bench.stack import BenchError

CLASSIFIER = "engineshed-classifier"
CREATE_LIBRARY = 'mutation($n: String!) { createLibrary(input: {name: $n, libraryTypeId: "objects"}) { id } }'
CREATE_ENTITY = "mutation($l: ID!, $n: String!) { createEntity(input: {libraryId: $l, name: $n}) { id } }"
MODEL_URL = "query($id: ID!) { libraryEngineModel(id: $id) { trainStatus dataUrl jsondata } }"
JOB_TASK = "query($id: ID!) { job(id: $id) { tasks { records { id } } } }"
GROUPS = 50
BATCH = 64


async def _upload_unassigned(client: Client, library_id: str, blobs: list[tuple[bytes, str]], concurrency: int) -> None:
    async def one(item: tuple[bytes, str]) -> None:
        data, content_type = item
        (await client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{libraryId: "{library_id}", identifierTypeId: "image"}}) {{ id }} }}',
            data, content_type, filename="x.png",
        )).ok()

    await bounded(blobs, concurrency, one)


def raw_ceiling(artifact: bytes, images: list[bytes], repeats: int = 3) -> dict[str, Any]:
    from engines.classifier import ClassifierEngine

    engine = ClassifierEngine()

    async def once() -> float:
        t = time.perf_counter()
        for start in range(0, len(images), BATCH):
            await engine.recognize(artifact, images[start : start + BATCH], top_k=2, threshold=-1.0, execution_provider="auto")
        return time.perf_counter() - t

    async def run() -> list[float]:
        await engine.recognize(artifact, images[:BATCH], top_k=2, threshold=-1.0, execution_provider="auto")  # warm-up
        return [await once() for _ in range(repeats)]

    times = sorted(asyncio.run(run()))
    median = times[len(times) // 2]
    return {"images": len(images), "median_seconds": round(median, 4), "images_per_s": round(len(images) / median, 1)}


def clustering_alone(n: int, groups: int) -> dict[str, Any]:
    from engines.clustering import cluster

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(groups, 512))
    x = centres[rng.integers(0, groups, n)] + rng.normal(scale=0.5, size=(n, 512))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    cluster(x, n_clusters=groups, similarity_threshold=None)
    return {"items": n, "dimension": 512, "groups": groups, "seconds": round(time.perf_counter() - t, 3)}


async def _job_task(client: Client, job_id: str) -> str:
    return (await client.data(JOB_TASK, id=job_id))["job"]["tasks"]["records"][0]["id"]


async def labeling(client: Client, group_n: int, concurrency: int, timeout: float) -> dict[str, Any]:
    from sampledata.digits import NAMES, load, png

    digits = load()
    library = (await client.data(CREATE_LIBRARY, n="bench-digits"))["createLibrary"]["id"]
    entities = {f"digit-{d}": (await client.data(CREATE_ENTITY, l=library, n=NAMES[d]))["createEntity"]["id"] for d in range(10)}

    async def labeled(entry: Any) -> None:
        (await client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entities[entry.entity_id]}", identifierTypeId: "image"}}) {{ id }} }}',
            entry.data, "image/png", filename="d.png",
        )).ok()

    await bounded(digits.train, concurrency, labeled)
    model_id, task_id, _ = await start_training(client, library, engine=CLASSIFIER)
    status, _ = await wait_task(client, task_id, interval=0.1, timeout=timeout)
    if status != "complete":
        raise BenchError(f"the classifier's training ended {status}")
    from sklearn.datasets import load_digits

    images = [png(row) for row in load_digits().data]
    await _upload_unassigned(client, library, [(b, "image/png") for b in images], concurrency)

    job = (await client.data(
        'mutation($l: ID!, $m: ID) { autoTag(input: {libraryId: $l, libraryEngineModelId: $m, filter: {annotationTypes: [raw]}}) { id } }',
        l=library, m=model_id,
    ))["autoTag"]["id"]
    tag_task = await _job_task(client, job)
    status, _ = await wait_task(client, tag_task, interval=0.05, timeout=timeout)
    task = (await client.data(TASK_FULL, id=tag_task))["task"]
    if status != "complete":
        raise BenchError(f"autoTag ended {status}: {task.get('failureMessage')}")
    output = task["output"] or {}
    seconds = float(task["duration"])
    tag_per_s = output.get("scored", 0) / seconds if seconds else 0.0
    url = (await client.data(MODEL_URL, id=model_id))["libraryEngineModel"]["dataUrl"]
    async with httpx.AsyncClient(timeout=60) as http:
        artifact = (await http.get(url)).content
    raw = await asyncio.to_thread(raw_ceiling, artifact, images)

    # Grouping at scale.
    group_library = (await client.data(CREATE_LIBRARY, n="bench-grouping"))["createLibrary"]["id"]
    blobs = [make_image(i % GROUPS, i) for i in range(group_n)]
    t = time.perf_counter()
    await _upload_unassigned(client, group_library, blobs, concurrency)
    upload_seconds = time.perf_counter() - t
    job = (await client.data(
        "mutation($l: ID!, $n: Int) { autoGroup(input: {libraryId: $l, nClusters: $n}) { id } }", l=group_library, n=GROUPS,
    ))["autoGroup"]["id"]
    group_task = await _job_task(client, job)
    status, _ = await wait_task(client, group_task, interval=0.1, timeout=timeout)
    gtask = (await client.data(TASK_FULL, id=group_task))["task"]
    if status != "complete":
        raise BenchError(f"autoGroup ended {status}: {gtask.get('failureMessage')}")
    alone = await asyncio.to_thread(clustering_alone, group_n, GROUPS)
    return {
        "autotag": {
            "images": len(images), "scored": output.get("scored"), "suggested": output.get("suggested"),
            "task_seconds": round(seconds, 3), "images_per_s": round(tag_per_s, 1), "raw": raw,
            "task_over_raw": e2e_over_raw(tag_per_s, raw["images_per_s"]),
        },
        "grouping": {
            "items": group_n, "groups": GROUPS, "upload_seconds": round(upload_seconds, 1),
            "task_seconds": round(float(gtask["duration"]), 3), "output": gtask["output"], "clustering_alone": alone,
        },
    }


def rows(s: dict[str, Any], fmt: Any) -> list[str]:
    a, g = s["autotag"], s["grouping"]
    return [
        f"| 11 | autoTag, {a['scored']} unassigned digits, trained classifier, task started → complete | {fmt(a['task_seconds'], 2)} s = {fmt(a['images_per_s'])} images/s ({a['suggested']} suggestions) |",
        f"| 11 | raw ceiling: the same artifact on the same PNGs in one process, batches of {BATCH} | {fmt(a['raw']['images_per_s'])} images/s |",
        f"| 11 | **autoTag / raw** | **{fmt(a['task_over_raw'], 3)}** |",
        f"| 11 | autoGroup, {g['items']} unassigned 64×64 images into {g['groups']}, pixel projection, task started → complete | {fmt(g['task_seconds'], 2)} s |",
        f"| 11 | (reference) KMeans alone on {g['clustering_alone']['items']} × 512 vectors | {fmt(g['clustering_alone']['seconds'], 2)} s |",
    ]
