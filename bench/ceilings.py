"""Ceilings: what the same work costs without the product in the way (the backbone on decoded tensors,
bare S3 GETs and PUTs of the same objects), for the e2e / raw ratios."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np

from bench.client import Client
from bench.images import SIZE, make_image
from bench.scenarios import Library, bounded
from bench.stack import BenchError


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


BOUNDARY = "engineshed-bench-boundary-5c1e"


def plain_form(query: str, data: bytes, content_type: str) -> bytes:
    name = "x.jpg" if content_type == "image/jpeg" else "x.png"
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="query"\r\n\r\n{query}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


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
    forms = [plain_form(queries[i], *blobs[i]) for i in range(len(work))]
    api_headers = {"Authorization": client.http.headers["Authorization"], "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

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
