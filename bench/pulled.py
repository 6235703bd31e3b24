"""The pulled models: registration and validation of each catalogue model, then a training with the pulled
face model against its raw ceiling (`--only pulled-models`, and the end of a whole run)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from bench.ceilings import model_raw_ceiling
from bench.client import Client
from bench.images import make_image
from bench.processes import cpu_by_process, cpu_spent_since
from bench.scenarios import (
    PER_ENTITY, breakdown, create_library, e2e_over_raw, model_bytes_and_manifest, register_pulled, train,
    upload_identifiers,
)
from bench.stack import BenchError, Stack, create_token, log, start_gateway

FACE_IMAGE = 160  # px: the face-model library's identifiers (JPEG/PNG), decoded and resized to 224 by the worker
FACE_BATCH = 32  # batchSize for the face model: a batch of 256 at ~20 images/s would leave the pipeline idle for 13 s
FACE_POLL_S = 0.5  # the face-model training's status polls (see pulled_models)


async def pulled_models(stack: Stack, model_cache: Path, face_n: int, concurrency: int) -> dict[str, Any]:
    """Registration + validation of each pulled model, then training with the pulled face model against its raw ceiling."""
    log(f"registering the pulled models (cache {model_cache})")
    registered = await register_pulled(stack.env, model_cache)
    for name, r in registered.items():
        log(f"  {name}: {r['register_and_validate_s']} s register+validate, pull {r['pull_seconds']}")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    # The face library is uploaded through a gateway that does not queue ingest embeddings: with the
    # pulled face model the system default, the ingest workers would embed every photo as it arrives and
    # the training would only read stored vectors. This figure is the training from images; ingest has its
    # own scenario (embeddings).
    url, _ = start_gateway(stack, 1, "gateway-no-ingest", {"ENGINESHED_EMBED_ON_INGEST": "0"})
    client = Client(url, token, connections=max(64, concurrency))
    try:
        per = PER_ENTITY
        entities = max(2, face_n // per)
        library = await create_library(client, "faces", entities, seed_base=5_000_000, concurrency=concurrency)
        upload = await upload_identifiers(client, library, per, concurrency, size=FACE_IMAGE)
        config = {"modelId": "face-embedding", "batchSize": FACE_BATCH}
        ref, model, manifest = await model_bytes_and_manifest(stack.env, "face-embedding")
        blobs = [make_image(library.entity_seeds[e], k, size=FACE_IMAGE)[0] for k in range(per) for e in range(entities)]
        # The raw ceiling just before and just after the training, and the ratio against their mean: on a
        # shared machine the speed moves by 2-4× within minutes, so one side measured alone can mislead.
        log(f"uploaded {upload['count']} face identifiers; raw ceiling (before)")
        provider = "cuda" if os.environ.get("ENGINESHED_ONNX_PROVIDER") == "cuda" else None
        before = await asyncio.to_thread(model_raw_ceiling, blobs, model, manifest, ref, provider, FACE_BATCH)
        log("training with face-embedding")
        cpu_before = cpu_by_process()
        # Polled twice a second, timed by the task's own timestamps: polling at 20 Hz took about an eighth of
        # the machine's CPU from the model while it trained (cpu_seconds_during_training).
        run = await train(client, library.id, timeout=max(600.0, face_n * 1.0), config=config,
                                    poll_interval=FACE_POLL_S)
        cpu_during = cpu_spent_since(cpu_before)
        log(f"training: {run['client_create_to_complete_s']} s; raw ceiling (after)")
        if run["embeddings"]["computed"] != run["identifiers"]:
            raise BenchError(f"the face training read stored vectors instead of embedding the images: {run['embeddings']}")
        after = await asyncio.to_thread(model_raw_ceiling, blobs, model, manifest, ref, run["provider"], FACE_BATCH)
    finally:
        await client.aclose()
    raw = dict(after, identifiers_per_s=round((before["identifiers_per_s"] + after["identifiers_per_s"]) / 2, 2),
               before_per_s=before["identifiers_per_s"], after_per_s=after["identifiers_per_s"])
    # createJob → complete by the task's timestamps (created when createJob inserted it): the client's view
    # less its polling delay, which at FACE_POLL_S would add up to half a second.
    e2e = run["identifiers"] / run["task_created_to_completed_s"]
    task = run["identifiers"] / run["task_start_to_complete_s"]
    return {
        "registration": registered,
        "face_training": {
            "model": run["embedding_model"],
            "identifiers": run["identifiers"],
            "image": f"{FACE_IMAGE}×{FACE_IMAGE} RGB, PNG and JPEG alternating",
            "config": config,
            "upload": upload,
            "run": run,
            "e2e_identifiers_per_s": round(e2e, 2),
            "task_identifiers_per_s": round(task, 2),
            "raw": raw,
            "e2e_over_raw": e2e_over_raw(e2e, raw["identifiers_per_s"]),
            "task_over_raw": e2e_over_raw(task, raw["identifiers_per_s"]),
            "breakdown": breakdown(run),
            # Where the machine's CPU went while the training ran (client createJob → complete): the model's
            # own share against decoding, S3 (weed), PostgreSQL and the rest, which share the same cores.
            "cpu_seconds_during_training": cpu_during,
        },
        "provider": run["provider"],
    }
