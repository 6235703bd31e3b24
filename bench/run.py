"""`make bench`: start the real stack, measure, print a table and write bench/results.json.

    python -m bench.run [--n N] [--quick] [--memory-scale K] [--out bench/results.json]

Everything is bounded in count and time, runs on loopback, and stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import ceilings, latency, pulled, scenarios
from bench.client import Client
from bench.images import make_image
from bench.memory import RssSampler
from bench.report import machine_info, report_text, versions
from bench.stack import BenchError, Stack, bench_stack, create_token, log, start_gateway
from bench.stats import ratio

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
MODEL_CACHE = Path(__file__).resolve().parents[1] / ".engineshed" / "models"
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
                                      "import", "embeddings", "memory", "scale", "direct", "ingest", "video", "audio"),
                   default="all",
                   help="run one scenario: upload = API uploads against S3 PUTs of the same bytes; "
                        "processes = GetIdentifiers, 32 clients, 1 gateway process vs N; pulled-models = "
                        "the pulled-model figures (registration, face-model training e2e/raw); speaker = "
                        "speaker-engine utterances/s against the GE2E raw ceiling; face = face-engine photos/s "
                        "for training and recognize against the detector-plus-embedder raw ceiling; labeling = "
                        "autoTag images/s against the model's raw ceiling, and autoGroup time at --group-n items; "
                        "import = `engineshed import` files/s against the API's upload ceiling; embeddings = stored vectors "
                        "(bench/embeddings.py: ingest, training from vectors vs images, incremental, memory, search); "
                        "memory = gateway and worker RSS over a newcomer's session in rounds (bench/memory.py); "
                        "scale = the gallery at 10k/100k/1M identities up to ENGINESHED_BENCH_SCALE_MAX (bench/scale.py); "
                        "ingest = multipart_over_bare and ingest_over_model_bound (bench/ingest_ratios.py); "
                        "video = video_over_model_bound (bench/video.py); audio = audio_over_model_bound on a long "
                        "recording (bench/audio_long.py); these two need no stack")
    p.add_argument("--session-rounds", type=int, default=None,
                   help="memory scenario: rounds of a newcomer's session (default 6; quick 2)")
    p.add_argument("--face-per-person", type=int, default=None,
                   help="face scenario: training photos per person, 23 people (default 4; quick 1)")
    p.add_argument("--group-n", type=int, default=None, help="labeling scenario: items to auto-group (default 10000; quick 200)")
    p.add_argument("--import-n", type=int, default=None, help="import scenario: files in the folder (default 1000; quick 40)")
    p.add_argument("--direct-n", type=int, default=None,
                   help="direct scenario (bench/direct_upload.py): files per pass, bulk import through writable URLs "
                        "against raw S3 PUTs of the same bytes (default 1000; quick 60)")
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
        "direct_n": 60 if quick else 1000,
        "emb_n": 100 if quick else 10_000,
        "emb_memory_scale": 2 if quick else 10,
        "emb_search_n": 2000 if quick else 100_000,
        "session_rounds": 2 if quick else 6,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.processes is None:
        args.processes = max(2, os.cpu_count() or 1)
    if args.processes < 2:
        p.error("--processes must be at least 2 (it is compared with one process)")
    if args.n < 2 * scenarios.PER_ENTITY:
        p.error(f"--n must be at least {2 * scenarios.PER_ENTITY}")
    if args.memory_scale < 1:
        p.error("--memory-scale must be at least 1")
    return args


def engine_defaults() -> dict[str, Any]:
    from engines.options import PIPELINE_OPTIONS

    return {o.name: o.default for o in PIPELINE_OPTIONS}


# --------------------------------------------------------------------------- the run


async def measure_speaker(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 9 (bench/speaker.py); in a whole run it is skipped, saying why, without espeak-ng or the wheel."""
    from bench import speaker
    from gateway.services.models.pull.catalogue import PullError

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
    from gateway.services.models.pull.catalogue import PullError

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


async def measure_direct(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """bulk_over_s3_put (bench/direct_upload.py): bulk import through writable URLs against raw S3 PUTs."""
    from bench import direct_upload

    log(f"direct uploads: {args.direct_n} files per pass against raw S3 PUTs, {args.concurrency} in flight")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        library = await scenarios.create_library(client, "direct", 20, seed_base=8_000_000, concurrency=args.concurrency)
    finally:
        await client.aclose()
    result = await direct_upload.bulk_vs_s3_put(stack.url, token, library.entity_ids, stack.env, args.direct_n,
                                                args.concurrency, gateway_pid=stack.gateway.pid)
    for line in direct_upload.rows(result):
        log(line)
    return result


async def measure_ingest(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """multipart_over_bare and ingest_over_model_bound (bench/ingest_ratios.py); in a whole run it is skipped,
    saying why, when the pulled models cannot be had."""
    from bench import ingest_ratios
    from gateway.services.models.pull.catalogue import PullError

    try:
        return await ingest_ratios.ingest_ratios(stack, args.model_cache, 40 if args.quick else 200, args.concurrency,
                                                 timeout=min(args.timeout, 900.0))
    except (BenchError, PullError) as exc:
        if args.only == "ingest":
            raise
        log(f"ingest ratios skipped: {exc}")
        return {"skipped": str(exc)}


def measure_media(args: argparse.Namespace, which: str) -> dict[str, Any]:
    """Faces over time (bench/video.py) or voices over time (bench/audio_long.py), each against the limit of its
    decode + detect/VAD + embed on the same cores in the same run; in a whole run skipped, saying why, without the
    pulled models or espeak-ng. They run in this process with their own decode pools: no stack is needed."""
    from gateway.services.models.pull.catalogue import PullError

    try:
        if which == "video":
            from bench import video

            report = video.run(args.model_cache, seconds=20.0 if args.quick else 60.0)
            for line in video.rows(report):
                log(line)
            return report["results"]
        from bench import audio_long

        report = audio_long.run(2.0 if args.quick else 10.0, repeats=1 if args.quick else 2)
        log(f"audio: {report['e2e']['audio_seconds_per_s']} audio s/s against a limit of "
            f"{report['limit']['audio_seconds_per_s']}: audio_over_model_bound = {report['audio_over_model_bound']}")
        return report
    except (BenchError, PullError) as exc:
        if args.only == which:
            raise
        log(f"{which} scenario skipped: {exc}")
        return {"skipped": str(exc)}


async def measure_session_memory(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Figure 17 (bench/memory.py): RSS of the gateway and the worker over a newcomer's session in rounds; the
    face engine joins when the pulled face models can be registered (else it says why in ``faces_skipped``)."""
    from bench import memory
    from bench.face import make_photos
    from gateway.services.models.pull.catalogue import PullError

    rounds = args.session_rounds
    photos, skipped = None, None
    try:
        await scenarios.register_pulled(stack.env, args.model_cache, ["face-detector", "face-embedding"])
        photos = await asyncio.to_thread(make_photos, args.model_cache, rounds)
    except (BenchError, PullError, OSError) as exc:
        skipped = str(exc)
        log(f"memory: the face engine is left out: {exc}")
    log(f"memory: a newcomer's session in {rounds} rounds")
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    try:
        result = await memory.newcomer_session(
            client, stack.gateway.pid, stack.worker.pid, rounds, memory.SessionSizes(), face_photos=photos,
            face_per_person=rounds, concurrency=min(8, args.concurrency), timeout=600.0, log=log,
        )
    finally:
        await client.aclose()
    return {"faces": photos is not None, "faces_skipped": skipped, "sizes": vars(memory.SessionSizes()), **result}


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
        results["pulled_models"] = await pulled.pulled_models(stack, args.model_cache, args.face_n, args.concurrency)
        results["speaker"] = await measure_speaker(stack, args)
        results["face"] = await measure_face(stack, args)
        results["labeling"] = await measure_labeling(stack, args)
        results["import"] = await measure_import(stack, args)
        results["direct_upload"] = await measure_direct(stack, args)
        results["ingest_ratios"] = await measure_ingest(stack, args)
        results["session_memory"] = await measure_session_memory(stack, args)
        results["video"] = await asyncio.to_thread(measure_media, args, "video")
        results["audio_long"] = await asyncio.to_thread(measure_media, args, "audio")
        from bench import scale

        # The whole run stops at 100,000 identities unless told (1M takes most of the run's time limit alone).
        limit = int(os.environ.get("ENGINESHED_BENCH_SCALE_MAX", "100000"))
        results["scale"] = await scale.scale(stack, sampler, limit=limit, timeout=args.timeout)
    return results


async def measure(stack: Stack, args: argparse.Namespace, sampler: RssSampler) -> dict[str, Any]:
    token = await create_token(stack.database_url, f"bench-{uuid.uuid4().hex[:8]}")
    client = Client(stack.url, token, connections=max(64, args.concurrency))
    defaults = engine_defaults()
    train_timeout = max(300.0, args.n * 0.5)
    results: dict[str, Any] = {}
    try:
        n, per = args.n, scenarios.PER_ENTITY
        entities = n // per
        # 0. One upload's cost: the API against bare S3 PUTs of the same bytes, same concurrency.
        log(f"uploads against S3 PUTs: {n} identifiers, {args.concurrency} in flight")
        put_library = await scenarios.create_library(client, "put", entities, seed_base=5_000_000, concurrency=args.concurrency)
        results["upload_vs_s3_put"] = await ceilings.upload_vs_s3_put(
            client, put_library, stack.env, per, args.concurrency, gateway_pid=stack.gateway.pid
        )
        # The same at photo size (512 px: 146 KB JPEG, 697 KB PNG), one per entity: the fixed cost of an
        # upload against the store's cost of the bytes, where photos are concerned.
        results["upload_vs_s3_put_photos"] = await ceilings.upload_vs_s3_put(
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
        raw = ceilings.raw_ceiling(blobs, full["provider"], defaults["batchSize"], defaults["imageSize"])
        del blobs
        log("S3 GET ceiling next")
        s3_ceiling = await ceilings.s3_get_ceiling(
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
        results["reads"] = await latency.reads(client, reads_library.id, args.requests, (1, 32))

        # 8. The same reads from one gateway process and from N (a second gateway beside the first).
        results["gateway_processes"] = await gateway_processes(stack, token, reads_library.id, args)

        # 6. Recognize (warm model: the incremental one, its artifact is cached by the gateway after the warm-up).
        log("recognize")
        results["recognize"] = await latency.recognize(
            client, incremental["model_id"], library, args.recognize_calls, max(32, args.recognize_calls * 2 if args.quick else 320), 32
        )

        # 5. Dispatch latency on a tiny library (cached embeddings after the first job).
        log(f"dispatch latency over {args.dispatch_jobs} jobs")
        tiny = await scenarios.create_library(client, "tiny", 2, seed_base=3_000_000, concurrency=2)
        await scenarios.upload_identifiers(client, tiny, 2, 4)
        results["dispatch"] = await latency.dispatch(client, tiny.id, args.dispatch_jobs, 0.005, timeout=60)

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
        return await latency.reads_by_processes({1: stack.url, args.processes: url}, token, library_id, args.requests)
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


# --------------------------------------------------------------------------- the program


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM cleans up like Ctrl-C: the finally blocks stop the processes and the embedded services.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.perf_counter()
    if args.only in ("video", "audio"):  # no stack: each writes its own results file (bench/results-*-cpu-2core.json)
        measure_media(args, args.only)
        return 0
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
                    work = pulled.pulled_models(stack, args.model_cache, args.face_n, args.concurrency)
                elif args.only == "speaker":
                    work = measure_speaker(stack, args)
                elif args.only == "face":
                    work = measure_face(stack, args)
                elif args.only == "labeling":
                    work = measure_labeling(stack, args)
                elif args.only == "import":
                    work = measure_import(stack, args)
                elif args.only == "direct":
                    work = measure_direct(stack, args)
                elif args.only == "ingest":
                    work = measure_ingest(stack, args)
                elif args.only == "memory":
                    work = measure_session_memory(stack, args)
                elif args.only == "embeddings":
                    work = measure_embeddings(stack, args, sampler)
                elif args.only == "scale":
                    from bench import scale

                    work = scale.scale(stack, sampler, timeout=args.timeout, note=os.environ.get("ENGINESHED_BENCH_NOTE"))
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
            "identifiers_per_entity": scenarios.PER_ENTITY,
            "memory_scale": args.memory_scale,
            "read_requests_per_level": args.requests,
            "gateway_processes": args.processes,
            "dispatch_jobs": args.dispatch_jobs,
            "recognize_calls": args.recognize_calls,
            "concurrency": args.concurrency,
            "quick": args.quick,
            "only": args.only,
            "import_n": args.import_n,
            "session_rounds": args.session_rounds,
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
    elif args.only == "ingest":
        report["parameters"] = {"photos": 40 if args.quick else 200, "concurrency": args.concurrency, "quick": args.quick,
                                "image": "960×720 JPEG face photos (sampledata/face_scenes.py)",
                                "model_cache": str(args.model_cache)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.only == "scale":
        from bench import scale

        print("\n".join(scale.rows(results)))
    elif args.only == "direct":
        from bench import direct_upload

        print("\n".join(direct_upload.rows(results)))
    elif args.only == "ingest":
        from bench import ingest_ratios

        print("\n".join(ingest_ratios.rows(results)))
    else:
        print(report_text(report, args.only))
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
