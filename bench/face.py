"""Scenario 10: the face engine, photos/s for training and for recognize, each against the raw models' ceiling.

The photos are real faces from public packages composited onto cluttered 960×720 backgrounds at random
positions and scales (sampledata/face_scenes.py), uploaded as ``face`` identifiers of a people library
and trained by the worker with ``engineshed-face`` on the pulled ``face-detector`` and ``face-embedding``.

The raw ceiling is what the two models alone do on this machine, same provider: BlazeFace on each photo's
already letterboxed 256×256 uint8 input (one photo a run, as its in-graph NMS takes one), plus FaceRes on
the already aligned 224×224 crops, in batches of 32 for training and one face a run for recognize
(what a single-photo request can batch). Decoding, letterboxing and alignment are left out of it, as the
other scenarios leave decoding out of their raw figure. Measured just before and just after each side,
the ratio against their mean.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.client import Client
from bench.scenarios import (
    CREATE_ENTITY, CREATE_LIBRARY, MODEL, TASK_FULL, bounded, e2e_over_raw, register_pulled, start_training, wait_task,
)
from bench.stack import BenchError

ENGINE = "engineshed-face"
BATCH = 32


def make_photos(cache: Path, per_person: int) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """(person, JPEG) training photos, ``per_person`` each, and one query photo per person."""
    from gateway.services.models.pull import catalogue as pull_catalogue
    from gateway.services.models.pull import conversion as pull_conversion
    from sampledata import face_scenes, faces

    detector = asyncio.run(pull_conversion.prepare(pull_catalogue.CATALOGUE["face-detector"], cache)).model_bytes
    heads = face_scenes.cut_heads(faces.fetch_photos(cache), faces.Detector(detector))
    rng = np.random.default_rng(10)
    train = [(p, face_scenes.compose([h], rng).data) for p, h in heads.items() for _ in range(per_person)]
    queries = [face_scenes.compose([h], rng, mirror=True).data for h in heads.values()]
    return train, queries


def raw_ceiling(photos: list[bytes], detector: Any, embedder: Any, provider: str | None, batch: int) -> dict[str, Any]:
    """Detector on prepared letterboxes + embedder on prepared aligned crops (module docstring)."""
    from engines.face.align import build_front, load_photo
    from engines.model_backbone import compose_model
    from engines.runtime import CUDA, get_runner

    setting = "cuda" if provider == CUDA else "cpu"
    front = get_runner(build_front(detector.model, detector.manifest, min_confidence=0.6).SerializeToString(), "cpu")
    det = get_runner(compose_model(detector.model, detector.manifest, output="boxes").SerializeToString(), setting)
    emb = get_runner(compose_model(embedder.model, embedder.manifest).SerializeToString(), setting)
    letterboxes, crops = [], []
    for blob in photos:
        photo, _ = load_photo(blob)
        side = max(photo.shape[:2])
        square = np.zeros((side, side, 3), np.uint8)
        square[: photo.shape[0], : photo.shape[1]] = photo
        from PIL import Image

        letterboxes.append(np.asarray(Image.fromarray(square).resize((256, 256), Image.Resampling.BILINEAR))[None])
        aligned = dict(zip(front.output_names, front.run_all(photo), strict=True))["aligned"]
        crops.extend(aligned[:1])
    crops_array = np.ascontiguousarray(np.stack(crops))
    det.run(letterboxes[0])
    emb.run(crops_array[:1])  # warm-up

    def timed(fn: Any) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    detect = min(timed(lambda: [det.run(x) for x in letterboxes]) for _ in range(2))
    embed_batched = min(timed(lambda: [emb.run(crops_array[i : i + batch]) for i in range(0, len(crops_array), batch)]) for _ in range(2))
    embed_single = min(timed(lambda: [emb.run(crops_array[i : i + 1]) for i in range(len(crops_array))]) for _ in range(2))
    n = len(photos)
    return {
        "photos": n, "faces": len(crops_array), "provider": emb.provider,
        "detect_s": round(detect, 3), "embed_batched_s": round(embed_batched, 3), "embed_single_s": round(embed_single, 3),
        "train_photos_per_s": round(n / (detect + embed_batched), 2),
        "recognize_photos_per_s": round(n / (detect + embed_single), 2),
    }


async def registered_models(env: dict[str, str]) -> tuple[Any, Any]:
    from bench.scenarios import model_bytes_and_manifest
    from engines.interface import EmbeddingModel

    out = []
    for name in ("face-detector", "face-embedding"):
        ref, data, manifest = await model_bytes_and_manifest(env, name)
        out.append(EmbeddingModel(ref, ref, data, manifest, hashlib.sha256(data).hexdigest()))
    return out[0], out[1]


async def face(client: Client, env: dict[str, str], cache: Path, per_person: int, concurrency: int,
               recognize_concurrency: int, timeout: float) -> dict[str, Any]:
    registration = await register_pulled(env, cache, ["face-detector", "face-embedding"])
    detector, embedder = await registered_models(env)
    train, queries = await asyncio.to_thread(make_photos, cache, per_person)
    library = (await client.data(CREATE_LIBRARY, n="faces-bench"))["createLibrary"]["id"]
    people = sorted({p for p, _ in train})
    entity = {p: (await client.data(CREATE_ENTITY, l=library, n=p))["createEntity"]["id"] for p in people}

    async def upload(item: tuple[str, bytes]) -> None:
        person, data = item
        (await client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity[person]}", identifierTypeId: "face"}}) {{ id }} }}',
            data, "image/jpeg", filename="x.jpg",
        )).ok()

    await bounded(train, concurrency, upload)
    blobs = [b for _, b in train]
    before = await asyncio.to_thread(raw_ceiling, blobs, detector, embedder, None, BATCH)
    model_id, task_id, t0 = await start_training(client, library, config={"batchSize": BATCH}, engine=ENGINE)
    status, t_done = await wait_task(client, task_id, interval=0.05, timeout=timeout)
    task = (await client.data(TASK_FULL, id=task_id))["task"]
    if status != "complete":
        raise BenchError(f"face training ended {status}: {task.get('failureReason')} {task.get('failureMessage')}")
    jsondata = (await client.data(MODEL, id=model_id))["libraryEngineModel"]["jsondata"] or {}
    provider = jsondata.get("provider")
    after = await asyncio.to_thread(raw_ceiling, blobs, detector, embedder, provider, BATCH)
    e2e = t_done - t0
    photos = len(train)

    query = (f'query {{ recognize(libraryEngineModelId: "{model_id}", topK: 3) '
             "{ faces { box { left top width height } matches { entityName score } } } }")
    answers: list[Any] = []

    async def ask(data: bytes) -> None:
        answers.append((await client.upload_form(query, data, "image/jpeg", filename="q.jpg")).ok())

    await ask(queries[0])  # warm: the gateway reads the artifact and opens its session once
    answers.clear()
    t = time.perf_counter()
    await bounded(queries, recognize_concurrency, ask)
    recognize_s = time.perf_counter() - t
    with_face = sum(1 for reply in answers if reply["recognize"]["faces"])
    train_raw = (before["train_photos_per_s"] + after["train_photos_per_s"]) / 2
    recognize_raw = (before["recognize_photos_per_s"] + after["recognize_photos_per_s"]) / 2
    train_per_s = photos / e2e if e2e else 0.0
    recognize_per_s = len(queries) / recognize_s if recognize_s else 0.0
    return {
        "registration": registration,
        "photos": photos, "people": len(people), "photo_size": "960×720 JPEG, one face each",
        "trained": jsondata.get("identifiers"), "skipped_identifiers": len(jsondata.get("skipped") or []),
        "provider": provider, "timings": jsondata.get("timings"),
        "train_create_to_complete_s": round(e2e, 3), "train_task_s": round(float(task["duration"]), 3),
        "train_photos_per_s": round(train_per_s, 2),
        "raw_before": before, "raw_after": after,
        "train_raw_photos_per_s": round(train_raw, 2), "train_over_raw": e2e_over_raw(train_per_s, train_raw),
        "recognize_calls": len(queries), "recognize_concurrency": recognize_concurrency,
        "recognize_with_a_face": with_face, "recognize_s": round(recognize_s, 3),
        "recognize_photos_per_s": round(recognize_per_s, 2),
        "recognize_raw_photos_per_s": round(recognize_raw, 2),
        "recognize_over_raw": e2e_over_raw(recognize_per_s, recognize_raw),
    }


def rows(s: dict[str, Any], fmt: Any) -> list[str]:
    return [
        f"| 10 | face training e2e, {s['photos']} photos ({s['photo_size']}) of {s['people']} people, createJob → complete | {fmt(s['train_create_to_complete_s'], 2)} s = {fmt(s['train_photos_per_s'])} photos/s ({s['trained']} trained, {s['skipped_identifiers']} skipped) |",
        f"| 10 | raw ceiling: BlazeFace on prepared letterboxes + FaceRes on prepared aligned crops (batch {BATCH}), {s['raw_after']['provider']}, mean of before / after | {fmt(s['train_raw_photos_per_s'])} photos/s ({fmt(s['raw_before']['train_photos_per_s'])} / {fmt(s['raw_after']['train_photos_per_s'])}) |",
        f"| 10 | **face training e2e / raw** | **{fmt(s['train_over_raw'], 3)}** |",
        f"| 10 | recognize through the API, {s['recognize_calls']} photos, {s['recognize_concurrency']} in flight | {fmt(s['recognize_photos_per_s'])} photos/s ({s['recognize_with_a_face']} with a face found) |",
        f"| 10 | raw ceiling: the same two models one photo / one face a run | {fmt(s['recognize_raw_photos_per_s'])} photos/s |",
        f"| 10 | **face recognize / raw** | **{fmt(s['recognize_over_raw'], 3)}** |",
    ]
