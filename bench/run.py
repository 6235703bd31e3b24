"""`make bench`: start the real stack, measure, print a table and write bench/results.json.

    python -m bench.run [--n N] [--quick] [--memory-scale K] [--out bench/results.json]

Everything is bounded in count and time, runs on loopback, and stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.client import Client
from bench.images import make_image
from bench.memory import RssSampler
from bench.stack import BenchError, Stack, bench_stack, start_gateway
from bench.stats import ratio

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
MODEL_CACHE = Path(__file__).resolve().parents[1] / ".engineshed" / "models"
FACE_IMAGE = 160  # px: the face-model library's identifiers (JPEG/PNG), decoded and resized to 224 by the worker
FACE_BATCH = 32  # batchSize for the face model: a batch of 256 at ~20 images/s would leave the pipeline idle for 13 s
PER_ENTITY = 5
FACE_POLL_S = 0.5  # the face-model training's status polls (see measure_pulled)
PHOTO_SIZE = 512  # px: the upload scenario at photo size (146 KB JPEG, 697 KB PNG)
INCREMENTAL_RUNS = 3


# --------------------------------------------------------------------------- parameters


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="identifiers in the training library (default 2000; quick 40)")
    p.add_argument("--memory-scale", type=int, default=None,
                   help="the memory figure also trains a library of this many × N distinct identifiers (default 5; quick 2)")
    p.add_argument("--requests", type=int, default=None, help="GraphQL read requests per concurrency level (default 300)")
    p.add_argument("--dispatch-jobs", type=int, default=None, help="jobs for the dispatch latency (default 100)")
    p.add_argument("--recognize-calls", type=int, default=None, help="single-image recognize calls (default 100)")
    p.add_argument("--concurrency", type=int, default=16, help="uploads in flight while building libraries")
    p.add_argument("--processes", type=int, default=None,
                   help="gateway processes for the 1-vs-N reads figure (default: the CPU count, at least 2)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test (well under 90 s)")
    p.add_argument("--only", choices=("all", "upload", "processes", "pulled-models", "speaker", "face", "labeling",
                                      "import", "embeddings"),
                   default="all",
                   help="run one scenario: upload = API uploads against S3 PUTs of the same bytes; "
                        "processes = GetIdentifiers, 32 clients, 1 gateway process vs N; pulled-models = "
                        "the pulled-model figures (registration, face-model training e2e/raw); speaker = "
                        "speaker-engine utterances/s against the GE2E raw ceiling; face = face-engine photos/s "
                        "for training and recognize against the detector-plus-embedder raw ceiling; labeling = "
                        "autoTag images/s against the model's raw ceiling, and autoGroup time at --group-n items; "
                        "import = `engineshed import` files/s against the API's upload ceiling; embeddings = stored vectors "
                        "(bench/embeddings.py: ingest, training from vectors vs images, incremental, memory, search)")
    p.add_argument("--face-per-person", type=int, default=None,
                   help="face scenario: training photos per person, 23 people (default 4; quick 1)")
    p.add_argument("--group-n", type=int, default=None, help="labeling scenario: items to auto-group (default 10000; quick 200)")
    p.add_argument("--import-n", type=int, default=None, help="import scenario: files in the folder (default 1000; quick 40)")
    p.add_argument("--emb-n", type=int, default=None, help="embeddings scenario: N (default 10000; quick 100)")
    p.add_argument("--emb-memory-scale", type=int, default=None,
                   help="embeddings scenario: the memory figure also trains this many × N vectors (default 10; quick 2)")
    p.add_argument("--emb-search-n", type=int, default=None,
                   help="embeddings scenario: vectors searched (default 100000; quick 2000)")
    p.add_argument("--speakers", type=int, default=6, help="speaker scenario: espeak-ng voices (at most 6)")
    p.add_argument("--per-speaker", type=int, default=None, help="speaker scenario: recordings per voice (default 10; quick 3)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON results go")
    p.add_argument("--timeout", type=float, default=1800, help="overall limit in seconds")
    p.add_argument("--keep-dir", type=Path, default=None, help="keep the stack's data and logs here (debugging)")
    p.add_argument("--face-n", type=int, default=None,
                   help="identifiers in the face-model training library (default 480; quick 32)")
    p.add_argument("--model-cache", type=Path, default=MODEL_CACHE,
                   help="where pulled packages and their conversions are kept between runs")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "n": 40 if quick else 2000,
        "memory_scale": 2 if quick else 5,
        "requests": 20 if quick else 300,
        "dispatch_jobs": 5 if quick else 100,
        "recognize_calls": 10 if quick else 100,
        "face_n": 32 if quick else 480,
        "import_n": 40 if quick else 1000,
        "emb_n": 100 if quick else 10_000,
        "emb_memory_scale": 2 if quick else 10,
        "emb_search_n": 2000 if quick else 100_000,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.processes is None:
        args.processes = max(2, os.cpu_count() or 1)
    if args.processes < 2:
        p.error("--processes must be at least 2 (it is compared with one process)")
    if args.n < 2 * PER_ENTITY:
        p.error(f"--n must be at least {2 * PER_ENTITY}")
    if args.memory_scale < 1:
        p.error("--memory-scale must be at least 1")
    return args


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    gpu = None
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            gpu = ", ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None
    memory_gib = None
    with contextlib.suppress(Exception):
        import psutil

        memory_gib = round(psutil.virtual_memory().total / 2**30, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model or platform.processor() or None,
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "onnxruntime_available_providers": ort.get_available_providers(),
        "onnx_provider_setting": os.environ.get("ENGINESHED_ONNX_PROVIDER", "auto"),
        "gpu": gpu,
    }


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    import numpy
    import onnxruntime

    return {
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "engineshed": version("engineshed"),
        "pillow": version("pillow"),
        "strawberry-graphql": version("strawberry-graphql"),
    }


def engine_defaults() -> dict[str, Any]:
    from engines.options import PIPELINE_OPTIONS

    return {o.name: o.default for o in PIPELINE_OPTIONS}


# --------------------------------------------------------------------------- the run


async def create_token(database_url: str, org: str) -> str:
    from gateway.services.tokens import create_token as make
    from storage.db import connect_pool

    async with connect_pool(database_url, min_size=1, max_size=2) as pool:
        token, _ = await make(pool, org_name=org, scope="admin")
    return token


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure_pulled(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Registration + validation of each pulled model, then training with the pulled face model against its raw ceiling."""
    log(f"registering the pulled models (cache {args.model_cache})")
    registered = await scenarios.register_pulled(stack.env, args.model_cache)
    for name, r in registered.items():
        log(f"  {name}: {r['register_and_validate_s']} s register+validate, pull {r['pull_seconds']}")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    # The face library is uploaded through a gateway that does not queue ingest embeddings: with the
    # pulled face model the system default, the ingest workers would embed every photo as it arrives and
    # the training would only read stored vectors. This figure is the training from images (what #11 asks);
    # ingest has its own scenario (embeddings).
    url, _ = start_gateway(stack, 1, "gateway-no-ingest", {"ENGINESHED_EMBED_ON_INGEST": "0"})
    client = Client(url, token, connections=max(64, args.concurrency))
    try:
        per = PER_ENTITY
        entities = max(2, args.face_n // per)
        library = await scenarios.create_library(client, "faces", entities, seed_base=5_000_000, concurrency=args.concurrency)
        upload = await scenarios.upload_identifiers(client, library, per, args.concurrency, size=FACE_IMAGE)
        config = {"modelId": "face-embedding", "batchSize": FACE_BATCH}
        ref, model, manifest = await scenarios.model_bytes_and_manifest(stack.env, "face-embedding")
        blobs = [make_image(library.entity_seeds[e], k, size=FACE_IMAGE)[0] for k in range(per) for e in range(entities)]
        # The raw ceiling just before and just after the training, and the ratio against their mean: on a
        # shared machine the speed moves by 2-4× within minutes, so one side measured alone can mislead.
        log(f"uploaded {upload['count']} face identifiers; raw ceiling (before)")
        provider = "cuda" if os.environ.get("ENGINESHED_ONNX_PROVIDER") == "cuda" else None
        before = await asyncio.to_thread(scenarios.model_raw_ceiling, blobs, model, manifest, ref, provider, FACE_BATCH)
        log("training with face-embedding")
        cpu_before = scenarios.cpu_by_process()
        # Polled twice a second, timed by the task's own timestamps: polling at 20 Hz took about an eighth of
        # the machine's CPU from the model while it trained (cpu_seconds_during_training).
        run = await scenarios.train(client, library.id, timeout=max(600.0, args.face_n * 1.0), config=config,
                                    poll_interval=FACE_POLL_S)
        cpu_during = scenarios.cpu_spent_since(cpu_before)
        log(f"training: {run['client_create_to_complete_s']} s; raw ceiling (after)")
        if run["embeddings"]["computed"] != run["identifiers"]:
            raise BenchError(f"the face training read stored vectors instead of embedding the images: {run['embeddings']}")
        after = await asyncio.to_thread(scenarios.model_raw_ceiling, blobs, model, manifest, ref, run["provider"], FACE_BATCH)
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
            "e2e_over_raw": scenarios.e2e_over_raw(e2e, raw["identifiers_per_s"]),
            "task_over_raw": scenarios.e2e_over_raw(task, raw["identifiers_per_s"]),
            "breakdown": scenarios.breakdown(run),
            # Where the machine's CPU went while the training ran (client createJob → complete): the model's
            # own share against decoding, S3 (weed), PostgreSQL and the rest, which share the same cores.
            "cpu_seconds_during_training": cpu_during,
        },
        "provider": run["provider"],
    }


async def measure_speaker(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 9 (bench/speaker.py); in a whole run it is skipped, saying why, without espeak-ng or the wheel."""
    from bench import speaker
    from gateway.services.model_pull import PullError

    per_speaker = args.per_speaker or (3 if args.quick else 10)
    log(f"speaker engine: {args.speakers} voices × {per_speaker} recordings")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        return await speaker.speaker(client, args.speakers, per_speaker, args.concurrency, timeout=600.0)
    except (BenchError, PullError) as exc:
        if args.only == "speaker":
            raise
        log(f"speaker scenario skipped: {exc}")
        return {"skipped": str(exc)}
    finally:
        await client.aclose()


async def measure_face(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 10 (bench/face.py); in a whole run it is skipped, saying why, when the registry is unreachable."""
    from bench import face
    from gateway.services.model_pull import PullError

    per_person = args.face_per_person or (1 if args.quick else 4)
    log(f"face engine: {per_person} photos per person")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        return await face.face(client, stack.env, args.model_cache, per_person, args.concurrency, 4, timeout=900.0)
    except (BenchError, PullError) as exc:
        if args.only == "face":
            raise
        log(f"face scenario skipped: {exc}")
        return {"skipped": str(exc)}
    finally:
        await client.aclose()


async def measure_labeling(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 11 (bench/labeling.py)."""
    from bench import labeling

    group_n = args.group_n or (200 if args.quick else 10_000)
    log(f"labeling: autoTag of the digits, autoGroup of {group_n} items")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        return await labeling.labeling(client, group_n, args.concurrency, timeout=900.0)
    finally:
        await client.aclose()


async def measure_import(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 16 (bench/import_cli.py): the command line's import against the API's upload ceiling."""
    from bench import import_cli

    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        return await import_cli.import_throughput(client, token, stack.url, args.import_n, args.concurrency, log)
    finally:
        await client.aclose()


async def measure_embeddings(stack: Stack, args: argparse.Namespace, sampler: RssSampler) -> dict[str, Any]:
    """`--only embeddings` (bench/embeddings.py)."""
    from bench import embeddings

    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        return await embeddings.embeddings(
            stack, client, sampler, n=args.emb_n, memory_scale=args.emb_memory_scale, search_n=args.emb_search_n,
            concurrency=args.concurrency, timeout=args.timeout,
        )
    finally:
        await client.aclose()


async def measure_all(stack: Stack, args: argparse.Namespace, sampler: RssSampler) -> dict[str, Any]:
    """The scenarios `--only` names, or all of them. A whole run (not --quick, which the smoke test runs
    without the registries' downloads) ends with the pulled-model and speaker figures."""
    results = await measure(stack, args, sampler)
    if args.only == "all" and not args.quick:
        results["pulled_models"] = await measure_pulled(stack, args)
        results["speaker"] = await measure_speaker(stack, args)
        results["face"] = await measure_face(stack, args)
        results["labeling"] = await measure_labeling(stack, args)
        results["import"] = await measure_import(stack, args)
    return results


def pulled_table(report: dict[str, Any]) -> str:
    r = report["results"].get("pulled_models", report["results"])
    f, m = r["face_training"], report["machine"]
    lines = [
        f"engineshed bench, pulled models — {m['cpu_count']} CPUs ({m['cpu_model']}), provider {r['provider']}, GPU {m['gpu'] or 'none'}",
        "",
        "| measurement | figure |",
        "|---|---|",
    ]
    for name, x in r["registration"].items():
        pull = ", ".join(f"{k} {fmt(v, 2)} s" for k, v in x["pull_seconds"].items())
        lines.append(
            f"| {name} ({x['version']}, {x['size_mib']} MiB): registration + validation (static checks, trial, store) | "
            f"{fmt(x['register_and_validate_s'], 2)} s (pull: {pull}; trial {fmt(x['trial_images_per_s'])} images/s at batch "
            f"{x['trial_batch']}, {x['trial_provider']}) |"
        )
    lines += [
        f"| training with {f['model']}, {f['identifiers']} identifiers ({f['image']}), createJob → complete (task timestamps) | "
        f"{fmt(f['run']['task_created_to_completed_s'], 2)} s = {fmt(f['e2e_identifiers_per_s'], 2)} identifiers/s |",
        f"| same, task started → complete | {fmt(f['run']['task_start_to_complete_s'], 2)} s = {fmt(f['task_identifiers_per_s'], 2)} identifiers/s |",
        f"| raw ceiling: the composed backbone on decoded uint8, batch {f['raw']['batch_size']}, {f['raw']['provider']}, "
        f"the better of one session on every core and {f['raw'].get('parallel', 1)} single-threaded runs at once, "
        f"mean of just before / just after | {fmt(f['raw']['identifiers_per_s'], 2)} identifiers/s "
        f"({fmt(f['raw']['before_per_s'], 2)} / {fmt(f['raw']['after_per_s'], 2)}) |",
        f"| **e2e / raw** (task / raw) | **{fmt(f['e2e_over_raw'], 3)}** ({fmt(f['task_over_raw'], 3)}) |",
        "",
        "| stage | seconds | of wall | source |",
        "|---|---|---|---|",
    ]
    for row in f["breakdown"]:
        frac = row["fraction_of_wall"]
        lines.append(f"| {row['stage']} | {fmt(row['seconds'], 3)} | {'n/m' if frac is None else f'{frac * 100:.1f} %'} | {row['note']} |")
    return "\n".join(lines)


async def measure(stack: Stack, args: argparse.Namespace, sampler: RssSampler) -> dict[str, Any]:
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    defaults = engine_defaults()
    train_timeout = max(300.0, args.n * 0.5)
    results: dict[str, Any] = {}
    try:
        n, per = args.n, PER_ENTITY
        entities = n // per
        # 0. One upload's cost: the API against bare S3 PUTs of the same bytes, same concurrency.
        log(f"uploads against S3 PUTs: {n} identifiers, {args.concurrency} in flight")
        put_library = await scenarios.create_library(client, "put", entities, seed_base=5_000_000, concurrency=args.concurrency)
        results["upload_vs_s3_put"] = await scenarios.upload_vs_s3_put(
            client, put_library, stack.env, per, args.concurrency, gateway_pid=stack.gateway.pid
        )
        # The same at photo size (512 px: 146 KB JPEG, 697 KB PNG), one per entity: the fixed cost of an
        # upload against the store's cost of the bytes, where photos are concerned.
        results["upload_vs_s3_put_photos"] = await scenarios.upload_vs_s3_put(
            client, put_library, stack.env, 1, args.concurrency, gateway_pid=stack.gateway.pid,
            image_size=PHOTO_SIZE, seed_offset=60_000,
        )
        if args.only == "upload":
            return results

        # 1. Training throughput, with the memory of training N sampled at the same time.
        log(f"building the training library: {entities} entities × {per} identifiers")
        library = await scenarios.create_library(client, "train", entities, seed_base=1_000_000, concurrency=args.concurrency)
        upload = await scenarios.upload_identifiers(client, library, per, args.concurrency)
        log(f"uploaded {upload['count']} identifiers at {upload['per_second']}/s; training (full)")
        full = await scenarios.train(client, library.id, timeout=train_timeout, sampler=sampler)
        stack.worker.remember_descendants()
        log(f"full training: {full['client_create_to_complete_s']} s; raw ceiling next")
        blobs = [make_image(library.entity_seeds[e], k)[0] for k in range(per) for e in range(entities)]
        raw = scenarios.raw_ceiling(blobs, full["provider"], defaults["batchSize"], defaults["imageSize"])
        del blobs
        log("S3 GET ceiling next")
        s3_ceiling = await scenarios.s3_get_ceiling(
            stack.database_url, stack.env, library.id, defaults["fetchConcurrency"]
        )
        e2e_per_s = full["identifiers"] / full["client_create_to_complete_s"]
        task_per_s = full["identifiers"] / full["task_start_to_complete_s"]
        results["training"] = {
            "identifiers": full["identifiers"],
            "entities": entities,
            "upload": upload,
            "full": full,
            "e2e_identifiers_per_s": round(e2e_per_s, 1),
            "task_identifiers_per_s": round(task_per_s, 1),
            "raw": raw,
            "e2e_over_raw": scenarios.e2e_over_raw(e2e_per_s, raw["identifiers_per_s"]),
            "task_over_raw": scenarios.e2e_over_raw(task_per_s, raw["identifiers_per_s"]),
            "s3_get_ceiling": s3_ceiling,
            "e2e_over_s3_get": scenarios.e2e_over_raw(e2e_per_s, s3_ceiling["identifiers_per_s"]),
        }
        results["breakdown"] = scenarios.breakdown(full)

        # 3. Incremental retrain: 1 % new identifiers, three times (one run is at the mercy of a noisy
        # machine); the ratio uses the median run.
        extra = min(max(1, n // 100), entities)
        runs = []
        for repeat in range(INCREMENTAL_RUNS):
            await scenarios.upload_identifiers(client, library, 1, args.concurrency, first_seed=per + repeat, entities=extra)
            log(f"added {extra} identifiers; training (incremental {repeat + 1}/{INCREMENTAL_RUNS})")
            runs.append(await scenarios.train(client, library.id, timeout=train_timeout))
        incremental = sorted(runs, key=lambda r: r["client_create_to_complete_s"])[len(runs) // 2]
        results["incremental"] = {
            "added": extra,
            "run": incremental,
            "runs_client_s": [r["client_create_to_complete_s"] for r in runs],
            "incremental_over_full_client": round(ratio(incremental["client_create_to_complete_s"], full["client_create_to_complete_s"]) or 0, 4),
            "incremental_over_full_task": round(ratio(incremental["task_start_to_complete_s"], full["task_start_to_complete_s"]) or 0, 4),
        }

        # 4. GraphQL reads.
        log("GraphQL reads")
        reads_library = await scenarios.create_library(client, "reads", 30, seed_base=2_000_000, concurrency=args.concurrency)
        await scenarios.upload_identifiers(client, reads_library, 5, args.concurrency)
        results["reads"] = await scenarios.reads(client, reads_library.id, args.requests, (1, 32))

        # 8. The same reads from one gateway process and from N (a second gateway beside the first).
        results["gateway_processes"] = await gateway_processes(stack, token, reads_library.id, args)

        # 6. Recognize (warm model: the incremental one, its artifact is cached by the gateway after the warm-up).
        log("recognize")
        results["recognize"] = await scenarios.recognize(
            client, incremental["model_id"], library, args.recognize_calls, max(32, args.recognize_calls * 2 if args.quick else 320), 32
        )

        # 5. Dispatch latency on a tiny library (cached embeddings after the first job).
        log(f"dispatch latency over {args.dispatch_jobs} jobs")
        tiny = await scenarios.create_library(client, "tiny", 2, seed_base=3_000_000, concurrency=2)
        await scenarios.upload_identifiers(client, tiny, 2, 4)
        results["dispatch"] = await scenarios.dispatch(client, tiny.id, args.dispatch_jobs, 0.005, timeout=60)

        # 7. Memory at memory_scale × N distinct identifiers.
        big_n = n * args.memory_scale
        log(f"memory: building a library of {big_n} distinct identifiers")
        big = await scenarios.create_library(client, "memory", big_n // per, seed_base=4_000_000, concurrency=args.concurrency)
        big_upload = await scenarios.upload_identifiers(client, big, per, args.concurrency)
        log(f"uploaded {big_upload['count']} at {big_upload['per_second']}/s; training")
        big_run = await scenarios.train(client, big.id, timeout=max(train_timeout, big_n * 0.5), sampler=sampler)
        stack.worker.remember_descendants()
        results["memory"] = {
            "n": {"identifiers": full["identifiers"], **full["memory"]},
            "scaled": {
                "identifiers": big_run["identifiers"],
                "scale": args.memory_scale,
                "task_start_to_complete_s": big_run["task_start_to_complete_s"],
                "task_identifiers_per_s": round(big_run["identifiers"] / big_run["task_start_to_complete_s"], 1),
                **big_run["memory"],
            },
            "sample_interval_s": sampler.interval,
        }
        results["provider"] = full["provider"]
    finally:
        await client.aclose()
    return results


async def gateway_processes(stack: Stack, token: str, library_id: str, args: argparse.Namespace) -> dict[str, Any]:
    log(f"GetIdentifiers, 32 clients: 1 gateway process vs {args.processes}")
    url, proc = start_gateway(stack, args.processes, f"gateway-x{args.processes}")
    try:
        return await scenarios.reads_by_processes({1: stack.url, args.processes: url}, token, library_id, args.requests)
    finally:
        proc.stop()


async def measure_only_processes(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """`--only processes`: the reads library of section 4, then section 8 alone."""
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        library = await scenarios.create_library(client, "reads", 30, seed_base=2_000_000, concurrency=args.concurrency)
        await scenarios.upload_identifiers(client, library, 5, args.concurrency)
    finally:
        await client.aclose()
    return {"gateway_processes": await gateway_processes(stack, token, library.id, args)}


def processes_lines(gp: dict[str, Any]) -> list[str]:
    lines = []
    for level in gp["levels"].values():
        lines.append(
            f"| 8 | GetIdentifiers (30 × 5), {gp['concurrency']} clients, {level['processes']} gateway process(es)"
            f" ({level['processes_answering']} answered), median of {gp['rounds']} × {gp['requests_per_run']} requests | "
            f"{fmt(level['per_second'])} req/s (runs: {', '.join(fmt(r['per_second']) for r in level['runs'])}), p50 {fmt(level['p50_ms'])} ms;"
            f" busy cores of {gp['cpu_count']}: gateway {', '.join(fmt(r['gateway_busy_cores'], 2) for r in level['runs'])},"
            f" clients {', '.join(fmt(r['client_busy_cores'], 2) for r in level['runs'])},"
            f" machine {', '.join(fmt(r['machine_busy_cores'], 2) for r in level['runs'])};"
            f" {fmt(level['per_gateway_core'])} req/s per gateway core |"
        )
    lines.append(f"| 8 | **N processes / 1 process** | **{fmt(gp['n_over_1'], 2)}** |")
    return lines


# --------------------------------------------------------------------------- output


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/m"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def upload_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for key in ("upload_vs_s3_put", "upload_vs_s3_put_photos"):
        u = report["results"].get(key)
        if u is None:
            continue
        side = u.get("image_size", 64)
        kb = u["bytes"] / u["uploads"] / 1024
        rows += [
            f"| 0 | upload through the API ({u['uploads']:,} × createEntityIdentifier, {side} px, {kb:,.0f} KB average, plain form, {u['concurrency']} in flight, median of {u['passes']}) | {fmt(u['api_uploads_per_s'])} uploads/s |",
            f"| 0 | S3 PUT ceiling: the same bytes, presigned, bare PUTs, {u['concurrency']} in flight | {fmt(u['s3_puts_per_s'])} PUTs/s |",
            f"| 0 | **upload / S3 PUT ceiling, {side} px** | **{fmt(u['api_over_s3_put'], 3)}** |",
            f"| 0 | gateway CPU per upload (user + system), {side} px | {fmt(u['gateway_cpu_ms_per_upload'], 2)} ms |",
        ]
    return rows


def table(report: dict[str, Any]) -> str:
    r = report["results"]
    if report["parameters"].get("only") == "upload":
        return "\n".join(["| # | measurement | figure |", "|---|---|---|", *upload_rows(report)])
    t, inc, rd, rec, dis, mem = r["training"], r["incremental"], r["reads"], r["recognize"], r["dispatch"], r["memory"]
    m = report["machine"]
    lines = [
        f"engineshed bench — {m['cpu_count']} CPUs ({m['cpu_model']}), provider {r['provider']}, GPU {m['gpu'] or 'none'}",
        f"N = {t['identifiers']:,} identifiers ({t['entities']} entities × {PER_ENTITY}), 64×64 PNG/JPEG, engine {scenarios.ENGINE}",
        "",
        "| # | measurement | figure |",
        "|---|---|---|",
        *upload_rows(report),
        f"| 1 | upload through the API ({t['upload']['count']:,} × createEntityIdentifier, {report['parameters']['concurrency']} in flight) | {fmt(t['upload']['per_second'])} identifiers/s |",
        f"| 1 | training e2e, createJob → complete | {fmt(t['full']['client_create_to_complete_s'], 2)} s = {fmt(t['e2e_identifiers_per_s'])} identifiers/s |",
        f"| 1 | training, task started → complete | {fmt(t['full']['task_start_to_complete_s'], 2)} s = {fmt(t['task_identifiers_per_s'])} identifiers/s |",
        f"| 1 | raw ceiling: backbone on decoded uint8, batch {t['raw']['batch_size']}, {t['raw']['provider']} | {fmt(t['raw']['identifiers_per_s'])} identifiers/s |",
        f"| 1 | **e2e / raw** (task / raw) | **{fmt(t['e2e_over_raw'], 4)}** ({fmt(t['task_over_raw'], 4)}) |",
        f"| 1 | (reference) Pillow decode, 1 process in the bench | {fmt(t['raw']['decode_single_process_per_s'])} images/s |",
        f"| 1 | S3 GET ceiling: the same {t['s3_get_ceiling']['objects']:,} objects, presigned, bare GETs, {t['s3_get_ceiling']['concurrency']} in flight | {fmt(t['s3_get_ceiling']['identifiers_per_s'])} objects/s |",
        f"| 1 | **e2e / S3 GET ceiling** | **{fmt(t['e2e_over_s3_get'], 3)}** |",
        f"| 3 | incremental retrain, median of {len(inc['runs_client_s'])} (+{inc['added']} identifiers each; median run {inc['run']['embeddings'].get('cached', 'n/m')} cached / {inc['run']['embeddings'].get('computed', 'n/m')} computed) | {fmt(inc['run']['client_create_to_complete_s'], 2)} s (runs: {', '.join(fmt(x, 2) for x in inc['runs_client_s'])} s) |",
        f"| 3 | **incremental / full** (createJob → complete; task) | **{fmt(inc['incremental_over_full_client'], 3)}** ({fmt(inc['incremental_over_full_task'], 3)}) |",
    ]
    for level, lat in rd["latency"].items():
        lines.append(
            f"| 4 | GetIdentifiers (30 entities × 5 identifiers), {level} client(s), {lat['count']} requests | "
            f"p50 {fmt(lat['p50_ms'])} ms, p95 {fmt(lat['p95_ms'])} ms, {fmt(lat['per_second'])} req/s |"
        )
    if "gateway_processes" in r:
        lines += processes_lines(r["gateway_processes"])
    sql = rd["sql_per_request"]
    lines.append(f"| 4 | SQL statements per GetIdentifiers, page size 5 / 30 | {fmt(sql['5']['sql_statements'])} / {fmt(sql['30']['sql_statements'])} |")
    co, st = dis["client_observed"], dis["server_timestamps"]
    lines.append(f"| 5 | dispatch createJob → running, client polling every {fmt(dis['poll_interval_ms'], 0)} ms ({dis['jobs']} jobs) | p50 {fmt(co['p50_ms'])} ms, p95 {fmt(co['p95_ms'])} ms |")
    lines.append(f"| 5 | dispatch, task createdDateTime → startedDateTime (server, ms resolution) | p50 {fmt(st['p50_ms'])} ms, p95 {fmt(st['p95_ms'])} ms |")
    s, b = rec["single"], rec["batch"]
    lines.append(f"| 6 | recognize one image, warm model, {s['count']} sequential calls | p50 {fmt(s['p50_ms'])} ms, p95 {fmt(s['p95_ms'])} ms |")
    lines.append(f"| 6 | recognize, {b['concurrency']} concurrent calls ({b['count']} images) | {fmt(b['images_per_s'])} images/s (p95 {fmt(b['p95_ms'])} ms) |")
    for key, label in (("n", "N"), ("scaled", f"{mem['scaled']['scale']}×N")):
        mm = mem[key]
        lines.append(
            f"| 7 | peak RSS training {label} = {mm['identifiers']:,} identifiers: worker / + {mm['children_seen']} children | "
            f"{fmt(mm['peak_worker_rss_mib'])} MiB / {fmt(mm['peak_worker_plus_children_rss_mib'])} MiB (baseline {fmt(mm['baseline_worker_rss_mib'])} MiB) |"
        )
    lines += ["", "Training wall time breakdown (full training of N):", "", "| stage | seconds | of wall | source |", "|---|---|---|---|"]
    for row in r["breakdown"]:
        frac = row["fraction_of_wall"]
        lines.append(f"| {row['stage']} | {fmt(row['seconds'], 3)} | {'n/m' if frac is None else f'{frac * 100:.1f} %'} | {row['note']} |")
    lines.append("")
    lines.append("n/m = not measured by the product.")
    return "\n".join(lines)


def speaker_table(s: dict[str, Any]) -> str:
    from bench import speaker

    rows = [f"| 9 | speaker scenario skipped | {s['skipped']} |"] if "skipped" in s else speaker.rows(s, fmt)
    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *rows])


def face_table(s: dict[str, Any]) -> str:
    from bench import face

    rows = [f"| 10 | face scenario skipped | {s['skipped']} |"] if "skipped" in s else face.rows(s, fmt)
    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *rows])
def labeling_table(s: dict[str, Any]) -> str:
    from bench import labeling

    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *labeling.rows(s, fmt)])


def import_table(r: dict[str, Any]) -> str:
    from bench import import_cli

    return "\n".join(["| # | measurement | figure |", "|---|---|---|", *import_cli.rows(r, fmt)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM cleans up like Ctrl-C: the finally blocks stop the processes and the embedded services.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.perf_counter()
    log(f"starting the stack (N={args.n}, memory scale {args.memory_scale}{', quick' if args.quick else ''})")
    machine = machine_info()
    from bench.speaker import EXTRA_ENGINES

    with bench_stack({"ENGINESHED_EXTRA_ENGINES": EXTRA_ENGINES}, keep_dir=args.keep_dir) as stack:
        log(f"stack up in {time.perf_counter() - started:.1f} s: gateway {stack.url}, worker pid {stack.worker.pid}")
        with RssSampler(stack.worker.pid, interval=0.1) as sampler:
            try:
                if args.only == "processes":
                    work = measure_only_processes(stack, args)
                elif args.only == "pulled-models":
                    work = measure_pulled(stack, args)
                elif args.only == "speaker":
                    work = measure_speaker(stack, args)
                elif args.only == "face":
                    work = measure_face(stack, args)
                elif args.only == "labeling":
                    work = measure_labeling(stack, args)
                elif args.only == "import":
                    work = measure_import(stack, args)
                elif args.only == "embeddings":
                    work = measure_embeddings(stack, args, sampler)
                else:
                    work = measure_all(stack, args, sampler)
                results = asyncio.run(asyncio.wait_for(work, timeout=args.timeout))
            except BaseException:
                log("failed; worker log tail:\n" + stack.worker.output_tail(3000))
                log("gateway log tail:\n" + stack.gateway.output_tail(3000))
                raise
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "versions": versions(),
        "parameters": {
            "n": args.n,
            "identifiers_per_entity": PER_ENTITY,
            "memory_scale": args.memory_scale,
            "read_requests_per_level": args.requests,
            "gateway_processes": args.processes,
            "dispatch_jobs": args.dispatch_jobs,
            "recognize_calls": args.recognize_calls,
            "concurrency": args.concurrency,
            "quick": args.quick,
            "only": args.only,
            "import_n": args.import_n,
            "image": "64×64 RGB, PNG and JPEG alternating",
            "engine": scenarios.ENGINE,
            "engine_config": engine_defaults(),
            "worker_decode_processes": "default (CPU count)",
        },
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if args.only == "pulled-models":
        report["parameters"] = {"face_n": args.face_n, "concurrency": args.concurrency, "quick": args.quick,
                                "engine": scenarios.ENGINE, "model_cache": str(args.model_cache)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.only == "processes":
        print("\n".join(["| # | measurement | figure |", "|---|---|---|", *processes_lines(results["gateway_processes"])]))
    elif args.only == "pulled-models":
        print(pulled_table(report))
    elif args.only == "speaker":
        print(speaker_table(results))
    elif args.only == "face":
        print(face_table(results))
    elif args.only == "labeling":
        print(labeling_table(results))
    elif args.only == "import":
        print(import_table(results))
    elif args.only == "embeddings":
        from bench import embeddings

        print("\n".join(["| # | measurement | figure |", "|---|---|---|", *embeddings.rows(results)]))
    else:
        print(table(report))
        if "pulled_models" in results:
            print("\n" + pulled_table(report))
        if "speaker" in results:
            print("\n" + speaker_table(results["speaker"]))
        if "face" in results:
            print("\n" + face_table(results["face"]))
        if "labeling" in results:
            print("\n" + labeling_table(results["labeling"]))
        if "import" in results:
            print("\n" + import_table(results["import"]))
    print(f"\nwrote {args.out} in {report['total_seconds']} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench interrupted; processes stopped", file=sys.stderr)
        sys.exit(130)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
